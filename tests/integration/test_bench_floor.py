"""hub/floor.py through the bench's floor phase: a process of its own, the real broker, the TLS fakes."""

from __future__ import annotations

import uuid
from typing import Any

from hub import bench
from sandbox.pagerduty import PagerDutyState
from sandbox.server import start_sandbox
from sandbox.slack import SlackState
from tests.integration.conftest import read_topic


async def run_floor(bootstrap: str, n: int, *, slack_token: str = bench.SLACK_TOKEN, calls: bool = True) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The floor phase over ``n`` incidents against fresh fakes (rate limits off, as in the bench):
    its topic prefix, its result, and the fakes' states."""
    sandbox = await start_sandbox(tls=True, states={"slack": SlackState(tokens=[slack_token], channels={"C0INCIDENTS": "incidents"}),
                                                    "pagerduty": PagerDutyState(routing_keys=[bench.PD_KEY])})
    for state in sandbox.states.values():
        state.rate_limits = False  # the floor measures work, not the vendors' pace
    prefix = f"t{uuid.uuid4().hex[:8]}."
    states = {"pagerduty": sandbox.states["pagerduty"], "slack": sandbox.states["slack"]}
    try:
        result = await bench.floor_phase(bootstrap, prefix, n, 3, sandbox, states, "auto", calls=calls)
    finally:
        await sandbox.stop()
    return prefix, result, states


async def test_floor_delivers_every_incident_and_writes_its_records(kafka_bootstrap: str) -> None:
    prefix, result, _ = await run_floor(kafka_bootstrap, 40)
    assert "error" not in result, result
    assert result["incidents"] == 40
    assert result["paged"] == 40 and result["posted"] == 40  # the fakes received a trigger and a post for each
    assert result["failed_calls"] == {}
    assert result["cpu_ms_per_incident"] > 0 and result["per_s"] > 0
    records = await read_topic(kafka_bootstrap, f"{prefix}floor.records")
    # per incident: its state, two ledger rows, two results
    assert len(records) == 5 * 40
    states_written = {value["issue_id"] for _, value in records if "lifecycle" in value and "issue_id" in value}
    assert states_written == {str(3_000_000 + i) for i in range(40)}
    # the secrets went to the fakes, never into the records
    raw = repr(records)
    assert bench.SLACK_TOKEN not in raw and bench.PD_KEY not in raw


async def test_floor_reports_a_failing_run(kafka_bootstrap: str) -> None:
    # the fake Slack does not know the bench's token: every post is refused, and the floor says so
    _, result, _ = await run_floor(kafka_bootstrap, 10, slack_token="xoxb-someone-else")
    assert result["posted"] == 0 and result["paged"] == 10
    assert sum(result["failed_calls"].values()) == 10


async def test_floor_without_calls_calls_no_vendor(kafka_bootstrap: str) -> None:
    prefix, result, states = await run_floor(kafka_bootstrap, 20, calls=False)
    assert result["incidents"] == 20 and result["vendor_calls"] is False
    assert states["slack"].calls == [] and states["pagerduty"].calls == []
    assert len(await read_topic(kafka_bootstrap, f"{prefix}floor-kafka.records")) == 5 * 20
