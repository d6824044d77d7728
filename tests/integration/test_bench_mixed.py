"""The bench's mixed phase, small, on the real broker: the whole hub (incidents, support, sales and
the Salesforce CDC bridge) under Jira, Zendesk and Salesforce changes, every expected effect seen in
the fakes, and the figures the report is made of."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub import bench

pytestmark = pytest.mark.integration


async def test_a_small_mixed_load_shows_every_effect_and_reports_its_figures(kafka_bootstrap: str, tmp_path: Path) -> None:
    report = await bench.mixed_phase(kafka_bootstrap, 150, tmp_path, partitions=3, timeout=60)

    inputs = report["input_events"]
    assert inputs["jira"] > 0 and inputs["zendesk"] > 0 and inputs["salesforce"] > 0
    assert inputs["jira"] + inputs["zendesk"] + inputs["salesforce"] == inputs["total"]
    assert 100 <= inputs["total"] <= 220  # about the 150 asked for
    assert sum(stage["input_events"] for stage in report["stages"].values()) == inputs["total"]
    assert report["webhook_errors"] == {"jira": 0, "zendesk": 0}

    # every effect was observed in the fakes, none twice
    assert report["missing"] == 0, report["missing_by_kind"]
    assert report["duplicates"] == {"internal_notes": 0, "tasks": 0}
    kinds = report["effects_by_kind"]
    for kind in ("remote_link", "ticket_status", "internal_notes", "revenue", "incident_paged", "incident_posted", "task"):
        assert kinds.get(kind, 0) > 0, f"the load made no {kind} effect: {kinds}"
    assert sum(kinds.values()) == report["effects"]
    assert report["effects_visible_s"] > 0 and report["effects_per_s"] > 0

    assert report["calls_per_1000_events"] > 0
    assert {"jira", "zendesk", "salesforce", "slack", "pagerduty"} <= set(report["calls_per_1000_by_vendor"])
    assert round(sum(report["calls_per_1000_by_vendor"].values()), 0) == round(report["calls_per_1000_events"], 0)
    assert report["cpu_ms_per_event"]["worker"] > 0
    assert {"receiver", "worker", "cdc"} <= set(report["rss_mb"])
    # at rest (started, before the load) each process is no larger than at its peak
    assert {"receiver", "worker", "cdc"} <= set(report["rss_mb_at_rest"])
    assert all(0 < report["rss_mb_at_rest"][role] <= report["rss_mb"][role] for role in ("receiver", "worker", "cdc"))

    # the hub's processes are gone, and nothing secret reached the report
    assert not list((tmp_path / "procs").glob("*.pid"))
    text = json.dumps(report)
    for secret in (bench.SECRET, bench.ZD_TOKEN, bench.ZD_SECRET, bench.SF_SECRET, bench.SLACK_TOKEN, bench.PD_KEY):
        assert secret not in text
