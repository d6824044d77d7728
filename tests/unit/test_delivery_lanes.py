"""KeyedLanes: records of different keys overlap, one key's run in order, and a partition's records
are acknowledged in offset order only once each is done (never a commit ahead of the work)."""

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


async def test_keys_overlap_one_key_stays_in_order_and_acks_follow_offsets():
    acks: list[int] = []
    started: list[tuple[bytes, int]] = []
    release = {o: asyncio.Event() for o in range(6)}

    async def handle(ev):
        started.append((ev.key, ev.message.offset))
        await release[ev.message.offset].wait()

    lanes = KeyedLanes(handle, window=10, name="t")
    keys = [b"a", b"b", b"a", b"c", b"b", b"a"]
    for off, key in enumerate(keys):
        await lanes.submit(Ev(key, Msg(("t", 0), off), acks))
    await asyncio.sleep(0)
    assert sorted(started) == [(b"a", 0), (b"b", 1), (b"c", 3)]  # one per key at a time
    release[3].set()
    release[1].set()
    await asyncio.sleep(0.01)
    assert acks == []  # offset 0 is not done: nothing after it is acknowledged
    assert (b"b", 4) in started and (b"a", 2) not in started
    release[0].set()
    await asyncio.sleep(0.01)
    assert acks == [0, 1]  # 2 (key a) still running behind 0
    for e in release.values():
        e.set()
    await asyncio.sleep(0.05)
    assert acks == [0, 1, 2, 3, 4, 5]
    assert [o for k, o in started if k == b"a"] == [0, 2, 5]


async def test_the_window_bounds_records_in_flight_and_a_crash_is_acknowledged():
    gate = asyncio.Event()
    acks: list[int] = []

    async def handle(ev):
        await gate.wait()
        if ev.message.offset == 1:
            raise RuntimeError("boom")

    lanes = KeyedLanes(handle, window=2, name="t")
    await lanes.submit(Ev(b"a", Msg(("t", 0), 0), acks))
    await lanes.submit(Ev(b"b", Msg(("t", 0), 1), acks))
    third = asyncio.create_task(lanes.submit(Ev(b"c", Msg(("t", 0), 2), acks)))
    await asyncio.sleep(0.01)
    assert not third.done() and lanes.in_flight == 2
    gate.set()
    await third
    await asyncio.sleep(0.01)
    assert acks == [0, 1, 2] and lanes.in_flight == 0


async def _superseded_as_handled(keys: list[bytes], **rule) -> tuple[list[tuple[int, bool]], list[int]]:
    """Submit records with ``keys`` (offsets 0, 1, …; offset 0 held until all are read) and return,
    as each is handled, ``(offset, lanes.superseded(record, **rule))``, and the acknowledged offsets."""
    seen: list[tuple[int, bool]] = []
    gate = asyncio.Event()
    lanes: KeyedLanes

    async def handle(ev):
        if ev.message.offset == 0:
            await gate.wait()
        seen.append((ev.message.offset, lanes.superseded(ev, **rule)))

    lanes = KeyedLanes(handle, window=10, name="t")
    acks: list[int] = []
    for off, key in enumerate(keys):
        await lanes.submit(Ev(key, Msg(("t", 0), off), acks))
    gate.set()
    await asyncio.sleep(0.02)
    return seen, acks


async def test_a_record_is_superseded_once_a_newer_one_of_its_key_is_read():
    seen, acks = await _superseded_as_handled([b"a", b"a", b"b", b"a"])
    assert sorted(seen) == [(0, True), (1, True), (2, False), (3, False)]
    assert acks == [0, 1, 2, 3]


async def test_a_record_read_later_but_older_does_not_supersede_a_newer_one():
    # a retry tier re-sends v1 after v5 was read: v5 must still be delivered, v1 is the stale one
    versions = {0: 1, 1: 5, 2: 1}  # offset -> snapshot version
    seen, acks = await _superseded_as_handled([b"a"] * 3, covers=lambda newest, older: versions[newest.message.offset] > versions[older.message.offset])
    assert seen == [(0, False), (1, False), (2, False)]
    assert acks == [0, 1, 2]


async def test_covers_decides_whether_the_newest_record_makes_a_waiting_one_redundant():
    asked: list[tuple[int, int]] = []

    def covers(newest, older):
        asked.append((newest.message.offset, older.message.offset))
        return older.message.offset == 0  # offset 2 covers offset 0, not offset 1

    seen, acks = await _superseded_as_handled([b"a"] * 3, covers=covers)
    assert seen == [(0, True), (1, False), (2, False)]
    assert asked == [(2, 0), (2, 1)]  # the newest is never asked about itself
    assert acks == [0, 1, 2]


def test_coalescing_rules_per_vendor():
    from hub.delivery.agents import COALESCED

    def zd(version, *notes):
        return {"version": version, "notes": [{"id": n, "text": n} for n in notes]}

    assert set(COALESCED) == {"slack", "jira", "zendesk"}  # never PagerDuty (lifecycles) nor Salesforce (notices)
    assert COALESCED["slack"]({"version": 3}, {"version": 2}) and not COALESCED["slack"]({"version": 2}, {"version": 3})
    assert not COALESCED["jira"](None, {"version": 1})  # an unreadable newest record never makes one redundant
    newer_with_every_note = COALESCED["zendesk"]
    assert newer_with_every_note(zd(3, "a", "b"), zd(2, "a"))
    assert not newer_with_every_note(zd(3, "b"), zd(2, "a"))  # the note "a" would be lost
    assert not newer_with_every_note(zd(2, "a"), zd(3, "a"))


async def test_a_task_cancelled_while_waiting_for_its_predecessor_releases_its_window_slot():
    # the agent stopping or restarting: consume() cancels every lane's newest task; a task cancelled
    # while it still waits for its predecessor must give its slot back, or a restarted agent on the
    # same lanes has fewer slots each time, down to none (an agent that reads nothing more)
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
