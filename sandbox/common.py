"""Machinery shared by the sandbox fakes: request recording, fault injection, rate-limit helpers and
the control endpoints.

Every fake is an ``aiohttp.web.Application`` built by :func:`sandbox_app` around a
:class:`SandboxState` subclass. The control endpoints never need auth and never see faults:

``GET /_sandbox/calls``
    ``{"calls": [...]}``, every vendor request received, oldest first (see :class:`RecordedCall`).
    ``?path=/api/chat.postMessage`` keeps the calls to one path.
``GET /_sandbox/state``
    The vendor objects (``SandboxState.snapshot()``): Slack channels and messages, PagerDuty incidents.
``POST /_sandbox/reset``
    Back to the state as constructed: calls, vendor objects, faults, limiter counters and config.
``POST /_sandbox/faults``
    Adds fault rules, a JSON list of objects (or one object), see :class:`FaultRule`. Answers
    ``{"faults": [...]}`` with the active rules. ``GET`` lists them, ``DELETE`` clears them.
``POST /_sandbox/config``
    ``{"rate_limits": false}`` switches the vendor's own rate limits off (default on). ``GET`` reads it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

CONTROL_PREFIX = "/_sandbox/"

Clock = Callable[[], float]

# Request headers worth keeping in the call log. Authorization is kept masked.
_RECORDED_HEADERS = frozenset({"authorization", "content-type", "user-agent", "retry-after"})


class SandboxError(ValueError):
    """A control request the sandbox cannot accept (answered 400 with the message)."""


@dataclass
class FaultRule:
    """One injected fault, matched against the request path (exact or prefix match).

    ``status`` answers that status without processing the request (with ``Retry-After`` when
    ``retry_after`` is set and the vendor's error body for that status). ``drop_after_processing``
    processes the request fully (recorded, state changed) and then aborts the TCP connection
    without an answer. ``delay_ms`` waits before doing either, or before answering normally.
    ``count`` is how many matching requests get the fault; ``None`` means until cleared.
    ``every`` applies the rule to one matching request in ``every`` (the others pass untouched and
    do not count): ``every=20`` hits 5% of the calls.
    """

    path: str
    status: int | None = None
    retry_after: float | None = None
    count: int | None = 1
    drop_after_processing: bool = False
    delay_ms: int = 0
    every: int = 1
    _seen: int = 0

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        if not isinstance(data, Mapping):
            raise SandboxError("a fault rule must be a JSON object")
        unknown = set(data) - {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        if unknown:
            raise SandboxError(f"unknown fault rule keys: {sorted(unknown)}")
        path = data.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise SandboxError("fault rule 'path' must be a string starting with '/'")
        if path.startswith(CONTROL_PREFIX):
            raise SandboxError("faults cannot target the control endpoints")
        status = data.get("status")
        if status is not None and (not _is_int(status) or not 100 <= status <= 599):
            raise SandboxError("fault rule 'status' must be an HTTP status code or null")
        retry_after = data.get("retry_after")
        if retry_after is not None and (not _is_number(retry_after) or retry_after < 0):
            raise SandboxError("fault rule 'retry_after' must be a number of seconds or null")
        count = data.get("count", 1)
        if count is not None and (not _is_int(count) or count < 1):
            raise SandboxError("fault rule 'count' must be a positive integer or null")
        drop = data.get("drop_after_processing", False)
        if not isinstance(drop, bool):
            raise SandboxError("fault rule 'drop_after_processing' must be a boolean")
        delay_ms = data.get("delay_ms", 0)
        if not _is_int(delay_ms) or delay_ms < 0:
            raise SandboxError("fault rule 'delay_ms' must be a non-negative integer")
        every = data.get("every", 1)
        if not _is_int(every) or every < 1:
            raise SandboxError("fault rule 'every' must be a positive integer")
        if status is not None and drop:
            raise SandboxError("a fault rule either answers 'status' or drops after processing, not both")
        if status is None and not drop and not delay_ms:
            raise SandboxError("a fault rule needs 'status', 'drop_after_processing' or 'delay_ms'")
        return cls(path, status, retry_after, count, drop, delay_ms, every)

    def matches(self, path: str) -> bool:
        return path.startswith(self.path)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class RecordedCall:
    """One vendor request as the fake saw it. ``status`` is what was (or would have been) answered;
    ``fault`` names the injected fault that applied (``"status"``, ``"drop"``, ``"delay"``);
    ``error`` the vendor's error code when it refused the request in its body (Slack's ``ok: false``)."""

    seq: int
    method: str
    path: str
    query: dict[str, Any]
    body: Any
    headers: dict[str, str]
    time: float
    status: int | None = None
    fault: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SandboxState:
    """Base class of every fake's state: the call log, the fault rules and the config switches.

    ``clock`` (monotonic seconds) drives rate limits and ``wall_clock`` (epoch seconds) the vendor
    timestamps; tests may pass fakes of both. Subclasses keep their configuration (tokens, keys,
    channels) across :meth:`reset` and clear only what they received.
    """

    vendor = "sandbox"

    def __init__(
        self, *, rate_limits: bool = True, clock: Clock = time.monotonic, wall_clock: Clock = time.time
    ) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self._rate_limits_default = rate_limits
        self.rate_limits = rate_limits
        self.calls: list[RecordedCall] = []
        self.faults: list[FaultRule] = []

    def reset(self) -> None:
        self.calls.clear()
        self.faults.clear()
        self.rate_limits = self._rate_limits_default

    def snapshot(self) -> dict[str, Any]:
        """The vendor objects, JSON-ready, for ``GET /_sandbox/state``."""
        return {}

    def calls_to(self, path: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.path == path]

    def add_faults(self, rules: list[FaultRule]) -> None:
        self.faults.extend(rules)

    def take_fault(self, path: str) -> FaultRule | None:
        """The first active rule matching ``path``, with one use consumed."""
        for rule in self.faults:
            if rule.matches(path):
                rule._seen += 1
                if (rule._seen - 1) % rule.every:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        self.faults.remove(rule)
                return rule
        return None

    def fault_response(self, rule: FaultRule) -> web.Response:
        """The answer to a request hit by a ``status`` fault: the vendor's error shape for it."""
        assert rule.status is not None
        headers = {"Retry-After": retry_after_header(rule.retry_after)} if rule.retry_after is not None else None
        return web.json_response(self.fault_body(rule.status), status=rule.status, headers=headers)

    def fault_body(self, status: int) -> Any:
        return {"error": "sandbox_fault", "status": status}

    def answer_error(self, status: int, body: bytes) -> str | None:
        """The vendor error code an answer carries, for the call log (``None``: not an error)."""
        return None


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def take(self) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available (none taken)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class SlidingWindow:
    """At most ``limit`` hits in any ``window`` seconds looking back from now."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.hits: deque[float] = deque()

    def hit(self) -> float:
        """Count a hit: 0.0 when allowed, else the seconds until the oldest hit leaves (not counted)."""
        now = self.clock()
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()
        if len(self.hits) >= self.limit:
            return self.hits[0] + self.window - now
        self.hits.append(now)
        return 0.0


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` carries whole seconds, rounded up so a client never retries too early."""
    return str(math.ceil(seconds))


