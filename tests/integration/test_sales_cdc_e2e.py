"""Issue 4 through the CDC bridge alone, on the real broker: the poller never runs. Changes made in
the fake Salesforce reach the revenue totals on every Jira issue through ``switchboard cdc
salesforce`` (CometD long polling); a bridge SIGKILLed in the middle of the history and restarted
resumes from its stored replay ids without missing or double counting anything; gap events re-read
their records; every linked feature request shows the Jira key, status and fix version; and the
hub's own writes come back through CDC without being echoed."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys

import pytest

from connectors.salesforce.events import cdc_channel, to_18
from sandbox import salesforce as sf_fake
from sandbox.common import FaultRule
from tests.integration.conftest import eventually, read_topic
from tests.integration.test_sales_e2e import PERSON, recompute, sales, seed_deals, shown  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

CHANNELS = (cdc_channel("Opportunity"), cdc_channel("Feature_Request__c"))


class BridgeProcess:
    """``switchboard cdc salesforce`` as a user runs it (its own process group, log beside the hub's)."""

    def __init__(self, procs) -> None:
        self.procs, self.proc, self.log = procs, None, None

    def start(self) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}, **self.procs.env, "PYTHONUNBUFFERED": "1"}
        self.procs.log_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.procs.log_dir / "cdc.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "cdc", "salesforce"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        if self.log is not None:
            self.log.close()
            self.log = None

    def tail(self) -> str:
        path = self.procs.log_dir / "cdc.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else "(no log)"


def subscribed(sf) -> bool:
    return any(set(c.cursors) == set(CHANNELS) for c in sf.cometd_clients.values())


