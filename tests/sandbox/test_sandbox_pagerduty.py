"""The PagerDuty Events API v2 fake, over raw HTTP and through the ``pagerduty`` client."""

from __future__ import annotations

import asyncio
import re

import pagerduty
import pytest

from sandbox.common import FaultRule
from sandbox.pagerduty import EVENTS_PER_WINDOW, THROTTLED_BODY, PagerDutyState, create_app
from sandbox.server import start_sandbox

KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"


def trigger(dedup_key=None, summary="Database down", key=KEY, **extra):
    event = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": summary, "source": "db-01", "severity": "critical"},
        **extra,
    }
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    return event


def action(name, dedup_key, key=KEY):
    return {"routing_key": key, "event_action": name, "dedup_key": dedup_key}


async def send(client, event, path="/v2/enqueue"):
    resp = await client.post(path, json=event)
    return resp.status, await resp.json()


@pytest.fixture
async def pd(serve, clock):
    state = PagerDutyState(clock=clock, wall_clock=clock)
    return state, await serve(create_app(state))


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"event_action": "trigger"}, "'routing_key' is missing or blank"),
        (trigger(key="short"), "Invalid routing key"),
        (trigger(key=KEY.upper()), "Invalid routing key"),
        ({**trigger(), "event_action": "escalate"}, "'event_action' must be one of trigger, acknowledge, resolve"),
        ({**trigger(), "event_action": None}, "'event_action' is missing or blank"),
        ({**trigger(), "payload": None}, "'payload' is missing or blank"),
        (trigger(summary=""), "'payload.summary' is missing or blank"),
        (trigger(summary="x" * 1025), "'payload.summary' must be at most 1024 characters"),
        ({**trigger(), "payload": {"summary": "s", "severity": "critical"}}, "'payload.source' is missing or blank"),
        (
            {**trigger(), "payload": {"summary": "s", "source": "h", "severity": "fatal"}},
            "'payload.severity' must be one of critical, error, warning, info",
        ),
        (trigger(dedup_key="k" * 256), "'dedup_key' must be at most 255 characters"),
        ({"routing_key": KEY, "event_action": "acknowledge"}, "'dedup_key' is missing or blank"),
        (action("resolve", ""), "'dedup_key' is missing or blank"),
    ],
)
async def test_invalid_events_are_refused_and_not_ingested(pd, event, error):
    state, client = pd
    status, body = await send(client, event)
    assert status == 400
    assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
    assert error in body["errors"]
    assert state.incidents == [] and state.events == []


async def test_unparseable_body(pd):
    _, client = pd
    for raw in (b"{not json", b'["a list"]'):
        resp = await client.post("/v2/enqueue", data=raw, headers={"Content-Type": "application/json"})
        assert resp.status == 400
        assert await resp.json() == {
            "status": "Unrecognized object",
            "message": "Event object format is unrecognized",
            "errors": ["JSON parse error"],
        }


async def test_configured_keys_only(serve):
    client = await serve(create_app(PagerDutyState([KEY])))
    assert (await send(client, trigger(key=OTHER_KEY)))[1]["errors"] == ["Invalid routing key"]
    assert (await send(client, trigger(key=KEY)))[0] == 202


async def test_trigger_without_dedup_key_gets_one(pd):
    state, client = pd
    status, body = await send(client, trigger())
    assert status == 202 and (body["status"], body["message"]) == ("success", "Event processed")
    assert re.fullmatch(r"[0-9a-f]{32}", body["dedup_key"])
    assert state.incidents[0].dedup_key == body["dedup_key"]


async def test_dedup_semantics(pd, clock):
    state, client = pd
    accepted = {"status": "success", "message": "Event processed", "dedup_key": "OPS-1"}
    assert await send(client, trigger("OPS-1")) == (202, accepted)
    await send(client, trigger("OPS-1", summary="Database still down"))
    [incident] = state.incidents
    assert (incident.status, incident.alerts, incident.summary) == ("triggered", 2, "Database down")

    clock.advance(5)
    assert (await send(client, action("acknowledge", "OPS-1")))[0] == 202
    await send(client, trigger("OPS-1"))  # a trigger does not re-open an acknowledged incident
    assert (incident.status, incident.alerts, len(state.incidents)) == ("acknowledged", 3, 1)
    assert incident.acknowledged_at == "2023-11-14T22:13:25.000Z"

    await send(client, action("resolve", "OPS-1"))
    assert incident.status == "resolved" and incident.resolved_at is not None
    assert (await send(client, action("resolve", "OPS-1")))[0] == 202  # resolved already: accepted, no change
    assert (await send(client, action("acknowledge", "OPS-1")))[0] == 202
    assert incident.status == "resolved"

    await send(client, trigger("OPS-1"))  # after a resolve: a new incident
    assert [i.status for i in state.incidents] == ["resolved", "triggered"]
    assert state.opened_per_dedup_key() == {"OPS-1": 2}
    assert [e["outcome"] for e in incident.log] == ["opened", "grouped", "acknowledged", "grouped", "resolved"]

    assert (await send(client, action("acknowledge", "never-seen")))[0] == 202
    assert len(state.incidents) == 2
    await send(client, trigger("OPS-1", key=OTHER_KEY))  # dedup keys are per routing key
    assert state.opened_per_dedup_key(OTHER_KEY) == {"OPS-1": 1} and len(state.incidents) == 3

    snapshot = await (await client.get("/_sandbox/state")).json()
    assert snapshot["opened_per_dedup_key"] == {"OPS-1": 3}
    assert set(snapshot["incidents"][0]) >= {
        "id", "routing_key", "dedup_key", "status", "summary", "severity", "created_at",
        "acknowledged_at", "resolved_at", "alerts", "log",
    }


