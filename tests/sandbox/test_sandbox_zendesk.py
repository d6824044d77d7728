"""The Zendesk fake over raw HTTP, its webhook sender and builders, and its answers checked against
the Support API spec's examples and schemas in ../shared/contracts (skipped when absent)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from connectors.zendesk.events import classify
from connectors.zendesk.mapping import to_support_event
from connectors.zendesk.signature import verify
from sandbox import start_sandbox
from sandbox import zendesk as zd
from sandbox.zendesk import ZendeskState, ZendeskWebhookSender, create_app
from tests.contracts import require

EMAIL, TOKEN = "hub@northwind.test", "zd-token"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()}
ORG, FIELD = 9100000002001, 360012345678
SECRET = "webhook-signing-secret"
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}


@pytest.fixture
def state(clock):
    return ZendeskState(credentials={EMAIL: TOKEN}, organizations={ORG: "Café Olé GmbH"}, custom_field_ids=[FIELD],
                        clock=clock, wall_clock=clock)


@pytest.fixture
async def client(serve, state):
    return await serve(create_app(state))


async def call(client, method, path, body=None, headers=AUTH):
    resp = await client.request(method, path, json=body, headers=headers)
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp, data


async def new_ticket(client, **ticket):
    body = {"ticket": {"subject": "Checkout failing", "comment": {"body": "Cards declined"}, **ticket}}
    resp, data = await call(client, "POST", "/api/v2/tickets.json", body)
    assert resp.status == 201, data
    return data["ticket"]


# --- auth, routing, errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(f"{EMAIL}/token:wrong".encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()},  # password style
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": "Basic %%%"},
    ],
)
async def test_auth_is_basic_with_an_api_token(client, headers):
    resp, data = await call(client, "GET", "/api/v2/tickets/1.json", headers=headers)
    assert (resp.status, data) == (401, {"error": "Couldn't authenticate you"})


async def test_any_token_is_accepted_without_configured_credentials(serve):
    client = await serve(create_app(ZendeskState()))
    anyone = {"Authorization": "Basic " + base64.b64encode(b"x@y.z/token:t").decode()}
    assert (await call(client, "GET", "/api/v2/tickets/1", headers=anyone))[0].status == 404


async def test_paths_with_and_without_json_and_unknown_endpoints(client):
    ticket = await new_ticket(client)
    for path in (f"/api/v2/tickets/{ticket['id']}", f"/api/v2/tickets/{ticket['id']}.json"):
        resp, data = await call(client, "GET", path)
        assert resp.status == 200 and data["ticket"]["id"] == ticket["id"]
    assert await (await client.get("/api/v2/tickets/999.json", headers=AUTH)).json() == NOT_FOUND
    assert (await call(client, "GET", "/api/v2/tickets/abc"))[1] == NOT_FOUND
    resp, data = await call(client, "GET", "/api/v2/macros.json")
    assert (resp.status, data) == (404, {"error": "InvalidEndpoint", "description": "Not found"})
    resp, data = await call(client, "DELETE", f"/api/v2/tickets/{ticket['id']}.json")
    assert resp.status == 404 and data["error"] == "InvalidEndpoint"


async def test_bad_json_is_400(client):
    resp = await client.post("/api/v2/tickets.json", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"] == "InvalidJSON"
    resp, data = await call(client, "POST", "/api/v2/tickets.json", {"subject": "no ticket wrapper"})
    assert resp.status == 400


# --- tickets ---------------------------------------------------------------------------------------------


async def test_create_ticket(client, state):
    resp, data = await call(client, "POST", "/api/v2/tickets", {"ticket": {
        "subject": "Printer on fire", "comment": {"body": "Smoke 🔥"}, "priority": "urgent", "type": "incident",
        "tags": ["printer", "printer"], "organization_id": ORG, "custom_fields": [{"id": FIELD, "value": "OPS-1"}],
    }})
    ticket = data["ticket"]
    assert resp.status == 201 and resp.headers["Location"] == ticket["url"]
    assert ticket["url"] == f"https://switchboard.zendesk.com/api/v2/tickets/{ticket['id']}.json"
    assert (ticket["status"], ticket["priority"], ticket["type"], ticket["tags"]) == ("new", "urgent", "incident",
                                                                                      ["printer"])
    assert ticket["description"] == "Smoke 🔥" and ticket["via"]["channel"] == "api"
    assert ticket["requester_id"] == ticket["submitter_id"] == state.api_user_id
    assert ticket["custom_fields"] == [{"id": FIELD, "value": "OPS-1"}]
    assert isinstance(ticket["id"], int) and ticket["created_at"].endswith("Z")
    assert set(data) == {"ticket"}  # the spec's TicketResponse: the audit comes with updates only
    comment = state.tickets[ticket["id"]].comments[0]
    assert (comment.author_id, comment.body, comment.public) == (state.api_user_id, "Smoke 🔥", True)


@pytest.mark.parametrize(
    ("ticket", "field"),
    [
        ({"subject": "no description"}, "description"),
        ({"comment": {"body": "x"}, "status": "done"}, "status"),
        ({"comment": {"body": "x"}, "priority": "p1"}, "priority"),
        ({"comment": {"body": "x"}, "organization_id": 42}, "organization_id"),
    ],
)
async def test_create_ticket_validation(client, ticket, field):
    resp, data = await call(client, "POST", "/api/v2/tickets.json", {"ticket": ticket})
    assert resp.status == 422 and data["error"] == "RecordInvalid"
    assert data["description"] == "Record validation errors" and field in data["details"]


async def test_update_ticket_tags_fields_and_comments(client, state):
    ticket = await new_ticket(client, tags=["eu", "triage"])
    path = f"/api/v2/tickets/{ticket['id']}.json"
    resp, data = await call(client, "PUT", path, {"ticket": {
        "status": "open", "additional_tags": ["jira_linked"], "remove_tags": ["triage"],
        "custom_fields": [{"id": FIELD, "value": "OPS-142"}], "comment": {"body": "internal", "public": False},
    }})
    assert resp.status == 200
    updated = data["ticket"]
    assert (updated["status"], updated["tags"]) == ("open", ["eu", "jira_linked"])
    assert updated["custom_fields"] == [{"id": FIELD, "value": "OPS-142"}]
    fields = {e.get("field_name"): e for e in data["audit"]["events"]}
    assert fields["status"]["value"] == "open" and fields["status"]["previous_value"] == "new"
    _, data = await call(client, "PUT", path, {"ticket": {"tags": ["only"], "comment": {"body": "public reply"}}})
    assert data["ticket"]["tags"] == ["only"]
    _, comments = await call(client, "GET", f"/api/v2/tickets/{ticket['id']}/comments")
    assert [(c["body"], c["public"]) for c in comments["comments"]] == [
        ("Cards declined", True), ("internal", False), ("public reply", True)]
    assert comments["comments"][1]["author_id"] == state.api_user_id


async def test_closed_tickets_refuse_updates_and_safe_update_conflicts(client, clock):
    ticket = await new_ticket(client)
    path = f"/api/v2/tickets/{ticket['id']}"
    clock.advance(5)
    resp, data = await call(client, "PUT", path, {"ticket": {"safe_update": True, "updated_stamp": ticket["updated_at"],
                                                             "subject": "x"}})
    assert resp.status == 200
    resp, data = await call(client, "PUT", path, {"ticket": {"safe_update": True, "updated_stamp": ticket["updated_at"],
                                                             "subject": "y"}})
    assert resp.status == 409 and data["error"] == "UpdateConflict"
    await call(client, "PUT", path, {"ticket": {"status": "closed"}})
    resp, data = await call(client, "PUT", path, {"ticket": {"subject": "z"}})
    assert resp.status == 422 and data["details"]["status"][0]["description"] == "Status: closed prevents ticket update"


async def test_organization(client):
    resp, data = await call(client, "GET", f"/api/v2/organizations/{ORG}.json")
    assert resp.status == 200 and data["organization"]["name"] == "Café Olé GmbH"
    assert (await call(client, "GET", "/api/v2/organizations/1"))[1] == NOT_FOUND


async def test_merge_closes_the_sources_with_a_note_and_tag(client, state):
    target, source = await new_ticket(client, subject="Main"), await new_ticket(client, subject="Dupe")
    resp, data = await call(client, "POST", f"/api/v2/tickets/{target['id']}/merge.json",
                            {"ids": [source["id"]], "source_comment": "Closing in favour of the main ticket"})
    job = data["job_status"]
    assert resp.status == 200 and job["status"] == "completed" and job["total"] == 1
    assert job["results"] == [{"action": "update", "id": source["id"], "status": "Updated", "success": True}]
    assert (await call(client, "GET", f"/api/v2/job_statuses/{job['id']}"))[1] == {"job_status": job}
    merged = state.tickets[source["id"]]
    assert merged.status == "closed" and "closed_by_merge" in merged.tags and merged.merged_into == target["id"]
    assert (merged.comments[-1].body, merged.comments[-1].public) == ("Closing in favour of the main ticket", False)
    assert f"#{source['id']}" in state.tickets[target["id"]].comments[-1].body
    resp, data = await call(client, "POST", f"/api/v2/tickets/{target['id']}/merge", {"ids": [source["id"]]})
    assert resp.status == 422  # a closed ticket cannot be merged again
    assert (await call(client, "POST", f"/api/v2/tickets/{target['id']}/merge", {"ids": [target["id"]]}))[0].status == 422
    assert (await call(client, "POST", f"/api/v2/tickets/{target['id']}/merge", {"ids": [1, 2, 3, 4, 5, 6]}))[0].status == 400
    assert (await call(client, "POST", "/api/v2/tickets/999/merge", {"ids": [target["id"]]}))[1] == NOT_FOUND


# --- incremental export --------------------------------------------------------------------------------------


async def test_export_pages_by_cursor_and_holds_back_the_last_minute(client, clock):
    ids = [(await new_ticket(client, subject=f"t{n}"))["id"] for n in range(5)]
    resp, page = await call(client, "GET", "/api/v2/incremental/tickets/cursor.json?start_time=0")
    assert page["tickets"] == [] and page["end_of_stream"] is True  # all changed within the minute
    clock.advance(61)
    _, first = await call(client, "GET", "/api/v2/incremental/tickets/cursor.json?start_time=0&per_page=2")
    assert [t["id"] for t in first["tickets"]] == ids[:2] and first["end_of_stream"] is False
    assert first["before_cursor"] is None and first["after_url"].endswith(first["after_cursor"])
    _, second = await call(client, "GET", f"/api/v2/incremental/tickets/cursor?cursor={first['after_cursor']}&per_page=3")
    assert [t["id"] for t in second["tickets"]] == ids[2:] and second["end_of_stream"] is True
    assert second["before_cursor"] == first["after_cursor"]
    _, empty = await call(client, "GET", f"/api/v2/incremental/tickets/cursor?cursor={second['after_cursor']}")
    assert empty["tickets"] == [] and empty["after_cursor"] == second["after_cursor"]
    # a change moves the ticket behind the cursor, once it is a minute old
    await call(client, "PUT", f"/api/v2/tickets/{ids[0]}", {"ticket": {"status": "pending"}})
    clock.advance(61)
    _, later = await call(client, "GET", f"/api/v2/incremental/tickets/cursor?cursor={second['after_cursor']}")
    assert [(t["id"], t["status"]) for t in later["tickets"]] == [(ids[0], "pending")]


async def test_export_shows_a_merged_source_closed(client, clock):
    target, source = await new_ticket(client), await new_ticket(client)
    clock.advance(61)
    _, page = await call(client, "GET", "/api/v2/incremental/tickets/cursor?start_time=0")
    await call(client, "POST", f"/api/v2/tickets/{target['id']}/merge", {"ids": [source["id"]]})
    clock.advance(61)
    _, later = await call(client, "GET", f"/api/v2/incremental/tickets/cursor?cursor={page['after_cursor']}")
    statuses = {t["id"]: (t["status"], t["tags"]) for t in later["tickets"]}
    assert statuses[source["id"]] == ("closed", ["closed_by_merge"]) and statuses[target["id"]][0] == "new"


@pytest.mark.parametrize(
    "query",
    ["", "?start_time=0&cursor=MHwx", "?cursor=bm9wZQ==", "?cursor=%%%", "?start_time=abc", "?start_time=0&per_page=0",
     "?start_time=9999999999"],
)
async def test_export_argument_errors(client, query):
    resp, data = await call(client, "GET", f"/api/v2/incremental/tickets/cursor.json{query}")
    assert resp.status == 400 and set(data) == {"error", "description"}


async def test_export_allows_10_requests_a_minute(client, clock):
    url = "/api/v2/incremental/tickets/cursor.json?start_time=0"
    for _ in range(10):
        assert (await call(client, "GET", url))[0].status == 200
        clock.advance(1)
    resp, data = await call(client, "GET", url)
    assert resp.status == 429 and data["error"] == "APIRateLimitExceeded"
    assert resp.headers["Retry-After"] == "50"  # the first of the ten leaves the window 50 s from now
    assert (await call(client, "GET", "/api/v2/tickets/1"))[0].status == 404  # other endpoints unaffected
    clock.advance(49)
    assert (await call(client, "GET", url))[0].status == 429
    clock.advance(1)
    assert (await call(client, "GET", url))[0].status == 200


async def test_account_rate_limit_and_headers(client, state):
    state.account_window.limit = 3
    seen = []
    for _ in range(3):
        resp = (await call(client, "GET", "/api/v2/tickets/1"))[0]
        seen.append((resp.headers["X-Rate-Limit"], resp.headers["X-Rate-Limit-Remaining"]))
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]
    resp, data = await call(client, "GET", "/api/v2/tickets/1")
    assert resp.status == 429 and resp.headers["Retry-After"] == "60" and data["error"] == "APIRateLimitExceeded"
    await client.post("/_sandbox/config", json={"rate_limits": False})
    assert (await call(client, "GET", "/api/v2/tickets/1"))[0].status == 404


async def test_faults_answer_zendesk_error_bodies(client):
    await client.post("/_sandbox/faults", json=[{"path": "/api/v2/tickets", "status": 429, "retry_after": 3},
                                                {"path": "/api/v2/tickets", "status": 404}])
    resp, data = await call(client, "GET", "/api/v2/tickets/1")
    assert (resp.status, resp.headers["Retry-After"], data["error"]) == (429, "3", "APIRateLimitExceeded")
    assert (await call(client, "GET", "/api/v2/tickets/1"))[1] == NOT_FOUND


# --- control endpoints ---------------------------------------------------------------------------------------------


async def test_control_endpoints_act_as_a_person_in_the_ui(client, state, clock):
    resp = await client.post("/_sandbox/tickets", json={"subject": "From the UI", "comment": "Hello", "tags": ["vip"],
                                                        "organization_id": ORG, "custom_fields": {str(FIELD): "OPS-9"}})
    ticket = (await resp.json())["ticket"]
    assert resp.status == 201 and ticket["via"]["channel"] == "web" and ticket["submitter_id"] == state.agent_id
    clock.advance(30)
    resp = await client.post(f"/_sandbox/tickets/{ticket['id']}", json={
        "status": "pending", "add_tags": ["waiting"], "comment": {"body": "note", "public": False}})
    updated = (await resp.json())["ticket"]
    assert updated["status"] == "pending" and updated["tags"] == ["vip", "waiting"]
    assert updated["updated_at"] > ticket["updated_at"]
    other = (await (await client.post("/_sandbox/tickets", json={"comment": "dupe"})).json())["ticket"]
    resp = await client.post(f"/_sandbox/tickets/{other['id']}/merge", json={"into": ticket["id"]})
    merged = await resp.json()
    assert merged["ticket"]["status"] == "closed" and merged["target"]["id"] == ticket["id"]
    assert state.calls == []  # control requests are not vendor calls
    org = await (await client.post("/_sandbox/organizations", json={"name": "Globex"})).json()
    assert org["organization"]["name"] == "Globex"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/_sandbox/tickets", {"subject": "no comment"}, 422),
        ("/_sandbox/tickets", [1], 400),
        ("/_sandbox/tickets/999", {"status": "open"}, 404),
        ("/_sandbox/tickets/abc", {"status": "open"}, 404),
        ("/_sandbox/tickets/1/merge", {}, 400),
        ("/_sandbox/tickets", {"comment": "x", "custom_fields": {"jira": 1}}, 400),
        ("/_sandbox/organizations", {}, 400),
        ("/_sandbox/webhooks", {"style": "xml"}, 400),
        ("/_sandbox/webhooks", {"colour": "red"}, 400),
    ],
)
async def test_control_errors(client, path, body, status):
    await client.post("/_sandbox/tickets", json={"comment": "first"})
    assert (await client.post(path, json=body)).status == status


async def test_reset_forgets_tickets_but_keeps_configuration(client, state):
    await new_ticket(client)
    await client.post("/_sandbox/webhooks", json={"enabled": True, "target": "http://127.0.0.1:1/x"})
    assert (await client.post("/_sandbox/reset")).status == 204
    snapshot = await (await client.get("/_sandbox/state")).json()
    assert snapshot["tickets"] == {} and list(snapshot["organizations"]) == [str(ORG)]
    assert snapshot["webhooks"]["enabled"] is False
    assert (await new_ticket(client))["id"] == 1


# --- webhooks ------------------------------------------------------------------------------------------------------------


@pytest.fixture
async def receiver(serve):
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/webhooks/zendesk", hook)
    client = await serve(app)
    return str(client.make_url("/webhooks/zendesk")), received


async def test_sender_signs_like_zendesk(receiver):
    url, received = receiver
    payload = {"type": "zen:event-type:ticket.created", "detail": {"id": "5158", "subject": "Printer 🔥"}}
    sender = ZendeskWebhookSender(url, SECRET)
    assert await sender.send(payload, timestamp="2025-01-08T10:12:08Z", invocation_id="42") == (202, "")
    await ZendeskWebhookSender(url, None).send(b'{"raw": true}')
    (headers, body), (unsigned, raw) = received
    assert body == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() and raw == b'{"raw": true}'
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"2025-01-08T10:12:08Z" + body, hashlib.sha256).digest())
    assert headers["X-Zendesk-Webhook-Signature"] == expected.decode()
    assert headers["X-Zendesk-Webhook-Signature-Timestamp"] == "2025-01-08T10:12:08Z"
    assert headers["X-Zendesk-Webhook-Invocation-Id"] == "42" and headers["User-Agent"] == "Zendesk Webhook"
    assert headers["Content-Type"] == "application/json; charset=utf-8" and headers["X-Zendesk-Account-Id"]
    assert "X-Zendesk-Webhook-Signature" not in unsigned and unsigned["X-Zendesk-Webhook-Invocation-Id"] != "42"
    assert [s.status for s in sender.sent] == [202]


async def test_signing_matches_the_shared_vector(contract):
    [vector] = contract("zendesk/signature-test-vectors.json")["vectors"]
    body = vector["raw_body"].encode()
    assert zd.sign(vector["signing_secret"], vector["X-Zendesk-Webhook-Signature-Timestamp"], body) == \
        vector["X-Zendesk-Webhook-Signature"]
    # the vector's body is the captured sample, re-encoded the way the sender encodes
    assert zd.encode(json.loads(body)) == body


def _key_types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _key_types(v) for k, v in value.items()}
    return type(value).__name__


def test_event_builders_match_the_captured_sample(contract, state):
    sample = contract("zendesk/samples/webhook-event.ticket.created.json")
    ticket = state.ticket_json(state.create_ticket(subject="Printer on fire", comment="Printer is on fire 🔥 — please help",
                                                   actor_id=9000000000001, channel="api", priority="low",
                                                   type="incident", tags=["printer"]).ticket)
    built = zd.ticket_created_event(ticket, actor_id=9000000000001, account_id=sample["account_id"])
    assert list(built) == list(sample) and list(built["detail"]) == list(sample["detail"])
    ours, theirs = _key_types(built), _key_types(sample)
    for key in ("external_id", "organization_id", "assignee_id"):  # null in the sample or in ours
        ours["detail"].pop(key), theirs["detail"].pop(key)
    assert ours == theirs
    assert built["detail"]["status"] == "NEW" and built["detail"]["priority"] == "LOW"
    assert built["detail"]["via"] == {"channel": "web_service"} and built["subject"] == f"zen:ticket:{ticket['id']}"
    assert len(built["time"]) == len(sample["time"]) and built["zendesk_event_version"] == sample["zendesk_event_version"]


def test_every_builder_maps_to_its_kind(state):
    made = state.create_ticket(subject="s", comment="c", actor_id=7, channel="api", tags=["a"])
    ticket, comment = state.ticket_json(made.ticket), state.comment_json(made.comment)
    cases = {
        "ticket_created": zd.ticket_created_event(ticket),
        "ticket_status_changed": zd.status_changed_event({**ticket, "status": "solved"}, "open"),
        "comment_added": zd.comment_added_event(ticket, comment, actor_id=7),
        "tags_changed": zd.tags_changed_event(ticket, ["a"], []),
        "ticket_updated": zd.custom_field_changed_event(ticket, FIELD, "OPS-3", None),
        "ticket_merged": zd.merged_event({**ticket, "status": "closed"}, 99),
        "ticket_deleted": zd.soft_deleted_event(ticket),
    }
    for kind, payload in cases.items():
        assert classify(payload).supported, kind
        envelope = {"source": "zendesk", "received_at_ms": 1, "payload": payload}
        record = to_support_event(envelope, hub_user_id="7", jira_key_field_id=str(FIELD))
        assert record["kind"] == kind and record["ticket"]["id"] == str(ticket["id"])
    assert to_support_event({"received_at_ms": 1, "payload": cases["comment_added"]}, hub_user_id="7")["via_hub"]
    assert to_support_event({"received_at_ms": 1, "payload": cases["ticket_updated"]},
                            jira_key_field_id=str(FIELD))["ticket"]["jira_key_field"] == "OPS-3"
    assert to_support_event({"received_at_ms": 1, "payload": cases["ticket_merged"]})["ticket"]["merged_into"] == "99"


def test_trigger_body_renders_the_recommended_template_escaped(state):
    org = state.organizations[ORG]
    made = state.create_ticket(subject='Say "hi"\nplease', comment='He said "no" — 🔥\nline 2', actor_id=5,
                               channel="web", organization_id=ORG, tags=["a", "b"], status="hold",
                               custom_fields={FIELD: "OPS-7"})
    ticket = state.ticket_json(made.ticket)
    raw = zd.trigger_body(ticket, event="comment_added", actor_id=5, organization_name=org.name,
                          jira_key_field_id=FIELD, latest_comment=state.comment_json(made.comment))
    body = json.loads(raw)
    assert body["ticket"]["subject"] == 'Say "hi"\nplease' and body["ticket"]["status"] == "On-hold"
    assert body["ticket"]["tags"] == "a b" and body["ticket"]["jira_key"] == "OPS-7"
    assert body["ticket"]["latest_comment"]["public"] == "true" and body["actor_id"] == "5"
    assert body["ticket"]["url"] == f"https://switchboard.zendesk.com/agent/tickets/{ticket['id']}"
    record = to_support_event({"received_at_ms": 1, "payload": body}, jira_key_field_id=str(FIELD))
    assert record["kind"] == "comment_added" and record["ticket"]["status"] == "hold"
    assert record["ticket"]["organization_name"] == "Café Olé GmbH" and record["ticket"]["partial"] is False
    assert record["comment"]["body"] == 'He said "no" — 🔥\nline 2'


async def test_webhooks_off_by_default_on_when_configured(client, state, receiver, clock):
    url, received = receiver
    await client.post("/_sandbox/tickets", json={"comment": "quiet"})
    assert received == [] and len(state.generated_webhooks) == 1  # generated, not delivered

    resp = await client.post("/_sandbox/webhooks", json={"enabled": True, "target": url, "secret": SECRET})
    assert (await resp.json())["has_secret"] is True
    ticket = (await (await client.post("/_sandbox/tickets", json={"subject": "Loud", "comment": "hi"})).json())["ticket"]
    await client.post(f"/_sandbox/tickets/{ticket['id']}", json={
        "status": "open", "add_tags": ["x"], "comment": "reply", "custom_fields": {str(FIELD): "OPS-5"}})
    await call(client, "PUT", f"/api/v2/tickets/{ticket['id']}", {"ticket": {"comment": {"body": "from the hub",
                                                                                         "public": False}}})
    other = (await (await client.post("/_sandbox/tickets", json={"comment": "dupe"})).json())["ticket"]
    await client.post(f"/_sandbox/tickets/{other['id']}/merge", json={"into": ticket["id"]})
    sent = await (await client.post("/_sandbox/webhooks/flush")).json()
    assert all(s["status"] == 202 for s in sent["sent"])

    types = []
    for headers, body in received:
        assert verify(SECRET.encode(), headers["X-Zendesk-Webhook-Signature-Timestamp"], body,
                      headers["X-Zendesk-Webhook-Signature"], now=clock())
        payload = json.loads(body)
        types.append((payload["type"].removeprefix("zen:event-type:ticket."), payload["detail"]["id"]))
    t, o = str(ticket["id"]), str(other["id"])
    assert types == [
        ("created", t), ("comment_added", t), ("status_changed", t), ("tags_changed", t),
        ("custom_field_changed", t), ("comment_added", t), ("created", o),
        ("comment_added", o), ("status_changed", o), ("tags_changed", o), ("merged", o), ("comment_added", t),
    ]
    hub_note = json.loads(received[5][1])
    assert hub_note["detail"]["actor_id"] == str(state.api_user_id)
    assert hub_note["event"]["comment"]["is_public"] is False
    assert json.loads(received[10][1])["event"] == {"target_ticket_id": t}


async def test_trigger_style_webhooks(client, state, receiver):
    url, received = receiver
    await client.post("/_sandbox/webhooks", json={"enabled": True, "target": url, "secret": SECRET, "style": "trigger",
                                                  "jira_key_field_id": FIELD})
    ticket = (await (await client.post("/_sandbox/tickets", json={"comment": "hi", "organization_id": ORG})).json())["ticket"]
    await client.post(f"/_sandbox/tickets/{ticket['id']}", json={"status": "solved"})
    await client.post("/_sandbox/webhooks/flush")
    events = [json.loads(body)["event"] for _, body in received]
    assert events == ["ticket_created", "ticket_updated"]
    record = to_support_event({"received_at_ms": 1, "payload": json.loads(received[1][1])})
    assert record["ticket"]["status"] == "solved" and record["ticket"]["organization_name"] == "Café Olé GmbH"


async def test_start_sandbox_serves_zendesk(unused_tcp_port):
    async with await start_sandbox(ports={"zendesk": unused_tcp_port}) as sandbox:
        assert sandbox.urls["zendesk"] == f"http://127.0.0.1:{unused_tcp_port}"
        assert isinstance(sandbox.states["zendesk"], ZendeskState)


# --- against the Support API spec ------------------------------------------------------------------------------------------


@functools.cache
def _load_spec(path: Path) -> dict[str, Any]:
    loader = type("Loader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
    # the spec has a key "=" that PyYAML reads as the !!value tag
    loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    return yaml.load(path.read_bytes(), Loader=loader)


@pytest.fixture
def spec(contracts):
    return _load_spec(require(contracts / "zendesk" / "zendesk-support-api.oas.yaml"))


@pytest.fixture
def ops(contract):
    return {op["operationId"]: op for op in contract("zendesk/examples/zendesk-hub-endpoints.examples.json")["operations"]}


_JSON_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict, "number": (int, float)}


def schema_problems(value: Any, schema: dict[str, Any], spec: dict[str, Any], path: str = "$") -> list[str]:
    """Keys the schema does not know and values of the wrong JSON type (null passes)."""
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for part in schema.get("allOf", []):
        return schema_problems(value, part, spec, path)
    if value is None:
        return []
    expected = schema.get("type")
    if expected and not (isinstance(value, _JSON_TYPES[expected]) and not (expected != "boolean" and isinstance(value, bool))):
        return [f"{path}: {type(value).__name__}, schema has {expected}"]
    problems = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                if schema.get("additionalProperties") is not True:
                    problems.append(f"{path}.{key}: not in the schema")
                continue
            problems += schema_problems(item, schema["properties"][key], spec, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            problems += schema_problems(item, schema["items"], spec, f"{path}[]")
    return problems


def response_schema(spec, path: str, method: str, status: str) -> dict[str, Any]:
    return spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


async def test_rest_answers_follow_the_spec(client, state, clock, spec, ops):
    created_resp, created = await call(client, "POST", "/api/v2/tickets.json",
                                       ops["CreateTicket"]["request_examples"]["application/json"])
    tid = created["ticket"]["id"]
    _, shown = await call(client, "GET", f"/api/v2/tickets/{tid}.json")
    _, updated = await call(client, "PUT", f"/api/v2/tickets/{tid}.json",
                            ops["UpdateTicket"]["request_examples"]["application/json"])
    _, comments = await call(client, "GET", f"/api/v2/tickets/{tid}/comments.json")
    _, org = await call(client, "GET", f"/api/v2/organizations/{ORG}.json")
    other = await new_ticket(client)
    _, merged = await call(client, "POST", f"/api/v2/tickets/{other['id']}/merge.json",
                           {**ops["MergeTicketsIntoTargetTicket"]["request_examples"]["application/json"], "ids": [tid]})
    clock.advance(61)
    _, export = await call(client, "GET", "/api/v2/incremental/tickets/cursor.json?start_time=0")
    assert created_resp.status == 201 and updated["ticket"]["status"] == "solved" and export["tickets"]

    checks = [
        (created, "/api/v2/tickets", "post", "201", "CreateTicket"),
        (shown, "/api/v2/tickets/{ticket_id}", "get", "200", "ShowTicket"),
        (updated, "/api/v2/tickets/{ticket_id}", "put", "200", "UpdateTicket"),
        (comments, "/api/v2/tickets/{ticket_id}/comments", "get", "200", "ListTicketComments"),
        (merged, "/api/v2/tickets/{ticket_id}/merge", "post", "200", "MergeTicketsIntoTargetTicket"),
        (export, "/api/v2/incremental/tickets/cursor", "get", "200", "IncrementalTicketExportCursor"),
        (org, "/api/v2/organizations/{organization_id}", "get", "200", None),
    ]
    # UpdateTicket's schema cuts the audit down to AuditObject (no previous_value, no comment author);
    # the Ticket Audits API's TicketAuditObject describes the same audit in full.
    audited = {"type": "object", "properties": {"ticket": {"$ref": "#/components/schemas/TicketObject"},
                                                "audit": {"$ref": "#/components/schemas/TicketAuditObject"}}}
    for body, path, method, status, operation in checks:
        schema = audited if operation == "UpdateTicket" else response_schema(spec, path, method, status)
        assert schema_problems(body, schema, spec) == [], path
        if operation is None:
            continue
        example = ops[operation]["responses"][status]["examples"]["application/json"]
        for key, value in example.items():  # every key a client may read is there
            assert key in body, (operation, key)
            if isinstance(value, dict) and operation != "UpdateTicket":  # the update example is cut down
                assert set(value) <= set(body[key]), (operation, set(value) - set(body[key]))
    ticket_example = ops["ShowTicket"]["responses"]["200"]["examples"]["application/json"]["ticket"]
    assert set(shown["ticket"]) == set(ticket_example)  # and nothing a real ticket lacks
    assert set(export["tickets"][0]) == set(ops["IncrementalTicketExportCursor"]["responses"]["200"]["examples"][
        "application/json"]["tickets"][0]) | {"custom_status_id"}
    comment_example = ops["ListTicketComments"]["responses"]["200"]["examples"]["application/json"]["comments"][0]
    assert set(comment_example) <= set(comments["comments"][0])
