"""ZendeskPoller with the real client against the Zendesk fake, on a hand-driven clock: it pages
through thousands of tickets, resumes from the stored cursor without gaps or repeats, never makes
more than 10 export requests a minute, and waits out 429s."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timezone

import pytest
from aiohttp.test_utils import TestServer

import schemas
from connectors.errors import AuthError, RetryableError
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.mapping import to_support_event
from connectors.zendesk.poller import ZendeskPoller
from sandbox.common import FaultRule
from sandbox.zendesk import ZendeskState, create_app

START = 1_741_000_000.0


class Clock:
    """One clock for the fake and the poller; the poller's sleep moves it."""

    def __init__(self) -> None:
        self.now = START
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class MemoryStore:
    def __init__(self) -> None:
        self.state: dict | None = None
        self.puts = 0

    async def get(self):
        return dict(self.state) if self.state else None

    async def put(self, state):
        self.state, self.puts = dict(state), self.puts + 1


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def state(clock):
    return ZendeskState(clock=clock, wall_clock=clock)


@pytest.fixture
async def client(state):
    server = TestServer(create_app(state))
    await server.start_server()
    c = ZendeskClient(str(server.make_url("")).rstrip("/"), "hub@example.com", "tok")
    yield c
    c.close()
    await server.close()


def add_tickets(state: ZendeskState, clock: Clock, count: int, per_second: int = 40) -> list[int]:
    ids = []
    for n in range(count):
        if n and n % per_second == 0:
            clock.now += 1  # many tickets share a generated_timestamp: the cursor must split ties
        ids.append(state.create_ticket(subject=f"ticket {n}", comment="hello", actor_id=state.agent_id,
                                       channel="web").ticket.id)
    return ids


def export_calls(state: ZendeskState):
    return [c for c in state.calls if c.path.startswith("/api/v2/incremental/tickets/cursor")]


def max_per_minute(times: list[float]) -> int:
    return max((sum(1 for u in times if t - 60 < u <= t) for t in times), default=0)


def make_poller(client, emitted, store, clock, **kwargs):
    async def emit(envelope):
        emitted.append(envelope)

    return ZendeskPoller(client, emit, store, clock=clock, sleep=clock.sleep, **kwargs)


async def test_pages_through_thousands_within_the_rate_limit_then_resumes(client, state, clock):
    ids = add_tickets(state, clock, 2500)
    clock.now += 120  # older than Zendesk's one-minute holdback
    emitted, store = [], MemoryStore()
    poller = make_poller(client, emitted, store, clock, per_page=100, lag_s=10_000)

    result = await poller.run_once()

    assert [e["payload"]["id"] for e in emitted] == ids  # all, once, in export order
    assert result.pages == 25 and result.tickets == 2500 and store.state["cursor"] == result.cursor
    calls = export_calls(state)
    assert len(calls) == 25 and all(c.status == 200 for c in calls)
    assert max_per_minute([c.time for c in calls]) <= 10
    assert clock.sleeps and clock.now - START > 120 + 120  # it had to wait: 25 requests need > 2 minutes
    first = emitted[0]
    assert first["event_type"] == "zendesk:incremental_export" and first["delivery_id"] is None
    schemas.validate("inbound.v1", first)
    record = to_support_event(first)
    assert record["kind"] == "snapshot" and record["ticket"]["partial"] is False

    # changes after the first run: some within the last minute, which Zendesk holds back
    changed = ids[10:40]
    for tid in changed:
        state.update_ticket(tid, actor_id=state.agent_id, channel="web", status="open")
    new = add_tickets(state, clock, 20)
    emitted.clear()
    again = await make_poller(client, emitted, store, clock, per_page=100).run_once()  # a new process
    assert emitted == [] and again.tickets == 0  # nothing older than a minute yet
    clock.now += 61
    await make_poller(client, emitted, store, clock, per_page=100).run_once()
    assert [e["payload"]["id"] for e in emitted] == changed + new
    assert all(e["payload"]["status"] == "open" for e in emitted[:30])
    assert max_per_minute([c.time for c in export_calls(state)]) <= 10