async def test_rate_limit_per_routing_key_over_a_sliding_minute(pd, clock):
    state, client = pd
    for i in range(EVENTS_PER_WINDOW):
        assert (await send(client, trigger(f"k{i}")))[0] == 202
        clock.advance(0.25)
    status, body = await send(client, trigger("one-too-many"))
    assert (status, body) == (429, THROTTLED_BODY)
    assert not state.incidents_for("one-too-many")  # not ingested
    assert (await send(client, trigger("other-key", key=OTHER_KEY)))[0] == 202
    clock.advance(60 - 0.25 * EVENTS_PER_WINDOW + 0.1)  # only the first event has left the window
    assert (await send(client, trigger("later")))[0] == 202
    assert (await send(client, trigger("too-soon")))[0] == 429

    state.rate_limits = False
    assert (await send(client, trigger("unlimited")))[0] == 202


async def test_change_events(pd):
    state, client = pd
    payload = {"summary": "Deployed v1.2", "source": "ci"}
    event = {"routing_key": KEY, "payload": payload, "links": [{"href": "https://ci.test"}]}
    accepted = {"status": "success", "message": "Change event processed"}
    assert await send(client, event, "/v2/change/enqueue") == (202, accepted)
    assert state.change_events[0]["payload"]["summary"] == "Deployed v1.2" and state.incidents == []
    status, body = await send(client, {"routing_key": KEY, "payload": {}}, "/v2/change/enqueue")
    assert (status, body["errors"]) == (400, ["'payload.summary' is missing or blank"])


# --- the real client: pagerduty.EventsApiV2Client --------------------------------------------------


@pytest.fixture
async def tls_sandbox():
    sandbox = await start_sandbox(tls=True)
    yield sandbox
    await sandbox.stop()


def events_client(sandbox, key=KEY):
    return pagerduty.EventsApiV2Client(key, base_url=sandbox.urls["pagerduty"], verify=sandbox.client_ssl_context())


async def test_client_refuses_plain_http_base_urls():
    with pytest.raises(pagerduty.UrlError):
        pagerduty.EventsApiV2Client(KEY, base_url="http://127.0.0.1:9")


async def test_client_trigger_acknowledge_resolve(tls_sandbox):
    state = tls_sandbox.states["pagerduty"]
    client = events_client(tls_sandbox)
    dedup_key = await asyncio.to_thread(
        client.trigger, "Database down", "db-01", dedup_key="jira-10001", severity="error"
    )
    assert dedup_key == "jira-10001"
    assert await asyncio.to_thread(client.trigger, "Database down", "db-01", dedup_key="jira-10001") == "jira-10001"
    [incident] = state.incidents
    assert (incident.status, incident.severity, incident.alerts) == ("triggered", "error", 2)

    await asyncio.to_thread(client.acknowledge, "jira-10001")
    assert incident.status == "acknowledged"
    await asyncio.to_thread(client.resolve, "jira-10001")
    assert incident.status == "resolved"
    await asyncio.to_thread(client.trigger, "Database down again", "db-01", dedup_key="jira-10001")
    assert state.opened_per_dedup_key() == {"jira-10001": 2}

    generated = await asyncio.to_thread(client.trigger, "No dedup key", "db-02")
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    call = state.calls_to("/v2/enqueue")[0]
    assert call.body["routing_key"] == KEY and call.headers["user-agent"].startswith("python-pagerduty/")


async def test_client_raises_http_error_on_400_without_retrying(tls_sandbox):
    client = events_client(tls_sandbox, key="not-a-routing-key")
    with pytest.raises(pagerduty.HttpError) as caught:
        await asyncio.to_thread(client.trigger, "x", "y")
    assert caught.value.response.status_code == 400
    assert len(tls_sandbox.states["pagerduty"].calls) == 1


async def test_client_retries_429_until_its_retry_budget_then_raises(tls_sandbox):
    state = tls_sandbox.states["pagerduty"]
    state.add_faults([FaultRule("/v2/enqueue", status=429, count=None)])
    client = events_client(tls_sandbox)
    client.retry[429] = 2  # the default retries 429 without limit
    client.sleep_timer = 0.001
    with pytest.raises(pagerduty.HttpError) as caught:
        await asyncio.to_thread(client.trigger, "Database down", "db-01", dedup_key="k")
    assert caught.value.response.status_code == 429
    assert [c.status for c in state.calls] == [429, 429, 429]  # first attempt and two retries
    assert state.incidents == []
