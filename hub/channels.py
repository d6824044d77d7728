"""Binds the topic declarations (``topics/topics.yaml``) to faust topics, once.

Code asks for topics by their declared short name; keys and values are bytes (values are JSON
serialised with orjson by :func:`dumps`), so no faust codec sits on the hot path.
"""

from __future__ import annotations

from typing import Any

import faust
import orjson

from hub.settings import Settings
from topics import load_topics, retry_tiers


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(raw: bytes | str | None) -> Any:
    if raw is None:
        raise ValueError("empty message")
    return orjson.loads(raw)


class Channels:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.prefix = settings.kafka.topic_prefix
        self._app = app
        self._topics: dict[str, faust.TopicT] = {}
        self._names: dict[str, str] = {}
        for spec in load_topics():
            self._topics[spec.name] = app.topic(
                spec.full_name(self.prefix),
                key_serializer="raw",
                value_serializer="raw",
                partitions=spec.partition_count(settings.kafka.partitions),
                internal=False,
            )
            self._names[spec.name] = spec.full_name(self.prefix)
        self.retry_tiers = tuple(spec.name for spec in retry_tiers())
        self.retry_delays_s = tuple(spec.retry_delay_s for spec in retry_tiers())

    def __getitem__(self, name: str) -> faust.TopicT:
        try:
            return self._topics[name]
        except KeyError:
            raise KeyError(f"topic {name!r} is not declared in topics/topics.yaml") from None

    async def send(self, name: str, key: str, value: dict[str, Any]) -> Any:
        """Produce one record (buffered; faust flushes before committing the source offset).

        Returns a future that resolves once Kafka acknowledged the record: a caller that must not
        record a state change before its outputs are durable awaits it.

        Straight to faust's producer, not through ``Topic.send``: keys and values are already bytes
        here, and faust's per-message machinery around the producer (serializer lookups, a
        ``FutureMessage`` and a ``PendingMessage``, sensor calls) cost about 150 µs of CPU per record
        against 36 µs for the producer's own ``send`` (measured on the local broker, 20,000
        records). Partitioning is the same (the producer's default partitioner on the key), and
        faust's commit still flushes this producer before it commits any source offset.
        """
        try:
            topic = self._names[name]
        except KeyError:
            raise KeyError(f"topic {name!r} is not declared in topics/topics.yaml") from None
        producer = await self._app.maybe_start_producer()
        return await producer.send(topic, key.encode() if key is not None else None, dumps(value),
                                   partition=None, timestamp=None, headers=None)
