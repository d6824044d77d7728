"""SalesforceClient (real simple-salesforce) against the Salesforce fake: OAuth tokens, paging through
nextRecordsUrl, one refresh on 401, and every failure typed once from Salesforce's error arrays."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import TestServer

from connectors.errors import AuthError, FatalError, RateLimitedError, RetryableError
from connectors.salesforce import client as client_module
from connectors.salesforce.client import (
    CONCURRENT_LIMIT_RETRY_AFTER_S,
    DAILY_LIMIT_RETRY_AFTER_S,
    SalesforceClient,
)
from connectors.salesforce.settings import SalesforceSettings
from sandbox import start_sandbox
from sandbox.common import FaultRule
from sandbox.salesforce import SalesforceState, create_app

CID, SECRET, REFRESH = "3MVG9switchboard", "consumer-secret-0123456789", "5Aep861refresh-token-abcdef"
START = 1_741_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def state(clock):
    return SalesforceState(clients={CID: SECRET}, refresh_tokens={REFRESH: CID}, clock=clock, wall_clock=clock)


@pytest.fixture
async def base_url(state):
    server = TestServer(create_app(state))
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def client(base_url):
    c = SalesforceClient(base_url, CID, SECRET, timeout_s=5.0)
    yield c
    c.close()


def api_calls(state):
    return [c for c in state.calls if c.path.startswith("/services/data/")]


def token_calls(state):
    return [c for c in state.calls if c.path == "/services/oauth2/token"]


def add_opportunities(state, clock, count, **fields):
    account = state.create("Account", {"Name": "Café Olé GmbH"}, user_id=state.person_user_id)
    ids = []
    for n in range(count):
        clock.now += 0.001
        values = {"Name": f"Deal {n}", "StageName": "Prospecting", "CloseDate": "2025-06-30", "AccountId": account.id,
                  **fields}
        ids.append(state.create("Opportunity", values, user_id=state.person_user_id).id)
    return ids


async def collect(pages):
    return [page async for page in pages]


async def test_client_credentials_token_then_bearer_with_the_call_options(client, state, clock):
    [oid] = add_opportunities(state, clock, 1)
    [page] = await collect(client.query("SELECT Id, Name, Account.Name FROM Opportunity"))
    assert page == [{"attributes": {"type": "Opportunity", "url": f"/services/data/v62.0/sobjects/Opportunity/{oid}"},
                     "Id": oid, "Name": "Deal 0",
                     "Account": {"attributes": page[0]["Account"]["attributes"], "Name": "Café Olé GmbH"}}]
    assert type(page[0]) is dict and page.total_size == 1  # not simple-salesforce's OrderedDict
    [token] = token_calls(state)
    assert token.body == {"client_id": CID, "client_secret": "****6789", "grant_type": "client_credentials"}
    [query] = api_calls(state)
    assert (query.method, query.path, query.query) == ("GET", "/services/data/v62.0/query/",
                                                       {"q": "SELECT Id, Name, Account.Name FROM Opportunity"})
    assert query.headers["authorization"].startswith("Bearer ****")
    assert query.headers["sforce-call-options"] == "client=switchboard" and "x-prettyprint" not in query.headers
    assert client.api_usage == (1, 100_000) and client.tokens_fetched == 1


async def test_query_follows_next_records_url_with_the_batch_size(client, state, clock):
    ids = add_opportunities(state, clock, 450)
    pages = await collect(client.query("SELECT Id FROM Opportunity ORDER BY SystemModstamp, Id", page_size=200))
    assert [len(p) for p in pages] == [200, 200, 50] and {p.total_size for p in pages} == {450}
    assert [r["Id"] for p in pages for r in p] == ids
    calls = api_calls(state)
    assert [c.path.rsplit("/", 1)[1][-4:] for c in calls[1:]] == ["-200", "-400"]
    assert all(c.path.startswith("/services/data/v62.0/query/01g") for c in calls[1:])
    assert {c.headers["sforce-query-options"] for c in calls} == {"batchSize=200"}
    assert len(token_calls(state)) == 1


@pytest.mark.parametrize("next_url", ["https://attacker.example/services/data/v62.0/query/01gX-200",
                                      "//attacker.example/services/data/v62.0/query/01gX-200", "/not/the/api"])
async def test_a_next_records_url_elsewhere_is_never_fetched(client, state, clock, monkeypatch, next_url):
    # the only URL the hub follows from a vendor's answer: it must stay on the configured instance's API
    add_opportunities(state, clock, 3)
    real_query = client._sf.query
    monkeypatch.setattr(client._sf, "query", lambda *a, **k: {**real_query(*a, **k), "done": False, "nextRecordsUrl": next_url})
    followed = []
    monkeypatch.setattr(client._sf, "query_more", lambda *a, **k: followed.append(a) or {"records": [], "done": True})
    with pytest.raises(RetryableError, match="unexpected nextRecordsUrl"):
        await collect(client.query("SELECT Id FROM Opportunity"))
    assert followed == [] and all(not c.path.startswith("http") for c in state.calls)


async def test_query_all_includes_deleted_records(client, state, clock):
    ids = add_opportunities(state, clock, 3)
    state.delete("Opportunity", ids[1], user_id=state.person_user_id)
    soql = "SELECT Id, IsDeleted FROM Opportunity ORDER BY Id"
    live = [r["Id"] for p in await collect(client.query(soql)) for r in p]
    every = [(r["Id"], r["IsDeleted"]) for p in await collect(client.query_all(soql)) for r in p]
    assert live == [ids[0], ids[2]] and every == [(ids[0], False), (ids[1], True), (ids[2], False)]
    assert api_calls(state)[-1].path == "/services/data/v62.0/queryAll/"


async def test_page_size_is_checked_before_any_request(client, state):
    with pytest.raises(ValueError):
        await collect(client.query("SELECT Id FROM Account", page_size=100))
    assert state.calls == []


async def test_refresh_token_flow(base_url, state, clock):
    c = SalesforceClient(base_url, CID, refresh_token=REFRESH)
    try:
        assert (await c.limits())["DailyApiRequests"]["Max"] == 100_000
    finally:
        c.close()
    [token] = token_calls(state)
    assert token.body == {"client_id": CID, "grant_type": "refresh_token", "refresh_token": "****cdef"}


@pytest.mark.parametrize(("secret", "refresh", "code"), [
    ("wrong-secret", None, "salesforce.oauth.invalid_grant"),
    (None, "revoked-refresh-token", "salesforce.oauth.invalid_grant"),
])
async def test_refused_credentials_are_auth_errors_without_secrets(base_url, state, secret, refresh, code):
    c = SalesforceClient(base_url, CID, secret, refresh_token=refresh)
    try:
        with pytest.raises(AuthError) as info:
            await c.get("Opportunity", "006Hq00000LqWxYIAV")
    finally:
        c.close()
    assert info.value.code == code and "token endpoint HTTP 400" in str(info.value)
    assert all(s not in str(info.value) for s in ("wrong-secret", "revoked-refresh-token", CID))
    assert api_calls(state) == []


async def test_token_endpoint_outage_is_retryable(client, state):
    state.add_faults([FaultRule("/services/oauth2/token", status=503)])
    with pytest.raises(RetryableError) as info:
        await client.limits()
    assert info.value.code == "salesforce.oauth.http_503"


async def test_an_expired_session_is_refreshed_once(client, state, clock):
    await client.limits()
    clock.now += 3 * 3600  # longer than the session timeout
    assert (await client.limits())["DailyApiRequests"]["Remaining"] == 100_000 - 2
    assert [c.status for c in api_calls(state)] == [200, 401, 200]
    assert len(token_calls(state)) == 2 and client.tokens_fetched == 2
    state.expire_tokens()  # revoked: the same once more
    await client.limits()
    assert len(token_calls(state)) == 3


async def test_a_second_401_is_an_auth_error(client, state):
    state.inject({"path": "/services/data/", "errorCode": "INVALID_SESSION_ID", "count": None})
    with pytest.raises(AuthError) as info:
        await client.limits()
    assert info.value.code == "salesforce.invalid_session_id" and not info.value.retryable
    assert "HTTP 401 INVALID_SESSION_ID: Session expired or invalid" in str(info.value)
    assert len(api_calls(state)) == 2 and len(token_calls(state)) == 2  # one refresh, not simple-salesforce's three


async def test_the_daily_allocation_is_rate_limited_in_minutes(client, state):
    state.set_allocation(maximum=2)
    await client.limits()
    await client.limits()
    with pytest.raises(RateLimitedError) as info:
        await client.limits()
    assert info.value.code == "salesforce.request_limit_exceeded"
    assert info.value.retry_after == DAILY_LIMIT_RETRY_AFTER_S >= 60
    assert "403 REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded." in str(info.value)
    assert client.api_usage == (2, 2) and len(api_calls(state)) == 3  # no retries by the library


async def test_the_concurrent_request_cap_is_rate_limited_in_seconds(client, state):
    state.inject({"path": "/services/data/", "errorCode": "REQUEST_LIMIT_EXCEEDED",
                  "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded."})
    with pytest.raises(RateLimitedError) as info:
        await client.limits()
    assert info.value.retry_after == CONCURRENT_LIMIT_RETRY_AFTER_S < DAILY_LIMIT_RETRY_AFTER_S


async def test_error_arrays_from_the_fake_are_fatal_with_their_error_code(client, state, clock):
    [oid] = add_opportunities(state, clock, 1)
    cases = [
        ("INVALID_FIELD", lambda: collect(client.query("SELECT Nme FROM Opportunity"))),
        ("INVALID_TYPE", lambda: collect(client.query("SELECT Id FROM Opportunities"))),
        ("MALFORMED_QUERY", lambda: collect(client.query("SELECT Id FROM Opportunity WHERE Name = 'a' OR Id = 'b'"))),
        ("REQUIRED_FIELD_MISSING", lambda: client.create("Opportunity", {"Name": "no stage"})),
        ("INVALID_FIELD_FOR_INSERT_UPDATE", lambda: client.update("Opportunity", oid, {"IsWon": True})),
        ("NOT_FOUND", lambda: client.get("Opportunity", "006Hq00000NoSucHAQ")),
    ]
    for error_code, call in cases:
        with pytest.raises(FatalError) as info:
            await call()
        assert info.value.code == f"salesforce.{error_code.lower()}", error_code
        assert f" {error_code}" in str(info.value) and not info.value.retryable
    state.delete("Opportunity", oid, user_id=state.person_user_id)
    with pytest.raises(FatalError) as info:
        await client.update("Opportunity", oid, {"Name": "gone"})
    assert info.value.code == "salesforce.entity_is_deleted" and "404 ENTITY_IS_DELETED: entity is deleted" in str(
        info.value)


@pytest.mark.parametrize(("error_code", "kind"), [
    ("DUPLICATE_VALUE", FatalError), ("UNABLE_TO_LOCK_ROW", RetryableError), ("SERVER_UNAVAILABLE", RetryableError),
    ("REQUIRED_FIELD_MISSING", FatalError),
])
async def test_injected_error_codes(client, state, error_code, kind):
    state.inject({"path": "/services/data/v62.0/sobjects/Task", "errorCode": error_code})
    with pytest.raises(kind) as info:
        await client.create("Task", {"Subject": "Jira OPS-1 moved to Done"})
    assert type(info.value) is kind and info.value.code == f"salesforce.{error_code.lower()}"
    assert len(api_calls(state)) == 1


@pytest.mark.parametrize(("status", "kind"), [(500, RetryableError), (503, RetryableError), (404, FatalError),
                                              (403, RateLimitedError), (401, AuthError)])
async def test_status_faults(client, state, status, kind):
    state.add_faults([FaultRule("/services/data/", status=status, count=None)])
    with pytest.raises(kind):
        await client.limits()
    assert len(api_calls(state)) == (2 if status == 401 else 1)


async def test_get_update_create_and_the_change_origin(client, state, clock):
    [oid] = add_opportunities(state, clock, 1, Amount=1000)
    record = await client.get("Opportunity", oid)
    assert record["Amount"] == 1000.0 and record["IsWon"] is False and record["SystemModstamp"].endswith("+0000")
    assert await client.get("Opportunity", oid, fields=["StageName"]) == {
        "attributes": record["attributes"], "StageName": "Prospecting"}
    await client.update("Opportunity", oid, {"StageName": "Closed Won"})
    after = state.record("Opportunity", oid).values
    assert (after["IsWon"], after["Probability"], after["LastModifiedById"]) == (True, 100.0, state.api_user_id)
    task = await client.create("Task", {"Subject": "Jira OPS-142 moved to Done", "WhatId": oid})
    assert task.startswith("00T") and len(task) == 18 and state.record("Task", task).values["Status"] == "Not Started"
    [update_event] = [e for e in state.cdc_events if e["data"]["payload"]["ChangeEventHeader"]["changeType"] == "UPDATE"]
    header = update_event["data"]["payload"]["ChangeEventHeader"]
    assert header["changeOrigin"] == "com/salesforce/api/rest/62.0;client=switchboard"
    assert header["commitUser"] == state.api_user_id
    assert [c.method for c in api_calls(state)] == ["GET", "GET", "PATCH", "POST"]


async def test_nothing_to_update_and_bad_names_make_no_request(client, state):
    await client.update("Opportunity", "006Hq00000LqWxYIAV", {})
    for call in (lambda: client.get("Opportunity/../User", "006Hq00000LqWxYIAV"),
                 lambda: client.get("Opportunity", "../limits"), lambda: client.create("", {})):
        with pytest.raises(FatalError) as info:
            await call()
        assert info.value.code == "salesforce.invalid_request"
    assert state.calls == []


async def test_get_updated_and_deleted(client, state, clock):
    start = datetime.fromtimestamp(clock.now, timezone.utc)
    ids = add_opportunities(state, clock, 3)
    clock.now += 120
    state.delete("Opportunity", ids[0], user_id=state.person_user_id)
    clock.now += 120
    end = datetime.fromtimestamp(clock.now, timezone.utc)
    updated = await client.get_updated("Opportunity", start - timedelta(minutes=1), end)
    deleted = await client.get_deleted("Opportunity", start.replace(tzinfo=None) - timedelta(minutes=1), end)
    assert updated["ids"] == ids[1:] and [d["id"] for d in deleted["deletedRecords"]] == [ids[0]]
    assert deleted["deletedRecords"][0]["deletedDate"].endswith("+0000")
    assert set(deleted) == {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}
    with pytest.raises(FatalError) as info:
        await client.get_deleted("Opportunity", end, end)
    assert info.value.code == "salesforce.invalid_replication_date"


async def test_an_expired_query_locator_is_fatal(client, state, clock):
    add_opportunities(state, clock, 250)
    pages = client.query("SELECT Id FROM Opportunity", page_size=200)
    first = await anext(pages)
    assert len(first) == 200
    clock.now += 16 * 60
    with pytest.raises(FatalError) as info:
        await anext(pages)
    assert info.value.code == "salesforce.invalid_query_locator"


async def test_connection_refused_and_timeouts_are_retryable(unused_tcp_port, base_url, state):
    refused = SalesforceClient(f"http://127.0.0.1:{unused_tcp_port}", CID, SECRET)
    slow = SalesforceClient(base_url, CID, SECRET, timeout_s=0.2)
    try:
        with pytest.raises(RetryableError) as info:
            await refused.limits()
        assert info.value.code == "salesforce.transport"
        await slow.limits()
        state.add_faults([FaultRule("/services/data/", delay_ms=700)])
        with pytest.raises(RetryableError) as info:
            await slow.limits()
        assert "Timeout" in str(info.value)
    finally:
        refused.close()
        slow.close()


async def test_calls_run_in_the_worker_threads(client, state, monkeypatch):
    threads = []
    real = client_module._Session.request

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(client_module._Session, "request", spy)
    await client.limits()
    assert len(threads) == 2 and all(name.startswith("salesforce") for name in threads)  # token + limits


async def test_from_settings(base_url, state):
    settings = SalesforceSettings(instance_url=base_url, client_id=CID, client_secret=SECRET, client_name="hub-2",
                                  api_version="60.0")
    c = SalesforceClient.from_settings(settings)
    try:
        await c.limits()
    finally:
        c.close()
    [call] = api_calls(state)
    assert call.path == "/services/data/v60.0/limits/" and call.headers["sforce-call-options"] == "client=hub-2"
    with pytest.raises(ValueError):
        SalesforceClient.from_settings(SalesforceSettings())
    with pytest.raises(ValueError):
        SalesforceClient(base_url, CID)


async def test_https_instance_url_with_the_sandbox_ca():
    async with await start_sandbox(tls=True) as sandbox:
        url = sandbox.urls["salesforce"]
        trusted = SalesforceClient(url, CID, SECRET, ca_file=str(sandbox.ca_file))
        untrusted = SalesforceClient(url, CID, SECRET)
        try:
            assert "DailyApiRequests" in await trusted.limits()
            with pytest.raises(RetryableError):
                await untrusted.limits()
        finally:
            trusted.close()
            untrusted.close()
