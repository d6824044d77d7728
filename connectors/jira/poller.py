"""Catch-up polling of Jira issues: what webhooks missed (downtime, a webhook disabled, a poller-only site).

Search: ``POST /rest/api/3/search/jql`` with ``updated >= "<bound>" [AND project in (…)] ORDER BY updated ASC``
(https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/), paged with
``nextPageToken``. Each issue found becomes one ``inbound.jira`` envelope shaped like a
``jira:issue_updated`` webhook delivery, so the normal normalize path handles it.

Time, and why nothing is missed:

- The watermark is the ``updated`` time of the newest issue seen, in Jira's own clock (ours only
  stamps ``received_at_ms`` and starts the very first run), so clock skew does not matter.
- JQL dates have minute precision and are read in the **API user's profile time zone**, so the
  bound is written in ``time_zone`` (set it to that profile's zone; a zone east of the real one
  only re-reads more, a zone west of it would skip issues). The bound is rounded down to the
  minute, and moved back further when a DST change makes the wall time ambiguous.
- Each run starts ``overlap_s`` before the watermark: Jira's search is eventually consistent
  ("Recent updates might not be immediately visible"), so an issue saved just before the previous
  run may only show up now. Re-emitted issues are harmless: the event id is derived from the issue
  id and its ``updated`` time, and downstream stages deduplicate.
- The watermark is stored after every page, so a crash resumes where it stopped.

Not seen by polling: deletions (a deleted issue matches no search) and the changelog (the event
has no ``changes``). Jira does not document whether ``nextPageToken`` is a snapshot, an offset or a
cursor; with an offset, an issue edited during a long run could shift another past a page boundary,
and only the overlap window would bring it back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from connectors.errors import ConnectorError, MappingError
from connectors.jira.client import JiraClient
from connectors.jira.events import ISSUE_UPDATED
from connectors.jira.mapping import text_from_adf

#: The fields the normalize path reads (connectors/jira/mapping.py), and ``updated`` for the watermark.
POLL_FIELDS: tuple[str, ...] = (
    "summary", "status", "priority", "issuetype", "project", "labels", "assignee", "reporter", "resolution",
    "security", "fixVersions", "created", "updated", "description",
)  # fmt: skip
#: Marks envelopes made by the poller (webhooks carry issue_updated, issue_generic, …).
POLL_EVENT_TYPE_NAME = "issue_poll"
JQL_TIME_FORMAT = "%Y-%m-%d %H:%M"  # one of JQL's date-time formats; minute precision
_JIRA_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"  # 2024-03-01T13:00:00.123+0100


class WatermarkStore(Protocol):
    """Where the poller keeps its watermark (a small JSON-ready dict)."""

    async def get(self) -> dict[str, Any] | None: ...

    async def put(self, value: dict[str, Any]) -> None: ...


Emit = Callable[[dict[str, Any]], Awaitable[None]]
Progress = Callable[[int, int | None], None]


class JiraPoller:
    """Emits an ``inbound.jira`` envelope for every issue updated since the stored watermark.

    ``clock`` returns epoch seconds. ``projects`` limits the search to those project keys (None:
    every project the API user can browse). ``time_zone`` is the API user's Jira profile time zone.
    """

    def __init__(
        self,
        client: JiraClient,
        emit: Emit,
        store: WatermarkStore,
        *,
        clock: Callable[[], float],
        projects: Sequence[str] | None = None,
        overlap_s: float = 120,
        page_size: int = 100,
        time_zone: str | tzinfo = "UTC",
    ) -> None:
        if overlap_s < 60:
            raise ValueError("overlap_s must be at least 60: JQL dates have minute precision")
        if projects is not None and not projects:
            raise ValueError("projects must be None (all) or a non-empty list")
        self._client = client
        self._emit = emit
        self._store = store
        self._clock = clock
        self._projects = list(projects) if projects is not None else None
        self._overlap_ms = int(overlap_s * 1000)
        self._page_size = page_size
        self._tz = ZoneInfo(time_zone) if isinstance(time_zone, str) else time_zone

    async def run_once(self) -> int:
        """One catch-up pass from the watermark (minus the overlap) to now; returns how many issues
        were emitted. The very first run (no watermark) starts ``overlap_s`` ago: use
        :meth:`backfill` for history. Client failures propagate as ConnectorError subclasses; the
        watermark then holds the last complete page."""
        mark = await self._watermark()
        if mark is None:  # the only time our clock sets the watermark; from now on it is Jira's
            mark = int(self._clock() * 1000)
            await self._store.put({"updated_ms": mark})
        done, _ = await self._sweep(mark - self._overlap_ms, mark, None)
        return done

    async def backfill(self, since: datetime, progress: Progress | None = None) -> int:
        """Emit every issue updated since ``since`` (timezone-aware), then carry on from the
        watermark as usual. ``progress(done, total)`` is called after each page; ``total`` is
        Jira's approximate count, or None when it cannot be had."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        since_ms = int(since.timestamp() * 1000)
        total: int | None
        try:
            total = await self._client.approximate_count(self._jql(since_ms, order=False))
        except ConnectorError:
            total = None
        if progress is not None:
            progress(0, total)
        started_ms = int(self._clock() * 1000)
        done, high = await self._sweep(since_ms, await self._watermark(), progress, total)
        if high is None:  # nothing found and no watermark yet: carry on from when the search ran
            await self._store.put({"updated_ms": started_ms})
        return done

    def jql(self, since_ms: int) -> str:
        """The search run for issues updated at or after ``since_ms`` (epoch milliseconds)."""
        return self._jql(since_ms, order=True)

    def _jql(self, since_ms: int, *, order: bool) -> str:
        clauses = [f'updated >= "{jql_time(since_ms, self._tz)}"']
        if self._projects:
            clauses.append("project in (" + ", ".join(_quote(key) for key in self._projects) + ")")
        return " AND ".join(clauses) + (" ORDER BY updated ASC" if order else "")

    async def _sweep(self, since_ms: int, mark: int | None, progress: Progress | None, total: int | None = None
                     ) -> tuple[int, int | None]:
        """Emit every issue of the search from ``since_ms``, storing the newest ``updated`` after each
        page (never moving the watermark back). Returns how many were emitted and the watermark."""
        done = 0
        high = mark
        async for page in self._client.search_jql(self.jql(since_ms), fields=POLL_FIELDS, page_size=self._page_size):
            for issue in page:
                updated_ms = _updated_ms(issue)
                await self._emit(self.envelope(issue, updated_ms))
                done += 1
                high = updated_ms if high is None else max(high, updated_ms)
            if page and high is not None and high != mark:
                await self._store.put({"updated_ms": high})
                mark = high
            if progress is not None:
                progress(done, total)
        return done, high

    async def _watermark(self) -> int | None:
        stored = await self._store.get()
        value = stored.get("updated_ms") if isinstance(stored, dict) else None
        if stored is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"the stored Jira watermark is malformed: {stored!r}")
        return value

    def envelope(self, issue: dict[str, Any], updated_ms: int) -> dict[str, Any]:
        """The ``inbound.jira`` record for one REST issue, in the webhook (REST v2) representation."""
        fields = issue.get("fields")
        if not isinstance(fields, dict):
            raise MappingError("expected an object", path="issue.fields")
        as_webhook = {k: v for k, v in issue.items() if k != "expand"}
        # REST v3 sends the description as ADF; webhooks send text.
        as_webhook["fields"] = {**fields, "description": text_from_adf(fields.get("description")) or None}
        return {
            "schema": "switchboard.inbound/1",
            "source": "jira",
            "delivery_id": None,
            "event_type": ISSUE_UPDATED,
            "received_at_ms": int(self._clock() * 1000),
            "headers": {},
            "payload": {
                "timestamp": updated_ms,
                "webhookEvent": ISSUE_UPDATED,
                "issue_event_type_name": POLL_EVENT_TYPE_NAME,
                "issue": as_webhook,
            },
        }


def jql_time(ms: int, tz: tzinfo) -> str:
    """``ms`` as a JQL date-time in ``tz``, rounded down to the minute, never later than ``ms``
    whichever way Jira reads an ambiguous (DST fall-back) or skipped (spring-forward) wall time."""
    wall = datetime.fromtimestamp(ms / 1000, tz).replace(second=0, microsecond=0)
    while max(wall.replace(fold=0).timestamp(), wall.replace(fold=1).timestamp()) * 1000 > ms:
        wall -= timedelta(minutes=30)
    return wall.strftime(JQL_TIME_FORMAT)


def _updated_ms(issue: dict[str, Any]) -> int:
    fields = issue.get("fields")
    value = fields.get("updated") if isinstance(fields, dict) else None
    if not isinstance(value, str):
        raise MappingError("expected the updated date-time", path="issue.fields.updated")
    try:
        moment = datetime.strptime(value, _JIRA_TIME_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise MappingError(f"unreadable date-time {value!r}", path="issue.fields.updated") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _quote(value: str) -> str:
    """A JQL string literal (project keys such as ``IN`` or ``AND`` are reserved words unquoted)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
