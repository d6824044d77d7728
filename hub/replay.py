"""``switchboard replay``: put dead letters back on the topic they came from.

A consumer group (``<prefix>replay``) remembers which dead letters were already replayed, so
running the command twice does not replay twice. Replayed actions start a fresh retry count.
"""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hub.kafka_admin import partition_count
from topics import full_name


def replayable(dead: dict) -> bool:
    """A dead letter can go back when it kept its record and names a topic that record can be read from
    (a receiver dead letter has no issue id: replaying it would fail the same way)."""
    return dead.get("value") is not None and bool(dead.get("source_topic")) and not str(dead.get("stage") or "").startswith("receiver.")


async def put_back(producer: AIOKafkaProducer, prefix: str, dead: dict) -> str:
    """Produce one dead letter's record on its source topic (acknowledged); return that topic's short name.
    A replayed action starts a fresh retry count."""
    value, source, key = dead["value"], dead["source_topic"], dead.get("key")
    if isinstance(value, dict) and "attempt" in value:
        value = {**value, "attempt": 0}
    await producer.send_and_wait(full_name(prefix, source), orjson.dumps(value), key=key.encode() if key else None)
    return source


async def replay(settings, *, stage: str | None = None, limit: int | None = None, dry_run: bool = False) -> int:
    k = settings.kafka
    dl_topic = full_name(k.topic_prefix, "deadletter")
    consumer = AIOKafkaConsumer(bootstrap_servers=k.bootstrap_servers, group_id=f"{k.topic_prefix}replay",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    count = 0
    try:
        tps = [TopicPartition(dl_topic, p) for p in range(await partition_count(k.bootstrap_servers, dl_topic))]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
        pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while pending and (limit is None or count < limit):
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        continue
                    dead = orjson.loads(rec.value)
                    if (stage is None or dead.get("stage") == stage) and replayable(dead) and (limit is None or count < limit):
                        if not dry_run:
                            await put_back(producer, k.topic_prefix, dead)
                        count += 1
                    if not dry_run:
                        await consumer.commit({tp: rec.offset + 1})
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
        await producer.stop()
    return count
