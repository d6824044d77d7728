"""TargetGate: concurrent calls to a target that answers; after a 429 nothing before Retry-After, then
one call at a time at the vendor's pace; a block longer than the caller may wait raises at once."""

from __future__ import annotations

import asyncio

import pytest

from connectors.errors import RateLimitedError
from hub.delivery.gate import BlockStore, TargetGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.now += s
        await asyncio.sleep(0)


async def test_calls_overlap_up_to_the_concurrency_while_the_target_answers():
    gate = TargetGate(name="t", concurrency=3)
    running = peak = 0

    async def call():
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return "ok"

    assert await asyncio.gather(*(gate.call("#a", call) for _ in range(10))) == ["ok"] * 10
    assert peak == 3


async def test_after_a_429_no_call_before_retry_after_then_one_at_a_time_at_that_pace():
    clock = Clock()
    gate = TargetGate(name="t", concurrency=8, default_block_s=1.0, clock=clock, sleep=clock.sleep)
    calls: list[float] = []
    refuse = [True]

    async def call():
        calls.append(clock.now)
        if refuse[0]:
            refuse[0] = False
            raise RateLimitedError("429", retry_after=3.0)
        return "ok"

    with pytest.raises(RateLimitedError):
        await gate.call("#a", call)
    results = await asyncio.gather(*(gate.call("#a", call) for _ in range(4)))
    assert results == ["ok"] * 4
    assert calls[1] >= calls[0] + 3.0  # nothing before Retry-After
    assert all(b - a >= 3.0 for a, b in zip(calls[1:], calls[2:]))  # then at the pace it asked for
    assert await gate.call("#b", call) == "ok"  # other targets are not held back


async def test_a_block_longer_than_the_wait_allowed_raises_with_the_remaining_time():
    clock = Clock()
    gate = TargetGate(name="t", max_wait_s=10.0, clock=clock, sleep=clock.sleep)

    async def throttled():
        raise RateLimitedError("429", retry_after=60.0)

    with pytest.raises(RateLimitedError):
        await gate.call("#a", throttled)
    clock.now += 5

    async def never():
        raise AssertionError("called while blocked")

    with pytest.raises(RateLimitedError) as err:
        await gate.call("#a", never)
    assert err.value.retry_after == pytest.approx(55.0)


async def test_a_block_outlives_the_process_through_its_store(tmp_path):
    # a worker SIGKILLed inside a Retry-After: the next process on the same data dir still waits it out
    clock = Clock()
    path = tmp_path / "gates" / "slack.json"
    first = TargetGate(name="t", clock=clock, sleep=clock.sleep, store=BlockStore(path, clock=clock))

    async def throttled():
        raise RateLimitedError("429", retry_after=15.0)

    with pytest.raises(RateLimitedError):
        await first.call("#a", throttled)
    clock.now += 4  # the worker dies and is back 4 s later
    calls: list[float] = []

    async def call():
        calls.append(clock.now)
        return "ok"

    second = TargetGate(name="t", max_wait_s=10.0, clock=clock, sleep=clock.sleep, store=BlockStore(path, clock=clock))
    with pytest.raises(RateLimitedError) as err:  # longer than a caller may wait: parked, not called
        await second.call("#a", call)
    assert err.value.retry_after == pytest.approx(11.0) and calls == []
    assert await second.call("#b", call) == "ok" and calls == [pytest.approx(1004.0)]  # other targets are free
    clock.now += 2
    assert await second.call("#a", call) == "ok"
    assert calls[-1] == pytest.approx(1015.0)  # not before the Retry-After answered to the first process


def test_the_store_drops_expired_blocks_and_survives_a_broken_file(tmp_path):
    clock = Clock()
    path = tmp_path / "slack.json"
    store = BlockStore(path, clock=clock)
    store.save("#a", 1010.0)
    clock.now = 1020.0
    store.save("#b", 1030.0)
    assert BlockStore(path, clock=clock)._blocks == {"#b": 1030.0}
    path.write_text("{not json")
    assert BlockStore(path, clock=clock).until("#b") == 0.0  # unreadable: empty, one early call at worst


def test_a_storm_of_429s_for_one_block_writes_the_file_once(tmp_path, monkeypatch):
    import hub.delivery.gate as gate_module

    clock = Clock()
    store = BlockStore(tmp_path / "slack.json", clock=clock)
    writes = []
    real_replace = gate_module.os.replace
    monkeypatch.setattr(gate_module.os, "replace", lambda a, b: writes.append(b) or real_replace(a, b))
    for i in range(20):  # concurrent lanes meeting the same Retry-After, a few ms apart
        store.save("#a", 1003.0 + i * 0.01)
    assert len(writes) == 1 and BlockStore(tmp_path / "slack.json", clock=clock).until("#a") == 1003.0
    store.save("#a", 1010.0)  # a new, longer block is written
    assert len(writes) == 2
