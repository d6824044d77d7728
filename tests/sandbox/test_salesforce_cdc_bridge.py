"""The CDC bridge (connectors/salesforce/streaming.py) against the fake Salesforce's CometD endpoint,
over real HTTP (no Kafka: emitted envelopes and the stored replay ids are kept in memory here; the
integration test runs the same bridge on the broker)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from connectors.errors import AuthError
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.events import cdc_channel
from connectors.salesforce.mapping import to_sales_events
from connectors.salesforce.poller import SalesforcePoller, poll_objects
from connectors.salesforce.streaming import REPLAY_NEW, CdcBridge, CometdSession, ReconnectNeeded
from sandbox.salesforce import DEFAULT_API_USER_ID, DEFAULT_PERSON_USER_ID as PERSON, SalesforceState
from sandbox.server import start_sandbox

SECRET = "canary-cdc-client-secret"
CHANNELS = {cdc_channel("Opportunity"): "Opportunity", cdc_channel("Feature_Request__c"): "Feature_Request__c"}


class MemoryStore:
    def __init__(self) -> None:
        self.state = None
        self.puts = 0

    async def get(self):
        return self.state

    async def put(self, state):
        self.state = state
        self.puts += 1


@pytest.fixture
async def fake():
    sandbox = await start_sandbox(states={"salesforce": SalesforceState(clients={"app": SECRET})})
    try:
        yield sandbox.states["salesforce"], sandbox.urls["salesforce"]
    finally:
        await sandbox.stop()


class Rig:
    def __init__(self, url: str, store: MemoryStore, initial: int = -2) -> None:
        self.client = SalesforceClient(url, "app", SECRET)
        self.http = httpx.AsyncClient()
        self.emitted: list[dict] = []

        async def emit(envelope):
            self.emitted.append(envelope)

        self.session = CometdSession(self.http, url, "62.0", lambda renew: self.client.access_token(renew=renew))
        self.poller = SalesforcePoller(self.client, emit, MemoryStore(), objects=poll_objects(multi_currency=True), overlap_s=1)
        self.bridge = CdcBridge(self.session, emit, store, self.poller, CHANNELS, initial=initial)

    def records(self):
        return [r for env in self.emitted for r in to_sales_events(env, hub_user_id=DEFAULT_API_USER_ID, hub_client="switchboard")]

    async def close(self):
        await self.http.aclose()
        self.client.close()


def opportunity(sf, name="Deal", amount=1000.0):
    return sf.create("Opportunity", {"Name": name, "Amount": amount, "StageName": "Prospecting", "CloseDate": "2027-01-31"},
                     user_id=PERSON)


async def test_events_reach_the_bridge_and_a_new_bridge_resumes_after_the_stored_replay_id(fake):
    sf, url = fake
    store = MemoryStore()
    opp = opportunity(sf)
    sf.create("Account", {"Name": "Not subscribed"}, user_id=PERSON)  # its channel is not ours
    fr = sf.create("Feature_Request__c", {"Name": "CSV export OPS-1", "Opportunity__c": opp.id}, user_id=PERSON)
    rig = Rig(url, store)
    assert await rig.bridge.run_once() == 2
    assert [(r["kind"], r["sobject"], r["record_id"]) for r in rig.records()] == [
        ("upsert", "Opportunity", opp.id), ("upsert", "Feature_Request__c", fr.id)]
    assert rig.emitted[0]["delivery_id"] == f"{cdc_channel('Opportunity')}:1"
    commit = [e["data"]["payload"]["ChangeEventHeader"]["commitTimestamp"] for e in sf.cdc_events]
    assert store.state == {"channels": {cdc_channel("Opportunity"): {"replay_id": 1, "commit_ms": commit[0]},
                                        cdc_channel("Feature_Request__c"): {"replay_id": 3, "commit_ms": commit[2]}}}
    await rig.close()

    sf.update("Opportunity", [opp.id], {"StageName": "Closed Lost"}, user_id=PERSON)
    again = Rig(url, store)  # a restarted bridge
    assert await again.bridge.run_once() == 1
    [record] = again.records()
    assert record["kind"] == "upsert" and record["fields"]["is_closed"] is True and record["changed_fields"] == ["is_closed", "probability", "stage"]
    assert await again.bridge.run_once() == 0, "nothing twice"
    await again.close()


async def test_long_poll_returns_as_soon_as_a_change_is_committed(fake):
    sf, url = fake
    rig = Rig(url, MemoryStore(), initial=REPLAY_NEW)
    await rig.bridge.start()
    pump = asyncio.create_task(rig.bridge.pump())
    await asyncio.sleep(0.3)
    assert not pump.done(), "connect is held while nothing is due"
    opp = opportunity(sf)
    assert await asyncio.wait_for(pump, 5) == 1
    assert rig.records()[0]["record_id"] == opp.id
    await rig.session.disconnect()
    await rig.close()


async def test_gap_and_overflow_events_reread_the_records(fake):
    sf, url = fake
    opp = opportunity(sf)
    other = opportunity(sf, "Other")
    rig = Rig(url, MemoryStore(), initial=REPLAY_NEW)
    await rig.bridge.start()
    sf.configure_cdc({"next_gaps": 1})
    sf.update("Opportunity", [opp.id], {"Amount": 2500.0}, user_id=PERSON)
    assert await rig.bridge.pump(wait=False) == 1
    gap, row = rig.records()
    assert gap["kind"] == "reread" and gap["reread_ids"] == [opp.id]
    assert row["kind"] == "upsert" and row["record_id"] == opp.id and row["fields"]["amount"] == 2500.0, "the gap's record re-read"
    rig.emitted.clear()
    sf.configure_cdc({"next_gaps": 1, "gap_kind": "overflow"})
    sf.update("Opportunity", [opp.id, other.id], {"StageName": "Qualification"}, user_id=PERSON)
    assert await rig.bridge.pump(wait=False) == 1
    overflow, *rows = rig.records()
    assert overflow["kind"] == "reread" and overflow["record_id"] is None
    assert {r["record_id"] for r in rows} == {opp.id, other.id} and all(r["fields"]["stage"] == "Qualification" for r in rows)
    await rig.session.disconnect()
    await rig.close()


async def test_a_forgotten_client_an_expired_token_and_a_lost_replay_id(fake):
    sf, url = fake
    store = MemoryStore()
    rig = Rig(url, store)
    opp = opportunity(sf)
    assert await rig.bridge.run_once() == 1
    await rig.bridge.start()
    sf.configure_cdc({"drop_clients": True})
    with pytest.raises(ReconnectNeeded):
        await rig.bridge.pump(wait=False)
    await rig.bridge.start()  # what run_forever does: handshake and subscribe from the stored ids
    sf.expire_tokens()
    with pytest.raises(AuthError):
        await rig.bridge.pump(wait=False)
    await rig.bridge.start()  # a new token
    sf.update("Opportunity", [opp.id], {"Amount": 10.0}, user_id=PERSON)
    assert await rig.bridge.pump(wait=False) == 1
    await rig.session.disconnect()

    # the stored id leaves the retention window: SOQL re-reads since its commit, then every retained event
    sf.update("Opportunity", [opp.id], {"Amount": 20.0}, user_id=PERSON)
    sf.update("Opportunity", [opp.id], {"Amount": 30.0}, user_id=PERSON)
    sf.configure_cdc({"expire_before": len(sf.cdc_events)})  # the Amount 20 event is gone
    rig.emitted.clear()
    assert await rig.bridge.run_once() == 1
    kinds = [(r["kind"], r["fields"].get("amount")) for r in rig.records()]
    assert kinds == [("upsert", 30.0), ("upsert", 30.0)], "the row re-read, then the retained event"
    await rig.close()


async def test_the_hub_own_writes_come_back_marked_via_hub(fake):
    sf, url = fake
    opp = opportunity(sf)
    rig = Rig(url, MemoryStore(), initial=REPLAY_NEW)
    await rig.bridge.start()
    await rig.client.update("Opportunity", opp.id, {"Description": "written by the hub"})
    sf.update("Opportunity", [opp.id], {"Amount": 5.0}, user_id=PERSON)
    assert await rig.bridge.pump(wait=False) == 2
    hub, person = rig.records()
    header = rig.emitted[0]["payload"]["data"]["payload"]["ChangeEventHeader"]
    assert header["changeOrigin"] == "com/salesforce/api/rest/62.0;client=switchboard" and header["commitUser"] == DEFAULT_API_USER_ID
    assert hub["via_hub"] is True and person["via_hub"] is False
    assert "Bearer" not in repr(rig.emitted) and SECRET not in repr(rig.emitted)
    await rig.session.disconnect()
    await rig.close()


async def test_cometd_refusals_have_salesforce_shapes(fake):
    sf, url = fake
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{url}/cometd/62.0", json=[{"channel": "/meta/handshake", "version": "1.0", "id": "1"}])
        assert r.json() == [{"channel": "/meta/handshake", "id": "1", "successful": False, "error": "403::Handshake denied",
                             "advice": {"reconnect": "none"}, "ext": {"sfdc": {"failureReason": "401::Request requires authentication"}}}]
        client = SalesforceClient(url, "app", SECRET)
        auth = {"Authorization": f"Bearer {await client.access_token()}"}
        client.close()
        hs = (await http.post(f"{url}/cometd/62.0/handshake", headers=auth, json=[{"channel": "/meta/handshake", "version": "1.0"}])).json()[0]
        assert hs["successful"] and hs["ext"]["replay"] is True and hs["advice"]["timeout"] == 110_000
        cid = hs["clientId"]
        bad = (await http.post(f"{url}/cometd/62.0", headers=auth, json=[{
            "channel": "/meta/subscribe", "clientId": cid, "subscription": "/data/OpportunityChangeEvent",
            "ext": {"replay": {"/data/OpportunityChangeEvent": 99}}}])).json()[0]
        assert not bad["successful"] and bad["error"].startswith("400::The replayId {99} you provided was invalid")
        unknown = (await http.post(f"{url}/cometd/62.0", headers=auth, json=[{"channel": "/meta/connect", "clientId": "nope",
                                                                              "connectionType": "long-polling"}])).json()[0]
        assert unknown["error"] == "403::Unknown client" and unknown["advice"]["reconnect"] == "handshake"
        old = await http.post(f"{url}/cometd/36.0", headers=auth, json=[{"channel": "/meta/handshake"}])
        assert old.status_code == 404


async def test_chatter_posts_through_the_client_and_the_fake_refusals(fake):
    sf, url = fake
    opp = opportunity(sf)
    client = SalesforceClient(url, "app", SECRET)
    try:
        first = await client.post_feed_item(opp.id, [{"type": "Mention", "id": PERSON}, {"type": "Text", "text": " shipped [ref a]"}])
        second = await client.post_feed_item(opp.id, [{"type": "Text", "text": "second"}])
        feed = await client.feed_elements(opp.id)
        assert [e["id"] for e in feed] == [second, first], "newest first"
        assert feed[1]["body"]["text"] == f"@{PERSON} shipped [ref a]" and feed[1]["parent"] == {"id": opp.id}
        assert feed[1]["actor"]["id"] == DEFAULT_API_USER_ID
        auth = {"Authorization": f"Bearer {await client.access_token()}"}
    finally:
        client.close()
    async with httpx.AsyncClient(base_url=f"{url}/services/data/v62.0/") as http:
        bad = await http.post("chatter/feed-elements", headers=auth, json={"feedElementType": "Bundle", "subjectId": opp.id,
                                                                         "body": {"messageSegments": [{"type": "Text", "text": "x"}]}})
        assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_API_INPUT"
        gone = await http.post("chatter/feed-elements", headers=auth, json={"feedElementType": "FeedItem", "subjectId": "006Hq0000000zzzAAA",
                                                                          "body": {"messageSegments": [{"type": "Text", "text": "x"}]}})
        assert gone.status_code == 404 and gone.json()[0]["errorCode"] == "NOT_FOUND"
        page = (await http.get(f"chatter/feeds/record/{opp.id}/feed-elements", headers=auth, params={"pageSize": 1})).json()
        assert len(page["elements"]) == 1 and page["nextPageUrl"].endswith("page=1&pageSize=1")
