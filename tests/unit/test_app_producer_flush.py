"""The producer-flush patch of hub/app.py: the flush before an offset commit empties the buffer."""

from __future__ import annotations

import asyncio
import types

import faust

from hub.app import _drain_producer_buffer_before_commit

SLOW_SEND_S = 0.25  # longer than the 0.1 s faust's flush waits for one record


async def _buffer_with_slow_client(patched: bool):
    app = faust.App("producer-flush-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    if patched:
        _drain_producer_buffer_before_commit(app)
    buffer = app.producer.buffer
    with_client: list[str] = []
    await buffer.start()
    for n in range(3):
        buffer.put(_record(with_client, f"changelog record {n}"))
    return buffer, with_client


def _record(with_client: list[str], name: str):
    """A record the buffer hands to its channel; a busy worker: slow to reach the Kafka client."""
    async def publish_message(fut, wait: bool = False) -> None:
        await asyncio.sleep(SLOW_SEND_S)
        with_client.append(name)
    return types.SimpleNamespace(message=types.SimpleNamespace(channel=types.SimpleNamespace(publish_message=publish_message)))


async def _stop(buffer) -> None:
    while buffer.size:
        await asyncio.sleep(0.05)
    await buffer.stop()


async def test_faust_as_shipped_flushes_with_records_still_in_the_buffer():
    # the behaviour the patch exists for: if this starts failing, faust changed and the patch in
    # hub/app.py may no longer be needed
    buffer, with_client = await _buffer_with_slow_client(patched=False)
    try:
        await buffer.flush()
        assert buffer.size > 0 and len(with_client) < 3
    finally:
        await _stop(buffer)


async def test_flush_returns_once_every_record_is_with_the_kafka_client():
    buffer, with_client = await _buffer_with_slow_client(patched=True)
    try:
        await asyncio.wait_for(buffer.flush(), timeout=5)
        assert buffer.size == 0 and with_client == [f"changelog record {n}" for n in range(3)]
    finally:
        await _stop(buffer)


async def test_records_put_while_it_waits_do_not_hold_the_flush():
    # a busy worker keeps adding changes: the flush waits for those before it began, not for a lull
    buffer, with_client = await _buffer_with_slow_client(patched=True)
    try:
        flushing = asyncio.create_task(buffer.flush())
        await asyncio.sleep(SLOW_SEND_S / 2)
        buffer.put(_record(with_client, "a later change"))
        await asyncio.wait_for(flushing, timeout=5)
        assert with_client == [f"changelog record {n}" for n in range(3)]  # the later one still on its way
    finally:
        await _stop(buffer)
