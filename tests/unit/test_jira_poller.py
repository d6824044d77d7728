"""JiraPoller against the Jira fake: envelopes the normalize path accepts, paging, resuming, time zones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestServer

import schemas
from connectors.errors import FatalError
from connectors.jira.client import JiraClient
from connectors.jira.mapping import to_tracker_event
from connectors.jira.poller import JiraPoller, jql_time
from sandbox.jira import JiraState, create_app

START = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    """One clock for Jira and the hub (Jira's `updated` times and our `received_at_ms`)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryStore:
    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None
        self.puts: list[dict[str, Any]] = []

    async def get(self) -> dict[str, Any] | None:
        return self.value

    async def put(self, value: dict[str, Any]) -> None:
        self.value = dict(value)
        self.puts.append(dict(value))


class Sink:
    def __init__(self, fail_after: int | None = None) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.fail_after = fail_after

    async def __call__(self, envelope: dict[str, Any]) -> None:
        if self.fail_after is not None and len(self.envelopes) >= self.fail_after:
            raise RuntimeError("kafka is down")
        self.envelopes.append(envelope)

    def ids(self) -> list[str]:
        return [e["payload"]["issue"]["id"] for e in self.envelopes]

    def clear(self) -> None:
        self.envelopes.clear()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock) -> JiraState:
    return JiraState(rate_limits=False, clock=clock, wall_clock=clock)


@pytest.fixture
async def client(state) -> AsyncIterator[JiraClient]:
    server = TestServer(create_app(state))
    await server.start_server()
    async with JiraClient(str(server.make_url("")).rstrip("/"), state.email, state.api_token) as jira_client:
        yield jira_client
    await server.close()


def seed(state: JiraState, clock: Clock, count: int, *, project: str = "OPS", step_s: float = 7) -> list[str]:
    ids = []
    for n in range(count):
        ids.append(state.create_issue(project, f"{project} issue {n}", priority="High").id)
        clock.advance(step_s)
    return ids


def requests_to_search(state: JiraState) -> int:
    return len(state.calls_to("/rest/api/3/search/jql"))


async def test_envelopes_pass_the_normalize_path(client, state, clock):
    store, sink = MemoryStore(), Sink()
    poller = JiraPoller(client, sink, store, clock=clock)
    await poller.run_once()  # first run: starts now
    clock.advance(30)
    issue = state.create_issue("OPS", "Database down", issue_type="Incident", priority="Highest", labels=["sev1"],
                               description="Writes fail.\n\nSince 12:00.", security="Internal",
                               assignee={"accountId": "70121:sam", "displayName": "Sam"}, fix_versions=["1.2"])
    state.update_issue(issue.id, status="In Progress")
    clock.advance(30)
    assert await poller.run_once() == 1
    [envelope] = sink.envelopes
    schemas.validate("inbound.v1", envelope)
    assert envelope["received_at_ms"] == int(clock.now * 1000) and envelope["delivery_id"] is None
    payload = envelope["payload"]
    assert payload["webhookEvent"] == envelope["event_type"] == "jira:issue_updated"
    assert payload["issue_event_type_name"] == "issue_poll"
    assert payload["timestamp"] == issue.updated_ms
    assert payload["issue"]["fields"]["description"] == "Writes fail.\n\nSince 12:00."  # text, as in webhooks

    event = to_tracker_event(envelope)
    schemas.validate("tracker_event.v1", event)
    assert event["kind"] == "issue_updated" and event["occurred_at_ms"] == issue.updated_ms
    i = event["issue"]
    assert (i["id"], i["key"], i["project_key"], i["issue_type"], i["priority"]) == (
        issue.id, "OPS-1", "OPS", "Incident", "Highest")
    assert (i["status"], i["status_category"], i["labels"], i["security_level"]) == (
        "In Progress", "indeterminate", ["sev1"], "Internal")
    assert i["assignee"] == {"account_id": "70121:sam", "display_name": "Sam"} and i["fix_versions"] == ["1.2"]
    assert i["url"] == f"{event['site']}/browse/OPS-1" and i["partial"] is False
    # the same issue at the same `updated` time gives the same event id: re-polls deduplicate
    assert to_tracker_event(poller.envelope(payload["issue"], issue.updated_ms))["event_id"] == event["event_id"]


async def test_pages_through_hundreds_of_issues_in_order(client, state, clock):
    store, sink = MemoryStore(), Sink()
    poller = JiraPoller(client, sink, store, clock=clock, page_size=7)
    await poller.run_once()
    ids = seed(state, clock, 300)
    before = requests_to_search(state)
    assert await poller.run_once() == 300
    assert sink.ids() == ids  # each once, oldest first
    assert requests_to_search(state) - before == 43  # ceil(300 / 7)
    assert store.value == {"updated_ms": state.issues[ids[-1]].updated_ms}
    assert len(store.puts) == 1 + 43  # the first run's start, then one checkpoint per page
    jql = state.calls_to("/rest/api/3/search/jql")[-1].body["jql"]
    assert jql.startswith('updated >= "') and jql.endswith(" ORDER BY updated ASC")