async def test_the_cdc_bridge_alone_feeds_revenue_resumes_after_a_kill_and_writes_back_without_echo(sales):
    sandbox, procs = sales
    jira, sf = sandbox.states["jira"], sandbox.states["salesforce"]
    bootstrap, prefix = procs.env["SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS"], procs.env["SWITCHBOARD_KAFKA__TOPIC_PREFIX"]
    rng = random.Random(4)
    issues = [jira.create_issue("OPS", f"Feature {i}", issue_type="Story") for i in range(3)]
    await jira.deliver()
    bridge = BridgeProcess(procs)
    await asyncio.to_thread(bridge.start)
    try:
        await eventually(lambda: subscribed(sf), timeout=60, what=f"the bridge subscribed; its log:\n{bridge.tail()}")
        opps = seed_deals(sf, issues, rng, deals=60, accounts=5)
        # one request names its issue only in its text: the hub links it and writes the key field itself
        texted_opp = sf.create("Opportunity", {"Name": "Texted deal", "Amount": 777, "StageName": "Prospecting", "CloseDate": "2027-05-05"},
                               user_id=PERSON).id
        texted = sf.create("Feature_Request__c", {"Name": f"Customers ask for {issues[2].key} badly", "Opportunity__c": texted_opp},
                           user_id=PERSON).id
        for issue in issues:
            await eventually(lambda issue=issue: shown(jira, issue.key) == recompute(sf, issue.key), timeout=90,
                             what=f"revenue on {issue.key} equal to the recomputation")

        async def history(steps: int, kill_at: int | None = None) -> None:
            for step in range(steps):
                if step == kill_at:
                    await asyncio.to_thread(bridge.stop, signal.SIGKILL)
                oid = rng.choice(opps)
                if sf.records["Opportunity"][oid].deleted_at_ms is not None:
                    sf.undelete("Opportunity", oid, user_id=PERSON)
                elif (roll := rng.random()) < 0.4:
                    sf.update("Opportunity", [oid], {"StageName": rng.choice(list(sf_fake.STAGES))}, user_id=PERSON)
                elif roll < 0.75:
                    sf.update("Opportunity", [oid], {"Amount": rng.randrange(500, 120000)}, user_id=PERSON)
                elif roll < 0.9:
                    sf.delete("Opportunity", oid, user_id=PERSON)
                else:
                    sf.update("Opportunity", [oid], {"StageName": "Prospecting"}, user_id=PERSON)
                await asyncio.sleep(0.03)

        # the bridge is SIGKILLed in the middle; the second half happens while it is down
        await history(120, kill_at=60)
        await asyncio.to_thread(bridge.start)
        await eventually(lambda: subscribed(sf), timeout=60, what=f"the bridge back; its log:\n{bridge.tail()}")
        # two changes whose events arrive as gap events (no fields): the bridge re-reads those records
        sf.configure_cdc({"next_gaps": 2})
        sf.update("Opportunity", [opps[0]], {"Amount": 4242}, user_id=PERSON)
        if sf.records["Opportunity"][opps[1]].deleted_at_ms is None:
            sf.update("Opportunity", [opps[1]], {"StageName": "Closed Lost"}, user_id=PERSON)
        for issue in issues:
            await eventually(lambda issue=issue: shown(jira, issue.key) == recompute(sf, issue.key), timeout=90,
                             what=f"revenue on {issue.key} after the history, the kill and the gaps")

        # every change event of both channels reached inbound.salesforce, and the stored replay ids are the newest
        async def delivered():
            envs = [v for _, v in await read_topic(bootstrap, f"{prefix}inbound.salesforce")]
            return {v["delivery_id"] for v in envs if (v.get("event_type") or "").startswith("salesforce:cdc:")}

        async def caught_up() -> tuple[set, set, dict, dict]:
            """(expected, delivered, newest replay ids, stored replay ids) once the bridge has everything (or 30 s)."""
            for _ in range(60):
                expected = {f"{e['channel']}:{e['data']['event']['replayId']}" for e in sf.cdc_events if e["channel"] in CHANNELS}
                got = await delivered()
                newest = {c: max(e["data"]["event"]["replayId"] for e in sf.cdc_events if e["channel"] == c) for c in CHANNELS}
                states = [v for k, v in await read_topic(bootstrap, f"{prefix}pollers.state") if k == b"salesforce-cdc"]
                stored = {c: v["replay_id"] for c, v in states[-1]["state"]["channels"].items()} if states else {}
                if expected <= got and stored == newest:
                    break
                await asyncio.sleep(0.5)
            return expected, got, newest, stored

        expected, got, newest, stored = await caught_up()
        assert expected <= got, f"missing change events: {sorted(expected - got)[:10]}"
        assert stored == newest, "the stored replay ids are the newest events'"

        # write-back: every linked feature request shows the key, the issue's status and its fix version
        jira.update_issue(issues[0].id, status="Done", fix_versions=["5.0"])
        await jira.deliver()

        def written_back(issue, status, fix):
            frs = [fr for fr in sf.records["Feature_Request__c"].values()
                   if fr.deleted_at_ms is None and issue.key in (fr.values.get("Jira_Key__c") or "")]
            return frs and all(fr.values["Jira_Key__c"] == issue.key and fr.values["Jira_Status__c"] == status
                               and fr.values["Jira_Fix_Version__c"] == fix for fr in frs)

        await eventually(lambda: written_back(issues[0], "Done", "5.0"), timeout=90, what=f"key, Done and 5.0 on {issues[0].key}'s requests")
        await eventually(lambda: written_back(issues[1], "To Do", None), timeout=30, what=f"key and To Do on {issues[1].key}'s requests")
        await eventually(lambda: sf.records["Feature_Request__c"][texted].values["Jira_Key__c"] == issues[2].key, timeout=30,
                         what="the key found in the text written to the key field")
        assert texted_opp in {o["id"] for o in jira.find(issues[2].key).properties["switchboard.revenue"]["opportunities"]}

        # loop safety: the hub's writes came back through CDC marked as the hub's (changeOrigin), and nothing echoes
        def patches():
            return sum(1 for c in sf.calls if c.method == "PATCH" and "/sobjects/Feature_Request__c/" in c.path)

        await asyncio.sleep(5)
        settled = patches()
        hub_events = [e for e in sf.cdc_events if e["channel"] == CHANNELS[1]
                      and e["data"]["payload"]["ChangeEventHeader"]["changeOrigin"].endswith(";client=switchboard")]
        assert len(hub_events) == settled > 0
        expected, got, _, _ = await caught_up()
        assert {f"{e['channel']}:{e['data']['event']['replayId']}" for e in hub_events} <= got, "the hub's own events were bridged"
        await asyncio.sleep(5)
        assert patches() == settled, "the hub echoed its own write-back"
        # the key the hub copied from the text is its mirror, not a person's link: removing it from the text unlinks
        sf.update("Feature_Request__c", [texted], {"Name": "Customers ask for CSV export"}, user_id=PERSON)
        await eventually(lambda: sf.records["Feature_Request__c"][texted].values["Jira_Key__c"] is None, timeout=60,
                         what="the hub's key cleared once the text no longer names it")
        await eventually(lambda: texted_opp not in {o["id"] for o in jira.find(issues[2].key).properties["switchboard.revenue"]["opportunities"]},
                         timeout=60, what="the texted opportunity left the issue")
        await eventually(lambda: shown(jira, issues[2].key) == recompute(sf, issues[2].key), timeout=60, what="totals after the unlink")
    finally:
        await asyncio.to_thread(bridge.stop)


