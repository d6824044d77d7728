"""Helpers shared by the agents: dead letters and the faust-table ledger row."""

from __future__ import annotations

import asyncio
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

    async def persist(self, timeout_s: float = 5.0) -> None:
        """Return once this row's latest ``put`` is acknowledged by Kafka (its changelog record).

        Waits for that one record, not for a flush of the whole producer: many rows persisting at
        once share the producer's batches instead of each waiting for everyone's records. Not
        forever: a write that cannot be acknowledged in time (a leader moving) is a transient
        failure, and the pipeline retries the action.
        """
        from connectors.errors import RetryableError

        written = getattr(self._table, "switchboard_written", None)
        if written is None:  # a table not made by json_table: the whole producer, as before
            pending: Any = self._app.producer.flush()
        else:
            fut = written.get(self._key)
            if fut is None:  # every put of this row is already acknowledged
                return
            pending = asyncio.shield(fut)
        try:
            await asyncio.wait_for(pending, timeout=timeout_s)
        except asyncio.TimeoutError:
            raise RetryableError(f"ledger write not acknowledged within {timeout_s:.0f}s", code="ledger.flush-timeout") from None
        except RetryableError:
            raise
        except Exception as exc:  # the producer gave up on the record
            raise RetryableError(f"ledger write failed: {type(exc).__name__}", code="ledger.write-failed") from None


def _track_changelog_writes(table: Any) -> None:
    """Keep each key's newest unacknowledged changelog record on ``table.switchboard_written``, and
    tell the store when the newest one is acknowledged (``hub.store.Store`` then forgets the row's
    previous value)."""
    written: dict[Any, asyncio.Future] = {}
    send_changelog = table.send_changelog

    def forget(fut: asyncio.Future, key: Any, partition: Any) -> None:
        failed = fut.cancelled() or fut.exception() is not None  # retrieved here; persist() reports it
        if written.get(key) is fut:
            del written[key]
            acknowledged = getattr(table.data, "changelog_acknowledged", None)  # hub.store.Store
            if acknowledged is not None and not failed and partition is not None:
                acknowledged(table.data._encode_key(key), partition)

    def tracked(partition: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        fut = send_changelog(partition, key, value, *args, **kwargs)
        written[key] = fut
        fut.add_done_callback(lambda f, key=key: forget(f, key, partition))
        return fut

    table.send_changelog = tracked
    table.switchboard_written = written


def store_options(settings: Any) -> dict[str, Any] | None:
    """Bounds on the memory of each table partition's RocksDB (a new dict per table: faust's store
    pops keys from the one it is given)."""
    if not settings.store.startswith("rocksdb"):
        return None
    mb = 1024 * 1024
    return {"write_buffer_size": int(settings.store_write_buffer_mb * mb), "max_write_buffer_number": 2,
            "block_cache_size": settings.store_block_cache_mb * mb,
            "write_buffer_total_size": int(settings.store_write_buffers_total_mb * mb)}


def json_table(hub: Any, name: str) -> Any:
    """A faust table with JSON keys and values, partitioned like the keyed topics."""
    import faust

    table = hub.app.Table(
        name, default=None, partitions=hub.settings.kafka.partitions,
        schema=faust.Schema(key_type=str, value_type=None, key_serializer="json", value_serializer="json"),
        options=store_options(hub.settings),
    )
    _track_changelog_writes(table)
    hub.tables[name] = table
    return table


def register_side(hub: Any, *, name: str, table: Any, steps: dict[str, tuple[Any, Any]], stats: dict[str, int]) -> None:
    """One agent owning one table, reading one or more co-partitioned topics.

    ``steps`` maps a topic's short name to ``(key_of(value) -> table key, step(state, value) ->
    (new_state, [(topic, key, value), ...]))``: the pure function of that input. The agent loads
    the record, runs the step, stores the state and sends what it returned; a record that breaks
    the step goes to the dead-letter topic with the reason, and the partition moves on.
    The state is stored only once the outputs are acknowledged by Kafka (at-least-once, never
    a state ahead of its outputs).
    """
    from hub.channels import loads

    app, ch = hub.app, hub.channels
    by_full = {ch[short].get_topic_name(): (short, key_of, step) for short, (key_of, step) in steps.items()}
    channel = ch[next(iter(steps))] if len(steps) == 1 else app.topic(*by_full, key_serializer="raw", value_serializer="raw")

    @app.agent(channel, name=name)
    async def side(stream):
        async for event in stream.events():
            short, key_of, step = by_full[event.message.topic]
            try:
                value = loads(event.value)
                key = key_of(value)
                state, out = step(table.get(key), value)
                # outputs first, acknowledged, then the state: a crash in between re-runs the step
                # on the old state and sends the same outputs again (every consumer of them is
                # idempotent), whereas the other order could keep a state whose outputs were lost
                acks = [await ch.send(topic, out_key, out_value) for topic, out_key, out_value in out]
                if acks:
                    await asyncio.gather(*acks)
                if state is not None:
                    table[key] = state
                stats[name] = stats.get(name, 0) + 1
            except Exception as exc:  # a poisoned record must not stall its partition
                stats["dead"] = stats.get("dead", 0) + 1
                log.exception(f"{name}.crashed")
                await dead_letter(ch, stage=name, source_topic=short, key=event.key, raw=event.value,
                                  reason=f"{type(exc).__name__}: {exc}", error_code="internal")
