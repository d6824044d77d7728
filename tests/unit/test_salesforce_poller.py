"""SalesforcePoller with the real client against the Salesforce fake, on a hand-driven clock: it
resumes from its watermark without missing or repeating records, sees deletes and undeletes, and
its overlap window catches late commits."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timezone

import pytest
from aiohttp.test_utils import TestServer

import schemas
from connectors.errors import AuthError, FatalError, RateLimitedError, RetryableError
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.mapping import to_sales_events
from connectors.salesforce.poller import PollObject, PollResult, SalesforcePoller, poll_objects
from connectors.salesforce.settings import FeatureRequestFields
from sandbox.salesforce import SalesforceState, create_app

START = 1_741_000_000.0
OBJECTS = poll_objects(multi_currency=True)


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
        return copy.deepcopy(self.state)

    async def put(self, state):
        self.state, self.puts = copy.deepcopy(state), self.puts + 1


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def state(clock):
    return SalesforceState(clock=clock, wall_clock=clock)


@pytest.fixture
async def client(state):
    server = TestServer(create_app(state))
    await server.start_server()
    c = SalesforceClient(str(server.make_url("")).rstrip("/"), "cid", "secret")
    yield c
    c.close()
    await server.close()


def make_poller(client, emitted, store, clock, **kwargs):
    async def emit(envelope):
        emitted.append(envelope)

    return SalesforcePoller(client, emit, store, clock=clock, sleep=clock.sleep, **{"objects": OBJECTS, **kwargs})


def add(state, clock, sobject, count, **fields):
    ids = []
    for n in range(count):
        clock.now += 0.01
        values = {"Name": f"{sobject} {n}", **fields}
        if sobject == "Opportunity":
            values = {"StageName": "Prospecting", "CloseDate": "2025-06-30", **values}
        ids.append(state.create(sobject, values, user_id=state.person_user_id).id)
    return ids


def ids_of(emitted):
    return [e["payload"]["Id"] for e in emitted]


def query_calls(state):
    return [c for c in state.calls if "/query" in c.path]


async def test_resumes_from_the_watermark_without_missing_or_repeating(client, state, clock):
    store, emitted = MemoryStore(), []
    assert await make_poller(client, emitted, store, clock).run_once() == PollResult(2, 0, 0)  # first run: nothing yet
    opportunities = add(state, clock, "Opportunity", 450)
    requests = add(state, clock, "Feature_Request__c", 3, Jira_Key__c="OPS-142")

    result = await make_poller(client, emitted, store, clock, page_size=200).run_once()
    assert ids_of(emitted) == opportunities + requests and (result.pages, result.records) == (4, 453)
    first = query_calls(state)[2]
    assert first.path == "/services/data/v62.0/queryAll/" and first.headers["sforce-query-options"] == "batchSize=200"
    assert first.query["q"].startswith("SELECT Id, IsDeleted, SystemModstamp, LastModifiedById, Name, Amount")
    assert first.query["q"].endswith("FROM Opportunity WHERE SystemModstamp > 2025-03-03T11:05:40Z "
                                     "ORDER BY SystemModstamp ASC, Id ASC")
    for envelope in emitted[:1] + emitted[-1:]:
        schemas.validate("inbound.v1", envelope)
        [record] = to_sales_events(envelope)
        schemas.validate("sales_event.v1", record)
    assert to_sales_events(emitted[-1])[0]["fields"]["jira_key"] == "OPS-142"

    # a new process, nothing changed: the overlap is read again and nothing is emitted twice
    clock.now += 5
    emitted.clear()
    again = await make_poller(client, emitted, store, clock, page_size=200).run_once()
    assert emitted == [] and again.repeats == 453 and again.records == 0

    # changes: an update (by the hub itself), a delete, a new record
    clock.now += 30
    state.update("Opportunity", [opportunities[7]], {"StageName": "Closed Won"}, user_id=state.api_user_id)
    clock.now += 1
    state.delete("Feature_Request__c", requests[0], user_id=state.person_user_id)
    [new] = add(state, clock, "Opportunity", 1)
    clock.now += 90  # everything from the first batch is now older than the overlap
    await make_poller(client, emitted, store, clock).run_once()
    assert ids_of(emitted) == [opportunities[7], new, requests[0]]
    records = [to_sales_events(e, hub_user_id=state.api_user_id)[0] for e in emitted]
    assert [(r["kind"], r["via_hub"]) for r in records] == [("upsert", True), ("upsert", False), ("delete", False)]
    assert records[0]["fields"]["is_won"] is True

    # the undelete comes back as a change after the delete
    clock.now += 5
    emitted.clear()
    state.undelete("Feature_Request__c", requests[0], user_id=state.person_user_id)
    await make_poller(client, emitted, store, clock).run_once()
    assert ids_of(emitted) == [requests[0]] and to_sales_events(emitted[0])[0]["kind"] == "upsert"
    assert emitted[0]["payload"]["IsDeleted"] is False

    # what is kept beside the watermark: the records the overlap can read again, and no more
    assert len(store.state["objects"]["Opportunity"]["seen"]) == 451  # all within 60 s of the newest stamp
    clock.now += 300
    [later] = add(state, clock, "Opportunity", 1)
    emitted.clear()
    await make_poller(client, emitted, store, clock).run_once()
    assert ids_of(emitted) == [later] and list(store.state["objects"]["Opportunity"]["seen"]) == [later]


async def test_the_overlap_catches_a_late_commit_and_only_within_it(client, state, clock):
    store, emitted = MemoryStore(), []
    poller = make_poller(client, emitted, store, clock, overlap_s=60)
    await poller.run_once()
    add(state, clock, "Opportunity", 1)
    await poller.run_once()
    watermark = store.state["objects"]["Opportunity"]["watermark_ms"]
    # a transaction that started 40 s before the watermark commits now: its stamp is old
    clock.now = watermark / 1000 - 40
    [late] = add(state, clock, "Opportunity", 1)
    clock.now = watermark / 1000 - 120
    [too_late] = add(state, clock, "Opportunity", 1)
    clock.now = watermark / 1000 + 10
    emitted.clear()
    await poller.run_once()
    assert ids_of(emitted) == [late] and too_late not in ids_of(emitted)


async def test_a_crash_loses_nothing_and_repeats_at_most_one_page(client, state, clock):
    await make_poller(client, [], (store := MemoryStore()), clock).run_once()
    ids = add(state, clock, "Opportunity", 450)
    emitted = []

    async def failing_emit(envelope):
        if len(emitted) == 250:
            raise RuntimeError("kafka down")
        emitted.append(envelope)

    poller = SalesforcePoller(client, failing_emit, store, clock=clock, objects=OBJECTS[:1], page_size=200)
    with pytest.raises(RuntimeError):
        await poller.run_once()
    assert ids_of(emitted) == ids[:250]
    resumed = []
    await make_poller(client, resumed, store, clock, objects=OBJECTS[:1], page_size=200).run_once()
    assert ids_of(resumed) == ids[200:]  # the page that failed, again, then the rest


async def test_backfill_emits_history_then_polling_carries_on(client, state, clock):
    ids = add(state, clock, "Opportunity", 250)
    since = datetime.fromtimestamp(START, timezone.utc)
    clock.now += 3600  # far older than the overlap: only a backfill finds them
    store, emitted, progress = MemoryStore(), [], []

    async def report(sobject, done, total):
        progress.append((sobject, done, total))

    await make_poller(client, emitted, store, clock).run_once()
    assert emitted == []
    result = await make_poller(client, emitted, store, clock, page_size=200).backfill(since.replace(tzinfo=None), report)
    assert ids_of(emitted) == ids and result.records == 250
    assert progress == [("Opportunity", 200, 250), ("Opportunity", 250, 250), ("Feature_Request__c", 0, 0)]
    emitted.clear()
    clock.now += 1
    assert (await make_poller(client, emitted, store, clock).run_once()).records == 0


async def test_a_wrong_field_name_is_fatal_and_changes_nothing(client, state, clock):
    store = MemoryStore()
    objects = poll_objects(FeatureRequestFields(jira_key_field="Jira_Issue__c"))
    poller = make_poller(client, [], store, clock, objects=objects)
    with pytest.raises(FatalError) as info:
        await poller.run_once()
    assert info.value.code == "salesforce.invalid_field" and "Jira_Issue__c" in str(info.value)
    assert set(store.state["objects"]) == {"Opportunity", "Feature_Request__c"}  # watermarks set, nothing emitted


def test_poll_objects():
    opportunity, request = poll_objects()
    assert opportunity.fields == ("Id", "IsDeleted", "SystemModstamp", "LastModifiedById", "Name", "Amount",
                                  "StageName", "Probability", "IsClosed", "IsWon", "CloseDate", "AccountId",
                                  "Account.Name", "OwnerId")
    assert request == PollObject("Feature_Request__c", ("Id", "IsDeleted", "SystemModstamp", "LastModifiedById",
                                                        "Name", "Opportunity__c", "Account__c", "Jira_Key__c",
                                                        "Description__c"))
    assert all(o.fields[-1] == "CurrencyIsoCode" for o in poll_objects(multi_currency=True))


class ScriptedClient:
    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    async def query_all(self, soql, *, page_size=None):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        for page in answer:
            yield page


async def test_run_forever_waits_out_limits_survives_retryable_and_stops_on_auth(clock):
    row = {"attributes": {"type": "Opportunity"}, "Id": "006Hq00000LqWxYIAV",
           "SystemModstamp": "2025-03-04T09:15:02.000+0000"}
    client = ScriptedClient([RetryableError("boom"), RateLimitedError("limit", retry_after=300), [[row]],
                             AuthError("revoked")])
    emitted = []
    poller = make_poller(client, emitted, MemoryStore(), clock, objects=OBJECTS[:1])
    with pytest.raises(AuthError):
        await poller.run_forever(60)
    assert client.calls == 4 and len(emitted) == 1 and clock.sleeps == [60, 300, 60]


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        SalesforcePoller(None, None, MemoryStore(), overlap_s=0.5)
    with pytest.raises(ValueError):
        SalesforcePoller(None, None, MemoryStore(), objects=[OBJECTS[0], OBJECTS[0]])
    with pytest.raises(ValueError):
        SalesforcePoller(None, None, MemoryStore(), objects=[])
