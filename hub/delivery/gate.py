"""Pacing of the calls to one rate-limited vendor target, shared by the concurrent delivery lanes.

A target is what a vendor rate-limits: a Slack channel (about one message a second), a PagerDuty
routing key (about 120 events a minute). Lanes for different messages of one target run at once
(hub/delivery/lanes.py), so without a shared gate a burst of them would all meet the limit, each
answer would cost its action a retry attempt, and the vendor would see a flood of refused calls.

Promises, per target:

- while the target answers normally, at most ``concurrency`` calls are in flight;
- after a rate-limit answer (:class:`~connectors.errors.RateLimitedError`) no call is made before its
  ``Retry-After`` (or ``default_block_s``) has elapsed, and for ``cooldown_s`` after it the calls go
  one at a time, spaced by that interval: the vendor told us its pace, so a backlog drains at that
  pace instead of meeting the limit again and again;
- a caller never waits more than ``max_wait_s`` for the target: a longer block raises
  :class:`~connectors.errors.RateLimitedError` with the remaining time (the pipeline then parks the
  action on a retry tier); waiting for the gate costs an action no retry attempt.

With a :class:`BlockStore`, a block outlives the process: a worker SIGKILLed inside a
``Retry-After`` and restarted on the same data directory still waits it out (found by
tests/chaos ``test_worker_sigkill_while_slack_rate_limits``). A worker on another host does not see
it; its first call meets the vendor's 429 and is blocked from then on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from connectors.errors import RateLimitedError


log = logging.getLogger("switchboard.delivery")


class BlockStore:
    """The rate-limit blocks of one gate in a small JSON file (``{target: until, epoch seconds}``).

    Written only when a vendor answers a rate limit (rare), atomically (temporary file, fsync,
    rename); expired blocks are dropped on each write. An unreadable file counts as empty: a block
    lost that way costs one early call, which the vendor refuses again with its Retry-After.
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._blocks = self._read()

    def _read(self) -> dict[str, float]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("gate.blocks.unreadable", extra={"file": str(self.path), "error": type(exc).__name__})
            return {}
        return {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float))} if isinstance(raw, dict) else {}

    def until(self, target: str) -> float:
        return self._blocks.get(target, 0.0)

    def save(self, target: str, until: float) -> None:
        if until <= self._blocks.get(target, 0.0) + 1.0:
            return  # a storm of 429s for one block writes the file once, not once per answer
        now = self._clock()
        self._blocks = {k: v for k, v in self._blocks.items() if v > now}
        if until > now:
            self._blocks[target] = max(until, self._blocks.get(target, 0.0))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                json.dump(self._blocks, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # the block still holds in memory; only a restart could miss it
            log.warning("gate.blocks.unwritable", extra={"file": str(self.path), "error": type(exc).__name__})


class _Target:
    __slots__ = ("slots", "serial", "blocked_until", "spacing_s", "paced_until", "last_call")

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.serial = asyncio.Lock()
        self.blocked_until = 0.0
        self.spacing_s = 0.0
        self.paced_until = 0.0
        self.last_call = 0.0


class TargetGate:
    def __init__(self, *, name: str, concurrency: int = 8, default_block_s: float = 1.0, max_wait_s: float = 10.0,
                 cooldown_s: float = 30.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, store: BlockStore | None = None) -> None:
        self.name = name
        self.concurrency = concurrency
        self.default_block_s = default_block_s
        self.max_wait_s = max_wait_s
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._sleep = sleep
        self._targets: dict[str, _Target] = {}
        self.store = store

    def _target(self, target: str) -> _Target:
        t = self._targets.get(target)
        if t is None:
            t = self._targets[target] = _Target(self.concurrency)
            if self.store is not None:  # a block answered before a restart still holds
                t.blocked_until = self.store.until(target)
        return t

    async def call(self, target: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        t = self._target(target)
        async with t.slots:
            if self._clock() < t.paced_until:
                async with t.serial:
                    return await self._attempt(target, t, fn, args, kwargs)
            return await self._attempt(target, t, fn, args, kwargs)

    async def _attempt(self, target: str, t: _Target, fn: Callable[..., Awaitable[Any]], args: tuple, kwargs: dict) -> Any:
        while True:
            now = self._clock()
            not_before = t.blocked_until
            if now < t.paced_until:
                not_before = max(not_before, t.last_call + t.spacing_s)
            remaining = not_before - now
            if remaining <= 0:
                break
            if remaining > self.max_wait_s:
                raise RateLimitedError(f"{self.name}: {target} is rate limited for {remaining:.1f}s more", retry_after=remaining,
                                       code=f"{self.name}.ratelimited")
            await self._sleep(remaining)
        t.last_call = self._clock()
        try:
            return await fn(*args, **kwargs)
        except RateLimitedError as err:
            wait = err.retry_after if err.retry_after is not None else self.default_block_s
            now = self._clock()
            t.blocked_until = max(t.blocked_until, now + wait)
            if self.store is not None:
                self.store.save(target, t.blocked_until)
            t.spacing_s = max(wait, self.default_block_s)
            t.paced_until = now + wait + self.cooldown_s
            raise
