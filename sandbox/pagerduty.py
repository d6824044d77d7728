"""Fake PagerDuty Events API v2: https://developer.pagerduty.com/docs/events-api-v2/overview/
(alert events: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/, change events:
https://developer.pagerduty.com/docs/events-api-v2/send-change-events/).

``POST /v2/enqueue`` takes alert events (trigger, acknowledge, resolve) and ``POST /v2/change/enqueue``
change events. There is no auth header: the 32-character integration key travels as ``routing_key``
in the JSON body. Answers: 202 accepted, 400 invalid (do not retry), 429 throttled (the event is not
ingested; retry later).

The ``pagerduty`` client (7.x, successor of pdpyras): ``EventsApiV2Client(routing_key, base_url=url)``
posts to ``f"{base_url}/v2/enqueue"``, so ``base_url`` is the server root, without ``/v2``. It raises
``pagerduty.UrlError`` for a base_url that is not ``https://``: start the sandbox with ``tls=True`` and
pass ``verify=sandbox.client_ssl_context()`` (extra keywords go to its ``httpx2.Client``). The client is
synchronous (blocking ``time.sleep`` between attempts; run it in a thread from async code) and retries
by itself: 429 without limit, 500/502/503/504 2/4/6/6 times, network errors 3 times, sleeping
``sleep_timer`` (1.5 s) × 2ⁿ. Its ``retry`` dict and ``sleep_timer`` attribute tune that.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .common import SandboxState, SlidingWindow, sandbox_app

# https://developer.pagerduty.com/docs/events-api-v2/rate-limits/ (PagerDuty/developer-docs
# docs/events-API-v2/05-Rate-Limits.md): "approximately 120 calls/minute per integration key", "calculated
# over a 60 second window looking back from the current time"; over it: 429, the event is not ingested.
EVENTS_PER_WINDOW = 120
RATE_WINDOW_SECONDS = 60.0
# Trigger-events reference: summary at most 1024 characters, dedup_key at most 255;
# overview: "Events API payloads are limited to 512 KB" (what the API answers above it is not documented).
MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255
MAX_EVENT_BYTES = 512 * 1024
SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
OPEN_STATUSES = ("triggered", "acknowledged")

_ROUTING_KEY = re.compile(r"[0-9a-z]{32}")

# The spec's 429 response is a dangling $ref (PagerDuty/api-schema#263); this body follows its Error
# schema (status, message) with the wording PagerDuty answers throttled events with.
THROTTLED_BODY = {
    "status": "throttle event",
    "message": "Requests for this service are arriving too quickly.  Please retry later.",
}
UNRECOGNIZED_BODY = {
    "status": "Unrecognized object",
    "message": "Event object format is unrecognized",
    "errors": ["JSON parse error"],
}


@dataclass
class Incident:
    id: str
    routing_key: str
    dedup_key: str
    status: str
    summary: str
    severity: str
    source: str
    created_at: str
    acknowledged_at: str | None = None
    resolved_at: str | None = None
    alerts: int = 1
    log: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PagerDutyState(SandboxState):
    """Services reached by integration key, with the incidents their alert events opened.

    ``routing_keys`` is the set of valid integration keys; ``None`` accepts any 32-character
    ``[0-9a-z]`` key.
    """

    vendor = "pagerduty"

    def __init__(self, routing_keys: Iterable[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routing_keys = frozenset(routing_keys) if routing_keys is not None else None
        self._init_vendor()

    def _init_vendor(self) -> None:
        self.incidents: list[Incident] = []
        # (routing key, dedup key) -> the newest incident it opened: the only one that can be open,
        # since a trigger opens a new incident only when none is (a linear search made the fake
        # O(n) per event, the benchmark's main cost at 20,000 incidents)
        self._newest: dict[tuple[str, str], Incident] = {}
        self.events: list[dict[str, Any]] = []  # accepted alert events and what they did
        self.change_events: list[dict[str, Any]] = []
        self._windows: dict[str, SlidingWindow] = {}

    def reset(self) -> None:
        super().reset()
        self._init_vendor()

    def key_valid(self, key: Any) -> bool:
        if not isinstance(key, str):
            return False
        return key in self.routing_keys if self.routing_keys is not None else bool(_ROUTING_KEY.fullmatch(key))

    def throttle(self, routing_key: str) -> bool:
        """Count one event for the key; True when it is over the limit (and so not ingested)."""
        if not self.rate_limits:
            return False
        window = self._windows.get(routing_key)
        if window is None:
            window = self._windows[routing_key] = SlidingWindow(EVENTS_PER_WINDOW, RATE_WINDOW_SECONDS, self.clock)
        return window.hit() > 0

    def open_incident(self, routing_key: str, dedup_key: str) -> Incident | None:
        incident = self._newest.get((routing_key, dedup_key))
        return incident if incident is not None and incident.status in OPEN_STATUSES else None

    def incidents_for(self, dedup_key: str, routing_key: str | None = None) -> list[Incident]:
        return [i for i in self.incidents if i.dedup_key == dedup_key and routing_key in (None, i.routing_key)]

    def opened_per_dedup_key(self, routing_key: str | None = None) -> dict[str, int]:
        """How many incidents each dedup_key opened: more than one means a trigger after a resolve."""
        return dict(Counter(i.dedup_key for i in self.incidents if routing_key in (None, i.routing_key)))

    def apply(self, event: dict[str, Any]) -> str:
        """Apply a valid alert event with PagerDuty's de-duplication; returns its dedup_key."""
        routing_key, action = event["routing_key"], event["event_action"]
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        now = self.now_iso()
        incident = self.open_incident(routing_key, dedup_key)
        payload = event.get("payload") or {}
        if action == "trigger" and incident is None:
            incident = Incident(
                id=f"PSBX{len(self.incidents) + 1:04d}",
                routing_key=routing_key,
                dedup_key=dedup_key,
                status="triggered",
                summary=payload["summary"],
                severity=payload["severity"],
                source=payload["source"],
                created_at=now,
                payload=payload,
            )
            self.incidents.append(incident)
            self._newest[(routing_key, dedup_key)] = incident
            outcome = "opened"
        elif action == "trigger":
            assert incident is not None
            incident.alerts += 1  # grouped into the open incident, status unchanged
            outcome = "grouped"
        elif incident is None:
            outcome = "ignored"  # acknowledge/resolve of an unknown or resolved key: accepted, no effect
        elif action == "acknowledge":
            if incident.status == "triggered":
                incident.status, incident.acknowledged_at = "acknowledged", now
            outcome = "acknowledged"
        else:
            incident.status, incident.resolved_at = "resolved", now
            outcome = "resolved"
        entry = {"at": now, "event_action": action, "outcome": outcome}
        if action == "trigger":
            entry.update(summary=payload.get("summary"), severity=payload.get("severity"))
        if incident is not None:
            incident.log.append(entry)
        incident_id = incident.id if incident else None
        self.events.append({**entry, "routing_key": routing_key, "dedup_key": dedup_key, "incident": incident_id})
        return dedup_key

    def now_iso(self) -> str:
        moment = datetime.fromtimestamp(self.wall_clock(), timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def fault_body(self, status: int) -> dict[str, Any]:
        if status == 429:
            return THROTTLED_BODY
        return {"status": "error", "message": "Internal server error" if status >= 500 else "Sandbox fault"}

    def snapshot(self) -> dict[str, Any]:
        return {
            "incidents": [i.to_json() for i in self.incidents],
            "opened_per_dedup_key": self.opened_per_dedup_key(),
            "events": self.events,
            "change_events": self.change_events,
        }


def _invalid(*errors: str) -> web.Response:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    return web.json_response(body, status=400)


def _alert_errors(event: dict[str, Any]) -> list[str]:
    errors = []
    action = event.get("event_action")
    if action in (None, ""):
        errors.append("'event_action' is missing or blank")
    elif action not in EVENT_ACTIONS:
        errors.append("'event_action' must be one of " + ", ".join(EVENT_ACTIONS))
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif dedup_key is not None and len(dedup_key) > MAX_DEDUP_KEY_CHARS:
        errors.append(f"'dedup_key' must be at most {MAX_DEDUP_KEY_CHARS} characters")
    elif action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or blank")
        else:
            errors += _summary_errors(payload)
            for name in ("source", "severity"):
                if not isinstance(payload.get(name), str) or not payload[name]:
                    errors.append(f"'payload.{name}' is missing or blank")
            if payload.get("severity") and payload["severity"] not in SEVERITIES:
                errors.append("'payload.severity' must be one of " + ", ".join(SEVERITIES))
    return errors


def _summary_errors(payload: dict[str, Any]) -> list[str]:
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        return ["'payload.summary' is missing or blank"]
    if len(summary) > MAX_SUMMARY_CHARS:
        return [f"'payload.summary' must be at most {MAX_SUMMARY_CHARS} characters"]
    return []


class _EventsApi:
    def __init__(self, state: PagerDutyState) -> None:
        self.state = state

    async def _event(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The parsed event with a valid, unthrottled routing key, or the error answer."""
        raw = await request.read()
        if len(raw) > MAX_EVENT_BYTES:
            return _invalid(f"Event object is larger than {MAX_EVENT_BYTES // 1024} KB")
        try:
            event = json.loads(raw)
        except ValueError:
            return web.json_response(UNRECOGNIZED_BODY, status=400)
        if not isinstance(event, dict):
            return web.json_response(UNRECOGNIZED_BODY, status=400)
        key = event.get("routing_key")
        if key in (None, ""):
            return _invalid("'routing_key' is missing or blank")
        if not self.state.key_valid(key):
            return _invalid("Invalid routing key")
        if self.state.throttle(key):
            return web.json_response(THROTTLED_BODY, status=429)
        return event

    async def enqueue(self, request: web.Request) -> web.Response:
        event = await self._event(request)
        if isinstance(event, web.Response):
            return event
        if errors := _alert_errors(event):
            return _invalid(*errors)
        dedup_key = self.state.apply(event)
        body = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        return web.json_response(body, status=202)

    async def change_enqueue(self, request: web.Request) -> web.Response:
        event = await self._event(request)
        if isinstance(event, web.Response):
            return event
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return _invalid("'payload' is missing or blank")
        if errors := _summary_errors(payload):
            return _invalid(*errors)
        self.state.change_events.append({"at": self.state.now_iso(), **event})
        return web.json_response({"status": "success", "message": "Change event processed"}, status=202)


def create_app(state: PagerDutyState | None = None) -> web.Application:
    state = state if state is not None else PagerDutyState()
    app = sandbox_app(state)
    api = _EventsApi(state)
    app.router.add_post("/v2/enqueue", api.enqueue)
    app.router.add_post("/v2/change/enqueue", api.change_enqueue)
    return app


__all__ = ["Incident", "PagerDutyState", "create_app"]
