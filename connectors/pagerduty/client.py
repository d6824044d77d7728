"""PagerDuty Events API v2 through the maintained ``pagerduty`` client, with typed failures.

PagerDuty docs: https://developer.pagerduty.com/docs/events-api-v2/overview/ .
Status meanings (docs, "Events API v2 Overview" and "Rate Limits"): 202 accepted; 400 invalid event
(do not retry); 429 throttled (the event was NOT ingested; retry later); 5xx and network errors:
retry.

``pagerduty.EventsApiV2Client`` is synchronous (httpx2) and retries by itself: 429 forever with
its own sleeps, network errors a few times. Retrying is the delivery pipeline's job (it honours
Retry-After and parks work instead of blocking), so :class:`_OneAttemptClient` makes the library
stop after one attempt: its ``postprocess`` hook raises on any non-2xx answer before the library's
retry loop sees it, and network retries are set to zero. The client runs in a worker thread,
never on the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pagerduty

from connectors.errors import AuthError, ConnectorError, FatalError, RateLimitedError, RetryableError


class _HttpStatus(Exception):
    def __init__(self, status: int, retry_after: str | None, body: str) -> None:
        super().__init__(status)
        self.status, self.retry_after, self.body = status, retry_after, body


class _OneAttemptClient(pagerduty.EventsApiV2Client):
    max_network_attempts = 0

    def postprocess(self, response: Any) -> None:  # library hook, called after every response
        if not response.is_success:
            raise _HttpStatus(response.status_code, response.headers.get("retry-after"), response.text[:300])


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
    if isinstance(exc, pagerduty.Error):  # transport errors surface as pagerduty.Error
        return RetryableError(f"pagerduty events: {type(exc.__cause__ or exc).__name__}", code="pagerduty.transport")
    return RetryableError(f"pagerduty events: unexpected {type(exc).__name__}", code="pagerduty.unexpected")


def _errors(body: str) -> str:
    import json

    try:
        data = json.loads(body)
        return "; ".join(data.get("errors") or [data.get("message", "")])[:200]
    except (ValueError, AttributeError):
        return "invalid event"


class PagerDutyEvents:
    """Send trigger/acknowledge/resolve for a named service. Routing keys never leave this object."""

    def __init__(self, routing_keys: dict[str, str], *, base_url: str = "https://events.pagerduty.com", timeout_s: float = 10.0,
                 threads: int = 4, ssl_context=None) -> None:
        self._keys = routing_keys
        self._verify = ssl_context if ssl_context is not None else True
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_s
        self._clients: dict[str, _OneAttemptClient] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pagerduty")

    def has_service(self, service: str) -> bool:
        return service in self._keys

    def _client(self, service: str) -> _OneAttemptClient:
        client = self._clients.get(service)
        if client is None:
            key = self._keys.get(service)
            if key is None:
                raise FatalError(f"pagerduty: no routing key configured for service {service!r} (settings pagerduty.services.{service})", code="pagerduty.unknown_service")
            # the library refuses any base URL that is not https://
            client = _OneAttemptClient(key, base_url=self._base_url, verify=self._verify)
            client.timeout = self._timeout
            self._clients[service] = client
        return client

    def _send(self, service: str, event_action: str, kwargs: dict[str, Any]) -> str:
        try:
            return self._client(service).send_event(event_action, **kwargs)
        except ConnectorError:
            raise
        except Exception as exc:  # noqa: BLE001 - typed here, once
            raise classify(exc) from None

    async def send(self, service: str, event_action: str, kwargs: dict[str, Any]) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._send, service, event_action, kwargs)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._pool.shutdown(wait=False)
