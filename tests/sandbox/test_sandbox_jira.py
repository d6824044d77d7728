"""The Jira webhook sender, its signature and the payload builders."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import aiohttp
import pytest
from aiohttp import web

from sandbox import jira
from sandbox.jira import JiraWebhookSender, sign

SECRET = "It's a Secret to Everybody"
TS = 1_709_294_400_123  # 2024-03-01T12:00:00.123Z


def test_sign_known_answer():
    # computed with: printf '%s' BODY | openssl dgst -sha256 -hmac "It's a Secret to Everybody"
    body = b'{"webhookEvent":"jira:issue_created","issue":{"id":"10001"}}'
    assert sign(SECRET, body) == "sha256=4278148b545811b0d2e9042de2ea99a81241b18c6ca9bd6a75117a0e85f68d64"


def test_sign_matches_the_shared_test_vectors(contracts, contract):
    for vector in contract("jira/signature-test-vectors.json")["vectors"]:
        body = (contracts / "jira" / vector["raw_body_file"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == vector["raw_body_sha256"]
        assert sign(vector["secret"], body) == vector["X-Hub-Signature"]


@pytest.fixture
async def receiver(serve):
    """A webhook endpoint that keeps what it got and answers with the status it is told."""
    received: list[tuple[dict[str, str], bytes]] = []
    answers: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=answers.pop(0) if answers else 202, text="queued")

    app = web.Application()
    app.router.add_post("/webhooks/jira", hook)
    client = await serve(app)
    return str(client.make_url("/webhooks/jira")), received, answers


async def test_sender_delivers_like_jira(receiver):
    url, received, answers = receiver
    sender = JiraWebhookSender(url, SECRET)
    payload = jira.issue_created("10001", "OPS-1", "OPS", "Database down \u2014 \U0001f525", timestamp_ms=TS)

    answers.append(503)
    assert await sender.send(payload) == (503, "queued")
    first_id = sender.sent[0].delivery_id
    assert await sender.send(payload, delivery_id=first_id, retry=1) == (202, "queued")

    (h1, b1), (h2, b2) = received
    assert b1 == b2 == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert json.loads(b1) == payload
    for headers, body in received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Hub-Signature"], expected)
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert headers["User-Agent"] == "Atlassian Webhook HTTP Client"
        assert headers["X-Atlassian-Webhook-Flow"] == "Primary"
        assert headers["X-Atlassian-Webhook-Identifier"] == first_id
    uuid.UUID(first_id)
    assert "X-Atlassian-Webhook-Retry" not in h1 and h2["X-Atlassian-Webhook-Retry"] == "1"
    assert [(s.retry, s.status, s.response) for s in sender.sent] == [(0, 503, "queued"), (1, 202, "queued")]

    await sender.send(payload)
    assert received[-1][0]["X-Atlassian-Webhook-Identifier"] != first_id  # a new delivery, a new id


async def test_sender_sends_bytes_verbatim_and_unsigned_without_secret(receiver):
    url, received, _ = receiver
    raw = b'{ "webhookEvent" : "comment_created" }\n'
    await JiraWebhookSender(url, SECRET).send(raw, delivery_id="d-1")
    await JiraWebhookSender(url, None).send(raw)
    (signed, body), (unsigned, _) = received
    assert body == raw and signed["X-Hub-Signature"] == sign(SECRET, raw)
    assert "X-Hub-Signature" not in unsigned


async def test_sender_records_connection_errors(unused_tcp_port):
    sender = JiraWebhookSender(f"http://127.0.0.1:{unused_tcp_port}/hook", SECRET)
    with pytest.raises(aiohttp.ClientConnectionError):
        await sender.send({"webhookEvent": "jira:issue_deleted"})
    assert sender.sent[0].status is None and "Connect" in sender.sent[0].error


async def test_jira_app_records_webhook_and_rest_calls(serve):
    state = jira.JiraState()
    client = await serve(jira.create_app(state))
    assert (await client.get("/rest/api/3/myself")).status == 404
    assert [(c.path, c.status) for c in state.calls] == [("/rest/api/3/myself", 404)]
    assert await (await client.get("/_sandbox/state")).json() == {"issues": [], "webhooks": []}


# --- builders -------------------------------------------------------------------------------------


def test_issue_created():
    assignee = jira.jira_user("70121:abc", "Sam Responder")
    payload = jira.issue_created(
        10001, "OPS-1", "OPS", "Database down", labels=["sev1"], security="Internal", assignee=assignee,
        description="h2. Impact\nall writes fail", timestamp_ms=TS, fix_versions=["1.2"],
    )
    assert payload["webhookEvent"] == "jira:issue_created" and payload["issue_event_type_name"] == "issue_created"
    assert payload["timestamp"] == TS
    issue = payload["issue"]
    assert (issue["id"], issue["key"]) == ("10001", "OPS-1")
    assert issue["self"] == "https://example.atlassian.net/rest/api/2/issue/10001"
    f = issue["fields"]
    assert (f["summary"], f["labels"]) == ("Database down", ["sev1"])
    assert (f["issuetype"]["name"], f["priority"]["name"]) == ("Incident", "High")
    assert f["status"]["name"] == "To Do" and f["status"]["statusCategory"]["key"] == "new"
    assert f["project"]["key"] == "OPS" and f["project"]["self"].endswith(f"/rest/api/2/project/{f['project']['id']}")
    assert f["security"]["name"] == "Internal" and "/rest/api/2/securitylevel/" in f["security"]["self"]
    assert f["assignee"]["accountId"] == "70121:abc" and f["reporter"]["accountId"] == payload["user"]["accountId"]
    assert f["created"] == f["updated"] == "2024-03-01T12:00:00.123+0000"
    assert f["resolution"] is None and f["fixVersions"][0]["name"] == "1.2"
    assert f["description"] == "h2. Impact\nall writes fail"
    fields_changed = {i["field"]: i for i in payload["changelog"]["items"]}
    assert fields_changed["status"]["to"] == f["status"]["id"] and fields_changed["assignee"]["to"] == "70121:abc"


def test_issue_updated_derives_state_and_event_type_from_changes():
    moved = jira.issue_updated("10001", "OPS-1", "OPS", "Database down",
                               changes=[("status", "To Do", "In Progress")], timestamp_ms=TS)
    assert moved["issue_event_type_name"] == "issue_generic"
    assert moved["issue"]["fields"]["status"]["statusCategory"]["key"] == "indeterminate"
    [item] = moved["changelog"]["items"]
    assert item == {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "10000",
                    "fromString": "To Do", "to": "3", "toString": "In Progress"}
    assert moved["changelog"]["id"].isdigit()

    done = jira.issue_updated("10001", "OPS-1", "OPS", "Database down",
                              changes=[("resolution", None, "Done"), ("status", "In Progress", "Done")])
    f = done["issue"]["fields"]
    assert (f["status"]["statusCategory"]["key"], f["resolution"]["name"]) == ("done", "Done")
    assert f["resolutiondate"] is not None

    renamed = jira.issue_updated("10001", "OPS-1", "OPS", "DB down", changes=[("summary", "Database down", "DB down")],
                                 priority="Highest")
    assert renamed["issue_event_type_name"] == "issue_updated"
    assert renamed["issue"]["fields"]["priority"]["name"] == "Highest"
    reassigned = jira.issue_updated("10001", "OPS-1", "OPS", "x",
                                    changes=[{"field": "assignee", "to": "70121:abc", "toString": "Sam"}])
    assert reassigned["issue_event_type_name"] == "issue_assigned"
    assert reassigned["changelog"]["items"][0]["from"] is None
    custom = jira.issue_updated("1", "A-1", "A", "x", changes=[("customfield_10072", "1", "12")],
                                event_type_name="issue_updated")
    assert custom["changelog"]["items"][0]["fieldtype"] == "custom"


def test_issue_deleted_and_comment_events():
    deleted = jira.issue_deleted("10001", "OPS-1", "OPS", "Database down", timestamp_ms=TS)
    assert deleted["webhookEvent"] == "jira:issue_deleted"
    assert "changelog" not in deleted and "issue_event_type_name" not in deleted
    assert deleted["issue"]["fields"]["comment"]["total"] == 0

    comment = jira.comment_created("10001", "OPS-1", "OPS", "Database down", 20001, "Failover started", timestamp_ms=TS,
                                   status="In Progress")
    assert set(comment) == {"timestamp", "webhookEvent", "comment", "issue"}
    assert comment["comment"]["self"] == "https://example.atlassian.net/rest/api/2/issue/10001/comment/20001"
    assert (comment["comment"]["id"], comment["comment"]["body"]) == ("20001", "Failover started")
    assert set(comment["issue"]["fields"]) == {"summary", "issuetype", "project", "assignee", "priority", "status"}
    assert comment["issue"]["fields"]["status"]["name"] == "In Progress"

    restricted = jira.comment_updated("10001", "OPS-1", "OPS", "s", 20001, "internal note", created_ms=TS - 1000,
                                      timestamp_ms=TS, visibility={"type": "role", "value": "Administrators"})
    assert restricted["webhookEvent"] == "comment_updated"
    assert restricted["comment"]["visibility"] == {"type": "role", "value": "Administrators"}
    assert restricted["comment"]["jsdPublic"] is False
    assert restricted["comment"]["created"] < restricted["comment"]["updated"]
    assert jira.comment_deleted("1", "A-1", "A", "s", 2, "b")["webhookEvent"] == "comment_deleted"
