"""The Slack Web API fake, over raw HTTP and through slack_sdk's AsyncWebClient."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import POST_MESSAGE_BURST, TIER_PER_MINUTE, SlackState, create_app

TOKEN = "xoxb-1-sandbox"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def call(client, method, *, headers=AUTH, **args):
    resp = await client.post(f"/api/{method}", json=args, headers=headers)
    return resp.status, await resp.json()


async def get(client, method, **params):
    resp = await client.get(f"/api/{method}", params={k: str(v) for k, v in params.items()}, headers=AUTH)
    return await resp.json()


@pytest.fixture
def state():
    return SlackState({"C0INCIDENT": "incidents", "C0GENERAL": "general"}, rate_limits=False)


@pytest.fixture
async def client(serve, state):
    return await serve(create_app(state))


@pytest.fixture
async def web_client(client):
    return AsyncWebClient(token=TOKEN, base_url=str(client.make_url("/api/")))


# --- auth -------------------------------------------------------------------------------------------


async def test_auth_is_checked_like_slack(client):
    assert await call(client, "auth.test", headers={}) == (200, {"ok": False, "error": "not_authed"})
    status, body = await call(client, "auth.test", headers={"Authorization": "Bearer xoxp-user-token"})
    assert (status, body) == (200, {"ok": False, "error": "invalid_auth"})
    status, body = await call(client, "auth.test")
    assert body["ok"] is True and body["user_id"] == "U0SANDBOXB" and body["bot_id"] == "B0SANDBOX1"
    # a JSON body cannot carry the token: Slack reads it from the Authorization header only
    assert (await call(client, "auth.test", headers={}, token=TOKEN))[1]["error"] == "not_authed"


async def test_explicit_tokens_replace_the_xoxb_rule(serve):
    client = await serve(create_app(SlackState(tokens={"xoxb-good"})))
    _, refused = await call(client, "auth.test", headers={"Authorization": "Bearer xoxb-other"})
    _, accepted = await call(client, "auth.test", headers={"Authorization": "Bearer xoxb-good"})
    assert (refused["error"], accepted["ok"]) == ("invalid_auth", True)


async def test_form_body_with_legacy_token_and_json_encoded_fields(client, state):
    form = {
        "token": TOKEN,
        "channel": "C0INCIDENT",
        "text": "from a form",
        "blocks": json.dumps([{"type": "divider"}]),
        "metadata": json.dumps({"event_type": "incident_opened", "event_payload": {"issue": "OPS-1"}}),
    }
    body = await (await client.post("/api/chat.postMessage", data=form)).json()
    assert body["ok"] is True, body
    [msg] = state.history("C0INCIDENT")
    assert (msg.text, msg.blocks) == ("from a form", [{"type": "divider"}])
    assert msg.metadata == {"event_type": "incident_opened", "event_payload": {"issue": "OPS-1"}}


async def test_bad_json_and_unknown_method(client):
    json_headers = {**AUTH, "Content-Type": "application/json"}
    resp = await client.post("/api/chat.postMessage", data=b"{nope", headers=json_headers)
    assert await resp.json() == {"ok": False, "error": "invalid_json"}
    resp = await client.post("/api/chat.postMessage", data=b"[1]", headers=json_headers)
    assert (await resp.json())["error"] == "json_not_object"
    resp = await client.post("/api/chat.scheduleMessage", json={}, headers=AUTH)
    assert resp.status == 404
    assert await resp.json() == {"ok": False, "error": "unknown_method", "req_method": "chat.scheduleMessage"}


# --- channels ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["C0INCIDENT", "#incidents", "incidents"])
async def test_post_message_accepts_id_or_name_and_answers_the_id(client, state, channel):
    _, body = await call(client, "chat.postMessage", channel=channel, text="hi")
    assert body["ok"] is True and body["channel"] == "C0INCIDENT"
    assert len(state.history("C0INCIDENT")) == 1


async def test_other_methods_want_the_channel_id(client):
    for method in ("conversations.history", "conversations.info", "conversations.join"):
        assert (await call(client, method, channel="incidents"))[1] == {"ok": False, "error": "channel_not_found"}
    assert (await call(client, "chat.postMessage", channel="C0UNKNOWN1", text="x"))[1]["error"] == "channel_not_found"


async def test_unknown_names_are_created_only_when_allowed(serve):
    strict = await serve(create_app(SlackState(auto_create_channels=False)))
    assert (await call(strict, "chat.postMessage", channel="#ops", text="x"))[1]["error"] == "channel_not_found"

    lenient_state = SlackState()
    lenient = await serve(create_app(lenient_state))
    _, body = await call(lenient, "chat.postMessage", channel="#Ops", text="x")
    assert body["ok"] is True and body["channel"].startswith("C")
    assert lenient_state.channels[body["channel"]].name == "ops"
    _, again = await call(lenient, "chat.postMessage", channel="ops", text="y")
    assert again["channel"] == body["channel"]


async def test_info_join_and_list(client, state):
    info = await get(client, "conversations.info", channel="C0INCIDENT")
    assert info["channel"]["id"] == "C0INCIDENT" and info["channel"]["name"] == "incidents"
    assert info["channel"]["is_member"] is True and info["channel"]["num_members"] == 1

    state.channels["C0GENERAL"].is_member = False
    _, joined = await call(client, "conversations.join", channel="C0GENERAL")
    assert joined["channel"]["is_member"] is True and "warning" not in joined
    _, again = await call(client, "conversations.join", channel="C0GENERAL")
    assert again["warning"] == "already_in_channel"
    assert again["response_metadata"] == {"warnings": ["already_in_channel"]}

    first = await get(client, "conversations.list", limit=1)
    assert [c["id"] for c in first["channels"]] == ["C0INCIDENT"]
    second = await get(client, "conversations.list", limit=1, cursor=first["response_metadata"]["next_cursor"])
    assert [c["id"] for c in second["channels"]] == ["C0GENERAL"]
    assert second["response_metadata"]["next_cursor"] == ""


# --- chat.postMessage ---------------------------------------------------------------------------------


async def test_text_is_recorded_exactly_as_received(client, state):
    text = "<!channel> deploy *failed* for <@U123|bob> & <https://x.test|link> \u2014 \U0001f525"
    _, body = await call(client, "chat.postMessage", channel="C0INCIDENT", text=text)
    assert body["message"]["text"] == text
    assert state.history("C0INCIDENT")[0].text == text
    assert state.calls[-1].body["text"] == text


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({}, "no_text"),
        ({"text": ""}, "no_text"),
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"blocks": {"type": "divider"}}, "invalid_blocks_format"),
        ({"blocks": [{"type": "carousel"}]}, "invalid_blocks"),
        ({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}, "invalid_blocks"),
        ({"blocks": [{"type": "section"}]}, "invalid_blocks"),
        ({"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]}, "invalid_blocks"),
        ({"blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"text": "x", "metadata": {"event_payload": {}}}, "invalid_metadata_format"),
        ({"text": "x", "metadata": {"event_type": "t", "event_payload": "p"}}, "invalid_metadata_format"),
        ({"text": "x", "thread_ts": "yesterday"}, "invalid_thread_ts"),
    ],
)
async def test_post_message_errors(client, state, args, error):
    status, body = await call(client, "chat.postMessage", channel="C0INCIDENT", **args)
    assert (status, body["ok"], body["error"]) == (200, False, error)
    if error == "invalid_blocks":
        assert body["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert state.messages["C0INCIDENT"] == {}


async def test_ts_is_unique_and_increasing_per_channel(serve):
    state = SlackState({"C0A": "a", "C0B": "b"}, rate_limits=False, wall_clock=lambda: 1_700_000_000.0)
    client = await serve(create_app(state))
    ts = [(await call(client, "chat.postMessage", channel=c, text="x"))[1]["ts"] for c in ("C0A", "C0A", "C0B", "C0A")]
    assert ts == ["1700000000.000000", "1700000000.000001", "1700000000.000000", "1700000000.000002"]


async def test_post_message_rate_limit_per_channel(serve, clock):
    state = SlackState({"C0A": "a", "C0B": "b"}, clock=clock)
    client = await serve(create_app(state))
    for _ in range(POST_MESSAGE_BURST):
        assert (await call(client, "chat.postMessage", channel="C0A", text="ok"))[1]["ok"] is True
    resp = await client.post("/api/chat.postMessage", json={"channel": "C0A", "text": "too fast"}, headers=AUTH)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    assert await resp.json() == {"ok": False, "error": "ratelimited"}
    assert [m.text for m in state.history("C0A")] == ["ok"] * POST_MESSAGE_BURST  # not posted
    assert (await call(client, "chat.postMessage", channel="C0B", text="other channel"))[1]["ok"] is True
    clock.advance(1.0)
    assert (await call(client, "chat.postMessage", channel="C0A", text="later"))[1]["ok"] is True

    state.rate_limits = False
    for _ in range(10):
        assert (await call(client, "chat.postMessage", channel="C0A", text="unlimited"))[0] == 200


async def test_tier_rate_limit_on_other_methods(serve, clock):
    client = await serve(create_app(SlackState(clock=clock)))
    for _ in range(TIER_PER_MINUTE[2]):
        assert "channels" in await get(client, "conversations.list")
    resp = await client.get("/api/conversations.list", headers=AUTH)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) == 60
    clock.advance(60)
    assert (await client.get("/api/conversations.list", headers=AUTH)).status == 200


# --- threads, updates, history --------------------------------------------------------------------


async def test_threads_and_replies(client, state):
    _, parent = await call(client, "chat.postMessage", channel="C0INCIDENT", text="incident OPS-1")
    _, reply = await call(client, "chat.postMessage", channel="C0INCIDENT", text="update 1", thread_ts=parent["ts"])
    _, nested = await call(client, "chat.postMessage", channel="C0INCIDENT", text="update 2", thread_ts=reply["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"] and reply["message"]["parent_user_id"] == "U0SANDBOXB"
    assert nested["message"]["thread_ts"] == parent["ts"]  # a reply's ts is filed under its parent

    history = await get(client, "conversations.history", channel="C0INCIDENT")
    [top] = history["messages"]
    assert (top["ts"], top["reply_count"], top["latest_reply"]) == (parent["ts"], 2, nested["ts"])

    for ts in (parent["ts"], reply["ts"]):
        replies = await get(client, "conversations.replies", channel="C0INCIDENT", ts=ts)
        assert [m["text"] for m in replies["messages"]] == ["incident OPS-1", "update 1", "update 2"]
    missing = await get(client, "conversations.replies", channel="C0INCIDENT", ts="1.000001")
    assert missing == {"ok": False, "error": "thread_not_found"}

    snapshot = state.snapshot()["channels"]["C0INCIDENT"]
    assert [r["text"] for r in snapshot["messages"][0]["replies"]] == ["update 1", "update 2"]


async def test_reply_to_an_unknown_ts_is_accepted_but_orphaned(client, state):
    _, body = await call(client, "chat.postMessage", channel="C0INCIDENT", text="lost", thread_ts="1600000000.000100")
    assert body["ok"] is True
    assert (await get(client, "conversations.history", channel="C0INCIDENT"))["messages"] == []
    assert [m["text"] for m in state.snapshot()["channels"]["C0INCIDENT"]["orphan_replies"]] == ["lost"]


async def test_reply_broadcast_shows_in_history(client):
    _, parent = await call(client, "chat.postMessage", channel="C0INCIDENT", text="p")
    await call(client, "chat.postMessage", channel="C0INCIDENT", text="b", thread_ts=parent["ts"], reply_broadcast=True)
    history = await get(client, "conversations.history", channel="C0INCIDENT")
    assert [(m["text"], m.get("subtype")) for m in history["messages"]] == [("b", "thread_broadcast"), ("p", None)]


async def test_update_replaces_given_fields_and_keeps_the_rest(client, state):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*OPS-1* open"}}]
    meta = {"event_type": "incident", "event_payload": {"issue": "OPS-1", "version": 1}}
    _, posted = await call(client, "chat.postMessage", channel="C0INCIDENT", text="open", blocks=blocks, metadata=meta)

    _, updated = await call(client, "chat.update", channel="C0INCIDENT", ts=posted["ts"], text="OPS-1 resolved")
    assert updated["ok"] is True
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C0INCIDENT", posted["ts"], "OPS-1 resolved")
    assert "ts" not in updated["message"] and updated["message"]["edited"]["user"] == "U0SANDBOXB"
    [msg] = state.history("C0INCIDENT")
    assert (msg.text, msg.blocks, msg.metadata) == ("OPS-1 resolved", blocks, meta)

    meta2 = {"event_type": "incident", "event_payload": {"issue": "OPS-1", "version": 2}}
    await call(client, "chat.update", channel="C0INCIDENT", ts=posted["ts"], text="v2", blocks=[], metadata=meta2)
    assert (msg.text, msg.blocks, msg.metadata) == ("v2", [], meta2)

    _, unknown = await call(client, "chat.update", channel="C0INCIDENT", ts="1.000001", text="x")
    assert unknown["error"] == "message_not_found"
    assert (await call(client, "chat.update", channel="C0INCIDENT", ts=posted["ts"]))[1]["error"] == "no_text"
    assert (await call(client, "chat.update", channel="C0INCIDENT", text="x"))[1]["error"] == "invalid_arguments"


async def test_history_pagination_and_bounds(client):
    ts = [(await call(client, "chat.postMessage", channel="C0INCIDENT", text=f"m{i}"))[1]["ts"] for i in range(5)]
    page1 = await get(client, "conversations.history", channel="C0INCIDENT", limit=2)
    assert [m["text"] for m in page1["messages"]] == ["m4", "m3"] and page1["has_more"] is True
    cursor = page1["response_metadata"]["next_cursor"]
    assert base64.b64decode(cursor).decode() == f"next_ts:{ts[2]}"
    page2 = await get(client, "conversations.history", channel="C0INCIDENT", limit=2, cursor=cursor)
    cursor = page2["response_metadata"]["next_cursor"]
    page3 = await get(client, "conversations.history", channel="C0INCIDENT", limit=2, cursor=cursor)
    assert [m["text"] for m in page2["messages"] + page3["messages"]] == ["m2", "m1", "m0"]
    assert page3["has_more"] is False and page3["response_metadata"]["next_cursor"] == ""

    window = await get(client, "conversations.history", channel="C0INCIDENT", oldest=ts[1], latest=ts[3])
    assert [m["text"] for m in window["messages"]] == ["m2"]
    assert (window["oldest"], window["latest"]) == (ts[1], ts[3])
    inclusive = await get(client, "conversations.history", channel="C0INCIDENT", oldest=ts[1], latest=ts[3],
                          inclusive="true")
    assert [m["text"] for m in inclusive["messages"]] == ["m3", "m2", "m1"]

    bad_cursor = await get(client, "conversations.history", channel="C0INCIDENT", cursor="bm9wZQ==")
    bad_oldest = await get(client, "conversations.history", channel="C0INCIDENT", oldest="soon")
    assert (bad_cursor["error"], bad_oldest["error"]) == ("invalid_cursor", "invalid_ts_oldest")


async def test_history_shows_metadata_only_when_asked(client):
    meta = {"event_type": "incident", "event_payload": {"issue": "OPS-1"}}
    await call(client, "chat.postMessage", channel="C0INCIDENT", text="x", metadata=meta)
    assert "metadata" not in (await get(client, "conversations.history", channel="C0INCIDENT"))["messages"][0]
    with_meta = await get(client, "conversations.history", channel="C0INCIDENT", include_all_metadata="true")
    assert with_meta["messages"][0]["metadata"] == meta


# --- the real client: slack_sdk's AsyncWebClient --------------------------------------------------


async def test_slack_sdk_post_update_and_read_back_with_metadata(web_client, state):
    assert (await web_client.auth_test())["user_id"] == "U0SANDBOXB"
    meta = {"event_type": "switchboard_incident", "event_payload": {"issue_id": "10001", "version": 1}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*OPS-1* Database down"}}]
    posted = await web_client.chat_postMessage(channel="#incidents", text="OPS-1 down", blocks=blocks, metadata=meta)
    assert posted["channel"] == "C0INCIDENT" and posted["message"]["metadata"] == meta
    await web_client.chat_postMessage(channel=posted["channel"], thread_ts=posted["ts"], text="Assigned to Alex")
    meta2 = {"event_type": "switchboard_incident", "event_payload": {"issue_id": "10001", "version": 2}}
    await web_client.chat_update(channel=posted["channel"], ts=posted["ts"], text="OPS-1 resolved", metadata=meta2)

    history = await web_client.conversations_history(channel="C0INCIDENT", include_all_metadata=True, limit=10)
    [top] = history["messages"]
    assert (top["ts"], top["text"], top["metadata"], top["reply_count"]) == (posted["ts"], "OPS-1 resolved", meta2, 1)
    assert top["blocks"] == blocks
    replies = await web_client.conversations_replies(channel="C0INCIDENT", ts=posted["ts"])
    assert [m["text"] for m in replies["messages"]] == ["OPS-1 resolved", "Assigned to Alex"]

    # what slack_sdk put on the wire, for the record
    post_call = state.calls_to("/api/chat.postMessage")[0]
    assert post_call.headers["content-type"].startswith("application/json")
    history_call = state.calls_to("/api/conversations.history")[0]
    assert history_call.method == "GET" and history_call.query["include_all_metadata"] == "1"


async def test_slack_sdk_sees_429_as_slack_api_error_with_retry_after(serve, clock):
    client = await serve(create_app(SlackState({"C0INCIDENT": "incidents"}, clock=clock)))
    web_client = AsyncWebClient(token=TOKEN, base_url=str(client.make_url("/api/")))
    for i in range(POST_MESSAGE_BURST):
        await web_client.chat_postMessage(channel="C0INCIDENT", text=f"burst {i}")
    with pytest.raises(SlackApiError) as caught:
        await web_client.chat_postMessage(channel="C0INCIDENT", text="one too many")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "1"
    assert caught.value.response["error"] == "ratelimited"


async def test_slack_sdk_errors_and_channel_not_found(web_client):
    with pytest.raises(SlackApiError) as caught:
        await web_client.chat_update(channel="C0INCIDENT", ts="1700000000.000100", text="x")
    assert (caught.value.response.status_code, caught.value.response["error"]) == (200, "message_not_found")
    with pytest.raises(SlackApiError) as caught:
        await web_client.conversations_history(channel="C0NOWHERE1")
    assert caught.value.response["error"] == "channel_not_found"


async def test_slack_sdk_retries_a_dropped_post_by_default_and_duplicates_it(client, state, web_client):
    """slack_sdk's default retry handler resends once on a dropped connection: accepted-then-dropped
    posts arrive twice. Without retry handlers the error surfaces and the message exists once."""
    fault = [{"path": "/api/chat.postMessage", "drop_after_processing": True}]
    await client.post("/_sandbox/faults", json=fault)
    await web_client.chat_postMessage(channel="C0INCIDENT", text="dropped once")
    assert [m.text for m in state.history("C0INCIDENT")] == ["dropped once", "dropped once"]

    state.reset()
    await client.post("/_sandbox/faults", json=fault)
    no_retry = AsyncWebClient(token=TOKEN, base_url=str(client.make_url("/api/")), retry_handlers=[])
    with pytest.raises(aiohttp.ClientConnectionError):
        await no_retry.chat_postMessage(channel="C0INCIDENT", text="dropped once")
    assert [m.text for m in state.history("C0INCIDENT")] == ["dropped once"]
