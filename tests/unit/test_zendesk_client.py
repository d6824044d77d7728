"""ZendeskClient (real zenpy) against the Zendesk fake: raw JSON back, one request per call, and
every failure typed once."""

from __future__ import annotations

import threading

import pytest
from aiohttp.test_utils import TestServer

from connectors.errors import AuthError, FatalError, RateLimitedError, RetryableError
from connectors.zendesk import client as client_module
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.settings import ZendeskSettings
from sandbox import start_sandbox
from sandbox.common import FaultRule
from sandbox.zendesk import ZendeskState, create_app

EMAIL, TOKEN = "hub@northwind.test", "zd-token-abcdef123456"
ORG, FIELD = 9100000002001, 360012345678


@pytest.fixture
def state():
    return ZendeskState(credentials={EMAIL: TOKEN}, organizations={ORG: "Café Olé GmbH"}, custom_field_ids=[FIELD],
                        rate_limits=False)


@pytest.fixture
async def base_url(state):
    server = TestServer(create_app(state))
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def client(base_url):
    c = ZendeskClient(base_url, EMAIL, TOKEN, timeout_s=2.0)
    yield c
    c.close()


def make_ticket(state: ZendeskState, **kwargs):
    defaults = {"subject": "Checkout failing", "comment": "Cards declined — 🔥", "actor_id": state.agent_id,
                "channel": "web", "organization_id": ORG, "tags": ["eu"]}
    return state.create_ticket(**{**defaults, **kwargs}).ticket


async def test_get_ticket_returns_the_json_zendesk_sent(client, state):
    ticket = make_ticket(state)
    got = await client.get_ticket(ticket.id)
    assert got == state.ticket_json(ticket)  # no zenpy object round trip: no added keys, no renames
    assert got["via"]["source"]["from"] == {} and "from_" not in got["via"]["source"]
    [call] = state.calls
    assert (call.method, call.path) == ("GET", f"/api/v2/tickets/{ticket.id}.json")
    assert call.headers["authorization"].startswith("Basic ****")


async def test_get_ticket_reads_fresh_data_after_an_update(client, state):
    ticket = make_ticket(state)
    assert (await client.get_ticket(ticket.id))["status"] == "new"
    state.update_ticket(ticket.id, actor_id=state.agent_id, channel="web", status="pending")
    assert (await client.get_ticket(str(ticket.id)))["status"] == "pending"  # zenpy's cache is off


async def test_update_ticket_is_one_put(client, state):
    ticket = make_ticket(state, tags=["eu", "triage"])
    got = await client.update_ticket(ticket.id, custom_fields={str(FIELD): "OPS-142"}, add_tags=["jira_linked"],
                                     remove_tags=["triage"], internal_note="Linked to Jira OPS-142.")
    [call] = state.calls
    assert (call.method, call.path) == ("PUT", f"/api/v2/tickets/{ticket.id}.json")
    assert call.body == {"ticket": {
        "id": ticket.id, "custom_fields": [{"id": FIELD, "value": "OPS-142"}], "additional_tags": ["jira_linked"],
        "remove_tags": ["triage"], "comment": {"body": "Linked to Jira OPS-142.", "public": False},
    }}
    assert got["tags"] == ["eu", "jira_linked"] and {"id": FIELD, "value": "OPS-142"} in got["custom_fields"]
    note = state.tickets[ticket.id].comments[-1]
    assert (note.body, note.public, note.author_id, note.channel) == (
        "Linked to Jira OPS-142.", False, state.api_user_id, "api")


async def test_update_ticket_with_only_tags(client, state):
    ticket = make_ticket(state)
    await client.update_ticket(ticket.id, add_tags=["x"])
    assert state.calls[-1].body == {"ticket": {"id": ticket.id, "additional_tags": ["x"]}}


async def test_nothing_to_update_makes_no_request(client, state):
    assert await client.update_ticket(1) == {}
    assert await client.update_ticket(1, custom_fields={}, add_tags=None, remove_tags=[""], internal_note=None) == {}
    assert state.calls == []


async def test_malformed_ids_are_fatal_without_a_request(client, state):
    with pytest.raises(FatalError) as info:
        await client.update_ticket(1, custom_fields={"jira": "x"})
    assert info.value.code == "zendesk.invalid_request"
    with pytest.raises(FatalError):
        await client.get_ticket("abc")
    assert state.calls == []


