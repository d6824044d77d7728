"""`switchboard demo --once` is the README's first command: it must pass on the real broker."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_once_exits_zero_and_prints_what_each_fake_received(kafka_bootstrap, tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    env = {k: v for k, v in env.items() if not k.startswith("SWITCHBOARD_")}
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "demo", "--once"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "What the fake PagerDuty received" in out and "What the fake Slack received" in out
    import re

    checks = re.findall(r"^  \[(ok|MISSING)\] (.+)$", out, re.M)
    # incidents (8), support (3), sales (8), operators' view (7): every expected effect listed and observed
    assert len(checks) >= 26 and all(state == "ok" for state, _ in checks), checks
    assert f"{len(checks)} passed, 0 failed" in out
    for story in ("OPS-1 paged once", "SUP-1 shows 3 linked tickets", "SUP-2 shows USD 80,000", "switchboard trace follows"):
        assert any(what.startswith(story) for _, what in checks), story
