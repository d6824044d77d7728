"""Issue 4, first slice, through the real broker: Salesforce opportunities and feature requests
polled from the fake Salesforce, linked to Jira issues, revenue at stake written on each issue and
equal to a straightforward recomputation from the fake's final state; one Task per owner when the
issue is resolved, also after a worker restart and another poll."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest

from hub.stack import HubProcesses, free_port, hub_env, sandbox_env
from sandbox import salesforce as sf_fake
from sandbox.jira import JiraState
from sandbox.server import start_sandbox
from sandbox.salesforce import SalesforceState
import shutil

from tests.integration.conftest import eventually, reset_group_to_start

pytestmark = pytest.mark.integration

JIRA_SECRET = "canary-jira-secret-sales"
SF_SECRET = "canary-salesforce-client-secret"
RATES = {"EUR": 1.1}
PERSON = sf_fake.DEFAULT_PERSON_USER_ID
CENT = Decimal("0.01")


@pytest.fixture
async def sales(kafka_bootstrap, tmp_path, request):
    """The hub with the sales path on, the fakes, receiver and worker; extra settings through indirect parametrisation."""
    extra_env = getattr(request, "param", None) or {}
    port = free_port()
    sandbox = await start_sandbox(tls=True, states={
        "jira": JiraState(webhook_target=f"http://127.0.0.1:{port}/webhooks/jira", webhook_secret=JIRA_SECRET, webhooks_enabled=True),
        "salesforce": SalesforceState(clients={"switchboard-app": SF_SECRET}),
    })
    sandbox.states["jira"].site = sandbox.urls["jira"]
    env = hub_env(bootstrap=kafka_bootstrap, prefix=f"f{uuid.uuid4().hex[:8]}.", data_dir=tmp_path / "data", receiver_port=port,
                  jira_secret=JIRA_SECRET, ca_file=sandbox.ca_file, extra={
        "SWITCHBOARD_KAFKA__PARTITIONS": "3", "SWITCHBOARD_SLACK__DRY_RUN": "true", "SWITCHBOARD_PAGERDUTY__DRY_RUN": "true",
        **sandbox_env(sandbox.urls, jira_email="switchboard@example.com", jira_token="sandbox-jira-api-token",
                      zendesk_email="x@example.com", zendesk_token="unused", zendesk_secret="unused", zendesk_hub_user_id=1),
        "SWITCHBOARD_SALES__ENABLED": "true", "SWITCHBOARD_SALES__RATES": '{"EUR": 1.1}', "SWITCHBOARD_SALES__PROJECT_KEYS": '["OPS"]',
        "SWITCHBOARD_SALESFORCE__INSTANCE_URL": sandbox.urls["salesforce"], "SWITCHBOARD_SALESFORCE__CLIENT_ID": "switchboard-app",
        "SWITCHBOARD_SALESFORCE__CLIENT_SECRET": SF_SECRET, "SWITCHBOARD_SALESFORCE__HUB_USER_ID": sf_fake.DEFAULT_API_USER_ID,
        "SWITCHBOARD_SALESFORCE__MULTI_CURRENCY": "true", "SWITCHBOARD_SALESFORCE__OVERLAP_S": "5", **extra_env,
    })
    procs = HubProcesses(env=env, log_dir=tmp_path / "logs", receiver_port=port)
    try:
        await asyncio.to_thread(procs.start_receiver)
        await asyncio.to_thread(procs.start_worker)
        yield sandbox, procs
    finally:
        await asyncio.to_thread(procs.stop_all)
        await sandbox.stop()


async def sales_lag(bootstrap: str, prefix: str, app_id: str = "switchboard") -> bool:
    """True once the worker's group has committed the end of every sales topic (nothing left to replay)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.kafka_admin import partition_count

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{prefix}{app_id}", enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [f"{prefix}{t}" for t in ("events.sales", "sales.by_issue", "sales.by_opportunity", "sales.by_feature_request")]
        tps = [TopicPartition(t, p) for t in topics for p in range(await partition_count(bootstrap, t))]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if ends[tp] and (committed or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def eventually_async(check, timeout: float, what: str, interval: float = 1.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def poll(procs):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}, **procs.env}
    out = subprocess.run([sys.executable, "-m", "hub.cli", "poller", "salesforce", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def recompute(sf: SalesforceState, issue_key: str) -> dict:
    """Revenue at stake straight from the fake's final records: open, undeleted opportunities that an
    undeleted feature request naming the key links to."""
    opp_ids = {fr.values.get("Opportunity__c") for fr in sf.records["Feature_Request__c"].values()
               if fr.deleted_at_ms is None and issue_key in (fr.values.get("Jira_Key__c") or "")}
    totals: dict[str, dict] = {}
    for oid in opp_ids:
        rec = sf.records["Opportunity"].get(oid)
        if rec is None or rec.deleted_at_ms is not None or rec.values.get("IsClosed"):
            continue
        v = rec.values
        cur = v.get("CurrencyIsoCode") or "USD"
        amount = Decimal(str(v.get("Amount") or 0)).quantize(CENT)
        weighted = (amount * Decimal(str(v.get("Probability") or 0)) / 100).quantize(CENT, ROUND_HALF_UP)
        t = totals.setdefault(cur, {"count": 0, "amount": Decimal(0), "weighted": Decimal(0)})
        t["count"] += 1
        t["amount"] += amount
        t["weighted"] += weighted
    return {c: {"count": t["count"], "amount": float(t["amount"]), "weighted": float(t["weighted"])} for c, t in sorted(totals.items())}


def shown(jira: JiraState, issue_key: str) -> dict | None:
    prop = jira.find(issue_key).properties.get("switchboard.revenue")
    return prop and prop["totals"]


def seed_deals(sf, issues, rng: random.Random, *, deals: int, accounts: int) -> list[str]:
    """``deals`` open opportunities in two currencies over ``accounts`` accounts, each asked for by one
    or two of ``issues`` through a feature request naming the issue's key; returns their ids."""
    account_ids = [sf.create("Account", {"Name": f"Account {i}"}, user_id=PERSON).id for i in range(accounts)]
    stages = [s for s in sf_fake.STAGES if not s.startswith("Closed")]
    opps = []
    for i in range(deals):
        opp = sf.create("Opportunity", {"Name": f"Deal {i}", "Amount": rng.randrange(1000, 90000), "StageName": rng.choice(stages),
                                        "CloseDate": f"2027-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}", "AccountId": rng.choice(account_ids),
                                        "CurrencyIsoCode": rng.choice(["USD", "EUR"])}, user_id=PERSON).id
        opps.append(opp)
        for issue in rng.sample(issues, rng.choice([1, 1, 2])):
            sf.create("Feature_Request__c", {"Name": f"FR {i} {issue.key}", "Opportunity__c": opp, "Jira_Key__c": issue.key}, user_id=PERSON)
    return opps


async def test_revenue_at_stake_equals_a_recomputation_through_history_restart_and_tasks_once(sales):
    sandbox, procs = sales
    jira, sf = sandbox.states["jira"], sandbox.states["salesforce"]
    rng = random.Random(42)
    issues = [jira.create_issue("OPS", f"Feature {i}", issue_type="Story") for i in range(3)]
    await jira.deliver()
    opps = seed_deals(sf, issues, rng, deals=200, accounts=8)
    await asyncio.to_thread(poll, procs)
    for issue in issues:
        await eventually(lambda issue=issue: shown(jira, issue.key) == recompute(sf, issue.key), timeout=90,
                         what=f"revenue on {issue.key} equal to the recomputation")

    # history: stage changes (some to Closed Lost / Won), amount edits, deletes, undeletes
    deleted = []
    for step in range(250):
        oid = rng.choice(opps)
        if sf.records["Opportunity"][oid].deleted_at_ms is not None:
            sf.undelete("Opportunity", oid, user_id=PERSON)
            continue
        roll = rng.random()
        if roll < 0.35:
            sf.update("Opportunity", [oid], {"StageName": rng.choice(list(sf_fake.STAGES))}, user_id=PERSON)
        elif roll < 0.7:
            sf.update("Opportunity", [oid], {"Amount": rng.randrange(500, 120000)}, user_id=PERSON)
        elif roll < 0.85:
            sf.delete("Opportunity", oid, user_id=PERSON)
            deleted.append(oid)
        else:
            sf.update("Opportunity", [oid], {"StageName": "Prospecting"}, user_id=PERSON)  # reopened
    await asyncio.sleep(1.1)  # SystemModstamp has second precision: let the history settle before polling
    await asyncio.to_thread(poll, procs)
    for issue in issues:
        await eventually(lambda issue=issue: shown(jira, issue.key) == recompute(sf, issue.key), timeout=90,
                         what=f"revenue on {issue.key} after the history")
    prop = jira.find(issues[0].key).properties["switchboard.revenue"]
    assert set(prop["totals"]) <= {"USD", "EUR"} and (prop["converted"] is None or prop["converted"]["currency"] == "USD")

    # resolve one issue: every open linked opportunity's owner gets one Task
    target = issues[0]
    jira.update_issue(target.id, status="Done", fix_versions=["5.0"])
    await jira.deliver()

    def open_linked():
        ids = {fr.values.get("Opportunity__c") for fr in sf.records["Feature_Request__c"].values()
               if fr.deleted_at_ms is None and target.key in (fr.values.get("Jira_Key__c") or "")}
        return {o for o in ids if sf.records["Opportunity"][o].deleted_at_ms is None and not sf.records["Opportunity"][o].values.get("IsClosed")}

    def tasks():
        return [t for t in sf.records["Task"].values() if target.key in (t.values.get("Subject") or "")]

    expected = open_linked()
    assert expected
    await eventually(lambda: {t.values["WhatId"] for t in tasks()} == expected, timeout=90, what="one Task per open opportunity")
    await asyncio.to_thread(procs.kill, "worker")
    await asyncio.to_thread(procs.start_worker)
    await asyncio.to_thread(poll, procs)
    await asyncio.sleep(6)
    assert len(tasks()) == len(expected), "a restart or a re-poll must not notify twice"
    # replay every topic from offset 0 with an empty local store: the same totals, no new Task
    await asyncio.to_thread(procs.stop, "worker")
    await reset_group_to_start(procs.env["SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS"], procs.env["SWITCHBOARD_KAFKA__TOPIC_PREFIX"])
    shutil.rmtree(procs.env["SWITCHBOARD_DATA_DIR"], ignore_errors=True)
    final = {issue.key: recompute(sf, issue.key) for issue in issues}
    assert all(shown(jira, key) == totals for key, totals in final.items())
    regressions: list = []

    async def watch():  # the Jira view was final before the replay: any other value shown is a regression
        while True:
            regressions.extend((key, shown(jira, key)) for key in final if shown(jira, key) != final[key])
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.to_thread(procs.start_worker)
        bootstrap, prefix = procs.env["SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS"], procs.env["SWITCHBOARD_KAFKA__TOPIC_PREFIX"]
        await eventually_async(lambda: sales_lag(bootstrap, prefix), timeout=180, what="the replay consumed to the end")
        await asyncio.sleep(3)
    finally:
        watcher.cancel()
    assert not regressions, f"the revenue view moved during the replay: {regressions[:3]}"
    for issue in issues:
        assert shown(jira, issue.key) == recompute(sf, issue.key)
    assert len(tasks()) == len(expected), "a replay from the start must not notify again"
    assert all("[ref " in t.values["Description"] for t in tasks())
