"""The fault-injection suite's shared harness: a scripted incident workload, a driver that delivers
it the way Jira does, and an audit of what the fakes received.

The workload is ``incidents × 5`` signed Jira webhooks. Every incident lives one lifecycle::

    created (To Do, Highest, "… rev 0") → summary "… rev 1" → To Do → In Progress
                                        → summary "… rev 2" → In Progress → Done

Every tenth incident is in the restricted LEGAL project (summary ``CONFIDENTIAL-<id> …``): it goes
to ``#legal-incidents`` and pages, and must never show up in a public channel.

The driver sends each incident's events in order (a few hundred incidents in flight) and retries a
delivery with the same delivery id, like Jira, until it is answered 2xx: a 503 from a receiver that
cannot reach Kafka, or a dropped connection from a killed receiver, is retried. What was answered
2xx is *accepted*: the audit counts an accepted event as lost when its effect is missing.

The audit reads only the fakes (what a person would see in Slack and PagerDuty):

``lost``              accepted events whose effect is missing: the message and page for a creation,
                      the message showing at least that revision for a summary change, the thread
                      reply (and for Done the resolved page and message) for a transition
``duplicate_pages``   incidents PagerDuty opened beyond one per dedup key (its own dedup rule)
``duplicate_posts``   top-level Slack messages beyond one per incident and channel, plus thread
                      replies beyond one per transition
``order_violations``  a chat.update or thread reply before its message exists (Slack answered
                      ``message_not_found``, or a reply older than its parent or without one), an
                      update showing an older revision or lifecycle state than the one before it,
                      or thread replies out of transition order
``leaks``             any Slack call to a public channel carrying a restricted project's key or text
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from sandbox.jira import DEFAULT_ACTOR_NAME, encode, issue_created, issue_updated, sign

SITE_DEDUP = "jira/example.atlassian.net/{}"
PUBLIC_CHANNELS = ("C0INCIDENTS", "C0GENERAL")
CHANNEL_OF = {"OPS": "C0INCIDENTS", "LEGAL": "C0LEGAL"}
STEPS_PER_INCIDENT = 5
_REV = re.compile(r"rev (\d+)")
_RANK = {"Triggered": 0, "Acknowledged": 1, "Resolved": 2}


@dataclass
class Incident:
    issue_id: int
    project: str
    run: str

    @property
    def key(self) -> str:
        return f"{self.project}-{self.issue_id}"

    @property
    def dedup(self) -> str:
        return SITE_DEDUP.format(self.issue_id)

    @property
    def restricted(self) -> bool:
        return self.project == "LEGAL"

    def summary(self, rev: int) -> str:
        word = f"CONFIDENTIAL-{self.issue_id}" if self.restricted else f"Incident {self.issue_id}"
        return f"{word} rev {rev}"

    def step(self, n: int, t0_ms: int) -> tuple[str, dict[str, Any]]:
        """The ``n``-th event (0-4) of this incident: ``(delivery id, payload)``."""
        at = t0_ms + n * 1000
        k, p, i = self.key, self.project, self.issue_id
        if n == 0:
            payload = issue_created(i, k, p, self.summary(0), priority="Highest", timestamp_ms=at)
        elif n == 1:
            payload = issue_updated(i, k, p, self.summary(1), priority="Highest", status="To Do", timestamp_ms=at,
                                    changes=[("summary", self.summary(0), self.summary(1))])
        elif n == 2:
            payload = issue_updated(i, k, p, self.summary(1), priority="Highest", timestamp_ms=at,
                                    changes=[("status", "To Do", "In Progress")])
        elif n == 3:
            payload = issue_updated(i, k, p, self.summary(2), priority="Highest", status="In Progress", timestamp_ms=at,
                                    changes=[("summary", self.summary(1), self.summary(2))])
        else:
            payload = issue_updated(i, k, p, self.summary(2), priority="Highest", timestamp_ms=at,
                                    changes=[("status", "In Progress", "Done")])
        return f"chaos-{self.run}-{i}-{n}", payload


@dataclass
class Workload:
    """``events`` webhooks (rounded up to whole incidents) for incidents numbered from ``first_id``."""

    events: int
    first_id: int = 500_000
    run: str = "r"
    incidents: list[Incident] = field(default_factory=list)
    accepted: dict[int, int] = field(default_factory=dict)  # issue id -> events answered 2xx (in order)
    t0_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def __post_init__(self) -> None:
        count = max(1, -(-self.events // STEPS_PER_INCIDENT))
        self.incidents = [Incident(self.first_id + n, "LEGAL" if n % 10 == 9 else "OPS", self.run) for n in range(count)]

    @property
    def total(self) -> int:
        return len(self.incidents) * STEPS_PER_INCIDENT

    @property
    def accepted_total(self) -> int:
        return sum(self.accepted.values())


@dataclass
class DriveStats:
    sent: int = 0
    accepted: int = 0
    retried: int = 0
    statuses: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


class Driver:
    """Delivers a :class:`Workload` to the receiver like Jira: in order per issue, retried until 2xx.

    ``steps`` limits each incident to its first steps (a scenario may send the rest later);
    ``pace_s`` spaces the deliveries of one incident. ``stop_after`` ends the run once that many
    deliveries were accepted (the rest stay unsent).
    """

    def __init__(self, url: str, secret: str, workload: Workload, *, concurrency: int = 48, retry_s: float = 0.5,
                 pace_s: float = 0.0, seed: int = 1) -> None:
        self.url, self.secret, self.workload = url, secret, workload
        self.concurrency, self.retry_s, self.pace_s = concurrency, retry_s, pace_s
        self.rng = random.Random(seed)
        self.stats = DriveStats()

    async def run(self, steps: Iterable[int] = range(STEPS_PER_INCIDENT), incidents: list[Incident] | None = None) -> DriveStats:
        steps = list(steps)
        queue: asyncio.Queue[Incident] = asyncio.Queue()
        for inc in incidents or self.workload.incidents:
            queue.put_nowait(inc)
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def worker() -> None:
                while not queue.empty():
                    inc = queue.get_nowait()
                    for n in steps:
                        await self._deliver(session, inc, n)
                        if self.pace_s:
                            await asyncio.sleep(self.rng.uniform(0, 2 * self.pace_s))
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        self.stats.finished = time.monotonic()
        return self.stats

    async def _deliver(self, session: aiohttp.ClientSession, inc: Incident, n: int) -> None:
        delivery_id, payload = inc.step(n, self.workload.t0_ms + (inc.issue_id - self.workload.first_id))
        body = encode(payload)
        retry = 0
        while True:
            headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery_id,
                       "X-Hub-Signature": sign(self.secret, body)}
            if retry:
                headers["X-Atlassian-Webhook-Retry"] = str(retry)
            self.stats.sent += 1
            try:
                async with session.post(self.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                status = 0  # connection refused or dropped: unknown, so retried like any failure
            self.stats.statuses[status] += 1
            if 200 <= status < 300:
                self.workload.accepted[inc.issue_id] = max(self.workload.accepted.get(inc.issue_id, 0), n + 1)
                self.stats.accepted += 1
                return
            if 400 <= status < 500 and status not in (408, 429):
                raise AssertionError(f"delivery {delivery_id} refused with {status}")
            retry += 1
            self.stats.retried += 1
            await asyncio.sleep(self.retry_s * (1 + self.rng.random()))


# --------------------------------------------------------------------------- the audit


@dataclass
class Counts:
    lost: int = 0
    duplicate_pages: int = 0
    duplicate_posts: int = 0
    order_violations: int = 0
    leaks: int = 0

    def total(self) -> int:
        return self.lost + self.duplicate_pages + self.duplicate_posts + self.order_violations + self.leaks

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Audit:
    counts: Counts
    examples: dict[str, list[str]]

    @property
    def clean(self) -> bool:
        return self.counts.total() == 0


def _label(text: str) -> tuple[int, int]:
    """(lifecycle rank, revision) a message text shows; -1 when it does not say."""
    head = text.split(":", 1)[0]
    rank = next((r for word, r in _RANK.items() if word in head), -1)
    rev = _REV.search(text)
    return rank, int(rev.group(1)) if rev else -1


def audit(slack, pagerduty, workload: Workload, *, routing_key: str | None = None,
          incidents: list[Incident] | None = None) -> Audit:
    """Count what the fakes show against what was accepted (see the module docstring)."""
    c = Counts()
    ex: dict[str, list[str]] = defaultdict(list)
    incidents = incidents if incidents is not None else workload.incidents
    by_id = {str(i.issue_id): i for i in workload.incidents}

    def note(kind: str, what: str) -> None:
        if len(ex[kind]) < 8:
            ex[kind].append(what)

    # Slack: top-level messages per incident (by the metadata the hub posts with), their threads
    tops: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for cid, msgs in slack.messages.items():
        for m in msgs.values():
            if m.is_reply:
                parent = msgs.get(m.thread_ts or "")
                if parent is None or parent.ts > m.ts:
                    c.order_violations += 1
                    note("order_violations", f"reply {m.ts} in {cid} before/without its parent {m.thread_ts}")
                continue
            key = ((m.metadata or {}).get("event_payload") or {}).get("message_key", "")
            issue_id = key.rsplit("/", 1)[-1]
            if issue_id in by_id:
                tops[(cid, issue_id)].append(m)
    for (cid, issue_id), found in tops.items():
        if len(found) > 1:
            c.duplicate_posts += len(found) - 1
            note("duplicate_posts", f"{by_id[issue_id].key} posted {len(found)} times in {cid}")
        for m in found:
            texts = [slack.messages[cid][r].text for r in m.replies]
            if len(texts) != len(set(texts)):
                c.duplicate_posts += len(texts) - len(set(texts))
                note("duplicate_posts", f"{by_id[issue_id].key}: duplicate thread replies {texts}")
            if "In Progress → Done" in " ".join(texts) and texts.index(next(t for t in texts if "In Progress → Done" in t)) < \
                    next((k for k, t in enumerate(texts) if "To Do → In Progress" in t), -1):
                c.order_violations += 1
                note("order_violations", f"{by_id[issue_id].key}: thread replies out of order {texts}")

    # Slack call log: updates before their message, revisions or states going backwards, leaks
    shown: dict[tuple[str, str], tuple[int, int]] = {}
    ts_channel_issue: dict[tuple[str, str], str] = {}
    for (cid, issue_id), found in tops.items():
        for m in found:
            ts_channel_issue[(cid, m.ts)] = issue_id
    restricted_marks = [(i.key, f"CONFIDENTIAL-{i.issue_id}") for i in workload.incidents if i.restricted]
    for call in slack.calls:
        body = call.body if isinstance(call.body, dict) else {}
        channel = str(body.get("channel") or "")
        if call.path in ("/api/chat.postMessage", "/api/chat.update") and channel in PUBLIC_CHANNELS + ("#incidents", "#general", "incidents", "general"):
            blob = repr(body)
            for key, mark in restricted_marks:
                if mark in blob or f"{key}" in blob:
                    c.leaks += 1
                    note("leaks", f"{key} reached {channel} ({call.path})")
        if call.path != "/api/chat.update" or call.status != 200:
            continue
        if call.error in ("message_not_found", "thread_not_found"):
            c.order_violations += 1
            note("order_violations", f"chat.update of {body.get('ts')} in {channel} before the message existed")
            continue
        if call.error:
            continue
        issue_id = ts_channel_issue.get((channel, str(body.get("ts"))))
        if issue_id is None:
            continue
        now = _label(str(body.get("text") or ""))
        before = shown.get((channel, issue_id))
        if before is not None and (now[0] < before[0] or now[1] < before[1]):
            c.order_violations += 1
            note("order_violations", f"{by_id[issue_id].key}: update went from {before} to {now} (state rank, rev) "
                                     f"at {call.time:.3f} (call {call.seq})")
        shown[(channel, issue_id)] = max(before or now, now)

    # PagerDuty: one incident per dedup key
    opened = pagerduty.opened_per_dedup_key(routing_key)
    wanted = {i.dedup for i in workload.incidents}
    for dedup, n in opened.items():
        if dedup in wanted and n > 1:
            c.duplicate_pages += n - 1
            note("duplicate_pages", f"{dedup} opened {n} incidents")
    pd_status = {i.dedup_key: i.status for i in pagerduty.incidents}

    # lost: per incident, the accepted events whose effect is missing
    for inc in incidents:
        done = workload.accepted.get(inc.issue_id, 0)
        if not done:
            continue
        cid = CHANNEL_OF[inc.project]
        found = tops.get((cid, str(inc.issue_id)), [])
        msg = found[0] if found else None
        replies = [slack.messages[cid][r].text for r in msg.replies] if msg else []
        rank, rev = _label(msg.text) if msg else (-1, -1)
        status = pd_status.get(inc.dedup)
        missing = []
        if msg is None or status is None:
            missing.append("created")
        if done >= 2 and rev < 1:
            missing.append("rev 1")
        if done >= 3 and not any("To Do → In Progress" in t for t in replies):
            missing.append("in progress")
        if done >= 4 and rev < 2:
            missing.append("rev 2")
        if done >= 5 and (not any("In Progress → Done" in t for t in replies) or status != "resolved" or rank != 2):
            missing.append("done")
        if missing:
            c.lost += len(missing)
            note("lost", f"{inc.key}: {', '.join(missing)} (accepted {done}, shows rank/rev {rank}/{rev}, page {status})")
    return Audit(c, dict(ex))


async def settle(check: Callable[[], Audit], *, timeout: float, quiet_s: float = 3.0,
                 since: float | None = None) -> tuple[Audit, float | None]:
    """Wait until nothing is lost (or ``timeout``), then ``quiet_s`` for late duplicates.

    Returns the final audit and the recovery time: seconds from ``since`` (a ``time.monotonic()``
    reading, the end of the fault; default now) to zero lost, ``None`` if it never got there.
    """
    began = time.monotonic()
    since = began if since is None else since
    converged: float | None = None
    while time.monotonic() - began < timeout:
        result = check()  # on the loop: the fakes' state is only touched from it
        if result.counts.lost == 0:
            converged = time.monotonic() - since
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(quiet_s)
    return check(), converged


__all__ = ["Audit", "Counts", "DEFAULT_ACTOR_NAME", "Driver", "Incident", "Workload", "audit", "settle"]


# --------------------------------------------------------------------------- Kafka helpers


INCIDENT_PATH_TOPICS = ("inbound.jira", "events.tracker", "actions.pagerduty", "actions.slack")


async def group_lag(bootstrap: str, group: str, prefix: str) -> int:
    """Records not yet committed by ``group`` on the incident path's topics under ``prefix``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.kafka_admin import partition_count

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [f"{prefix}{name}" for name in INCIDENT_PATH_TOPICS]
        tps = [TopicPartition(t, p) for t in topics for p in range(await partition_count(bootstrap, t))]
        if not tps:
            raise AssertionError(f"no topics under {prefix!r}: the lag would be 0 for nothing")
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            committed = await consumer.committed(tp)
            lag += ends[tp] - (committed or 0)
        return lag
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, *, idle_s: float = 2.0) -> list[Any]:
    """Every record of ``topic`` from offset 0 (no group), values decoded as JSON where they parse."""
    import json as _json

    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                return out
            for records in batch.values():
                for rec in records:
                    try:
                        out.append(_json.loads(rec.value))
                    except ValueError:
                        out.append(rec.value)
    finally:
        await consumer.stop()


