"""Concurrent delivery that keeps per-target order and never commits an offset ahead of its work.

A delivery agent used to take one action at a time, so every partition of an action topic waited
for each vendor call in turn. :class:`KeyedLanes` reads the agent's stream without faust's automatic
acknowledgement and runs each action in its *lane* (one per record key, i.e. one per target: a Slack
message, a PagerDuty alert), so actions for different targets overlap while the actions of one
target still run one after the other, in offset order.

Promises:

- two records with the same key are handled strictly in the order they were read, the second only
  after the first's handler returned (a ``chat.update`` of v2 never overtakes the post of v1);
- at most ``window`` records are in flight per agent; the stream is not read further until one ends;
- a record is acknowledged only when it *and every record before it on its partition* are done, so
  faust's committed offset never passes a record whose effect is not yet recorded. A crash loses no
  work; it repeats at most what was in flight, which the delivery ledgers make harmless;
- :meth:`superseded` tells a handler that a newer record of its key is already waiting, so that a
  burst of snapshots of one target can be coalesced into one write;
- a handler that raises is logged and its record acknowledged, like a faust agent that raises: the
  handlers given here (the delivery pipeline) dead-letter their own failures first;
- when partitions are revoked, the records in flight from them get ``revoke_wait_s`` to finish before
  the rebalance goes on, so a new owner rarely starts on a target still being sent to.

Each record runs in its own task, created while the stream's ``current_event`` is that record, so
faust tables written by the handler send their changelog to the record's partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Awaitable, Callable

log = logging.getLogger("switchboard.delivery")


class _Entry:
    __slots__ = ("event", "done", "task")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.done = False
        self.task: asyncio.Task | None = None


class KeyedLanes:
    def __init__(self, handle: Callable[[Any], Awaitable[Any]], *, window: int, name: str, revoke_wait_s: float = 5.0) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._handle = handle
        self._window = asyncio.Semaphore(window)
        self.name = name
        self.revoke_wait_s = revoke_wait_s
        self._tails: dict[Any, asyncio.Task] = {}  # key -> the newest task of that key's lane
        self._newest: dict[Any, _Entry] = {}  # key -> the newest record read for that key
        self._partitions: dict[Any, deque[_Entry]] = {}  # tp -> records in flight, in offset order
        self.in_flight = 0
        self.peak_in_flight = 0

    async def consume(self, stream: Any) -> None:
        """Run the agent's stream through the lanes (call from the agent, with the agent's stream)."""
        try:
            async for event in stream.noack().events():
                await self.submit(event)
        finally:
            for task in list(self._tails.values()):
                task.cancel()

    async def submit(self, event: Any) -> None:
        await self._window.acquire()
        entry = _Entry(event)
        tp = event.message.tp
        queue = self._partitions.get(tp)
        if queue is None:
            queue = self._partitions[tp] = deque()
        queue.append(entry)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        key = event.key
        self._newest[key] = entry
        previous = self._tails.get(key)
        # the task copies this context, whose current_event is ``event``
        task = asyncio.create_task(self._run(entry, previous), name=f"{self.name}-lane")
        entry.task = task
        self._tails[key] = task
        task.add_done_callback(lambda t, key=key, entry=entry: self._forget(key, t, entry))

    def _forget(self, key: Any, task: asyncio.Task, entry: _Entry) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]
        if self._newest.get(key) is entry:
            del self._newest[key]

    def superseded(self, event: Any, covers: Callable[[Any, Any], bool] | None = None) -> bool:
        """True when a later record with the same key was read while this one waited in its lane
        and, with ``covers``, ``covers(newest, event)`` says the newest record makes this one redundant.

        For desired-state snapshots this means the work can go straight to the newer one: a burst
        of changes to one target costs one write per turn of its lane, not one per change. Read
        later is not newer: an older snapshot re-sent by a retry tier arrives after newer ones, and
        must not make them skip (that left a Slack message on an old revision, caught by
        tests/chaos ``test_slack_429_500_and_dropped_connections``), so the callers' rules compare
        versions (hub/delivery/agents.py ``COALESCED``).
        """
        newest = self._newest.get(event.key)
        if newest is None or newest.event is event:
            return False
        return covers is None or covers(newest.event, event)

    async def _run(self, entry: _Entry, previous: asyncio.Task | None) -> None:
        try:
            # inside the try: a task cancelled while it waits for its predecessor (the agent
            # stopping) still gives its window slot back
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # its outcome is its own; only its end matters here
            await self._handle(entry.event)
        except asyncio.CancelledError:
            self._window.release()
            self.in_flight -= 1
            raise  # stopping: not acknowledged, so read again on the next start
        except Exception:
            log.exception(f"{self.name}.lane-crashed")
        entry.done = True
        self._window.release()
        self.in_flight -= 1
        self._ack_ready(entry.event.message.tp)

    def _ack_ready(self, tp: Any) -> None:
        queue = self._partitions.get(tp)
        while queue and queue[0].done:
            queue.popleft().event.ack()
        if queue is not None and not queue:
            del self._partitions[tp]

    async def on_revoked(self, revoked: set[Any]) -> None:
        """Give the records in flight from ``revoked`` partitions a bounded time to finish."""
        tasks = [e.task for tp in revoked for e in self._partitions.get(tp, ()) if e.task is not None and not e.task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.revoke_wait_s)
        if pending:
            log.warning(f"{self.name}.revoke-wait-expired", extra={"in_flight": len(pending)})
