"""`switchboard bench` as a user runs it, small, on the real broker: it starts the fakes and the hub,
drives every phase, prints one JSON report and writes the same to --out. The report's figures are
checked for being there and for counting what was sent (every incident paged and posted), never for
their speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EVENTS, RATE_EVENTS, SWEEP_RATE, BACKLOG, BURST, FLOOR = 60, 40, 20.0, 200, 40, 100


def _run_bench(kafka_bootstrap: str, cwd: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    args = [sys.executable, "-m", "hub.bench", "--events", str(EVENTS), "--rate", "50", "--rate-events", str(RATE_EVENTS),
            "--concurrency", "8", "--latency-rates", str(SWEEP_RATE), "--backlog", str(BACKLOG), "--burst", str(BURST),
            "--floor", str(FLOOR), "--mixed", "0", "--out", str(out)]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _percentiles_ordered(latency: dict[str, float]) -> bool:
    return 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]


def test_bench_prints_the_whole_report_and_every_incident_is_delivered(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "bench.json"
    done = _run_bench(kafka_bootstrap, tmp_path, out)
    assert done.returncode == 0, f"switchboard bench failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    printed = json.loads(done.stdout[done.stdout.index("\n{") + 1:])  # progress lines first, then the report
    assert json.loads(out.read_text()) == printed
    report = printed

    assert report["machine"]["cores"] == os.cpu_count() and report["machine"]["speed_probe_ms"] > 0
    assert report["baseline"]["events"] == EVENTS and report["baseline"]["produce_consume_per_s"] > 0

    for phase, n in (("saturation", EVENTS), ("fixed_rate", RATE_EVENTS)):
        figures = report[phase]
        assert figures["ingest_2xx"] == n and figures["errors"] == 0, (phase, figures)
        assert figures["paged"] == n and figures["posted"] == n, (phase, figures)
        for key in ("ingest_per_s", "processing_per_s", "delivery_calls_per_s", "end_to_end_per_s"):
            assert figures[key] > 0, (phase, key, figures)
        assert _percentiles_ordered(figures["latency_ms_pagerduty"]) and _percentiles_ordered(figures["latency_ms_slack"])

    [sweep] = report["latency_by_rate"]
    assert sweep["rate_per_s"] == SWEEP_RATE and sweep["events"] > 0
    assert _percentiles_ordered(sweep["latency_ms_pagerduty"])

    backlog = report["backlog"]
    assert backlog["events"] == BACKLOG and backlog["paged"] == BACKLOG and backlog["posted"] == BACKLOG
    assert backlog["caught_up_s"] > 0

    burst = report["burst"]
    assert burst["updates"] == BURST
    # coalesced: fewer write attempts than updates (without it, one chat.update per update), and the
    # newest update shown in the end (None when it never was)
    assert 1 <= burst["slack_writes_accepted"] <= burst["slack_write_attempts"] < BURST, burst
    assert burst["newest_shown_after_s"] is not None and burst["newest_shown_after_s"] >= 0, burst

    for floor in ("floor", "floor_without_calls"):
        assert report[floor]["incidents"] == FLOOR and report[floor]["per_s"] > 0
    assert report["floor"]["paged"] == FLOOR and report["floor"]["posted"] == FLOOR

    assert report["rss_mb"]["receiver"] > 0 and report["rss_mb"]["worker"] > 0
    assert report["cpu_ms_per_event"]["worker"] > 0
    for ratio in ("ingest_vs_baseline", "processing_vs_baseline", "end_to_end_vs_baseline", "backlog_vs_baseline",
                  "worker_cpu_vs_floor"):
        assert report["ratios"][ratio] > 0, ratio

    economy = report["economy"]
    incidents = EVENTS + RATE_EVENTS + sweep["events"] + BACKLOG
    assert economy["by_method"]["pagerduty.trigger"] >= incidents
    assert economy["by_method"]["slack.chat.postMessage"] >= incidents
    assert economy["calls_per_1000_events"] > 0
    assert "mixed" not in report and report["setup"]["mixed"] == 0

    leftovers = list((tmp_path / ".switchboard" / "bench" / "runs").glob("*"))
    assert leftovers == [], f"the run's directory was not removed: {leftovers}"
