"""The one delivery pipeline: dedup → send with retry → record, for every outbound vendor.

Promise: for each action (a versioned desired-state snapshot, see docs/architecture.md) the pipeline

1. hands it to the vendor's :class:`Converger`, which compares it with the delivered state of its
   target (a faust table row, the *ledger*) and makes only the calls still needed — older or
   duplicate snapshots cost no call;
2. on a typed failure asks the :class:`~hub.delivery.retry.RetryPolicy`: wait in place, park the
   action on a retry tier topic, or dead-letter it with the reason;
3. records every outcome on ``actions.results``.

A converger that must not repeat a non-idempotent call after a crash (a Slack post) calls
``state.persist()`` before making it, which waits until the ledger row is acknowledged by Kafka,
and reconciles with the vendor when it finds its own marker on the next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from connectors.errors import ConnectorError
from hub.delivery.retry import RetryPolicy

log = logging.getLogger("switchboard.delivery")


@dataclass
class Outcome:
    outcome: str  # sent | skipped | dry_run
    detail: str = ""
    calls: list[str] = field(default_factory=list)
    vendor_ref: str | None = None


class KeyState(Protocol):
    """The ledger row of one target (one Slack message, one PagerDuty alert)."""

    def get(self) -> dict[str, Any] | None: ...

    def put(self, value: dict[str, Any]) -> None: ...

    async def persist(self) -> None:
        """Return once every ``put`` of this row so far is durably stored (acknowledged by Kafka)."""


class Converger(Protocol):
    vendor: str

    async def converge(self, action: dict[str, Any], state: KeyState) -> Outcome:
        """Bring the vendor to ``action``'s desired state; raise :mod:`connectors.errors` types."""


Send = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # (topic short name, key, value)


class DeliveryPipeline:
    def __init__(
        self,
        converger: Converger,
        *,
        topic: str,
        policy: RetryPolicy,
        tier_topics: tuple[str, ...],
        send: Send,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.converger = converger
        self.topic = topic
        self.policy = policy
        self.tier_topics = tier_topics
        self._send = send
        self._clock = clock
        self._sleep = sleep
        self.counts: dict[str, int] = {}

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def handle(self, action: dict[str, Any], state: KeyState) -> str:
        """Deliver one action; return the recorded outcome. Never raises for vendor failures."""
        vendor = self.converger.vendor
        round_ = int(action.get("attempt") or 0)
        inplace = 0
        while True:
            inplace += 1
            try:
                result = await self.converger.converge(action, state)
            except ConnectorError as err:
                decision = self.policy.decide(err, inplace_attempt=inplace, round_=round_, now_ms=self._now_ms())
                # the connectors word their errors without request data or credentials (tests/chaos look for canary secrets)
                log.warning(f"{vendor}.delivery.failed", extra={"action_id": action.get("action_id"), "error_code": err.code, "error": str(err)[:300],
                                                                 "decision": decision.kind, "attempt": inplace, "round": round_})
                if decision.kind == "wait":
                    await self._sleep(decision.delay_s)
                    continue
                if decision.kind == "park":
                    await self._send(self.tier_topics[decision.tier], action["key"], {
                        "schema": "switchboard.retry/1", "topic": self.topic, "key": action["key"],
                        "not_before_ms": decision.not_before_ms, "reason": decision.reason, "error_code": err.code,
                        "action": {**action, "attempt": round_ + 1},
                    })
                    await self._record(action, "retry_scheduled", detail=decision.reason, error_code=err.code)
                    return "retry_scheduled"
                await self.dead_letter(action, reason=decision.reason, error_code=err.code)
                return "dead_lettered"
            except Exception as exc:  # a bug, not a vendor failure: keep the partition moving
                log.exception(f"{vendor}.delivery.crashed", extra={"action_id": action.get("action_id")})
                await self.dead_letter(action, reason=f"internal error: {type(exc).__name__}: {exc}", error_code="internal")
                return "dead_lettered"
            await self._record(action, result.outcome, detail=result.detail, calls=result.calls, vendor_ref=result.vendor_ref)
            return result.outcome

    async def skip_superseded(self, action: dict[str, Any]) -> str:
        """Record that ``action`` was not delivered because a newer snapshot of its target is queued
        right behind it (which converges the vendor to a state at least as new): no vendor call."""
        await self._record(action, "skipped", detail=f"superseded: a newer snapshot of {action.get('key')} is queued")
        return "skipped"

    async def dead_letter(self, action: dict[str, Any], *, reason: str, error_code: str) -> None:
        await self._send("deadletter", action.get("key") or "", {
            "schema": "switchboard.deadletter/1", "stage": f"deliver.{self.converger.vendor}",
            "source_topic": self.topic, "key": action.get("key"), "value": action, "value_text": None,
            "reason": reason, "error_code": error_code, "at_ms": self._now_ms(),
        })
        await self._record(action, "dead_lettered", detail=reason, error_code=error_code)

    async def _record(self, action: dict[str, Any], outcome: str, *, detail: str = "", calls: list[str] | None = None, vendor_ref: str | None = None, error_code: str | None = None) -> None:
        self._count(outcome)
        await self._send("actions.results", action.get("action_id") or "", {
            "schema": "switchboard.action_result/1", "action_id": action.get("action_id") or "",
            "vendor": self.converger.vendor, "key": action.get("key") or "", "version": action.get("version"),
            "outcome": outcome, "detail": detail or None, "calls": calls or [], "vendor_ref": vendor_ref,
            "error_code": error_code, "attempt": int(action.get("attempt") or 0), "at_ms": self._now_ms(),
            "cause_event_id": (action.get("cause") or {}).get("event_id"),
        })

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
