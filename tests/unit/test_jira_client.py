"""JiraClient: the status → error table (httpx.MockTransport), then every method against the Jira fake."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.errors import AuthError, FatalError, RateLimitedError, RetryableError
from connectors.jira.client import JiraClient, error_for, retry_after
from connectors.jira.mapping import adf_from_text
from sandbox import jira
from sandbox.jira import JiraState, create_app

EMAIL, TOKEN = "bot@example.com", "ATATT3xFfGF0-very-secret-token"
NOW = 1_709_294_400.0  # 2024-03-01T12:00:00Z


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def mock_client(handler) -> JiraClient:
    return JiraClient("https://example.atlassian.net", EMAIL, TOKEN, transport=httpx.MockTransport(handler))


def answer(status: int, body=None, headers=None):
    return lambda request: httpx.Response(status, json=body, headers=headers)


# --- one place: status → typed error ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "error", "code"),
    [
        (429, {"Retry-After": "7", "RateLimit-Reason": "jira-burst-based"}, RateLimitedError, "jira.rate_limited"),
        (401, {}, AuthError, "jira.unauthorized"),
        (403, {}, AuthError, "jira.forbidden"),
        (404, {}, FatalError, "jira.not_found"),
        (410, {}, FatalError, "jira.gone"),
        (400, {}, FatalError, "jira.bad_request"),
        (413, {}, FatalError, "jira.http_413"),
        (409, {}, RetryableError, "jira.http_409"),
        (500, {}, RetryableError, "jira.http_500"),
        (503, {"Retry-After": "30"}, RateLimitedError, "jira.http_503"),
    ],
)
async def test_status_becomes_one_typed_error(status, headers, error, code):
    body = {"errorMessages": ["Issue does not exist or you do not have permission to see it."],
            "errors": {"customfield_10050": "Operation value must be a number"}}
    client = mock_client(answer(status, body, headers))
    with pytest.raises(error) as caught:
        await client.get_issue("OPS-1")
    await client.close()
    assert type(caught.value) is error and caught.value.code == code
    message = str(caught.value)
    assert f"HTTP {status}" in message and "get_issue" in message
    assert "Operation value must be a number" in message  # Jira's own words travel
    assert TOKEN not in message and EMAIL not in message and "Basic" not in message
    if status in (429, 503):
        assert caught.value.retry_after == float(headers["Retry-After"])
        assert caught.value.retryable


def test_410_says_which_endpoint_to_use():
    response = httpx.Response(410, json={"errorMessages": [jira.SEARCH_REMOVED], "errors": {}})
    error = error_for(response, "search")
    assert isinstance(error, FatalError) and not error.retryable
    assert "removed" in str(error) and "POST /rest/api/3/search/jql" in str(error)


def test_retry_after_from_either_header_or_none():
    assert retry_after({"Retry-After": "12"}, now=NOW) == 12
    http_date = email.utils.format_datetime(datetime.fromtimestamp(NOW + 90, timezone.utc), usegmt=True)
    assert retry_after({"Retry-After": http_date}, now=NOW) == 90
    # Atlassian's X-RateLimit-Reset is "yyyy-MM-ddTHH:mmZ" (request time plus the Retry-After period)
    assert retry_after({"X-RateLimit-Reset": "2024-03-01T12:02Z"}, now=NOW) == 120
    assert retry_after({"X-RateLimit-Reset": "2024-03-01T12:00:30.000+00:00"}, now=NOW) == 30
    assert retry_after({"X-RateLimit-Reset": "2024-03-01T11:00Z"}, now=NOW) == 0  # never negative
    assert retry_after({"X-RateLimit-Reset": "soon"}, now=NOW) is None
    assert retry_after({}, now=NOW) is None
    assert retry_after({"Retry-After": "5", "X-RateLimit-Reset": "2024-03-01T13:00Z"}, now=NOW) == 5


@pytest.mark.parametrize(
    ("exc", "code"),
    [(httpx.ConnectError("refused"), "jira.connection"), (httpx.ReadTimeout("slow"), "jira.timeout"),
     (httpx.RemoteProtocolError("dropped"), "jira.connection")],
)
async def test_transport_failures_are_retryable(exc, code):
    def boom(request):
        raise exc

    client = mock_client(boom)
    with pytest.raises(RetryableError) as caught:
        await client.add_comment("10001", "x")
    await client.close()
    assert caught.value.code == code and caught.value.__cause__ is None and TOKEN not in str(caught.value)


async def test_non_json_success_is_retryable_and_base_url_is_checked():
    client = mock_client(lambda request: httpx.Response(200, text="<html>Jira is down for maintenance</html>"))
    with pytest.raises(RetryableError, match="not JSON"):
        await client.get_issue("OPS-1")
    await client.close()
    for bad in ("ftp://example.atlassian.net", "https://bot:token@example.atlassian.net", "example.atlassian.net"):
        with pytest.raises(ValueError):
            JiraClient(bad, EMAIL, TOKEN)


async def test_search_stops_on_a_repeated_page_token():
    pages = iter([{"issues": [{"id": "1"}], "nextPageToken": "t1", "isLast": False},
                  {"issues": [{"id": "2"}], "nextPageToken": "t1", "isLast": False}])
    sent = []

    def handler(request):
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=next(pages))

    client = mock_client(handler)
    got = []
    with pytest.raises(FatalError, match="repeated a page token"):
        async for page in client.search_jql("project = OPS", fields=["summary"], page_size=1):
            got.append(page)
    await client.close()
    assert got == [[{"id": "1"}], [{"id": "2"}]]
    assert sent[0] == {"jql": "project = OPS", "fields": ["summary"], "maxResults": 1}
    assert sent[1]["nextPageToken"] == "t1"
    with pytest.raises(ValueError):
        async for _ in client.search_jql("project = OPS", fields=["summary"], page_size=5001):
            pass


# --- against the fake ---------------------------------------------------------------------------


@pytest.fixture
def state() -> JiraState:
    clock = Clock()
    return JiraState(email=EMAIL, api_token=TOKEN, clock=clock, wall_clock=clock)


@pytest.fixture
async def base_url(state) -> AsyncIterator[str]:
    server = TestServer(create_app(state))
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def client(base_url) -> AsyncIterator[JiraClient]:
    async with JiraClient(base_url, EMAIL, TOKEN) as jira_client:
        yield jira_client


async def test_wrong_credentials_are_an_auth_error(base_url):
    async with JiraClient(base_url, EMAIL, "revoked") as wrong:
        with pytest.raises(AuthError) as caught:
            await wrong.get_issue("OPS-1")
    assert caught.value.code == "jira.unauthorized" and "revoked" not in str(caught.value)


async def test_get_issue_missing_and_moved(client, state):
    with pytest.raises(FatalError) as caught:
        await client.get_issue("OPS-1")
    assert caught.value.code == "jira.not_found" and jira.ISSUE_NOT_FOUND in str(caught.value)
    issue = state.create_issue("OPS", "Database down")
    state.update_issue("OPS-1", project="SEC")
    moved = await client.get_issue("OPS-1", fields=["summary", "project"])
    assert (moved["id"], moved["key"], set(moved["fields"])) == (issue.id, "SEC-1", {"summary", "project"})


async def test_the_removed_search_answers_gone(base_url):
    # The client only searches through /search/jql; a caller hitting the old endpoint gets a clear error.
    async with httpx.AsyncClient(auth=(EMAIL, TOKEN)) as raw:
        response = await raw.get(f"{base_url}/rest/api/3/search", params={"jql": "project = OPS"})
    error = error_for(response, "search")
    assert error.code == "jira.gone" and "CHANGE-2046" in str(error)


async def test_search_jql_pages_through_everything(client, state):
    for n in range(23):
        state.create_issue("OPS", f"issue {n}")
        state.wall_clock.now += 1
    pages = [page async for page in client.search_jql('project = OPS ORDER BY updated ASC', fields=["summary"],
                                                     page_size=5)]
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i["fields"]["summary"] for p in pages for i in p] == [f"issue {n}" for n in range(23)]
    assert await client.approximate_count("project = OPS") == 23
    with pytest.raises(FatalError) as caught:
        async for _ in client.search_jql("project = NOPE", fields=["summary"]):
            pass
    assert caught.value.code == "jira.bad_request" and "does not exist for the field 'project'" in str(caught.value)


async def test_remote_link_upsert_by_global_id(client, state):
    state.create_issue("OPS", "Database down")
    first = await client.upsert_remote_link("OPS-1", global_id="switchboard:pd:Q1", url="https://pd.example/Q1",
                                            title="PagerDuty Q1", summary="triggered", icon_url="https://pd.example/i")
    second = await client.upsert_remote_link("OPS-1", global_id="switchboard:pd:Q1", url="https://pd.example/Q1",
                                             title="PagerDuty Q1", summary="resolved", status=True)
    assert first["id"] == second["id"]
    [link] = await client.get_remote_links("OPS-1")
    assert link["globalId"] == "switchboard:pd:Q1"
    assert link["object"] == {"url": "https://pd.example/Q1", "title": "PagerDuty Q1", "summary": "resolved",
                              "status": {"resolved": True}}  # the icon was not re-sent: Jira nulls it
    with pytest.raises(TypeError):
        await client.upsert_remote_link("OPS-1", global_id="g", url="https://x", title="t", status="solved")
    custom = {"resolved": False, "icon": {"url16x16": "https://pd.example/ack.png", "title": "acknowledged"}}
    await client.upsert_remote_link("OPS-1", global_id="g", url="https://x", title="t", status=custom)
    assert (await client.get_remote_links("OPS-1"))[1]["object"]["status"] == custom
    await client.delete_remote_link("OPS-1", "switchboard:pd:Q1")
    assert [link["globalId"] for link in await client.get_remote_links("OPS-1")] == ["g"]
    with pytest.raises(FatalError):
        await client.delete_remote_link("OPS-1", "switchboard:pd:Q1")


async def test_properties_round_trip(client, state):
    state.create_issue("OPS", "Database down")
    value = {"slack": [{"channel": "C0INC", "ts": "1700000000.000100"}], "pd": "Q1"}
    await client.set_property("OPS-1", "switchboard.incident", value)
    assert await client.get_property("OPS-1", "switchboard.incident") == value
    await client.set_property("OPS-1", "switchboard.incident", [1, 2])
    assert await client.get_property("OPS-1", "switchboard.incident") == [1, 2]
    with pytest.raises(FatalError) as caught:
        await client.get_property("OPS-1", "other")
    assert caught.value.code == "jira.not_found"


async def test_comments_and_fields_go_out_as_adf(client, state):
    issue = state.create_issue("OPS", "Database down")
    comment = await client.add_comment("OPS-1", "Paged the on-call.\n\nSlack: #inc-ops-1")
    assert comment["body"] == adf_from_text("Paged the on-call.\n\nSlack: #inc-ops-1")
    adf = adf_from_text("as ADF")
    assert (await client.add_comment(issue.id, adf))["body"] == adf
    await client.update_fields("OPS-1", {"customfield_10050": 2, "description": "Writes fail."})
    fields = (await client.get_issue("OPS-1", fields=["customfield_10050", "description"]))["fields"]
    assert fields == {"customfield_10050": 2, "description": adf_from_text("Writes fail.")}
    with pytest.raises(FatalError) as caught:
        await client.update_fields("OPS-1", {"customfield_10050": "two"})
    assert "customfield_10050: Operation value must be a number" in str(caught.value)


async def test_rate_limit_gives_retry_after(client, state):
    state.burst_capacity, state.burst_rate = 1, 0.25
    state.create_issue("OPS", "x")
    await client.get_issue("OPS-1")
    with pytest.raises(RateLimitedError) as caught:
        await client.get_issue("OPS-1")
    assert caught.value.retry_after == 4 and "jira-burst-based" in str(caught.value)

    state.retry_after_header = False  # some Jira 429s carry only X-RateLimit-Reset (minute precision)
    state.wall_clock = time.time  # the header is an absolute time: compare it with the real clock
    with pytest.raises(RateLimitedError) as caught:
        await client.get_issue("OPS-1")
    assert 4 - 1 <= caught.value.retry_after <= 4 + 60


async def test_timeouts_and_refused_connections_are_retryable(client, base_url, state, unused_tcp_port):
    state.create_issue("OPS", "x")
    async with httpx.AsyncClient() as raw:
        await raw.post(f"{base_url}/_sandbox/faults", json={"path": "/rest/api/3/issue/OPS-1", "delay_ms": 500})
    async with JiraClient(base_url, EMAIL, TOKEN, timeout_s=0.1) as impatient:
        with pytest.raises(RetryableError) as caught:
            await impatient.get_issue("OPS-1")
    assert caught.value.code == "jira.timeout"
    async with JiraClient(f"http://127.0.0.1:{unused_tcp_port}", EMAIL, TOKEN) as nowhere:
        with pytest.raises(RetryableError) as caught:
            await nowhere.get_issue("OPS-1")
    assert caught.value.code == "jira.connection"