async def test_resumes_from_the_watermark_without_missing_any(client, state, clock):
    store, sink = MemoryStore(), Sink()
    poller = JiraPoller(client, sink, store, clock=clock, page_size=10)
    await poller.run_once()
    ids = seed(state, clock, 120)
    await poller.run_once()
    sink.clear()
    clock.advance(600)

    changed = [ids[3], ids[50], ids[119]]
    for n, issue_id in enumerate(changed):
        state.update_issue(issue_id, priority="Highest")
        clock.advance(1)
    state.update_issue(ids[7], project="SEC")  # moved: new key, same id
    new = seed(state, clock, 4)
    state.update_issue(new[0], summary="renamed")
    watermark = store.value["updated_ms"]
    await poller.run_once()
    assert sink.ids()[-8:] == [*changed, ids[7], *new[1:], new[0]]
    # before them, only what the overlap window (120 s, rounded down to the minute) re-reads
    assert all(watermark - 180_000 <= e["payload"]["timestamp"] <= watermark for e in sink.envelopes[:-8])
    assert len(sink.envelopes) == len(set(sink.ids())) > 8
    moved = next(e for e in sink.envelopes if e["payload"]["issue"]["id"] == ids[7])
    assert to_tracker_event(moved)["issue"]["key"] == "SEC-1"
    assert (await client.get_issue("OPS-8"))["key"] == "SEC-1"

    sink.clear()
    clock.advance(600)
    watermark = store.value["updated_ms"]
    await poller.run_once()  # nothing changed: only the overlap window again
    assert sink.envelopes and all(e["payload"]["timestamp"] >= watermark - 180_000 for e in sink.envelopes)
    assert store.value["updated_ms"] == watermark


async def test_a_crash_mid_run_resumes_from_the_last_page(client, state, clock):
    store = MemoryStore()
    await JiraPoller(client, Sink(), store, clock=clock).run_once()
    ids = seed(state, clock, 95)
    crashing = Sink(fail_after=42)
    with pytest.raises(RuntimeError):
        await JiraPoller(client, crashing, store, clock=clock, page_size=10).run_once()
    assert store.value == {"updated_ms": state.issues[ids[39]].updated_ms}  # 4 full pages stored
    clock.advance(3600)
    resumed = Sink()
    await JiraPoller(client, resumed, store, clock=clock, page_size=10).run_once()
    assert set(crashing.ids()) | set(resumed.ids()) == set(ids)
    # it starts again at the stored page's end minus the overlap (rounded down to the minute)
    checkpoint = state.issues[ids[39]].updated_ms
    lower = (checkpoint - 120_000) // 60_000 * 60_000
    start = next(n for n, issue_id in enumerate(ids) if state.issues[issue_id].updated_ms >= lower)
    assert resumed.ids() == ids[start:] and 17 <= 40 - start <= 17 + 9


async def test_overlap_catches_what_search_did_not_show_yet(client, state, clock):
    state.search_lag_s = 30  # Jira: "Recent updates might not be immediately visible"
    store, sink = MemoryStore(), Sink()
    poller = JiraPoller(client, sink, store, clock=clock)
    await poller.run_once()
    clock.advance(300)
    seen = state.create_issue("OPS", "indexed")
    clock.advance(40)
    late = state.create_issue("OPS", "saved just before the poll")
    clock.advance(5)
    await poller.run_once()
    assert sink.ids() == [seen.id]
    clock.advance(60)
    await poller.run_once()
    assert late.id in sink.ids()
    with pytest.raises(ValueError):  # less than a minute cannot cover JQL's minute precision
        JiraPoller(client, sink, store, clock=clock, overlap_s=30)


async def test_jql_bound_is_written_in_the_api_users_time_zone(serve_jira):
    clock = Clock()
    state = JiraState(time_zone="America/New_York", rate_limits=False, clock=clock, wall_clock=clock)
    async with serve_jira(state) as client:
        right, wrong = Sink(), Sink()
        right_store, wrong_store = MemoryStore(), MemoryStore()
        right_poller = JiraPoller(client, right, right_store, clock=clock, time_zone="America/New_York")
        wrong_poller = JiraPoller(client, wrong, wrong_store, clock=clock)  # UTC: five hours too late in NY
        await right_poller.run_once()
        await wrong_poller.run_once()
        ids = seed(state, clock, 10, step_s=600)
        await right_poller.run_once()
        await wrong_poller.run_once()
    assert right.ids() == ids
    assert wrong.ids() == []  # what the docstring warns about
    jql = state.calls_to("/rest/api/3/search/jql")[-2].body["jql"]
    assert jql.startswith('updated >= "2024-03-01 06:58"')  # 11:58 UTC in New York


