"""Poll Zendesk's cursor-based incremental ticket export and emit one envelope per ticket.

https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/ and
https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api/ :
the first request gives ``start_time``, each next one the previous page's ``after_cursor``, until
``end_of_stream``; later polls continue from the last ``after_cursor``. Zendesk leaves out items
changed in the minute before each request (they come with a later page, after the cursor), so the
watermark is the cursor, never a time. At most 10 export requests per minute per account.

Pure of Kafka: ``emit`` (an async callable taking one ``inbound.zendesk`` envelope) and ``store``
(async ``get() -> dict | None`` / ``put(dict)``) are injected. A page is emitted before its cursor
is stored, so a crash re-emits at most one page (at least once; the mapping's event ids are stable
per ticket version, so duplicates are recognisable).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from connectors.errors import ConnectorError, RateLimitedError
from connectors.zendesk.events import EXPORT_EVENT_TYPE
from connectors.zendesk.settings import EXPORT_REQUESTS_PER_MINUTE

log = logging.getLogger(__name__)

WINDOW_S = 60.0
#: Used when a 429 comes without Retry-After: the export's limit is per minute.
DEFAULT_RETRY_AFTER_S = 60.0
INBOUND_SCHEMA = "switchboard.inbound/1"


class CursorStore(Protocol):
    async def get(self) -> dict[str, Any] | None: ...

    async def put(self, state: dict[str, Any]) -> None: ...


class ExportClient(Protocol):
    async def incremental_tickets(
        self, cursor: str | None = None, start_time: int | None = None, *, per_page: int | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PollResult:
    pages: int
    tickets: int
    cursor: str | None


class ZendeskPoller:
    """Cursor-based export → ``emit(envelope)``, metered to ``max_requests_per_minute``.

    ``clock`` returns epoch seconds and ``sleep`` waits (inject fakes in tests). Without a stored
    cursor the first run starts ``lag_s`` seconds back. The stored state is
    ``{"cursor": <after_cursor>, "updated_at_ms": <clock>}``.
    """

    def __init__(
        self,
        client: ExportClient,
        emit: Callable[[dict[str, Any]], Awaitable[Any]],
        store: CursorStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_requests_per_minute: int = EXPORT_REQUESTS_PER_MINUTE,
        lag_s: float = 60.0,
        per_page: int | None = None,
    ) -> None:
        if max_requests_per_minute < 1:
            raise ValueError("max_requests_per_minute must be at least 1")
        self._client = client
        self._emit = emit
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._limit = max_requests_per_minute
        self._lag_s = lag_s
        self._per_page = per_page
        self._requests: deque[float] = deque()

    async def run_once(self) -> PollResult:
        """Export from the stored cursor (or ``now - lag_s``) until ``end_of_stream``."""
        state = await self._store.get() or {}
        cursor = state.get("cursor")
        if isinstance(cursor, str) and cursor:
            return await self._export(cursor=cursor, start_time=None, progress=None)
        return await self._export(cursor=None, start_time=int(self._clock() - self._lag_s), progress=None)

    async def backfill(
        self, since: datetime, progress: Callable[[int, int], Any] | None = None
    ) -> PollResult:
        """Export everything changed since ``since`` (naive means UTC), whatever is stored; the
        final cursor is stored, so polling continues from there. ``progress(pages, tickets)`` is
        called after each page (it may be async)."""
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return await self._export(cursor=None, start_time=max(0, int(since.timestamp())), progress=progress)

    async def run_forever(self, interval_s: float) -> None:
        """``run_once`` every ``interval_s`` seconds until cancelled. Retryable failures are
        logged and the next round retries; auth and fatal errors are raised."""
        while True:
            try:
                result = await self.run_once()
                log.info("zendesk.poll.done", extra={"pages": result.pages, "tickets": result.tickets})
            except ConnectorError as exc:
                if not exc.retryable:
                    raise
                log.warning("zendesk.poll.failed", extra={"code": exc.code, "error": str(exc)})
            await self._sleep(interval_s)

    async def _export(
        self, *, cursor: str | None, start_time: int | None, progress: Callable[[int, int], Any] | None
    ) -> PollResult:
        pages = tickets = 0
        while True:
            page = await self._fetch(cursor, start_time)
            received_at_ms = int(self._clock() * 1000)
            for ticket in page["tickets"]:
                if isinstance(ticket, dict):
                    await self._emit(_envelope(ticket, received_at_ms))
                else:
                    log.warning("zendesk.poll.bad-item", extra={"type": type(ticket).__name__})
            pages, tickets = pages + 1, tickets + len(page["tickets"])
            if page["after_cursor"]:
                cursor, start_time = page["after_cursor"], None
                await self._store.put({"cursor": cursor, "updated_at_ms": received_at_ms})
            if progress is not None:
                outcome = progress(pages, tickets)
                if inspect.isawaitable(outcome):
                    await outcome
            if page["end_of_stream"] or not page["after_cursor"]:
                return PollResult(pages, tickets, cursor)

    async def _fetch(self, cursor: str | None, start_time: int | None) -> dict[str, Any]:
        while True:
            await self._wait_for_slot()
            try:
                return await self._client.incremental_tickets(cursor, start_time, per_page=self._per_page)
            except RateLimitedError as exc:
                wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S
                log.warning("zendesk.poll.rate-limited", extra={"retry_after": wait})
                await self._sleep(wait)

    async def _wait_for_slot(self) -> None:
        """Sleep until a request fits in the sliding one-minute window, then count it."""
        while True:
            now = self._clock()
            while self._requests and self._requests[0] <= now - WINDOW_S:
                self._requests.popleft()
            if len(self._requests) < self._limit:
                self._requests.append(now)
                return
            await self._sleep(self._requests[0] + WINDOW_S - now)


def _envelope(ticket: dict[str, Any], received_at_ms: int) -> dict[str, Any]:
    return {
        "schema": INBOUND_SCHEMA,
        "source": "zendesk",
        "delivery_id": None,
        "event_type": EXPORT_EVENT_TYPE,
        "received_at_ms": received_at_ms,
        "headers": {},
        "payload": ticket,
    }
