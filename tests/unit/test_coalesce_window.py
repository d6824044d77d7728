"""hub/delivery/agents.py CoalesceWindow: one write per target per window, the first never delayed."""

import asyncio

from hub.delivery.agents import CoalesceWindow


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(round(s, 3))
        self.now += s


def test_first_write_never_waits_and_a_second_waits_out_the_window():
    t = FakeTime()
    w = CoalesceWindow(1.0, clock=t.clock, sleep=t.sleep)

    async def go():
        assert await w.wait(b"msg") == 0.0  # never written
        w.wrote(b"msg")
        t.now += 0.25
        waited = await w.wait(b"msg")
        assert waited == 0.75 and t.now == 101.0
        assert await w.wait(b"other") == 0.0  # targets are independent
        w.wrote(b"msg")
        t.now += 1.5
        assert await w.wait(b"msg") == 0.0  # the window has passed

    asyncio.run(go())
    assert t.slept == [0.75]


def test_zero_window_never_waits_and_old_targets_are_forgotten():
    t = FakeTime()
    w0 = CoalesceWindow(0.0, clock=t.clock, sleep=t.sleep)
    w = CoalesceWindow(1.0, clock=t.clock, sleep=t.sleep)

    async def go():
        for i in range(1000):
            w0.wrote(i)
            assert await w0.wait(i) == 0.0
            w.wrote(i)
            t.now += 0.01

    asyncio.run(go())
    assert t.slept == []
    assert len(w._written) <= 101  # only the targets written within the last second are kept
