"""Create the declared topics before anything produces, and refuse to run on a mismatch.

A topic created implicitly by a first produce takes the broker's default partition count, and faust
then stops with ``PartitionsMismatch``; so every process of the hub calls :func:`ensure_topics`
at start-up. It is idempotent: existing topics that agree are left alone.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from topics import TopicSpec, load_topics

log = logging.getLogger("switchboard.kafka")


class TopicMismatchError(Exception):
    """An existing topic disagrees with its declaration (the message says how, and what to do)."""


async def ensure_topics(
    bootstrap: str,
    prefix: str,
    default_partitions: int,
    replication_factor: int = 1,
    specs: tuple[TopicSpec, ...] | None = None,
    timeout_s: float = 60.0,
) -> dict[str, int]:
    """Create missing topics; return ``{full name: partitions}`` of every declared topic.

    Raises :class:`TopicMismatchError` when an existing topic has another partition count.
    """
    specs = specs or load_topics()
    wanted = {s.full_name(prefix): s for s in specs}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = await _partition_counts(admin, list(wanted))
        _check(wanted, existing, default_partitions)
        missing = [
            NewTopic(
                name=name,
                num_partitions=spec.partition_count(default_partitions),
                replication_factor=replication_factor,
                topic_configs=spec.config(),
            )
            for name, spec in wanted.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another process won the race: fine
                pass
            log.info("kafka.topics.created", extra={"topics": [t.name for t in missing]})
            # metadata propagates asynchronously; wait until every topic is visible
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                existing = await _partition_counts(admin, list(wanted))
                if all(n in existing for n in wanted):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"topics not visible after {timeout_s}s: {sorted(set(wanted) - set(existing))}")
                await asyncio.sleep(0.2)
        # a topic another process created meanwhile (or not yet visible before) is checked too
        _check(wanted, existing, default_partitions)
        return {n: existing[n] for n in wanted}
    finally:
        await admin.close()


def _check(wanted: dict[str, TopicSpec], existing: dict[str, int], default_partitions: int) -> None:
    problems = []
    for name, spec in wanted.items():
        expect = spec.partition_count(default_partitions)
        have = existing.get(name)
        if have is not None and have != expect:
            problems.append(f"{name} has {have} partitions, the declaration wants {expect}")
    if problems:
        raise TopicMismatchError(
            "; ".join(problems)
            + ". Either set kafka.partitions to match, or use a new kafka.topic_prefix "
            "(re-partitioning a keyed topic breaks per-key order and the faust tables)."
        )


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    topics = set(await admin.list_topics())
    present = [n for n in names if n in topics]
    if not present:
        return {}
    described = await admin.describe_topics(present)
    out = {}
    for t in described:
        if t.get("error_code", 0) == 0:
            out[t["topic"]] = len(t["partitions"])
    return out


async def partition_count(bootstrap: str, topic: str) -> int:
    """How many partitions ``topic`` has (0 when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return (await _partition_counts(admin, [topic])).get(topic, 0)
    finally:
        await admin.close()
