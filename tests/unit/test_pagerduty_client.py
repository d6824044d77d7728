"""PagerDutyEvents (aiohttp, Events API v2) against the PagerDuty fake: the documented answers
(202, 400, 429 with Retry-After, 5xx, a dropped connection) each become one typed error, and the
routing key never appears in one."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from connectors.errors import FatalError, RateLimitedError, RetryableError
from connectors.pagerduty.client import PagerDutyEvents
from sandbox.common import FaultRule
from sandbox.pagerduty import PagerDutyState, create_app

KEY = "unit0pagerduty0routing0key000001"
EVENT = {"dedup_key": "jira/example.atlassian.net/10001", "client": "Switchboard",
         "payload": {"summary": "OPS-1: checkout down", "source": "jira", "severity": "critical"}}


@pytest.fixture
def state():
    return PagerDutyState(routing_keys=[KEY], rate_limits=False)


@pytest.fixture
async def events(state):
    server = TestServer(create_app(state))
    await server.start_server()
    client = PagerDutyEvents({"ops": KEY, "bad": "x" * 32}, base_url=str(server.make_url("")), timeout_s=2.0)
    yield client
    await client.close()
    await server.close()


async def test_trigger_acknowledge_resolve_are_accepted_with_the_dedup_key(events, state):
    assert await events.send("ops", "trigger", EVENT) == EVENT["dedup_key"]
    assert await events.send("ops", "acknowledge", {"dedup_key": EVENT["dedup_key"]}) == EVENT["dedup_key"]
    assert await events.send("ops", "resolve", {"dedup_key": EVENT["dedup_key"]}) == EVENT["dedup_key"]
    bodies = [c.body for c in state.calls]
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "resolve"]
    assert bodies[0]["routing_key"] == KEY and bodies[0]["payload"]["summary"] == "OPS-1: checkout down"
    assert state.opened_per_dedup_key(KEY)[EVENT["dedup_key"]] == 1


async def test_throttled_is_rate_limited_with_retry_after(events, state):
    state.add_faults([FaultRule(path="/v2/enqueue", status=429, retry_after=7)])
    with pytest.raises(RateLimitedError) as err:
        await events.send("ops", "trigger", EVENT)
    assert err.value.retry_after == 7 and err.value.code == "pagerduty.throttled"


async def test_server_errors_and_dropped_connections_are_retryable(events, state):
    state.add_faults([FaultRule(path="/v2/enqueue", status=503)])
    with pytest.raises(RetryableError) as err:
        await events.send("ops", "trigger", EVENT)
    assert err.value.code == "pagerduty.http_503"
    state.add_faults([FaultRule(path="/v2/enqueue", drop_after_processing=True)])
    with pytest.raises(RetryableError) as err:
        await events.send("ops", "trigger", EVENT)
    assert err.value.code == "pagerduty.transport"


async def test_invalid_event_and_unknown_key_are_fatal_and_never_name_the_key(events):
    with pytest.raises(FatalError) as err:
        await events.send("ops", "trigger", {"dedup_key": "k", "payload": {"summary": "no source or severity"}})
    assert err.value.code == "pagerduty.invalid_event" and KEY not in str(err.value)
    with pytest.raises(FatalError) as err:
        await events.send("bad", "trigger", EVENT)
    assert "x" * 32 not in str(err.value)
    with pytest.raises(FatalError) as err:
        await events.send("nowhere", "trigger", EVENT)
    assert err.value.code == "pagerduty.unknown_service"
    with pytest.raises(FatalError):
        await events.send("ops", "resolve", {})  # no dedup_key
