"""KeyedLanes: a record whose task is cancelled while it still waits for the record before it in
its lane (the agent stopping or restarting: ``consume`` cancels every lane's newest task) gives its
window slot back and leaves the in-flight count right, so a restarted agent on the same lanes is
not left with fewer slots each time, down to none (a delivery agent that reads nothing more)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hub.delivery.lanes import KeyedLanes


@dataclass
class Msg:
    tp: tuple
    offset: int


@dataclass
class Ev:
    key: bytes
    message: Msg
    acked: list = field(default_factory=list)

    def ack(self) -> bool:
        self.acked.append(self.message.offset)
        return True


async def test_a_task_cancelled_while_waiting_for_its_predecessor_releases_its_window_slot():
    first_running = asyncio.Event()
    release = asyncio.Event()
    acks: list[int] = []

    async def handle(ev):
        if ev.message.offset == 0:
            first_running.set()
            await release.wait()

    lanes = KeyedLanes(handle, window=2, name="t")
    await lanes.submit(Ev(b"a", Msg(("t", 0), 0), acks))
    await lanes.submit(Ev(b"a", Msg(("t", 0), 1), acks))  # waits behind offset 0 in lane "a"
    await first_running.wait()
    waiting = lanes._tails[b"a"]
    waiting.cancel()  # what consume() does to each lane's newest task when the agent stops
    await asyncio.gather(waiting, return_exceptions=True)
    assert lanes.in_flight == 1  # only offset 0 is still in flight
    release.set()
    await asyncio.sleep(0.01)
    assert lanes.in_flight == 0 and acks == [0]  # offset 1 was not done: never acknowledged
    # both slots are free again: two records go in without waiting
    await asyncio.wait_for(lanes.submit(Ev(b"b", Msg(("t", 1), 0), acks)), timeout=1)
    await asyncio.wait_for(lanes.submit(Ev(b"c", Msg(("t", 1), 1), acks)), timeout=1)