async def test_list_comments(client, state):
    ticket = make_ticket(state)
    state.update_ticket(ticket.id, actor_id=state.api_user_id, channel="api", comment="[ref n1] note", public=False)
    comments = await client.list_comments(ticket.id)
    assert [(c["body"], c["public"]) for c in comments] == [("Cards declined — 🔥", True), ("[ref n1] note", False)]
    assert comments == [state.comment_json(c) for c in state.tickets[ticket.id].comments]
    assert [c.path for c in state.calls] == [f"/api/v2/tickets/{ticket.id}/comments.json"]


async def test_from_settings(base_url, state):
    settings = ZendeskSettings(base_url=base_url, email=EMAIL, api_token=TOKEN, timeout_s=3)
    c = ZendeskClient.from_settings(settings)
    try:
        make_ticket(state)
        assert (await c.get_ticket(1))["id"] == 1
    finally:
        c.close()
    with pytest.raises(ValueError):
        ZendeskClient.from_settings(ZendeskSettings(base_url=base_url))


async def test_get_organization(client, state):
    assert (await client.get_organization(ORG))["name"] == "Café Olé GmbH"


async def test_not_found_is_fatal_with_zendesks_text(client, state):
    with pytest.raises(FatalError) as info:
        await client.get_ticket(404404)
    assert str(info.value) == "zendesk get_ticket: HTTP 404: RecordNotFound: Not found"
    assert info.value.code == "zendesk.http_404" and not info.value.retryable


async def test_unprocessable_is_fatal_with_the_description(client, state):
    ticket = make_ticket(state, status="closed")
    with pytest.raises(FatalError) as info:
        await client.update_ticket(ticket.id, add_tags=["x"])
    assert "HTTP 422: RecordInvalid: Record validation errors" in str(info.value)


async def test_rate_limited_carries_retry_after_and_zenpy_does_not_retry(client, state):
    state.add_faults([FaultRule("/api/v2/tickets/", status=429, retry_after=7, count=None)])
    with pytest.raises(RateLimitedError) as info:
        await client.get_ticket(1)
    assert info.value.retry_after == 7.0 and info.value.code == "zendesk.rate_limited"
    assert len(state.calls) == 1  # zenpy would otherwise sleep 7 s and ask again, forever


async def test_account_rate_limit_of_the_fake_surfaces_as_rate_limited(base_url, state):
    state.rate_limits = True
    state.account_window.limit = 2
    c = ZendeskClient(base_url, EMAIL, TOKEN)
    try:
        ticket = make_ticket(state)
        await c.get_ticket(ticket.id)
        await c.get_ticket(ticket.id)
        with pytest.raises(RateLimitedError) as info:
            await c.get_ticket(ticket.id)
        assert 0 < info.value.retry_after <= 60
    finally:
        c.close()


@pytest.mark.parametrize(("status", "kind"), [(401, AuthError), (403, AuthError), (409, RetryableError),
                                              (500, RetryableError), (503, RetryableError), (400, FatalError)])
async def test_status_classes(client, state, status, kind):
    state.add_faults([FaultRule("/api/v2/", status=status, count=None)])
    with pytest.raises(kind) as info:
        await client.get_ticket(1)
    assert type(info.value) is kind and info.value.code == f"zendesk.http_{status}"
    assert len(state.calls) == 1  # no adapter retries (zenpy's would retry 503 three times)


async def test_bad_credentials_are_auth_errors_without_secrets(base_url, state):
    c = ZendeskClient(base_url, EMAIL, "wrong-token-999")
    try:
        with pytest.raises(AuthError) as info:
            await c.get_ticket(1)
    finally:
        c.close()
    message = str(info.value)
    assert "HTTP 401: Couldn't authenticate you" in message
    assert "wrong-token-999" not in message and EMAIL not in message and "Basic" not in message


def test_missing_credentials_are_refused_before_zenpy():
    with pytest.raises(ValueError) as info:
        ZendeskClient("http://127.0.0.1:1", EMAIL, "")
    assert EMAIL not in str(info.value)


async def test_connection_refused_is_retryable(unused_tcp_port):
    c = ZendeskClient(f"http://127.0.0.1:{unused_tcp_port}", EMAIL, TOKEN)
    try:
        with pytest.raises(RetryableError) as info:
            await c.get_ticket(1)
    finally:
        c.close()
    assert info.value.code == "zendesk.transport"


