"""The machinery every fake shares: call log, fault injection, control endpoints, limiters."""

from __future__ import annotations

import time

import aiohttp
import pytest

from sandbox.common import SlidingWindow, TokenBucket
from sandbox.pagerduty import PagerDutyState
from sandbox.pagerduty import create_app as pagerduty_app
from sandbox.slack import SlackState
from sandbox.slack import create_app as slack_app

AUTH = {"Authorization": "Bearer xoxb-sandbox-token-1234"}


async def post_message(client, text="hello", channel="C0INCIDENT"):
    return await client.post("/api/chat.postMessage", json={"channel": channel, "text": text}, headers=AUTH)


@pytest.fixture
async def slack(serve):
    state = SlackState({"C0INCIDENT": "incidents"}, rate_limits=False)
    return state, await serve(slack_app(state))


async def test_calls_are_recorded_with_masked_authorization(slack):
    state, client = slack
    resp = await post_message(client, "first")
    assert resp.status == 200
    await client.get("/api/conversations.info", params={"channel": "C0INCIDENT"}, headers=AUTH)

    calls = (await (await client.get("/_sandbox/calls")).json())["calls"]
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", "/api/chat.postMessage", 200),
        ("GET", "/api/conversations.info", 200),
    ]
    assert calls[0]["body"] == {"channel": "C0INCIDENT", "text": "first"}
    assert calls[1]["query"] == {"channel": "C0INCIDENT"}
    assert calls[0]["headers"]["authorization"] == "Bearer ****1234"
    assert "xoxb-sandbox-token" not in str(calls)
    assert calls[0]["fault"] is None and calls[0]["time"] == pytest.approx(time.time(), abs=30)

    only = (await (await client.get("/_sandbox/calls", params={"path": "/api/conversations.info"})).json())["calls"]
    assert [c["path"] for c in only] == ["/api/conversations.info"]


async def test_status_fault_answers_vendor_error_without_processing(slack):
    state, client = slack
    rules = [{"path": "/api/chat.", "status": 503, "retry_after": 4.2, "count": 2}]
    resp = await client.post("/_sandbox/faults", json=rules)
    assert resp.status == 200
    assert (await resp.json())["faults"][0]["count"] == 2

    for _ in range(2):
        resp = await post_message(client)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert await resp.json() == {"ok": False, "error": "fatal_error"}
    assert state.snapshot()["channels"]["C0INCIDENT"]["messages"] == []
    assert (await (await client.get("/_sandbox/faults")).json())["faults"] == []

    resp = await post_message(client)
    assert resp.status == 200 and (await resp.json())["ok"] is True
    assert [(c.status, c.fault) for c in state.calls] == [(503, "status"), (503, "status"), (200, None)]


async def test_fault_path_is_a_prefix_and_other_paths_pass(slack):
    _, client = slack
    await client.post("/_sandbox/faults", json={"path": "/api/chat.update", "status": 500})
    assert (await post_message(client)).status == 200  # /api/chat.postMessage does not start with it


async def test_fault_without_count_lasts_until_cleared(slack):
    _, client = slack
    await client.post("/_sandbox/faults", json=[{"path": "/api/", "status": 429, "retry_after": 1, "count": None}])
    for _ in range(3):
        resp = await post_message(client)
        assert resp.status == 429
        assert await resp.json() == {"ok": False, "error": "ratelimited"}
    assert (await client.delete("/_sandbox/faults")).status == 204
    assert (await post_message(client)).status == 200


async def test_drop_after_processing_changes_state_then_drops_the_connection(slack):
    state, client = slack
    await client.post("/_sandbox/faults", json=[{"path": "/api/chat.postMessage", "drop_after_processing": True}])
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_message(client, "accepted then dropped")
    messages = state.snapshot()["channels"]["C0INCIDENT"]["messages"]
    assert [m["text"] for m in messages] == ["accepted then dropped"]
    assert (state.calls[-1].status, state.calls[-1].fault) == (200, "drop")
    assert (await post_message(client, "next")).status == 200  # one use only


async def test_delay_fault_delays_the_answer(slack):
    _, client = slack
    await client.post("/_sandbox/faults", json=[{"path": "/api/chat.postMessage", "delay_ms": 300}])
    started = time.monotonic()
    resp = await post_message(client)
    assert resp.status == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 500},
        {"path": "api", "status": 500},
        {"path": "/api/", "status": 99},
        {"path": "/api/", "status": 500, "count": 0},
        {"path": "/api/", "status": 500, "retry_after": -1},
        {"path": "/api/", "status": 500, "drop_after_processing": True},
        {"path": "/api/"},
        {"path": "/api/", "status": 500, "colour": "red"},
        {"path": "/_sandbox/calls", "status": 500},
        "not a rule",
    ],
)
async def test_bad_fault_rules_are_refused(slack, rule):
    _, client = slack
    resp = await client.post("/_sandbox/faults", json=[rule])
    assert resp.status == 400
    assert (await resp.json())["error"]
    assert (await (await client.get("/_sandbox/faults")).json())["faults"] == []


async def test_control_endpoints_need_no_auth_and_are_never_faulted(slack):
    _, client = slack
    await client.post("/_sandbox/faults", json={"path": "/", "status": 500, "count": None})
    for path in ("/_sandbox/calls", "/_sandbox/state", "/_sandbox/faults", "/_sandbox/config"):
        assert (await client.get(path)).status == 200, path


async def test_reset_restores_the_state_as_constructed(slack):
    state, client = slack
    await client.post("/_sandbox/config", json={"rate_limits": True})
    await post_message(client)
    await post_message(client, channel="#new-channel")
    await client.post("/_sandbox/faults", json={"path": "/api/auth.test", "status": 500})

    assert (await client.post("/_sandbox/reset")).status == 204
    assert state.calls == [] and state.faults == [] and state.rate_limits is False
    snapshot = await (await client.get("/_sandbox/state")).json()
    assert list(snapshot["channels"]) == ["C0INCIDENT"]  # configured channel kept, auto-created one gone
    assert snapshot["channels"]["C0INCIDENT"]["messages"] == []


async def test_config_switches_rate_limits(serve, clock):
    state = PagerDutyState(clock=clock)
    client = await serve(pagerduty_app(state))
    assert await (await client.get("/_sandbox/config")).json() == {"rate_limits": True}
    resp = await client.post("/_sandbox/config", json={"rate_limits": False})
    assert await resp.json() == {"rate_limits": False}
    assert state.rate_limits is False
    for bad in ({"rate_limits": "no"}, {"other": 1}, [1]):
        assert (await client.post("/_sandbox/config", json=bad)).status == 400


def test_token_bucket_allows_a_burst_then_the_rate(clock):
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(1.0)
    clock.advance(0.5)
    assert bucket.take() == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take() == 0.0
    clock.advance(100)
    assert [bucket.take() for _ in range(4)][-1] > 0  # refills to the burst, not beyond


def test_sliding_window_looks_back_from_now(clock):
    window = SlidingWindow(limit=2, window=60.0, clock=clock)
    assert window.hit() == 0.0
    clock.advance(30)
    assert window.hit() == 0.0
    assert window.hit() == pytest.approx(30.0)  # refused hits are not counted
    clock.advance(30)
    assert window.hit() == 0.0  # the first hit left the window
    assert window.hit() == pytest.approx(30.0)
