"""Issue 2's acceptance, through the real broker and HTTP: signed Jira webhooks in, PagerDuty pages
and Slack messages out (to the sandbox fakes, through the real clients)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sandbox.common import FaultRule
from sandbox.jira import DEFAULT_ACTOR_NAME, JiraWebhookSender, issue_created, issue_updated
from tests.integration.conftest import JIRA_SECRET, PD_KEY, SLACK_TOKEN, eventually

pytestmark = pytest.mark.integration

DEDUP = "jira/example.atlassian.net/{}"
QUIET_S = 3.0  # after the expected effects: time for any duplicate to show up


def posts(stack, channel, *, replies=False):
    return [c for c in stack.slack.calls_to("/api/chat.postMessage")
            if c.status == 200 and (c.body or {}).get("channel") in (channel, f"#{channel}", stack_channel_id(channel))
            and bool((c.body or {}).get("thread_ts")) == replies]


def stack_channel_id(name):
    return {"incidents": "C0INCIDENTS", "legal-incidents": "C0LEGAL", "general": "C0GENERAL"}[name]


def top_messages(stack, channel):
    return stack.slack.history(stack_channel_id(channel))


def pd_events(stack, action, dedup=None):
    return [c for c in stack.pagerduty.calls_to("/v2/enqueue") if c.status == 202
            and c.body.get("event_action") == action and (dedup is None or c.body.get("dedup_key") == dedup)]


async def end_offsets(stack, name):
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap)
    await consumer.start()
    try:
        topic = stack.topic(name)
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def test_incident_pages_once_posts_once_and_follows_to_resolution(stack):
    status, _ = await stack.sender.send(issue_created(10001, "OPS-1", "OPS", "Checkout is down", priority="Highest"))
    assert status == 202
    dedup = DEDUP.format(10001)
    await eventually(lambda: pd_events(stack, "trigger", dedup) and top_messages(stack, "incidents"), what="page and message")

    await stack.sender.send(issue_updated(10001, "OPS-1", "OPS", "Checkout is down", priority="Highest",
                                          changes=[("status", "To Do", "In Progress")]))
    await stack.sender.send(issue_updated(10001, "OPS-1", "OPS", "Checkout is down", priority="Highest",
                                          changes=[("status", "In Progress", "Done")]))
    await eventually(lambda: pd_events(stack, "resolve", dedup), what="PagerDuty resolve")
    msg = top_messages(stack, "incidents")[0]
    await eventually(lambda: len(stack.slack.thread("C0INCIDENTS", msg.ts)) == 3, what="two thread replies")
    await asyncio.sleep(QUIET_S)

    assert len(pd_events(stack, "trigger", dedup)) == 1
    assert len(pd_events(stack, "acknowledge", dedup)) == 1
    assert len(pd_events(stack, "resolve", dedup)) == 1
    assert [i.status for i in stack.pagerduty.incidents_for(dedup)] == ["resolved"]
    assert len(top_messages(stack, "incidents")) == 1, "one message per incident"
    assert len(stack.slack.calls_to("/api/chat.update")) >= 1
    final = top_messages(stack, "incidents")[0]
    assert "Resolved" in final.text and "OPS-1" in final.text
    replies = [m.text for m in stack.slack.thread("C0INCIDENTS", msg.ts)[1:]]
    assert replies == [f"Status To Do → In Progress by {DEFAULT_ACTOR_NAME}", f"Status In Progress → Done by {DEFAULT_ACTOR_NAME}"]
    # the trigger names the issue and its severity, from the Highest priority
    trigger = pd_events(stack, "trigger", dedup)[0].body
    assert trigger["payload"]["severity"] == "critical" and "OPS-1: Checkout is down" == trigger["payload"]["summary"]


async def test_restricted_project_reaches_no_public_channel(stack):
    secret_summary = "Board approves acquisition of Contoso"
    await stack.sender.send(issue_created(20007, "LEGAL-7", "LEGAL", secret_summary, priority="Highest"))
    await stack.sender.send(issue_created(10005, "OPS-5", "OPS", "Public marker incident", priority="Highest"))
    await eventually(lambda: top_messages(stack, "legal-incidents") and top_messages(stack, "incidents"), what="both channels")
    await eventually(lambda: pd_events(stack, "trigger", DEDUP.format(20007)), what="legal page")
    await asyncio.sleep(QUIET_S)
    public = [m.text + repr(m.blocks) for m in top_messages(stack, "incidents")] + [m.text + repr(m.blocks) for m in top_messages(stack, "general")]
    assert all("LEGAL" not in t and "Contoso" not in t for t in public)
    assert "Contoso" in top_messages(stack, "legal-incidents")[0].text
    page = pd_events(stack, "trigger", DEDUP.format(20007))[0].body
    assert "Contoso" not in repr(page), "a restricted incident pages without its summary"


async def test_badly_signed_request_is_refused_and_writes_nothing(stack):
    before = await end_offsets(stack, "inbound.jira")
    forged = JiraWebhookSender(stack.sender.target_url, "not-the-secret")
    status, body = await forged.send(issue_created(10009, "OPS-9", "OPS", "Forged", priority="Highest"))
    unsigned = JiraWebhookSender(stack.sender.target_url, None)
    status2, _ = await unsigned.send(issue_created(10009, "OPS-9", "OPS", "Forged", priority="Highest"))
    assert (status, status2) == (401, 401)
    assert JIRA_SECRET not in body
    await asyncio.sleep(1.0)
    assert await end_offsets(stack, "inbound.jira") == before
    assert not pd_events(stack, "trigger", DEDUP.format(10009))


async def test_duplicate_delivery_is_processed_once(stack):
    payload = issue_created(10011, "OPS-11", "OPS", "Retried delivery", priority="Highest")
    await stack.sender.send(payload, delivery_id="dup-0001")
    await stack.sender.send(payload, delivery_id="dup-0001", retry=1)
    await eventually(lambda: pd_events(stack, "trigger", DEDUP.format(10011)), what="page")
    await asyncio.sleep(QUIET_S)
    assert len(pd_events(stack, "trigger", DEDUP.format(10011))) == 1
    assert len(posts(stack, "incidents")) == 1


async def test_slack_429_delays_but_does_not_lose_or_duplicate(stack):
    stack.slack.add_faults([FaultRule.from_json({"path": "/api/chat.postMessage", "status": 429, "retry_after": 2, "count": 2})])
    await stack.sender.send(issue_created(10021, "OPS-21", "OPS", "Rate limited", priority="Highest"))
    await eventually(lambda: top_messages(stack, "incidents"), what="the message after the 429s")
    await asyncio.sleep(QUIET_S)
    calls = stack.slack.calls_to("/api/chat.postMessage")
    limited = [c for c in calls if c.status == 429]
    ok = [c for c in calls if c.status == 200]
    assert len(limited) == 2 and len(ok) == 1
    assert len(top_messages(stack, "incidents")) == 1
    # no request before Retry-After elapsed
    times = [c.time for c in calls]
    for earlier, later in zip(times, times[1:]):
        assert later - earlier >= 2.0 - 0.05


async def test_connection_dropped_after_slack_accepted_the_post_is_not_posted_twice(stack):
    stack.slack.add_faults([FaultRule.from_json({"path": "/api/chat.postMessage", "drop_after_processing": True, "count": 1})])
    await stack.sender.send(issue_created(10031, "OPS-31", "OPS", "Flaky network", priority="Highest"))
    await eventually(lambda: top_messages(stack, "incidents"), what="the message")
    await eventually(lambda: stack.slack.calls_to("/api/conversations.history"), what="the reconciliation lookup")
    await asyncio.sleep(QUIET_S)
    assert len(top_messages(stack, "incidents")) == 1


async def test_worker_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(stack):
    n = 24
    ids = [30000 + i for i in range(n)]
    rng = random.Random(7)

    async def produce():
        for i in ids:
            status, _ = await stack.sender.send(issue_created(i, f"OPS-{i}", "OPS", f"Incident {i}", priority="Highest"))
            assert status == 202
            await asyncio.sleep(rng.uniform(0.01, 0.08))

    producer = asyncio.create_task(produce())
    # kill the worker once some pages went out and the stream is still flowing
    await eventually(lambda: len(pd_events(stack, "trigger")) >= 3, what="first pages")
    await asyncio.to_thread(stack.procs.kill, "worker")
    await producer
    t0 = time.monotonic()
    await stack.start_worker()
    try:
        await eventually(lambda: len({c.body["dedup_key"] for c in pd_events(stack, "trigger")}) == n, timeout=90, what="every incident paged")
        await eventually(lambda: len(top_messages(stack, "incidents")) >= n, timeout=90, what="every incident posted")
    except AssertionError as exc:  # say where the missing ones stopped: a hang and a loss look alike from here
        paged = {c.body["dedup_key"].rsplit("/", 1)[1] for c in pd_events(stack, "trigger")}
        posted = " ".join(m.text for m in top_messages(stack, "incidents"))
        missing = sorted(str(i) for i in ids if str(i) not in paged or f"OPS-{i}" not in posted)
        trail = await _trail(stack, missing)
        import shutil
        keep = Path(f"/tmp/switchboard-chaos-{int(time.time())}")
        shutil.copytree(stack.procs.log_dir, keep, dirs_exist_ok=True)
        raise AssertionError(f"{exc}\n{len(paged)}/{n} paged, {len(top_messages(stack, 'incidents'))}/{n} posted; "
                             f"missing {missing}; seen on topics: {trail}; logs kept in {keep}") from None
    recovery = time.monotonic() - t0
    await asyncio.sleep(QUIET_S)
    opened = stack.pagerduty.opened_per_dedup_key(PD_KEY)
    assert len(opened) == n and set(opened.values()) == {1}, "exactly one PagerDuty incident per Jira incident"
    texts = [m.text for m in top_messages(stack, "incidents")]
    assert len(texts) == n, f"{len(texts) - n} duplicate Slack posts"
    print(f"\nworker restart: all {n} incidents delivered {recovery:.1f}s after the restart began")


async def test_secrets_never_reach_topics_logs_or_responses(stack):
    """Every secret of the stack is a canary value: none may appear anywhere the hub writes."""
    status, body = await stack.sender.send(issue_created(10041, "OPS-41", "OPS", "Canary check", priority="Highest"))
    forged_status, forged_body = await JiraWebhookSender(stack.sender.target_url, "wrong").send(
        issue_created(10042, "OPS-42", "OPS", "x", priority="Highest"))
    await eventually(lambda: pd_events(stack, "trigger", DEDUP.format(10041)) and top_messages(stack, "incidents"), what="effects")
    await asyncio.sleep(1.5)
    canaries = [JIRA_SECRET, SLACK_TOKEN, PD_KEY]
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = 0
    try:
        topics = [t for t in await consumer.topics() if t.startswith(stack.prefix)]
        assert len(topics) >= 10
        consumer.subscribe(topics)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and seen:
                break
            for records in batch.values():
                for rec in records:
                    seen += 1
                    blob = (rec.key or b"") + (rec.value or b"")
                    for canary in canaries:
                        assert canary.encode() not in blob, f"secret found on {rec.topic}"
    finally:
        await consumer.stop()
    assert seen > 5
    logs = stack.procs.tail("worker", 100000) + stack.procs.tail("receiver", 100000)
    for canary in canaries:
        assert canary not in logs and canary not in body and canary not in forged_body


async def test_bad_json_and_oversized_bodies_are_refused_before_anything_is_stored(stack):
    import aiohttp

    from sandbox.jira import sign

    before = await end_offsets(stack, "inbound.jira")
    url = stack.sender.target_url

    async def post(body: bytes):
        headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(JIRA_SECRET, body)}
        async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
            return r.status

    assert await post(b'{"webhookEvent": "jira:issue_created", "issue": {') == 400  # truncated
    assert await post(b"\xff\xfe not utf-8") == 400
    assert await post(b"[1, 2, 3]") == 400  # JSON, but not an object
    assert await post(b"[" * 5000 + b"]" * 5000) == 400  # nested deeper than the limit
    assert await post(b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}') == 413
    # a supported type without an issue id: accepted, and kept on the dead-letter topic with the reason
    assert await post(b'{"webhookEvent": "jira:issue_updated", "timestamp": 1}') == 202
    await asyncio.sleep(0.5)
    assert await end_offsets(stack, "inbound.jira") == before


async def test_dead_letter_is_replayed_by_the_replay_command(stack):
    import os
    import subprocess
    import sys

    # PagerDuty refuses the first trigger for good (400): the action is dead-lettered with the reason
    stack.pagerduty.add_faults([FaultRule.from_json({"path": "/v2/enqueue", "status": 400, "count": 1})])
    await stack.sender.send(issue_created(10051, "OPS-51", "OPS", "Needs a replay", priority="Highest"))
    await eventually(lambda: top_messages(stack, "incidents"), what="the Slack message (unaffected)")
    await eventually(lambda: [c for c in stack.pagerduty.calls_to("/v2/enqueue") if c.status == 400], what="the refused trigger")
    # (topics are read through a fresh consumer: wait until the dead letter is there)
    deadline = time.monotonic() + 20
    while await end_offsets(stack, "deadletter") == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert not pd_events(stack, "trigger", DEDUP.format(10051))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}, **stack.procs.env}
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "hub.cli", "replay", "--stage", "deliver.pagerduty"],
                                  env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "replayed 1 dead letter" in out.stdout
    await eventually(lambda: pd_events(stack, "trigger", DEDUP.format(10051)), what="the replayed trigger")
    # replaying again replays nothing: the replay group remembers
    again = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "hub.cli", "replay"], env=env, capture_output=True, text=True, timeout=60)
    assert "replayed 0 dead letter" in again.stdout
    await asyncio.sleep(QUIET_S)
    assert len(pd_events(stack, "trigger", DEDUP.format(10051))) == 1


async def _trail(stack, issue_ids):
    """For each issue id: on which topics of the incident path a record for it exists."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found = {i: set() for i in issue_ids}
    try:
        names = ["inbound.jira", "events.tracker", "actions.pagerduty", "actions.slack", "actions.results", "deadletter"]
        consumer.subscribe([stack.topic(t) for t in names])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            for tp, records in batch.items():
                for rec in records:
                    blob = (rec.key or b"") + (rec.value or b"")
                    for i in issue_ids:
                        if i.encode() in blob:
                            where = tp.topic[len(stack.prefix):]
                            if where in ("actions.pagerduty", "actions.slack"):
                                where = f"{where}[{tp.partition}]@{rec.offset}"
                            found[i].add(where)
    finally:
        await consumer.stop()
    # where the worker's group stands on the action topic: a committed offset past an action with
    # no result means a commit ran ahead of the processing; one before it means a stalled partition
    group = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=f"{stack.prefix}switchboard", enable_auto_commit=False)
    await group.start()
    try:
        tps = [TopicPartition(stack.topic(t), p) for t in ("actions.pagerduty", "actions.slack") for p in range(3)]
        committed = {f"{tp.topic[len(stack.prefix):]}[{tp.partition}]": await group.committed(tp) for tp in tps}
        ends = {f"{tp.topic[len(stack.prefix):]}[{tp.partition}]": off for tp, off in (await group.end_offsets(tps)).items()}
    finally:
        await group.stop()
    return {"records": {i: sorted(t) for i, t in found.items()}, "committed": committed, "end": ends}