def bridge_once(procs) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}, **procs.env}
    out = subprocess.run([sys.executable, "-m", "hub.cli", "cdc", "salesforce", "--once"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.parametrize("sales", [{"SWITCHBOARD_SALES__OWNER_NOTICE": "chatter"}], indirect=True)
async def test_owners_hear_of_the_resolution_by_one_chatter_post_each_even_after_a_lost_answer_and_a_restart(sales):
    sandbox, procs = sales
    jira, sf = sandbox.states["jira"], sandbox.states["salesforce"]
    issue = jira.create_issue("OPS", "Bulk export", issue_type="Story")
    await jira.deliver()
    owners = [to_18(f"005Hq00000Own{i:02d}") for i in range(3)]
    opps = {}
    for i, stage in enumerate(["Prospecting", "Qualification", "Needs Analysis", "Negotiation/Review", "Closed Lost", "Prospecting"]):
        oid = sf.create("Opportunity", {"Name": f"Deal {i}", "Amount": 1000 * (i + 1), "StageName": stage, "CloseDate": "2027-03-31",
                                        "OwnerId": owners[i % 3]}, user_id=PERSON).id
        sf.create("Feature_Request__c", {"Name": f"Export {i}", "Opportunity__c": oid, "Jira_Key__c": issue.key}, user_id=PERSON)
        opps[oid] = owners[i % 3]
    deleted = list(opps)[-1]
    sf.delete("Opportunity", deleted, user_id=PERSON)
    print(await asyncio.to_thread(bridge_once, procs))
    await eventually(lambda: shown(jira, issue.key) == recompute(sf, issue.key), timeout=90, what="revenue through the bridge")
    open_opps = {o for o in opps if o != deleted and not sf.records["Opportunity"][o].values["IsClosed"]}
    assert len(open_opps) == 4

    # the first post is made but its answer is lost: the hub must find it, not post again
    sf.faults.append(FaultRule(path="/services/data/v62.0/chatter/feed-elements", drop_after_processing=True, count=1))
    jira.update_issue(issue.id, status="Done", fix_versions=["7.1"])
    await jira.deliver()

    def posts():
        return [e for e in sf.feed_items if issue.key in e["body"]["text"]]

    await eventually(lambda: {p["parent"]["id"] for p in posts()} == open_opps, timeout=90, what="one Chatter post per open opportunity")
    assert not sf.faults, "the lost answer happened"
    for post in posts():
        mention = [s for s in post["body"]["messageSegments"] if s["type"] == "Mention"]
        assert [m["record"]["id"] for m in mention] == [opps[post["parent"]["id"]]], "the owner is mentioned"
        assert "7.1" in post["body"]["text"] and "[ref " in post["body"]["text"]
    await asyncio.to_thread(procs.kill, "worker")
    await asyncio.to_thread(procs.start_worker)
    await asyncio.to_thread(bridge_once, procs)
    await asyncio.sleep(6)
    assert len(posts()) == len(open_opps), "a lost answer, a restart or a re-read must not post twice"
    assert not [t for t in sf.records["Task"].values()], "Chatter instead of Tasks"