async def produce_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


#: calls already in flight when a 429 is answered were sent before anyone knew: the hub may have
#: several in flight per channel (hub/delivery/gate.py), so arrivals this soon after a 429 are not early
IN_FLIGHT_MARGIN_S = 0.5


def early_calls(calls: list[Any], retry_after_s: float) -> list[str]:
    """Slack calls to a channel sent before the ``Retry-After`` (``retry_after_s``, what the fault
    answered) of a 429 on that channel had elapsed: arriving more than ``IN_FLIGHT_MARGIN_S`` after
    the 429 and more than 50 ms (clock granularity) before its end."""
    early, blocked = [], {}
    for call in sorted(calls, key=lambda c: c.time):
        body = call.body if isinstance(call.body, dict) else {}
        channel = str(body.get("channel") or call.query.get("channel") or "")
        since, until = blocked.get(channel, (0.0, 0.0))
        if since + IN_FLIGHT_MARGIN_S < call.time < until - 0.05:
            early.append(f"{call.path} to {channel} {until - call.time:.2f}s early")
        if call.status == 429:
            blocked[channel] = (call.time, call.time + retry_after_s)
    return early


async def group_members(bootstrap: str, group: str) -> list[dict[str, list[int]]]:
    """Each member's assigned partitions per topic (topic prefix stripped to the last two parts)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (resp,) = await admin.describe_consumer_groups([group])
        members = []
        for group_entry in resp.groups:
            for member in group_entry[5]:
                raw = member[4]
                if not raw:
                    members.append({})
                    continue
                assignment = ConsumerProtocolMemberAssignment.decode(raw)
                members.append({topic: sorted(parts) for topic, parts in assignment.assignment})
        return members
    finally:
        await admin.close()
