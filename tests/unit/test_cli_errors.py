"""Start-up errors a newcomer meets first say what to do, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.run([sys.executable, "-m", "hub.cli", *argv], env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", ["topics", "receiver"])
def test_kafka_unreachable_names_the_address_and_the_way_out(command):
    out = _run(command, env={"SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert out.returncode == 3, out.stderr[-2000:]
    assert f"switchboard {command}: cannot reach Kafka at 127.0.0.1:1" in out.stderr
    assert "switchboard broker start" in out.stderr and "Traceback" not in out.stderr


def test_a_malformed_settings_file_stops_the_worker_with_its_place(tmp_path):
    path = tmp_path / "switchboard.yaml"
    path.write_text("kafka:\n  partitions: [4\n")
    out = _run("--config", str(path), "worker")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{path}:3:1: invalid YAML" in out.stderr