async def test_waits_out_429_with_retry_after(client, state, clock):
    ids = add_tickets(state, clock, 300)
    clock.now += 120
    emitted, store = [], MemoryStore()
    # the poller believes it may make 30 a minute (High Volume add-on); the fake allows 10
    poller = make_poller(client, emitted, store, clock, per_page=10, max_requests_per_minute=30, lag_s=10_000)
    result = await poller.run_once()
    assert [e["payload"]["id"] for e in emitted] == ids and result.pages == 30
    calls = export_calls(state)
    statuses = Counter(c.status for c in calls)
    assert statuses[429] >= 1 and statuses[200] == 30
    # after each 429 it slept the Retry-After it was given, so the very next request succeeded
    assert all(b.status == 200 and b.time > a.time for a, b in zip(calls, calls[1:]) if a.status == 429)


async def test_429_without_retry_after_waits_a_minute(client, state, clock):
    add_tickets(state, clock, 3)
    clock.now += 120
    state.add_faults([FaultRule("/api/v2/incremental/", status=429, count=1)])
    emitted = []
    await make_poller(client, emitted, MemoryStore(), clock, lag_s=10_000).run_once()
    assert len(emitted) == 3 and 60.0 in clock.sleeps


async def test_first_run_starts_lag_s_back(client, state, clock):
    add_tickets(state, clock, 2)
    clock.now += 3600
    state.create_ticket(subject="recent", comment="x", actor_id=1, channel="web")
    clock.now += 120
    emitted = []
    await make_poller(client, emitted, MemoryStore(), clock, lag_s=600).run_once()
    assert [e["payload"]["subject"] for e in emitted] == ["recent"]
    assert export_calls(state)[0].query["start_time"] == str(int(clock.now - 600))


async def test_backfill_starts_at_since_and_reports_progress(client, state, clock):
    add_tickets(state, clock, 5)
    since = datetime.fromtimestamp(clock.now + 10, timezone.utc)
    clock.now += 100
    later = add_tickets(state, clock, 25)
    clock.now += 120
    emitted, store, progress = [], MemoryStore(), []

    async def report(pages, tickets):
        progress.append((pages, tickets))

    result = await make_poller(client, emitted, store, clock, per_page=10).backfill(since, report)
    assert [e["payload"]["id"] for e in emitted] == later
    assert progress == [(1, 10), (2, 20), (3, 25)] and result.tickets == 25
    emitted.clear()
    await make_poller(client, emitted, store, clock).run_once()  # polling continues after the backfill
    assert emitted == []
    assert export_calls(state)[0].query["start_time"] == str(int(since.timestamp()))


async def test_cursor_is_stored_only_after_the_page_was_emitted(client, state, clock):
    add_tickets(state, clock, 30)
    clock.now += 120
    emitted, store = [], MemoryStore()

    async def failing_emit(envelope):
        if len(emitted) == 15:
            raise RuntimeError("kafka down")
        emitted.append(envelope)

    poller = ZendeskPoller(client, failing_emit, store, clock=clock, sleep=clock.sleep, per_page=10, lag_s=10_000)
    with pytest.raises(RuntimeError):
        await poller.run_once()
    assert store.puts == 1  # the first page only
    resumed = []
    await make_poller(client, resumed, store, clock, per_page=10).run_once()
    assert [e["payload"]["id"] for e in resumed] == list(range(11, 31))  # the failed page again, then on


class ScriptedClient:
    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    async def incremental_tickets(self, cursor=None, start_time=None, *, per_page=None):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_run_forever_survives_retryable_errors_and_stops_on_auth(clock):
    page = {"tickets": [{"id": 1}], "after_cursor": "c1", "before_cursor": None, "end_of_stream": True}
    client = ScriptedClient([RetryableError("boom"), page, AuthError("revoked")])
    emitted = []
    poller = make_poller(client, emitted, MemoryStore(), clock)
    with pytest.raises(AuthError):
        await poller.run_forever(30)
    assert client.calls == 3 and len(emitted) == 1 and clock.sleeps.count(30) == 2


async def test_poller_rejects_a_zero_limit(clock):
    with pytest.raises(ValueError):
        ZendeskPoller(ScriptedClient([]), None, MemoryStore(), max_requests_per_minute=0)
