"""The Jira fake's REST v3 subset and control endpoints, over raw HTTP (httpx), and its shapes
against Atlassian's OpenAPI spec and the derived examples in ../shared/contracts."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from aiohttp import web

from connectors.jira.mapping import to_tracker_event
from sandbox import jira
from sandbox.jira import JiraState, create_app

AUTH = (jira.DEFAULT_EMAIL, jira.DEFAULT_API_TOKEN)
SECRET = "hook-secret"
CANNOT_BE_SET = "cannot be set. It is not on the appropriate screen, or unknown."
ADF = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "hi"}]}]}


@pytest.fixture
def state(clock):
    return JiraState(wall_clock=clock, clock=clock)


@pytest.fixture
async def http(serve, state):
    server = await serve(create_app(state))
    async with httpx.AsyncClient(base_url=str(server.make_url("")), auth=AUTH) as client:
        yield client


async def create(http, **values) -> dict[str, Any]:
    values.setdefault("project", "OPS")
    values.setdefault("summary", "Database down")
    resp = await http.post("/_sandbox/issues", json=values)
    assert resp.status_code == 201, resp.text
    return resp.json()["issue"]


def errors(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"errorMessages", "errors"}, body
    return body


# --- auth, issues -----------------------------------------------------------------------------------


async def test_basic_auth_email_and_api_token(http):
    await create(http)
    for auth in (None, ("someone@example.com", jira.DEFAULT_API_TOKEN), (jira.DEFAULT_EMAIL, "wrong")):
        resp = await http.get("/rest/api/3/issue/OPS-1", auth=auth or httpx.BasicAuth("", ""))
        assert resp.status_code == 401
        assert errors(resp)["errorMessages"] == [jira.NOT_AUTHENTICATED]
    anonymous = await httpx.AsyncClient(base_url=http.base_url).get("/rest/api/3/issue/OPS-1")
    assert anonymous.status_code == 401
    assert (await http.get("/rest/api/3/issue/OPS-1")).status_code == 200


async def test_get_issue_by_id_or_key_with_fields_filter(http, state, clock):
    created = await create(http, priority="Highest", description="Writes fail.\n\nSince 12:00.", labels=["sev1"],
                           custom_fields={"customfield_10050": 2})
    by_id = (await http.get(f"/rest/api/3/issue/{created['id']}")).json()
    assert by_id == (await http.get("/rest/api/3/issue/OPS-1")).json() == created
    assert by_id["self"].endswith(f"/rest/api/3/issue/{created['id']}")
    f = by_id["fields"]
    assert f["description"]["type"] == "doc" and len(f["description"]["content"]) == 2  # ADF in REST v3
    assert (f["priority"]["name"], f["labels"], f["customfield_10050"]) == ("Highest", ["sev1"], 2)
    assert f["customfield_10051"] is None  # known custom fields are always present
    assert f["updated"] == datetime.fromtimestamp(clock.now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    some = (await http.get("/rest/api/3/issue/OPS-1", params={"fields": "summary,status"})).json()
    assert set(some["fields"]) == {"summary", "status"}
    repeated = (await http.get("/rest/api/3/issue/OPS-1", params=[("fields", "summary"), ("fields", "labels")])).json()
    assert set(repeated["fields"]) == {"summary", "labels"}
    without = (await http.get("/rest/api/3/issue/OPS-1", params={"fields": "*all,-description"})).json()
    assert "description" not in without["fields"] and "summary" in without["fields"]

    missing = await http.get("/rest/api/3/issue/OPS-99")
    assert missing.status_code == 404 and errors(missing)["errorMessages"] == [jira.ISSUE_NOT_FOUND]


async def test_rest_dates_are_in_the_api_users_time_zone(serve, clock):
    state = JiraState(time_zone="America/New_York", wall_clock=clock)
    server = await serve(create_app(state))
    state.create_issue("OPS", "x")
    async with httpx.AsyncClient(base_url=str(server.make_url("")), auth=AUTH) as http:
        updated = (await http.get("/rest/api/3/issue/OPS-1", params={"fields": "updated"})).json()["fields"]["updated"]
    assert updated.endswith("-0500") and datetime.strptime(updated, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() == clock.now


async def test_moved_issue_keeps_its_id_and_old_key(http, state):
    await create(http, project="OPS", summary="first")
    created = await create(http, project="OPS", summary="to move")
    resp = await http.post("/_sandbox/issues/OPS-2", json={"project": "SEC", "project_name": "Security"})
    moved = resp.json()["issue"]
    assert (moved["id"], moved["key"], moved["fields"]["project"]["key"]) == (created["id"], "SEC-1", "SEC")
    for alias in ("OPS-2", "ops-2", "SEC-1", "sec-1", created["id"]):
        got = (await http.get(f"/rest/api/3/issue/{alias}", params={"fields": "summary"})).json()
        assert (got["id"], got["key"]) == (created["id"], "SEC-1"), alias
    search = await http.get("/rest/api/3/search/jql", params={"jql": "project = OPS"})
    assert [i["id"] for i in search.json()["issues"]] == [str(int(created["id"]) - 1)]
    await http.delete("/_sandbox/issues/SEC-1")
    assert (await http.get("/rest/api/3/issue/OPS-2")).status_code == 404


async def test_edit_issue_fields_and_jira_errors(http, state, clock):
    created = await create(http)
    clock.advance(5)
    ok = await http.put("/rest/api/3/issue/OPS-1", json={"fields": {
        "customfield_10050": 3, "customfield_10051": "#inc-ops-1", "summary": "DB down (primary)",
        "description": ADF, "labels": ["sev1", "db"], "priority": {"name": "High"}}})
    assert ok.status_code == 204 and ok.content == b""
    f = (await http.get("/rest/api/3/issue/OPS-1")).json()["fields"]
    assert (f["customfield_10050"], f["customfield_10051"], f["summary"]) == (3, "#inc-ops-1", "DB down (primary)")
    assert f["description"] == ADF and f["labels"] == ["sev1", "db"] and f["priority"]["name"] == "High"
    assert f["updated"] > created["fields"]["updated"]

    bad = await http.put("/rest/api/3/issue/OPS-1", json={"fields": {
        "customfield_10050": "three", "customfield_10051": 3, "customfield_99999": 1, "status": {"name": "Done"},
        "description": "plain text"}})
    assert bad.status_code == 400
    assert errors(bad) == {"errorMessages": [], "errors": {
        "customfield_10050": "Operation value must be a number",
        "customfield_10051": "Operation value must be a string",
        "customfield_99999": f"Field 'customfield_99999' {CANNOT_BE_SET}",
        "status": f"Field 'status' {CANNOT_BE_SET}",
        "description": jira.NOT_ADF}}
    assert state.issues[created["id"]].custom_fields["customfield_10050"] == 3  # nothing applied
    returned = await http.put("/rest/api/3/issue/OPS-1", params={"returnIssue": "true"},
                              json={"fields": {"customfield_10050": None}})
    assert returned.status_code == 200 and returned.json()["fields"]["customfield_10050"] is None
    assert (await http.put("/rest/api/3/issue/OPS-1", json={})).status_code == 400


# --- search -----------------------------------------------------------------------------------------


async def test_search_jql_pages_with_next_page_token(http, state, clock):
    for n in range(7):
        state.create_issue("OPS", f"issue {n}")
        clock.advance(61)
    jql = 'updated >= "2000-01-01 00:00" ORDER BY updated ASC'
    pages, token = [], None
    while True:
        body = {"jql": jql, "maxResults": 3, "fields": ["summary"], **({"nextPageToken": token} if token else {})}
        page = (await http.post("/rest/api/3/search/jql", json=body)).json()
        pages.append(page)
        token = page.get("nextPageToken")
        assert page["isLast"] is (token is None)
        if token is None:
            break
    assert [len(p["issues"]) for p in pages] == [3, 3, 1]
    assert [i["fields"]["summary"] for p in pages for i in p["issues"]] == [f"issue {n}" for n in range(7)]
    assert "nextPageToken" not in pages[-1]

    via_get = (await http.get("/rest/api/3/search/jql", params={"jql": jql, "maxResults": 7})).json()
    assert via_get["issues"] == [{"id": str(10001 + n)} for n in range(7)]  # default fields: ids only
    desc = (await http.get("/rest/api/3/search/jql", params={"jql": "project = OPS ORDER BY updated DESC"})).json()
    assert [i["id"] for i in desc["issues"]] == [str(10007 - n) for n in range(7)]

    foreign = await http.post("/rest/api/3/search/jql", json={"jql": "project = OPS", "nextPageToken": pages[0]
                                                              ["nextPageToken"]})
    assert foreign.status_code == 400  # a token belongs to its query
    assert (await http.post("/rest/api/3/search/jql", json={"jql": "project = OPS", "startAt": 3})).status_code == 400


async def test_search_caps_the_page_size_like_jira(http, state):
    for n in range(120):
        state.create_issue("OPS", f"issue {n}")
    with_fields = (await http.post("/rest/api/3/search/jql",
                                   json={"jql": "project = OPS", "maxResults": 5000, "fields": ["summary"]})).json()
    ids_only = (await http.post("/rest/api/3/search/jql", json={"jql": "project = OPS", "maxResults": 5000})).json()
    assert len(with_fields["issues"]) == jira.SEARCH_MAX_RESULTS_FIELDS and not with_fields["isLast"]
    assert len(ids_only["issues"]) == 120 and ids_only["isLast"]


async def test_jql_dates_are_read_in_the_users_time_zone(serve, clock):
    state = JiraState(time_zone="America/New_York", wall_clock=clock)  # UTC-5 in March
    server = await serve(create_app(state))
    clock.now = datetime(2024, 3, 1, 17, 30, 30, tzinfo=timezone.utc).timestamp()
    state.create_issue("OPS", "updated 12:30:30 in New York")
    async with httpx.AsyncClient(base_url=str(server.make_url("")), auth=AUTH) as http:
        async def count(jql: str) -> int:
            resp = await http.post("/rest/api/3/search/jql", json={"jql": jql})
            assert resp.status_code == 200, resp.text
            return len(resp.json()["issues"])

        assert await count('updated >= "2024-03-01 12:30"') == 1
        assert await count("updated >= '2024/03/01 12:31'") == 0
        assert await count('updated >= "2024-03-01 17:00"') == 0  # the UTC wall time is 5 hours too late
        assert await count('updated > "2024-03-01" AND updated < "2024-03-02" AND project in (ops, "Ops")') == 1
        assert await count('updated >= "2024-02-28" AND updated <= "2024/03/01 12:30"') == 0
        assert await count("updated >= -1d") == 1

        for jql, message in [
            ("ORDER BY updated ASC", jira.UNBOUNDED_JQL),
            ("", jira.UNBOUNDED_JQL),
            ('updated >= "yesterday"', "Date value 'yesterday' for field 'updated' is invalid"),
            ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
            ("project = OPS OR project = SEC", "Error in the JQL Query"),
        ]:
            resp = await http.post("/rest/api/3/search/jql", json={"jql": jql})
            assert resp.status_code == 400 and errors(resp)["errorMessages"][0].startswith(message), jql


async def test_old_search_endpoints_answer_410_gone(http):
    for version in ("2", "3"):
        for resp in (await http.get(f"/rest/api/{version}/search", params={"jql": "project = OPS"}),
                     await http.post(f"/rest/api/{version}/search", json={"jql": "project = OPS"}, auth=None)):
            assert resp.status_code == 410
            assert errors(resp) == {"errorMessages": [jira.SEARCH_REMOVED], "errors": {}}


async def test_search_is_eventually_consistent_when_asked(http, state, clock):
    await http.post("/_sandbox/config", json={"search_lag_s": 30})
    state.create_issue("OPS", "just saved")
    jql = {"jql": "project = OPS"}
    assert (await http.post("/rest/api/3/search/jql", json=jql)).json()["issues"] == []
    assert (await http.get("/rest/api/3/issue/OPS-1")).status_code == 200  # reads by id are consistent
    clock.advance(30)
    assert len((await http.post("/rest/api/3/search/jql", json=jql)).json()["issues"]) == 1
    assert (await http.post("/rest/api/3/search/approximate-count", json=jql)).json() == {"count": 1}


# --- remote links, properties, comments -------------------------------------------------------------


async def test_remote_links_upsert_by_global_id(http):
    await create(http)
    await create(http, summary="other")
    link = {"globalId": "switchboard:slack:C0INC:1700000000.000100", "application": {"name": "Slack"},
            "object": {"url": "https://slack.example/1", "title": "#inc-ops-1", "summary": "Incident channel"}}
    first = await http.post("/rest/api/3/issue/OPS-1/remotelink", json=link)
    assert first.status_code == 201
    link_id = first.json()["id"]
    site = str(http.base_url).rstrip("/")
    assert first.json() == {"id": link_id, "self": f"{site}/rest/api/3/issue/OPS-1/remotelink/{link_id}"}

    replacement = {"globalId": link["globalId"], "object": {"url": "https://slack.example/2", "title": "x"}}
    again = await http.post("/rest/api/3/issue/OPS-1/remotelink", json=replacement)
    assert again.status_code == 200 and again.json()["id"] == link_id
    [stored] = (await http.get("/rest/api/3/issue/OPS-1/remotelink")).json()
    assert stored["object"] == {"url": "https://slack.example/2", "title": "x"}
    assert "application" not in stored  # "Any fields without values in the request are set to null"

    other = await http.post("/rest/api/3/issue/OPS-1/remotelink", json={"object": {"url": "https://x", "title": "y"}})
    assert other.status_code == 201 and other.json()["id"] != link_id
    one = await http.get("/rest/api/3/issue/OPS-1/remotelink", params={"globalId": link["globalId"]})
    assert one.json()["id"] == link_id
    assert (await http.get(f"/rest/api/3/issue/OPS-1/remotelink/{link_id}")).json()["globalId"] == link["globalId"]

    invalid = await http.post("/rest/api/3/issue/OPS-1/remotelink", json={"object": {"url": "https://x"}})
    assert invalid.status_code == 400 and errors(invalid)["errors"] == {"title": "'title' is required."}
    typed = await http.post("/rest/api/3/issue/OPS-1/remotelink",
                            json={"object": {"url": "https://x", "title": "t", "status": {"resolved": "solved"}}})
    assert typed.status_code == 400 and set(errors(typed)["errors"]) == {"status"}
    assert (await http.delete(f"/rest/api/3/issue/OPS-2/remotelink/{link_id}")).status_code == 400  # not its link
    assert (await http.delete("/rest/api/3/issue/OPS-1/remotelink")).status_code == 400  # globalId required
    gone = await http.delete("/rest/api/3/issue/OPS-1/remotelink", params={"globalId": link["globalId"]})
    assert gone.status_code == 204
    assert (await http.delete("/rest/api/3/issue/OPS-1/remotelink",
                              params={"globalId": link["globalId"]})).status_code == 404
    assert (await http.delete(f"/rest/api/3/issue/OPS-1/remotelink/{other.json()['id']}")).status_code == 204
    assert (await http.get("/rest/api/3/issue/OPS-1/remotelink")).json() == []


async def test_issue_properties(http, state):
    created = await create(http)
    before = state.issues[created["id"]].updated_ms
    value = {"slack": {"channel": "C0INC", "ts": "1700000000.000100"}}
    url = "/rest/api/3/issue/OPS-1/properties/switchboard.incident"
    assert (await http.get(url)).status_code == 404
    assert (await http.put(url, json=value)).status_code == 201
    assert (await http.put(url, json=value)).status_code == 200
    assert (await http.get(url)).json() == {"key": "switchboard.incident", "value": value}
    assert (await http.get(f"/rest/api/3/issue/{created['id']}/properties/switchboard.incident")).status_code == 200
    too_big = await http.put(url, content=json.dumps("x" * jira.PROPERTY_MAX_BYTES).encode())
    assert too_big.status_code == 400
    assert (await http.put(url, content=b"")).status_code == 400
    assert state.issues[created["id"]].updated_ms == before  # properties do not touch `updated`
    assert (await http.delete(url)).status_code == 204
    assert (await http.delete(url)).status_code == 404


async def test_comments_take_adf_only(http, state, clock):
    created = await create(http)
    plain = await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": "Failover started"})
    assert plain.status_code == 400
    assert errors(plain) == {"errorMessages": [], "errors": {"comment": jira.COMMENT_NOT_ADF}}
    clock.advance(10)
    added = await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": ADF})
    assert added.status_code == 201
    comment = added.json()
    assert comment["body"] == ADF and comment["author"]["accountId"] == jira.API_USER_ID
    assert comment["self"].endswith(f"/rest/api/3/issue/{created['id']}/comment/{comment['id']}")
    listed = (await http.get("/rest/api/3/issue/OPS-1/comment")).json()
    assert listed["total"] == 1 and listed["comments"] == [comment]
    assert state.issues[created["id"]].updated_ms == int(clock.now * 1000)  # a comment updates the issue


# --- rate limits --------------------------------------------------------------------------------------


async def test_burst_limit_answers_429_like_jira_cloud(serve, clock):
    state = JiraState(burst_rate=0.5, burst_capacity=2, clock=clock, wall_clock=clock)
    state.create_issue("OPS", "x")
    server = await serve(create_app(state))
    async with httpx.AsyncClient(base_url=str(server.make_url("")), auth=AUTH) as http:
        assert [(await http.get("/rest/api/3/issue/OPS-1")).status_code for _ in range(3)] == [200, 200, 429]
        limited = await http.get("/rest/api/3/issue/OPS-1")
        assert limited.status_code == 429 and errors(limited)
        h = limited.headers
        assert h["Retry-After"] == "2" and h["RateLimit-Reason"] == "jira-burst-based"
        assert (h["X-RateLimit-Limit"], h["X-RateLimit-Remaining"]) == ("2", "0")
        reset = datetime.strptime(h["X-RateLimit-Reset"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)
        assert 0 <= reset.timestamp() - (clock.now + 2) < 60
        # per endpoint and method
        assert (await http.get("/rest/api/3/issue/OPS-1/comment")).status_code == 200

        await http.post("/_sandbox/config", json={"retry_after_header": False})
        without = await http.get("/rest/api/3/issue/OPS-1")
        assert without.status_code == 429 and "Retry-After" not in without.headers
        assert "X-RateLimit-Reset" in without.headers
        clock.advance(2)
        assert (await http.get("/rest/api/3/issue/OPS-1")).status_code == 200
        await http.post("/_sandbox/config", json={"rate_limits": False})
        assert {(await http.get("/rest/api/3/issue/OPS-1")).status_code for _ in range(5)} == {200}


# --- control endpoints and webhooks -----------------------------------------------------------------


@pytest.fixture
async def receiver(serve):
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/webhooks/jira", hook)
    server = await serve(app)
    return str(server.make_url("/webhooks/jira")), received


async def test_ui_changes_deliver_signed_webhooks_when_enabled(http, state, receiver):
    url, received = receiver
    config = (await http.post("/_sandbox/config", json={"webhook_target": url, "webhook_secret": SECRET})).json()
    assert config["webhooks_enabled"] is False and config["webhook_secret_set"] is True
    assert "webhook_secret" not in config
    quiet = await http.post("/_sandbox/issues", json={"project": "OPS", "summary": "before webhooks"})
    assert quiet.json()["webhooks"] == [] and received == []

    await http.post("/_sandbox/config", json={"webhooks_enabled": True})
    alice = {"accountId": "70121:alice", "displayName": "Alice"}
    created = (await http.post("/_sandbox/issues", json={
        "project": "OPS", "summary": "DB down", "priority": "Highest", "assignee": alice, "actor": alice})).json()
    assert created["webhooks"][0]["status"] == 202
    await http.post("/_sandbox/issues/OPS-2", json={"status": "In Progress"})
    await http.post("/_sandbox/issues/OPS-2", json={"status": "Done"})
    await http.post("/_sandbox/issues/OPS-2", json={"project": "SEC"})
    await http.post("/_sandbox/issues/SEC-1", json={"summary": "DB down"})  # no change: no webhook
    await http.put("/rest/api/3/issue/SEC-1", json={"fields": {"customfield_10050": 1}})
    await http.post("/rest/api/3/issue/SEC-1/comment", json={"body": ADF})
    await state.settle()  # REST edits deliver in the background
    await http.delete("/_sandbox/issues/SEC-1")

    payloads = []
    for headers, body in received:
        assert headers["X-Hub-Signature"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        payloads.append(json.loads(body))
    assert [p["webhookEvent"] for p in payloads] == ["jira:issue_created"] + ["jira:issue_updated"] * 4 + [
        "comment_created", "jira:issue_deleted"]
    events = [to_tracker_event({"source": "jira", "received_at_ms": 1, "payload": p}) for p in payloads]
    assert all(e["issue"]["id"] == created["issue"]["id"] for e in events)
    assert events[0]["actor"]["account_id"] == "70121:alice" and events[0]["issue"]["priority"] == "Highest"
    assert [c["to"] for c in events[1]["changes"]] == ["In Progress"]
    assert {c["field"]: c["to"] for c in events[2]["changes"]} == {"resolution": "Done", "status": "Done"}
    assert events[2]["issue"]["status_category"] == "done"
    assert payloads[3]["issue_event_type_name"] == "issue_moved"
    assert {c["field"]: (c["from"], c["to"]) for c in events[3]["changes"]}["issuekey"] == ("OPS-2", "SEC-1")
    assert events[4]["changes"][0]["field"] == "customfield_10050"
    assert events[4]["actor"]["display_name"] == "Switchboard"
    assert events[5]["comment"]["body"] == "hi" and events[6]["kind"] == "issue_deleted"
    assert [w["event"] for w in (await http.get("/_sandbox/state")).json()["webhooks"]][-1] == "jira:issue_deleted"


async def test_control_endpoints_validate_and_state_resets(http, state):
    assert (await http.post("/_sandbox/issues", json={"summary": "no project"})).status_code == 400
    for extra in ({"colour": 1}, {"labels": "a"}, {"assignee": "70121:a"}):
        bad = await http.post("/_sandbox/issues", json={"project": "OPS", "summary": "x", **extra})
        assert bad.status_code == 400, extra
    assert (await http.post("/_sandbox/issues/OPS-9", json={"summary": "y"})).status_code == 404
    assert (await http.post("/_sandbox/config", json={"webhooks_enabled": "yes"})).status_code == 400
    await create(http)
    await http.get("/rest/api/3/issue/OPS-1")
    snapshot = (await http.get("/_sandbox/state")).json()
    assert [i["key"] for i in snapshot["issues"]] == ["OPS-1"]
    call = state.calls[-1]
    assert (call.path, call.status) == ("/rest/api/3/issue/OPS-1", 200)
    assert call.headers["authorization"].startswith("Basic ****")  # recorded, never in clear
    await http.post("/_sandbox/config", json={"search_lag_s": 5})
    assert (await http.post("/_sandbox/reset")).status_code == 204
    assert (await http.get("/_sandbox/state")).json() == {"issues": [], "webhooks": []}
    assert (await http.get("/_sandbox/config")).json()["search_lag_s"] == 0
    assert (await create(http))["key"] == "OPS-1"  # numbering starts again; credentials still valid
    assert (await http.get("/rest/api/3/issue/OPS-1")).status_code == 200


async def test_injected_faults_use_jiras_error_shape(http):
    await create(http)
    await http.post("/_sandbox/faults", json={"path": "/rest/api/3/issue/OPS-1", "status": 503, "retry_after": 7})
    resp = await http.get("/rest/api/3/issue/OPS-1")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "7" and errors(resp)


# --- shapes against the contract --------------------------------------------------------------------


def _json_type_ok(value: Any, expected: str | None) -> bool:
    python = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list}
    if value is None or expected is None:
        return True
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    return isinstance(value, python[expected])


def schema_problems(value: Any, schema: dict[str, Any], spec: dict[str, Any], path: str = "$") -> list[str]:
    """Keys absent from the spec schema (where it forbids extra keys) and JSON types that differ."""
    while "$ref" in schema or "allOf" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema \
            else schema["allOf"][0]
    if not _json_type_ok(value, schema.get("type")):
        return [f"{path}: {type(value).__name__}, spec has {schema.get('type')}"]
    problems = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                problems += schema_problems(item, schema["properties"][key], spec, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}.{key}: not in the spec")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            problems += schema_problems(item, schema["items"], spec, f"{path}[]")
    return problems


@pytest.fixture
def spec(contract):
    return contract("jira/jira-platform-rest-v3.openapi.json")


@pytest.fixture
def examples(contract):
    ops = contract("jira/examples/jira-hub-endpoints.examples.json")["operations"]
    return {(op["method"], op["path"]): op for op in ops}


def response_schema(spec: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    return spec["paths"][path][method.lower()]["responses"][status]["content"]["application/json"]["schema"]


async def test_rest_answers_match_the_spec_and_examples(http, spec, examples):
    issue_path = "/rest/api/3/issue/{issueIdOrKey}"
    await create(http, description="Writes fail.", assignee={"accountId": "70121:a", "displayName": "A"})
    await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": ADF, "visibility": {"type": "role",
                                                                                          "value": "Administrators"}})
    link = {"globalId": "g", "application": {"name": "Slack", "type": "com.slack"}, "relationship": "mentioned in",
            "object": {"url": "https://x", "title": "t", "summary": "s", "status": {"resolved": True},
                       "icon": {"url16x16": "https://i", "title": "t"}}}
    created_link = await http.post("/rest/api/3/issue/OPS-1/remotelink", json=link)
    await http.put("/rest/api/3/issue/OPS-1/properties/p", json={"a": 1})

    issue = (await http.get("/rest/api/3/issue/OPS-1")).json()
    search = (await http.post("/rest/api/3/search/jql", json={"jql": "project = OPS", "fields": ["*all"],
                                                              "maxResults": 1})).json()
    cases = [
        (issue, "GET", issue_path, "200"),
        (search, "POST", "/rest/api/3/search/jql", "200"),
        ((await http.get("/rest/api/3/issue/OPS-1/comment")).json(), "GET", issue_path + "/comment", "200"),
        ((await http.get("/rest/api/3/issue/OPS-1/remotelink")).json(), "GET", issue_path + "/remotelink", "200"),
        (created_link.json(), "POST", issue_path + "/remotelink", "201"),
        ((await http.get("/rest/api/3/issue/OPS-1/properties/p")).json(), "GET",
         issue_path + "/properties/{propertyKey}", "200"),
        ((await http.post("/rest/api/3/search/approximate-count", json={"jql": "project = OPS"})).json(), "POST",
         "/rest/api/3/search/approximate-count", "200"),
    ]
    for ours, method, path, status in cases:
        schema = response_schema(spec, method, path, status)
        # getRemoteIssueLinks answers a list without ?globalId= (as its example shows), but the spec's
        # schema is the single RemoteIssueLink of the ?globalId= form: check each item against it.
        for item in ours if isinstance(ours, list) else [ours]:
            assert schema_problems(item, schema, spec) == [], (method, path)
        example = examples.get((method, path), {}).get("responses", {}).get(status, {}).get("examples", {})
        example = example.get("application/json")
        if isinstance(example, dict):
            assert set(example) <= set(ours), (path, set(example) - set(ours))
        elif isinstance(example, list):
            assert set(example[0]) - {"application", "relationship"} <= set(ours[0]), path
    # user objects are the spec's UserDetails
    user = spec["components"]["schemas"]["UserDetails"]
    for value in (issue["fields"]["assignee"], issue["fields"]["reporter"], cases[2][0]["comments"][0]["author"]):
        assert schema_problems(value, user, spec) == []
    # Fields of the example issue have the same JSON types here, except where the example is
    # illustrative only: its `updated` is the number 1 and its `comment`/`worklog` are bare lists,
    # while Jira (and every captured webhook) sends a date-time string and paged objects.
    example_fields = examples[("GET", issue_path)]["responses"]["200"]["examples"]["application/json"]["fields"]
    shared = set(example_fields) & set(issue["fields"]) - {"updated", "comment", "worklog"}
    assert {"description", "project", "timetracking", "issuelinks", "attachment"} <= shared
    for name in shared:
        assert type(issue["fields"][name]) is type(example_fields[name]), name
    assert isinstance(issue["fields"]["updated"], str) and set(issue["fields"]["comment"]) == {
        "comments", "self", "maxResults", "total", "startAt"}


async def test_error_bodies_are_error_collections(http, spec):
    schema = spec["components"]["schemas"]["ErrorCollection"]
    await create(http)
    bodies = [
        (await http.get("/rest/api/3/issue/OPS-1", auth=("x", "y"))).json(),
        (await http.get("/rest/api/3/issue/NOPE-1")).json(),
        (await http.get("/rest/api/3/search")).json(),
        (await http.put("/rest/api/3/issue/OPS-1", json={"fields": {"nope": 1}})).json(),
        (await http.post("/rest/api/3/search/jql", json={"jql": "x = y"})).json(),
    ]
    for body in bodies:
        assert schema_problems(body, schema, spec) == [] and set(body) == {"errorMessages", "errors"}
        assert all(isinstance(v, str) for v in body["errors"].values())
