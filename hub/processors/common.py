"""Helpers shared by the agents: dead letters and the faust-table ledger row."""

from __future__ import annotations

import logging
import time
from typing import Any

from hub.channels import Channels

log = logging.getLogger("switchboard.processors")


async def dead_letter(channels: Channels, *, stage: str, source_topic: str, key: bytes | str | None, raw: Any, reason: str, error_code: str) -> None:
    """Park an unprocessable record on the dead-letter topic with the reason (never a secret)."""
    key_s = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    value: Any = None
    value_text = None
    if isinstance(raw, (bytes, bytearray)):
        try:
            import orjson

            value = orjson.loads(raw)
        except ValueError:
            value_text = bytes(raw).decode("utf-8", "replace")[:100_000]
    else:
        value = raw
    log.warning(f"{stage}.dead-letter", extra={"key": key_s, "error_code": error_code, "reason": reason[:300]})
    await channels.send("deadletter", key_s or "", {
        "schema": "switchboard.deadletter/1", "stage": stage, "source_topic": source_topic, "key": key_s,
        "value": value, "value_text": value_text, "reason": reason[:2000], "error_code": error_code,
        "at_ms": int(time.time() * 1000),
    })


class TableRow:
    """A :class:`hub.delivery.pipeline.KeyState` over one key of a faust table."""

    def __init__(self, table: Any, key: str, app: Any) -> None:
        self._table, self._key, self._app = table, key, app

    def get(self) -> dict[str, Any] | None:
        return self._table.get(self._key)

    def put(self, value: dict[str, Any]) -> None:
        self._table[self._key] = value

    async def persist(self) -> None:
        # the changelog write of every put so far is in the producer: wait for Kafka's ack
        await self._app.producer.flush()


def json_table(hub: Any, name: str) -> Any:
    """A faust table with JSON keys and values, partitioned like the keyed topics."""
    import faust

    table = hub.app.Table(
        name, default=None, partitions=hub.settings.kafka.partitions,
        schema=faust.Schema(key_type=str, value_type=None, key_serializer="json", value_serializer="json"),
    )
    hub.tables[name] = table
    return table
