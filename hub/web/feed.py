"""Fills a :class:`~hub.web.model.ReadModel` from Kafka: every partition of the topics it reads, from
the beginning, without a consumer group (the read model is rebuilt at each start; it commits
nothing and so never disturbs the worker's offsets).

Also watches the worker's consumer group: lag per topic, and partitions that stopped making
progress while their lag grew (``/health`` turns unhealthy on those).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.metrics import TopicMetrics
from hub.web.model import READ_TOPICS, STATE_TABLES, ReadModel

log = logging.getLogger("switchboard.web")


def changelog_topic(settings, table: str) -> str:
    """The compacted changelog faust keeps for a table of the worker (``<app id>-<table>-changelog``)."""
    return f"{settings.kafka.topic_prefix}{settings.app_id}-{table}-changelog"


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def progress(seen: dict, committed: dict, ends: dict, now: float, stall_after_s: float) -> tuple[dict[str, int], list[str]]:
    """Lag per topic, and the partitions *stalled*: committed offset unchanged for ``stall_after_s``
    while the lag grew. ``seen`` (partition → (offset, lag, since)) is updated in place."""
    per_topic: dict[str, int] = {}
    stalled = []
    for tp, offset in committed.items():
        lag = max(0, ends.get(tp, 0) - offset)
        per_topic[tp.topic] = per_topic.get(tp.topic, 0) + lag
        prev = seen.get(tp)
        if prev is None or offset != prev[0] or lag == 0:
            seen[tp] = (offset, lag, now)
        elif lag > prev[1] and now - prev[2] >= stall_after_s:
            stalled.append(f"{tp.topic}:{tp.partition}")
    return per_topic, sorted(stalled)


class Feed:
    def __init__(self, settings, model: ReadModel, metrics: TopicMetrics | None = None) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics
        prefix = settings.kafka.topic_prefix
        self.short = {f"{prefix}{name}": name for name in READ_TOPICS}
        self.short.update({changelog_topic(settings, t): f"table:{t}" for t in STATE_TABLES})
        self.consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()
        self._start_ends: dict[TopicPartition, int] = {}
        self.caught_up = asyncio.Event()
        self.stalled: list[str] = []
        self._progress: dict[TopicPartition, tuple[int, int, float]] = {}  # committed, lag, since
        self._created_at: dict[str, int] = {}   # action id → created_at_ms, for the delivery latency
        self._received_at: dict[str, int] = {}  # event id → received_at_ms, for the end-to-end latency

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka.bootstrap_servers, enable_auto_commit=False,
                                         auto_offset_reset="earliest", group_id=None)
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def _refresh(self) -> None:
        """Assign the partitions of every readable topic that exists now (changelogs appear when the worker starts)."""
        assert self.consumer is not None
        await self.consumer._client.force_metadata_update()
        tps = set()
        for topic in self.short:
            for p in self.consumer.partitions_for_topic(topic) or ():
                tps.add(TopicPartition(topic, p))
        new = tps - self._assigned
        if new:
            self._assigned |= new
            self.consumer.assign(sorted(self._assigned))
            await self.consumer.seek_to_beginning(*new)
            ends = await self.consumer.end_offsets(list(new))
            self._start_ends.update(ends)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        await self._refresh()
        last_refresh = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - last_refresh > 5:
                await self._refresh()
                last_refresh = time.monotonic()
            if not self._assigned:
                self.caught_up.set()  # nothing to read yet
                await asyncio.sleep(0.5)
                continue
            batch = await self.consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batch.items():
                short = self.short.get(tp.topic)
                for rec in records:
                    self.apply(short, tp.partition, rec.offset, rec.key, rec.value)
            if not self.caught_up.is_set() and await self._at_start_ends():
                self.caught_up.set()
                log.info("web.caught-up", extra=self.model.stats())

    async def _at_start_ends(self) -> bool:
        for tp, end in self._start_ends.items():
            if await self.consumer.position(tp) < end:
                return False
        return True

    def apply(self, short: str | None, partition: int, offset: int, raw_key: bytes | None, raw_value: bytes | None) -> None:
        if short is None:
            return
        value = _decode(raw_value)
        if short.startswith("table:"):
            key = _decode(raw_key)
        else:
            key = raw_key.decode("utf-8", "replace") if raw_key is not None else None
        try:
            self.model.apply(short, partition, offset, key, value)
        except Exception:  # one odd record must not stop the view
            log.exception("web.bad-record", extra={"topic": short, "partition": partition, "offset": offset})
        if self.metrics is not None and isinstance(value, dict):
            self._measure(short, value)

    def _measure(self, short: str, value: dict[str, Any]) -> None:
        m = self.metrics
        if short.startswith("table:"):
            return
        m.records.labels(short).inc()
        if short.startswith("events.") and value.get("event_id") and value.get("received_at_ms"):
            self._received_at[value["event_id"]] = int(value["received_at_ms"])
        elif short.startswith("actions.") and short not in ("actions.results",) and value.get("action_id"):
            if value.get("created_at_ms"):
                self._created_at[value["action_id"]] = int(value["created_at_ms"])
        elif short == "actions.results":
            vendor, outcome = str(value.get("vendor")), str(value.get("outcome"))
            m.outcomes.labels(vendor, outcome).inc()
            if outcome == "retry_scheduled":
                m.retries.labels(vendor).inc()
            at = value.get("at_ms")
            created = self._created_at.get(value.get("action_id") or "")
            if at and created:
                m.delivery_latency.labels(vendor).observe(max(0.0, (at - created) / 1000))
            received = self._received_at.get(value.get("cause_event_id") or "")
            if at and received and not value.get("attempt"):
                m.e2e_latency.labels(vendor).observe(max(0.0, (at - received) / 1000))
        elif short == "deadletter":
            m.dead.labels(str(value.get("stage"))).inc()
        # bounded: forget the oldest timings (they only serve latencies of records still arriving)
        for d in (self._created_at, self._received_at):
            while len(d) > 100_000:
                d.pop(next(iter(d)))

    async def watch_lag(self, stop: asyncio.Event, interval_s: float = 5.0, stall_after_s: float = 60.0) -> None:
        """Lag of the worker's group per topic; a partition whose committed offset has not moved for
        ``stall_after_s`` while its lag grew is *stalled* (``/health`` answers 503)."""
        from aiokafka.admin import AIOKafkaAdminClient

        k = self.settings.kafka
        group = f"{k.topic_prefix}{self.settings.app_id}"
        admin = AIOKafkaAdminClient(bootstrap_servers=k.bootstrap_servers)
        await admin.start()
        try:
            while not stop.is_set():
                try:
                    committed = await admin.list_consumer_group_offsets(group)
                    tps = [tp for tp in committed if tp.topic.startswith(k.topic_prefix)]
                    ends = await self.consumer.end_offsets(tps) if tps else {}
                    offsets = {tp: committed[tp].offset for tp in tps}
                    per_topic, self.stalled = progress(self._progress, offsets, ends, time.monotonic(), stall_after_s)
                    stalled = self.stalled
                    if self.metrics is not None:
                        for topic, lag in per_topic.items():
                            self.metrics.lag.labels(topic[len(k.topic_prefix):]).set(lag)
                        self.metrics.stalled.set(len(stalled))
                except Exception as exc:  # the broker briefly away: keep the last figures
                    log.warning("web.lag-unavailable", extra={"error": type(exc).__name__})
                try:
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            await admin.close()


async def load_once(settings, model: ReadModel, timeout_s: float = 60.0) -> None:
    """Read every topic up to its current end into ``model``, then return (``switchboard trace``)."""
    feed = Feed(settings, model)
    await feed.start()
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        await asyncio.wait_for(feed.caught_up.wait(), timeout=timeout_s)
    finally:
        stop.set()
        await task
        await feed.stop()
