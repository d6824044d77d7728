"""Converge one PagerDuty alert (service × dedup key) to the newest desired snapshot.

Ledger row: ``{"lifecycle", "state", "version"}`` — what PagerDuty has been told. A snapshot with a
higher lifecycle opens a new incident (trigger; PagerDuty opens a new one for a dedup key whose
incident is resolved), then acknowledges or resolves as the snapshot says. Each step is recorded
durably before the next (the last one with the snapshot's version), so a crash repeats at most the last step — and PagerDuty's own dedup makes
a repeated trigger of an open incident, or a repeated resolve, a no-op. A replay never pages for a
resolved incident: its lifecycle is already in the ledger.
"""

from __future__ import annotations

from typing import Any

from connectors.pagerduty.client import PagerDutyEvents
from connectors.pagerduty.mapping import send_event_kwargs
from hub.delivery.gate import BlockStore, TargetGate
from hub.delivery.pipeline import KeyState, Outcome

#: Events API v2 "Rate Limits": about 120 events a minute per integration key; over it a 429 and the
#: event is not ingested (no Retry-After promised)
SERVICE_INTERVAL_S = 0.5
#: calls in flight to one integration key while it answers normally (``delivery.target_concurrency``)
SERVICE_CONCURRENCY = 8


def plan(row: dict[str, Any], action: dict[str, Any]) -> list[str]:
    """Pure: the Events API actions needed to go from ``row`` to ``action``'s state, in order."""
    lifecycle, target = int(action["lifecycle"]), action["state"]
    if (lifecycle, int(action["version"])) <= (row["lifecycle"], row["version"]):
        return []
    if lifecycle < row["lifecycle"]:
        return []
    steps = []
    current = row["state"] if lifecycle == row["lifecycle"] else None
    if current is None:
        steps.append("trigger")
        current = "triggered"
    if target == "acknowledged" and current == "triggered":
        steps.append("acknowledge")
    if target == "resolved" and current != "resolved":
        steps.append("resolve")
    return steps


_STATE_AFTER = {"trigger": "triggered", "acknowledge": "acknowledged", "resolve": "resolved"}


class PagerDutyConverger:
    vendor = "pagerduty"

    def __init__(self, events: PagerDutyEvents | None, *, dry_run: bool = False, gate_store: BlockStore | None = None,
                 concurrency: int = SERVICE_CONCURRENCY) -> None:
        self.events = events
        self.dry_run = dry_run or events is None
        # one gate per service (routing key), shared by every lane: PagerDuty drops what it answers 429
        self._gate = TargetGate(name="pagerduty", concurrency=concurrency, default_block_s=SERVICE_INTERVAL_S, store=gate_store)

    async def converge(self, action: dict[str, Any], state: KeyState) -> Outcome:
        row = dict(state.get() or {"lifecycle": 0, "state": None, "version": 0})
        steps = plan(row, action)
        if not steps:
            if (int(action["lifecycle"]), int(action["version"])) > (row["lifecycle"], row["version"]):
                row.update(lifecycle=int(action["lifecycle"]), version=int(action["version"]))
                state.put(row)
            return Outcome("skipped", detail=f"PagerDuty already {row['state']} (lifecycle {row['lifecycle']})", vendor_ref=action["dedup_key"])
        if self.dry_run:
            return Outcome("dry_run", detail="would send " + ", ".join(steps), calls=steps, vendor_ref=action["dedup_key"])
        assert self.events is not None
        for i, step in enumerate(steps):
            await self._gate.call(action["service"], self.events.send, action["service"], step,
                                  send_event_kwargs(step, action["dedup_key"], action["event"]))
            row.update(lifecycle=int(action["lifecycle"]), state=_STATE_AFTER[step])
            if i == len(steps) - 1:  # the snapshot's version goes with its last step: one ledger record
                row["version"] = int(action["version"])
            state.put(row)
            await state.persist()
        return Outcome("sent", detail=", ".join(steps), calls=[f"events.{s}" for s in steps], vendor_ref=action["dedup_key"])
