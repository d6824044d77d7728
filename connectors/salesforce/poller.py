"""Poll Salesforce with SOQL on ``SystemModstamp`` and emit one envelope per changed record.

Per object (Opportunity and the feature-request object):
``SELECT <fields> FROM <object> WHERE SystemModstamp > <watermark - overlap> ORDER BY SystemModstamp, Id``
through ``queryAll`` (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_queryall.htm),
so deleted records (``IsDeleted = true``, still in the Recycle Bin) come back too. ``SystemModstamp``
rather than ``LastModifiedDate``: it is indexed (LastModifiedDate is not), it also moves when system
processes change a record, and it cannot be back-dated by a data import
(https://developer.salesforce.com/blogs/engineering/2014/11/force-com-soql-performance-tips-systemmodstamp-vs-lastmodifieddate-2.html).

Time, and why nothing is missed or emitted twice:

- The watermark is the newest ``SystemModstamp`` seen, in Salesforce's clock (ours only stamps
  ``received_at_ms`` and starts the very first run, which looks back ``overlap_s``).
- Each query starts ``overlap_s`` before the watermark (rounded down to the second, the SOQL
  literal's precision): a transaction that commits late can carry a stamp older than records
  already seen. Records read again in that window are recognised by ``(Id, SystemModstamp)``,
  kept beside the watermark for the window only, and not emitted again.
- A page is emitted before the watermark moves past it and the state is stored after every page,
  so a crash re-emits at most one page (at least once; event ids are stable per record version).
- Hard-deleted records (Recycle Bin emptied, or older than its 15 days) are not seen by queryAll;
  an undeleted record is seen as an ordinary change after its delete.

Pure of Kafka: ``emit`` (an async callable taking one ``inbound.salesforce`` envelope) and
``store`` (async ``get() -> dict | None`` / ``put(dict)``) are injected. The stored state is
``{"objects": {"<sObject>": {"watermark_ms": int, "seen": {"<Id>": <stamp ms>}}}}``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from connectors.errors import ConnectorError, RateLimitedError
from connectors.salesforce.events import is_id, poll_envelope
from connectors.salesforce.settings import QUERY_BATCH_MAX, FeatureRequestFields

log = logging.getLogger(__name__)

#: Fields every polled object needs: the identity, the watermark, deletes, and the echo guard.
SYSTEM_FIELDS = ("Id", "IsDeleted", "SystemModstamp", "LastModifiedById")
#: What the mapping reads from an Opportunity (``Account.Name`` through the relationship).
OPPORTUNITY_FIELDS = ("Name", "Amount", "StageName", "Probability", "IsClosed", "IsWon", "CloseDate",
                      "AccountId", "Account.Name", "OwnerId")  # fmt: skip


@dataclass(frozen=True, slots=True)
class PollObject:
    """One object to poll and the fields to select."""

    sobject: str
    fields: tuple[str, ...]


def poll_objects(
    feature_request: FeatureRequestFields = FeatureRequestFields(), *, multi_currency: bool = False
) -> tuple[PollObject, ...]:
    """Opportunity and the feature-request object with the fields the mapping reads
    (``CurrencyIsoCode`` only exists in orgs with multiple currencies)."""
    currency = ("CurrencyIsoCode",) if multi_currency else ()
    fr = feature_request
    fr_fields = ("Name", fr.opportunity_field, fr.account_field, fr.jira_key_field, *fr.text_fields)
    return (
        PollObject("Opportunity", _unique(SYSTEM_FIELDS + OPPORTUNITY_FIELDS + currency)),
        PollObject(fr.object_name, _unique(SYSTEM_FIELDS + fr_fields + currency)),
    )


class StateStore(Protocol):
    async def get(self) -> dict[str, Any] | None: ...

    async def put(self, state: dict[str, Any]) -> None: ...


class QueryClient(Protocol):
    def query_all(self, soql: str, *, page_size: int | None = None) -> AsyncIterator[list[dict[str, Any]]]: ...


@dataclass(frozen=True, slots=True)
class PollResult:
    pages: int
    records: int
    #: records read again within the overlap window and not emitted
    repeats: int


Progress = Callable[[str, int, int], Any]


class SalesforcePoller:
    """SOQL on ``SystemModstamp`` per object → ``emit(envelope)``.

    ``clock`` returns epoch seconds and ``sleep`` waits (inject fakes in tests). ``overlap_s`` is
    how far behind the watermark each query starts; ``page_size`` the batch size asked for.
    """

    def __init__(
        self,
        client: QueryClient,
        emit: Callable[[dict[str, Any]], Awaitable[Any]],
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        objects: Sequence[PollObject] | None = None,
        overlap_s: float = 60.0,
        page_size: int = QUERY_BATCH_MAX,
    ) -> None:
        if overlap_s < 1:
            raise ValueError("overlap_s must be at least 1 second (the precision of a SOQL date-time)")
        self._client = client
        self._emit = emit
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._objects = tuple(objects) if objects is not None else poll_objects()
        if not self._objects or len({o.sobject for o in self._objects}) != len(self._objects):
            raise ValueError("objects must name each object once")
        self._overlap_ms = int(overlap_s * 1000)
        self._page_size = page_size

    async def run_once(self) -> PollResult:
        """One pass over every object from its watermark (minus the overlap). The very first run
        of an object starts ``overlap_s`` ago: use :meth:`backfill` for history. Client failures
        propagate as ConnectorError subclasses; the stored state then holds the last full page."""
        state = await self._load()
        total = PollResult(0, 0, 0)
        for obj in self._objects:
            entry = state["objects"].get(obj.sobject)
            if entry is None:  # the only time our clock sets a watermark; from now on it is Salesforce's
                entry = {"watermark_ms": int(self._clock() * 1000), "seen": {}}
                state["objects"][obj.sobject] = entry
                await self._store.put(_copy(state))
            result = await self._sweep(obj, state, self._bound(entry["watermark_ms"]), skip_seen=True, progress=None)
            total = PollResult(total.pages + result.pages, total.records + result.records,
                               total.repeats + result.repeats)
        return total

    async def backfill(self, since: datetime, progress: Progress | None = None) -> PollResult:
        """Emit every record changed after ``since`` (naive means UTC), whatever was emitted before;
        watermarks only move forward, so polling carries on as usual. ``progress(sobject, done,
        total)`` is called after each page (it may be async); ``total`` is the query's totalSize."""
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        state = await self._load()
        total = PollResult(0, 0, 0)
        for obj in self._objects:
            state["objects"].setdefault(obj.sobject, {"watermark_ms": 0, "seen": {}})
            result = await self._sweep(obj, state, int(since.timestamp()) * 1000, skip_seen=False, progress=progress)
            total = PollResult(total.pages + result.pages, total.records + result.records, 0)
        return total

    async def reread(self, sobject: str, ids: Sequence[str]) -> int:
        """Emit the current row of each record in ``ids`` (deleted ones too): what a Change Data
        Capture gap event asks for. Watermarks are not touched. Returns the rows emitted."""
        obj = self._object(sobject)
        emitted = 0
        for record_id in dict.fromkeys(ids):
            if not is_id(record_id):
                continue
            soql = f"SELECT {', '.join(obj.fields)} FROM {obj.sobject} WHERE Id = '{record_id}'"
            emitted += await self._emit_rows(soql)
        return emitted

    async def reread_since(self, sobject: str, since_ms: int) -> int:
        """Emit every row of ``sobject`` changed from ``since_ms`` (minus the overlap): what an
        overflow event, or a replay id too old to be replayed, asks for. Watermarks are not touched."""
        obj = self._object(sobject)
        return await self._emit_rows(self.soql(obj, self._bound(since_ms)))

    def _object(self, sobject: str) -> PollObject:
        for obj in self._objects:
            if obj.sobject == sobject:
                return obj
        raise ValueError(f"{sobject} is not polled")

    async def _emit_rows(self, soql: str) -> int:
        emitted = 0
        async for page in self._client.query_all(soql, page_size=self._page_size):
            received_at_ms = int(self._clock() * 1000)
            for record in page:
                await self._emit(poll_envelope(record, received_at_ms=received_at_ms))
                emitted += 1
        return emitted

    def polls(self, sobject: str) -> bool:
        return any(obj.sobject == sobject for obj in self._objects)

    async def run_forever(self, interval_s: float) -> None:
        """``run_once`` every ``interval_s`` seconds until cancelled. Retryable failures are logged
        and retried next round (after ``retry_after`` when rate-limited); auth and fatal errors
        (a wrong field name: INVALID_FIELD) are raised."""
        while True:
            wait = interval_s
            try:
                result = await self.run_once()
                log.info("salesforce.poll.done", extra={"pages": result.pages, "records": result.records,
                                                        "repeats": result.repeats})
            except RateLimitedError as exc:
                wait = max(interval_s, exc.retry_after or 0.0)
                log.warning("salesforce.poll.rate-limited", extra={"code": exc.code, "retry_after": wait})
            except ConnectorError as exc:
                if not exc.retryable:
                    raise
                log.warning("salesforce.poll.failed", extra={"code": exc.code, "error": str(exc)})
            await self._sleep(wait)

    def soql(self, obj: PollObject, bound_ms: int) -> str:
        """The query for ``obj`` from ``bound_ms`` (whole seconds)."""
        literal = datetime.fromtimestamp(bound_ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"SELECT {', '.join(obj.fields)} FROM {obj.sobject} "
                f"WHERE SystemModstamp > {literal} ORDER BY SystemModstamp ASC, Id ASC")

    def _bound(self, watermark_ms: int) -> int:
        """The query's lower bound: the overlap before the watermark, down to the second."""
        return max(0, (watermark_ms - self._overlap_ms) // 1000 * 1000)

    async def _sweep(self, obj: PollObject, state: dict[str, Any], bound_ms: int, *, skip_seen: bool,
                     progress: Progress | None) -> PollResult:
        entry = state["objects"][obj.sobject]
        pages = records = repeats = 0
        async for page in self._client.query_all(self.soql(obj, bound_ms), page_size=self._page_size):
            received_at_ms = int(self._clock() * 1000)
            seen: dict[str, int] = dict(entry["seen"])
            newest = entry["watermark_ms"]
            for record in page:
                record_id, stamp = record.get("Id"), _stamp_ms(record.get("SystemModstamp"))
                if not isinstance(record_id, str) or stamp is None:
                    log.warning("salesforce.poll.bad-record", extra={"sobject": obj.sobject})
                    continue
                if skip_seen and seen.get(record_id, -1) >= stamp:
                    repeats += 1
                    continue
                await self._emit(poll_envelope(record, received_at_ms=received_at_ms))
                records += 1
                seen[record_id] = max(stamp, seen.get(record_id, -1))
                newest = max(newest, stamp)
            entry["watermark_ms"] = newest
            floor = self._bound(newest)
            entry["seen"] = {rid: ms for rid, ms in seen.items() if ms > floor}
            pages += 1
            await self._store.put(_copy(state))
            if progress is not None:
                outcome = progress(obj.sobject, records, getattr(page, "total_size", records))
                if inspect.isawaitable(outcome):
                    await outcome
        return PollResult(pages, records, repeats)

    async def _load(self) -> dict[str, Any]:
        state = await self._store.get() or {}
        objects = state.get("objects") if isinstance(state.get("objects"), dict) else {}
        clean = {}
        for name, entry in objects.items():
            if isinstance(entry, dict) and isinstance(entry.get("watermark_ms"), int):
                seen = entry.get("seen") if isinstance(entry.get("seen"), dict) else {}
                clean[name] = {"watermark_ms": entry["watermark_ms"],
                               "seen": {k: v for k, v in seen.items() if isinstance(v, int)}}
        return {"objects": clean}


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return {"objects": {name: {"watermark_ms": entry["watermark_ms"], "seen": dict(entry["seen"])}
                        for name, entry in state["objects"].items()}}


def _stamp_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000) if moment.tzinfo else None


def _unique(fields: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(fields))