def parse_body(content_type: str, raw: bytes) -> Any:
    """Best-effort parse for the call log: JSON, form fields, else text (``None`` when empty)."""
    if not raw:
        return None
    if content_type == "application/json":
        try:
            return json.loads(raw)
        except ValueError:
            pass
    elif content_type == "application/x-www-form-urlencoded":
        return form_fields(raw)
    return raw.decode("utf-8", errors="replace")


def form_fields(raw: bytes | str) -> dict[str, str]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return dict(parse_qsl(text, keep_blank_values=True))


def mask_secret(value: str) -> str:
    """``Bearer xoxb-1-abcdef`` -> ``Bearer ****cdef``: enough to tell tokens apart, never the token."""
    scheme, _, secret = value.rpartition(" ")
    masked = "****" + secret[-4:] if len(secret) > 4 else "****"
    return f"{scheme} {masked}" if scheme else masked


def _recorded_headers(request: web.Request) -> dict[str, str]:
    kept = {}
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in _RECORDED_HEADERS or lower.startswith("x-"):
            kept[lower] = mask_secret(value) if lower == "authorization" else value
    return kept


STATE_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)


@web.middleware
async def _record_and_inject(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    raw = await request.read()  # aiohttp caches the body, the handler reads it again
    call = RecordedCall(
        seq=len(state.calls) + 1,
        method=request.method,
        path=request.path,
        query=dict(request.query),
        body=parse_body(request.content_type, raw),
        headers=_recorded_headers(request),
        time=state.wall_clock(),
    )
    state.calls.append(call)
    rule = state.take_fault(request.path)
    if rule is not None and rule.delay_ms:
        call.fault = "delay"
        await asyncio.sleep(rule.delay_ms / 1000)
    if rule is not None and rule.status is not None:
        call.fault = "status"
        response = state.fault_response(rule)
        call.status = response.status
        return response
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        call.status = exc.status
        raise
    call.status = response.status
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        call.error = state.answer_error(response.status, response.body)
    if rule is not None and rule.drop_after_processing:
        call.fault = "drop"
        if request.transport is not None:
            request.transport.abort()  # the answer below goes nowhere: the client sees a dropped connection
    return response


async def _calls(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    path = request.query.get("path")
    calls = state.calls_to(path) if path else state.calls
    return web.json_response({"calls": [c.to_json() for c in calls]})


async def _state(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].snapshot())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.Response(status=204)


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": [r.to_json() for r in request.app[STATE_KEY].faults]})


async def _add_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        data = await request.json()
        rules = [FaultRule.from_json(item) for item in (data if isinstance(data, list) else [data])]
    except (ValueError, SandboxError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.add_faults(rules)
    return web.json_response({"faults": [r.to_json() for r in state.faults]})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[STATE_KEY].faults.clear()
    return web.Response(status=204)


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response({"rate_limits": request.app[STATE_KEY].rate_limits})


async def _set_config(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or set(data) - {"rate_limits"} or not isinstance(data.get("rate_limits", True), bool):
        return web.json_response({"error": 'expected {"rate_limits": true|false}'}, status=400)
    if "rate_limits" in data:
        state.rate_limits = data["rate_limits"]
    return web.json_response({"rate_limits": state.rate_limits})


def sandbox_app(state: SandboxState) -> web.Application:
    """An application with the recording/fault middleware and the control endpoints; the vendor
    module adds its own routes."""
    app = web.Application(middlewares=[_record_and_inject])
    app[STATE_KEY] = state
    app.router.add_get(CONTROL_PREFIX + "calls", _calls)
    app.router.add_get(CONTROL_PREFIX + "state", _state)
    app.router.add_post(CONTROL_PREFIX + "reset", _reset)
    app.router.add_get(CONTROL_PREFIX + "faults", _get_faults)
    app.router.add_post(CONTROL_PREFIX + "faults", _add_faults)
    app.router.add_delete(CONTROL_PREFIX + "faults", _clear_faults)
    app.router.add_get(CONTROL_PREFIX + "config", _get_config)
    app.router.add_post(CONTROL_PREFIX + "config", _set_config)
    return app


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = [
    "CONTROL_PREFIX",
    "STATE_KEY",
    "FaultRule",
    "RecordedCall",
    "SandboxError",
    "SandboxState",
    "SlidingWindow",
    "TokenBucket",
    "form_fields",
    "mask_secret",
    "parse_body",
    "retry_after_header",
    "sandbox_app",
]
