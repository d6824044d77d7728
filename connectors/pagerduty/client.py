"""PagerDuty Events API v2 over one shared aiohttp session, with typed failures.

PagerDuty docs: https://developer.pagerduty.com/docs/events-api-v2/overview/ .
Status meanings (docs, "Events API v2 Overview" and "Rate Limits"): 202 accepted; 400 invalid event
(do not retry); 429 throttled (the event was NOT ingested; retry later); 5xx and network errors:
retry. The request is ``POST {base_url}/v2/enqueue`` with the integration key as ``routing_key`` in
the JSON body (no auth header); a 202 answers with the event's ``dedup_key``.

This used the maintained ``pagerduty`` client (``EventsApiV2Client.send_event``) until issue 5's
benchmark: that client is synchronous, so it ran in a thread pool, which capped delivery at the
pool's size and made the event loop's socket writes wait for the GIL behind it (a quarter of the
worker's loop time in the profile). The body and the answers handled here are the ones that client
sends and expects. Nothing here retries: the delivery pipeline does (it honours Retry-After).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from connectors.errors import AuthError, ConnectorError, FatalError, RateLimitedError, RetryableError


class _HttpStatus(Exception):
    def __init__(self, status: int, retry_after: str | None, body: str) -> None:
        super().__init__(status)
        self.status, self.retry_after, self.body = status, retry_after, body


def classify(exc: BaseException) -> ConnectorError:
    if isinstance(exc, _HttpStatus):
        s = exc.status
        if s == 429:
            try:
                ra = float(exc.retry_after) if exc.retry_after is not None else None
            except ValueError:
                ra = None
            return RateLimitedError("pagerduty events: throttled (429)", retry_after=ra, code="pagerduty.throttled")
        if s >= 500:
            return RetryableError(f"pagerduty events: HTTP {s}", code=f"pagerduty.http_{s}")
        if s in (401, 403):
            return AuthError(f"pagerduty events: HTTP {s}: check the service's integration key", code=f"pagerduty.http_{s}")
        # 400: invalid event. The body names the problem and holds no secret (it is the API's own text)
        return FatalError(f"pagerduty events: HTTP {s}: {_errors(exc.body)}", code="pagerduty.invalid_event")
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        return RetryableError(f"pagerduty events: {type(exc).__name__}", code="pagerduty.transport")
    return RetryableError(f"pagerduty events: unexpected {type(exc).__name__}", code="pagerduty.unexpected")


def _errors(body: str) -> str:
    import json

    try:
        data = json.loads(body)
        return "; ".join(data.get("errors") or [data.get("message", "")])[:200]
    except (ValueError, AttributeError):
        return "invalid event"


EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
#: connections kept open to the Events API (the delivery agent's concurrency is the real bound)
MAX_CONNECTIONS = 64


class PagerDutyEvents:
    """Send trigger/acknowledge/resolve for a named service. Routing keys never leave this object."""

    def __init__(self, routing_keys: dict[str, str], *, base_url: str = "https://events.pagerduty.com", timeout_s: float = 10.0,
                 ssl_context=None) -> None:
        self._keys = routing_keys
        self._ssl = ssl_context if ssl_context is not None else True
        self._url = base_url.rstrip("/") + "/v2/enqueue"
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def has_service(self, service: str) -> bool:
        return service in self._keys

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:  # created on first use, inside the running loop
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s), raise_for_status=False,
                                                  connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=self._ssl))
        return self._session

    async def send(self, service: str, event_action: str, kwargs: dict[str, Any]) -> str:
        """Send one event (``kwargs``: ``dedup_key``, and for a trigger ``payload``, ``links``, ``client``).

        Returns the dedup key PagerDuty answered with; raises only :mod:`connectors.errors` types.
        """
        key = self._keys.get(service)
        if key is None:
            raise FatalError(f"pagerduty: no routing key configured for service {service!r} (settings pagerduty.services.{service})", code="pagerduty.unknown_service")
        if event_action not in EVENT_ACTIONS or (event_action != "trigger" and not isinstance(kwargs.get("dedup_key"), str)):
            raise FatalError(f"pagerduty events: bad event action {event_action!r} or missing dedup_key", code="pagerduty.invalid_event")
        body = orjson.dumps({**kwargs, "event_action": event_action, "routing_key": key})
        try:
            async with self._http().post(self._url, data=body, headers={"Content-Type": "application/json"}) as resp:
                text = await resp.text(errors="replace")
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:  # an aiohttp error never names the body
            raise classify(exc) from None
        if not 200 <= status < 300:
            raise classify(_HttpStatus(status, retry_after, text[:300]))
        try:
            answer = orjson.loads(text)
            return str(answer["dedup_key"])
        except (ValueError, KeyError, TypeError):
            raise RetryableError(f"pagerduty events: HTTP {status} without a dedup_key in the answer", code="pagerduty.malformed") from None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
