"""Faust agents of the delivery pipeline: one per vendor action topic, one per retry tier."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from hub.channels import loads
from hub.delivery.lanes import KeyedLanes
from hub.delivery.pipeline import DeliveryPipeline
from hub.delivery.retry import RetryPolicy
from hub.processors.common import TableRow, dead_letter, json_table

log = logging.getLogger("switchboard.delivery")


def policy_from(hub) -> RetryPolicy:
    d = hub.settings.delivery
    return RetryPolicy(inplace_attempts=d.inplace_attempts, max_inplace_wait_s=d.max_inplace_wait_s,
                       backoff_s=d.backoff_s, tier_delays_s=hub.channels.retry_delays_s)


def _snapshot(event) -> dict | None:
    try:
        value = loads(event.value)
        return value if isinstance(value, dict) else None
    except Exception:
        return None


def _version(action: dict | None) -> int:
    """The version of a desired-state snapshot (-1 when unreadable: never newer)."""
    if action is None:
        return -1
    try:
        return int(action.get("version") or 0)
    except (TypeError, ValueError):
        return -1


def _newer(newest: dict | None, older: dict | None) -> bool:
    return _version(newest) > _version(older)


def _note_ids(action: dict | None) -> set:
    return {n.get("id") for n in (action or {}).get("notes") or [] if isinstance(n, dict)}


def _newer_with_every_note(newest: dict | None, older: dict | None) -> bool:
    # a Zendesk snapshot lists the internal notes still owed; the newer one must list every note
    # the older one does, or skipping the older one could lose a note (issue transitions are capped)
    return _newer(newest, older) and _note_ids(older) <= _note_ids(newest)


#: vendors whose snapshots may be coalesced, with the rule that lets a queued newer snapshot of a
#: target replace an older one. Each of these snapshots carries the whole desired state of its
#: target: a Slack message with its whole thread, a Jira issue's support view (links, counts) or its
#: revenue fields (a separate key), a Zendesk ticket's fields, tags and the notes still owed. A
#: burst of changes to one target then costs one write per turn of its lane. Left out: PagerDuty (a
#: newer snapshot may belong to a later incident lifecycle, and each lifecycle is paged) and
#: Salesforce (its snapshot asks for a one-time owner notice).
COALESCED = {"slack": _newer, "jira": _newer, "zendesk": _newer_with_every_note}


class CoalesceWindow:
    """At most one write per target per ``window_s``: the coalescing window of a snapshot burst.

    Skipping a snapshot only when a newer one is already queued coalesces nothing while the updates
    trickle in one by one: a burst of 120 updates to one Slack message within a second cost 52
    ``chat.update`` calls and Slack's method limit answered 429 (its Retry-After parked the newest
    update for two minutes). A target written less than ``window_s`` ago waits out the rest of the
    window before its next write, and the updates that arrive meanwhile supersede the waiting one.
    The first write to a target never waits, so an incident's first post is not delayed.
    """

    def __init__(self, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._written: OrderedDict[Any, float] = OrderedDict()  # key -> time of its last write, oldest first

    async def wait(self, key: Any) -> float:
        """Wait until ``key``'s window since its last write has passed; return the seconds waited."""
        last = self._written.get(key)
        if last is None:
            return 0.0
        remaining = last + self.window_s - self._clock()
        if remaining <= 0:
            return 0.0
        await self._sleep(remaining)
        return remaining

    def wrote(self, key: Any) -> None:
        now = self._clock()
        self._written[key] = now
        self._written.move_to_end(key)
        while self._written:  # forget targets whose window has passed (bounded memory)
            oldest_key, at = next(iter(self._written.items()))
            if now - at < self.window_s:
                break
            del self._written[oldest_key]


def register_vendor(hub, *, vendor: str, topic: str, converger) -> DeliveryPipeline:
    app, channels = hub.app, hub.channels
    ledger = json_table(hub, f"ledger-{vendor}")
    pipeline = DeliveryPipeline(converger, topic=topic, policy=policy_from(hub), tier_topics=channels.retry_tiers, send=channels.send)
    hub.pipelines[vendor] = pipeline
    covers = COALESCED.get(vendor)
    window = CoalesceWindow(hub.settings.delivery.coalesce_window_s) if covers is not None else None

    async def handle(event) -> None:
        key, raw = event.key, event.value
        try:
            action = loads(raw)
            if covers is not None:
                def superseded() -> bool:
                    return lanes.superseded(event, covers=lambda newest, older: covers(_snapshot(newest), action))

                if superseded() or (await window.wait(key) and superseded()):
                    await pipeline.skip_superseded(action)
                    return
            outcome = await pipeline.handle(action, TableRow(ledger, action["key"], app))
            if window is not None and outcome == "sent":
                window.wrote(key)
        except Exception as exc:  # unreadable action: dead-letter it, keep going
            log.exception(f"{vendor}.delivery.bad-action")
            await dead_letter(channels, stage=f"deliver.{vendor}", source_topic=topic, key=key, raw=raw,
                              reason=f"{type(exc).__name__}: {exc}", error_code="internal")

    # actions for different targets run concurrently, each target's in order (record keys are
    # targets); offsets are acknowledged in order once done (see hub/delivery/lanes.py)
    lanes = KeyedLanes(handle, window=hub.settings.delivery.concurrency, name=f"deliver-{vendor}")
    pipeline.lanes = lanes

    @app.agent(channels[topic], name=f"deliver-{vendor}")
    async def deliver(stream):
        await lanes.consume(stream)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **kwargs) -> None:
        await lanes.on_revoked(revoked)

    return pipeline


def register_retry_tiers(hub) -> None:
    """Each tier is a FIFO with one delay: wait for the head's not-before time, then re-send it."""
    app, channels = hub.app, hub.channels
    for tier in channels.retry_tiers:

        @app.agent(channels[tier], name=f"retry-{tier}")
        async def retry(stream, tier=tier):
            async for key, raw in stream.items():
                try:
                    parked = loads(raw)
                    wait = parked["not_before_ms"] / 1000 - time.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await channels.send(parked["topic"], parked["key"], parked["action"])
                except Exception as exc:
                    log.exception("retry.bad-record")
                    await dead_letter(channels, stage=f"retry.{tier}", source_topic=tier, key=key, raw=raw,
                                      reason=f"{type(exc).__name__}: {exc}", error_code="internal")