async def test_timeout_is_retryable(base_url, state):
    state.add_faults([FaultRule("/api/v2/tickets/", delay_ms=800)])
    c = ZendeskClient(base_url, EMAIL, TOKEN, timeout_s=0.2)
    try:
        with pytest.raises(RetryableError) as info:
            await c.get_ticket(1)
    finally:
        c.close()
    assert "Timeout" in str(info.value)


async def test_calls_run_in_the_worker_threads(client, state, monkeypatch):
    threads = []
    real = client_module._Session.request

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(client_module._Session, "request", spy)
    make_ticket(state)
    await client.get_ticket(1)
    assert threads and all(name.startswith("zendesk") for name in threads)


async def test_incremental_pages_with_per_page_on_every_request(client, state, clock_at):
    for n in range(5):
        make_ticket(state, subject=f"t{n}")
    clock_at(state.wall_clock() + 120)
    first = await client.incremental_tickets(start_time=0, per_page=2)
    assert [t["id"] for t in first["tickets"]] == [1, 2] and first["end_of_stream"] is False
    second = await client.incremental_tickets(first["after_cursor"], per_page=2)
    third = await client.incremental_tickets(second["after_cursor"], per_page=2)
    assert [t["id"] for t in second["tickets"] + third["tickets"]] == [3, 4, 5] and third["end_of_stream"] is True
    assert [c.query.get("per_page") for c in state.calls] == ["2", "2", "2"]  # zenpy drops it on cursor requests
    assert set(second) == {"tickets", "after_cursor", "before_cursor", "end_of_stream"}


async def test_incremental_arguments(client):
    with pytest.raises(ValueError):
        await client.incremental_tickets()
    with pytest.raises(ValueError):
        await client.incremental_tickets("c", 5)
    with pytest.raises(ValueError):
        await client.incremental_tickets(start_time=0, per_page=1001)


async def test_https_base_url_with_the_sandbox_ca():
    async with await start_sandbox(tls=True) as sandbox:
        state = sandbox.states["zendesk"]
        make_ticket(state, organization_id=None)
        c = ZendeskClient(sandbox.urls["zendesk"], EMAIL, TOKEN, ca_file=str(sandbox.ca_file))
        untrusted = ZendeskClient(sandbox.urls["zendesk"], EMAIL, TOKEN)
        try:
            assert (await c.get_ticket(1))["id"] == 1
            with pytest.raises(RetryableError):
                await untrusted.get_ticket(1)
        finally:
            c.close()
            untrusted.close()


@pytest.fixture
def clock_at(state):
    """Move the fake's clocks (monotonic and wall) to a given epoch time."""
    def move(to: float) -> None:
        state.clock = state.wall_clock = lambda: to
        state.account_window.clock = state.export_window.clock = state.clock
    return move


def test_zenpy_clears_the_last_serialised_object_of_an_endpoint_whoever_made_it():
    # the hazard of one Zenpy shared by threads: if this starts failing, zenpy changed and the
    # per-thread instances of ZendeskClient may no longer be needed
    from zenpy import Zenpy
    from zenpy.lib.api_objects import Comment, Ticket

    tickets = Zenpy(subdomain="x", email=EMAIL, token=TOKEN, disable_cache=True).tickets
    mine = Ticket(id=1)
    mine.comment = Comment(body="PROJ-1 is now In Progress.", public=False)
    assert tickets._serialize(mine)["comment"] == {"body": "PROJ-1 is now In Progress.", "public": False}
    theirs = Ticket(id=2)
    theirs.comment = Comment(body="PROJ-2 is resolved.", public=False)
    tickets._serialize(theirs)      # another thread's update starts serialising on the same endpoint ...
    tickets._clean_dirty_objects()  # ... when the answer to a request comes back (zenpy does this on every 2xx)
    assert tickets._serialize(theirs).get("comment") in (None, {})  # their note would be sent empty


async def test_each_pool_thread_has_its_own_zenpy_on_one_session(client, state):
    ticket = make_ticket(state)
    seen: dict[str, object] = {}
    barrier = threading.Barrier(3)

    def grab(name):
        barrier.wait(timeout=5)  # three threads of the pool at once
        seen[name] = client._zenpy
        assert client._zenpy is seen[name]  # and the same one again on that thread

    import asyncio
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(client._pool, grab, f"t{n}") for n in range(3)))
    assert len({id(z) for z in seen.values()}) == 3
    assert {id(z.tickets.session) for z in seen.values()} == {id(client._session)}
    await client.update_ticket(ticket.id, internal_note="still one request")  # and the calls still work
    assert [c.method for c in state.calls] == ["PUT"]