async def test_projects_limit_the_search(client, state, clock):
    store, sink = MemoryStore(), Sink()
    poller = JiraPoller(client, sink, store, clock=clock, projects=["OPS", "IN"])
    with pytest.raises(FatalError) as caught:  # Jira: a project the user cannot see fails the search
        await poller.run_once()
    assert "The value 'OPS' does not exist for the field 'project'" in str(caught.value)
    state.create_issue("IN", "a project key that is a JQL word")
    state.create_issue("OPS", "an older one")
    await poller.run_once()
    ops, legal = seed(state, clock, 3, project="OPS"), seed(state, clock, 3, project="LEGAL")
    await poller.run_once()
    assert set(sink.ids()) >= set(ops) and not set(sink.ids()) & set(legal)
    assert ' AND project in ("OPS", "IN") ORDER BY' in state.calls_to("/rest/api/3/search/jql")[-1].body["jql"]
    with pytest.raises(ValueError):
        JiraPoller(client, sink, store, clock=clock, projects=[])


async def test_backfill_reports_progress_then_runs_carry_on(client, state, clock):
    ids = seed(state, clock, 25, step_s=3600)
    store, sink = MemoryStore(), Sink()
    poller = JiraPoller(client, sink, store, clock=clock, page_size=10)
    progress: list[tuple[int, int | None]] = []
    since = datetime.fromtimestamp(START, timezone.utc) + timedelta(hours=5)
    assert await poller.backfill(since, lambda done, total: progress.append((done, total))) == 20
    assert sink.ids() == ids[5:]
    assert progress == [(0, 20), (10, 20), (20, 20)]
    assert store.value == {"updated_ms": state.issues[ids[-1]].updated_ms}

    sink.clear()
    clock.advance(600)
    later = seed(state, clock, 2)
    await poller.run_once()
    assert sink.ids() == [ids[-1], *later]  # the last backfilled issue is inside the overlap window
    with pytest.raises(ValueError):
        await poller.backfill(datetime(2024, 1, 1))


async def test_first_run_and_empty_backfill_set_the_watermark(client, state, clock):
    store = MemoryStore()
    poller = JiraPoller(client, Sink(), store, clock=clock)
    assert await poller.backfill(datetime(2020, 1, 1, tzinfo=timezone.utc)) == 0
    assert store.value == {"updated_ms": int(START * 1000)}
    clock.advance(3600)  # polled rarely: nothing between runs may be lost
    issue = state.create_issue("OPS", "between runs")
    clock.advance(3600)
    sink = Sink()
    await JiraPoller(client, sink, store, clock=clock).run_once()
    assert sink.ids() == [issue.id]


def test_jql_time_rounds_down_and_survives_dst():
    utc = ZoneInfo("UTC")
    ms = int(datetime(2024, 3, 1, 12, 34, 59, 999_000, tzinfo=timezone.utc).timestamp() * 1000)
    assert jql_time(ms, utc) == "2024-03-01 12:34"
    berlin = ZoneInfo("Europe/Berlin")
    # 2024-10-27 02:40 happens twice in Berlin; Jira may read the later one, so go back before both
    first = int(datetime(2024, 10, 27, 0, 40, tzinfo=timezone.utc).timestamp() * 1000)  # 02:40 CEST
    assert jql_time(first, berlin) == "2024-10-27 01:40"
    second = int(datetime(2024, 10, 27, 1, 40, tzinfo=timezone.utc).timestamp() * 1000)  # 02:40 CET
    assert jql_time(second, berlin) == "2024-10-27 02:40"
    for zone in ("America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"):
        tz = ZoneInfo(zone)
        for hours in range(0, 24 * 365, 7):
            moment = int(START * 1000) + hours * 3_600_000
            wall = datetime.strptime(jql_time(moment, tz), "%Y-%m-%d %H:%M")
            latest = max(wall.replace(tzinfo=tz, fold=f).timestamp() for f in (0, 1)) * 1000
            assert moment - 2 * 3_600_000 < latest <= moment, (zone, hours)


@pytest.fixture
def serve_jira():
    class Serving:
        def __init__(self, state: JiraState) -> None:
            self.state = state

        async def __aenter__(self) -> JiraClient:
            self.server = TestServer(create_app(self.state))
            await self.server.start_server()
            self.client = JiraClient(str(self.server.make_url("")).rstrip("/"), self.state.email, self.state.api_token)
            return self.client

        async def __aexit__(self, *exc: object) -> None:
            await self.client.close()
            await self.server.close()

    return Serving
