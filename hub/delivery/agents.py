"""Faust agents of the delivery pipeline: one per vendor action topic, one per retry tier."""

from __future__ import annotations

import asyncio
import logging
import time

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


#: vendors whose snapshots may be coalesced: a queued newer snapshot of a target replaces the older
#: one. A Slack snapshot carries the whole message and its whole thread, so the newest one says it
#: all. PagerDuty is left out (a newer snapshot may belong to a later incident lifecycle, and each
#: lifecycle is paged), and so are the support and sales paths until their snapshots are shown to
#: carry every note and notice they ever asked for.
COALESCED = frozenset({"slack"})


def _snapshot_version(event) -> int:
    """The version of the desired-state snapshot a record carries (-1 when unreadable: never newer)."""
    try:
        return int(loads(event.value).get("version") or 0)
    except Exception:
        return -1


def register_vendor(hub, *, vendor: str, topic: str, converger) -> DeliveryPipeline:
    app, channels = hub.app, hub.channels
    ledger = json_table(hub, f"ledger-{vendor}")
    pipeline = DeliveryPipeline(converger, topic=topic, policy=policy_from(hub), tier_topics=channels.retry_tiers, send=channels.send)
    hub.pipelines[vendor] = pipeline
    coalesce = vendor in COALESCED

    async def handle(event) -> None:
        key, raw = event.key, event.value
        try:
            action = loads(raw)
            if coalesce and lanes.superseded(event, version_of=_snapshot_version):
                await pipeline.skip_superseded(action)
                return
            await pipeline.handle(action, TableRow(ledger, action["key"], app))
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
