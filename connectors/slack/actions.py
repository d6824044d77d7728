"""Converge one Slack message (and its thread) to the newest desired snapshot.

Ledger row per message key::

    {"channel_id", "ts", "version", "floor", "replies": {reply id: ts}, "pending": {"kind", "id", "at"} | None}

``version`` is the snapshot Slack is known to show; ``floor`` the newest one that may show (durable
before the post or update that shows it), so that an older snapshot re-read after a crash or by the
worker taking over the partition never puts older content back on the message.

Posting is the one call that is not idempotent. Before each post the converger writes a *pending*
marker and waits until it is durable; the post carries Slack message metadata naming the message
key (and reply id). A marker found on the next attempt — after a crash, a timeout, or a connection
dropped after Slack accepted the post — means "maybe posted": the converger looks the message up by
its metadata (``conversations.history`` / ``conversations.replies`` with ``include_all_metadata``)
and adopts it instead of posting again. ``chat.update`` is idempotent and needs no marker, only the
durable floor.

No request goes to a channel before a ``Retry-After`` it answered has elapsed.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from connectors.slack.client import SlackClient
from hub.delivery.gate import BlockStore, TargetGate
from hub.delivery.pipeline import KeyState, Outcome

MESSAGE_EVENT = "switchboard_incident"
REPLY_EVENT = "switchboard_transition"
#: Slack's "Rate Limits" page: chat.postMessage allows about one message per second per channel
#: (short bursts tolerated), and a 429 says how long to wait in Retry-After
CHANNEL_INTERVAL_S = 1.0
#: calls in flight to one channel while it answers normally (``delivery.target_concurrency``)
CHANNEL_CONCURRENCY = 8
#: look this far before a pending marker for the message it may have posted (clock skew)
RECONCILE_SLACK_S = 120.0


class SlackConverger:
    vendor = "slack"

    def __init__(self, client: SlackClient | None, *, dry_run: bool = False, clock: Callable[[], float] = time.time,
                 gate_store: BlockStore | None = None, concurrency: int = CHANNEL_CONCURRENCY) -> None:
        self.client = client
        self.dry_run = dry_run or client is None
        self._clock = clock
        # one gate per channel, shared by every lane: concurrent posts while Slack answers, its pace
        # after a 429, and never a request before a Retry-After it answered has elapsed
        self._gate = TargetGate(name="slack", concurrency=concurrency, default_block_s=CHANNEL_INTERVAL_S, clock=clock,
                                store=gate_store)

    async def _call(self, channel: str, fn, *args, **kwargs):
        return await self._gate.call(channel, fn, *args, **kwargs)

    async def converge(self, action: dict[str, Any], state: KeyState) -> Outcome:
        version = int(action["version"])
        row = dict(state.get() or {"channel_id": None, "ts": None, "version": 0, "replies": {}, "pending": None})
        row["replies"] = dict(row.get("replies") or {})
        # "floor": the newest version that may already show in Slack, made durable before the call
        # that shows it; an older snapshot re-read after a crash or a takeover must not go out
        floor = max(row["version"], int(row.get("floor") or 0))
        if version < floor:
            return Outcome("skipped", detail=f"stale snapshot v{version} < delivered v{floor}")
        if self.dry_run:  # the ledger stays as it is: going live later delivers the real state
            return Outcome("dry_run", detail=f"would converge {action['channel']} to v{version}")
        client = self.client
        assert client is not None
        channel = action["channel"]
        key = action["key"]
        calls: list[str] = []
        message = action["message"]

        if row["channel_id"] is None:
            row["channel_id"] = await self._call(channel, client.channel_id, channel)
        channel_id = row["channel_id"]

        pending = row.get("pending")
        if pending and pending.get("kind") == "post" and row["ts"] is None:
            found = await self._call(channel, client.find_by_metadata, channel_id, oldest=pending["at"] - RECONCILE_SLACK_S, match={"message_key": key})
            calls.append("conversations.history")
            if found:
                # adopt it; its content is unknown, so the update below brings it to this snapshot
                row["ts"], row["version"] = found, 0
            row["pending"] = None
            state.put(row)

        if row["ts"] is None:
            row["pending"] = {"kind": "post", "id": None, "at": self._clock()}
            row["floor"] = version
            state.put(row)
            await state.persist()
            resp = await self._call(channel, client.post_message, channel_id, message["text"], blocks=message.get("blocks"),
                                    metadata={"event_type": MESSAGE_EVENT, "event_payload": {"message_key": key}})
            calls.append("chat.postMessage")
            row.update(ts=resp.get("ts"), channel_id=resp.get("channel") or channel_id, version=version, pending=None)
            state.put(row)
        elif version > row["version"]:
            if version > int(row.get("floor") or 0):
                row["floor"] = version
                state.put(row)
                await state.persist()
            await self._call(channel, client.update_message, channel_id, row["ts"], message["text"], blocks=message.get("blocks"))
            calls.append("chat.update")
            row["version"] = version
            state.put(row)

        for reply in action.get("thread") or []:
            rid = reply["id"]
            if rid in row["replies"]:
                continue
            pending = row.get("pending")
            if pending and pending.get("kind") == "reply" and pending.get("id") == rid:
                found = await self._call(channel, client.find_by_metadata, channel_id, oldest=pending["at"] - RECONCILE_SLACK_S,
                                         match={"message_key": key, "reply_id": rid}, thread_ts=row["ts"])
                calls.append("conversations.replies")
                if found:
                    row["replies"][rid] = found
                    row["pending"] = None
                    state.put(row)
                    continue
            row["pending"] = {"kind": "reply", "id": rid, "at": self._clock()}
            state.put(row)
            await state.persist()
            resp = await self._call(channel, client.post_message, channel_id, reply["text"], thread_ts=row["ts"],
                                    metadata={"event_type": REPLY_EVENT, "event_payload": {"message_key": key, "reply_id": rid}})
            calls.append("chat.postMessage(thread)")
            row["replies"][rid] = resp.get("ts")
            row["pending"] = None
            state.put(row)

        if not calls:
            return Outcome("skipped", detail=f"already at v{row['version']}", vendor_ref=row["ts"])
        return Outcome("sent", detail=f"{channel} v{version}", calls=calls, vendor_ref=row["ts"])
