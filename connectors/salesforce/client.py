"""A thin Salesforce REST client on simple-salesforce, with typed failures.

Resources: Query / QueryAll and their ``nextRecordsUrl`` follow-ups
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm ,
…/resources_queryall.htm ; sObject Rows (get, update) …/resources_sobject_retrieve.htm ; sObject
create …/dome_sobject_create.htm ; sObject Get Updated/Deleted …/resources_getupdated.htm ,
…/resources_getdeleted.htm ; Limits …/resources_limits.htm . Errors:
…/errorcodes.htm (always a JSON array of ``{message, errorCode, fields?}``). OAuth token endpoint
https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flows.htm .

simple-salesforce is synchronous (requests); every call runs in a worker thread, never on the
event loop. It gets in the way in six places, all handled by :class:`_Session` (the requests
session handed to it) and :meth:`SalesforceClient._run`:

* **It only builds** ``https://{host[:port]}/services/…`` from ``instance_url``. It is given a
  placeholder origin and the session sends each request to ``instance_url`` instead, so
  ``http://127.0.0.1:PORT`` (the sandbox) and path prefixes work.
* **Its logins do not fit**: there is no refresh-token flow; its client-credentials flow always
  posts to ``https://{domain}.salesforce.com``; username + password uses the retiring SOAP
  ``login()``. The client fetches tokens from the token endpoint itself and hands simple-salesforce
  a direct session; the session puts the current ``Authorization: Bearer`` on each request.
* **Its 401 handling** only applies to sessions it logged in itself, and then refreshes up to
  three times (``SFType`` without any bound: it drops its retry counter). With a direct session
  it raises; :meth:`SalesforceClient._run` refreshes the token once on ``INVALID_SESSION_ID`` and
  repeats the request, and a second 401 is an AuthError.
* **Statuses are not hidden** (``SalesforceError.status`` and ``.content``, the parsed error
  array); :func:`classify` types them, here only. It does not retry 5xx or dropped connections
  itself; the session mounts adapters without retries so that stays true.
* **No timeout**: requests without one can wait forever; the session sets one.
* **Odd edges**: results are ``OrderedDict`` unless ``object_pairs_hook=dict``; ``deleted()`` and
  ``updated()`` format their bounds with ``strftime('%z')``, which breaks the URL for naive
  datetimes (the client passes UTC-aware ones); ``Sforce-Limit-Info`` is parsed separately per
  object handler, so the session reads it once for all.

Rate limits: Salesforce has no 429 and no ``Retry-After``. Over the rolling 24-hour allocation or
the cap on concurrent long-running requests it answers 403 ``REQUEST_LIMIT_EXCEEDED``
(https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm);
the back-offs below are ours.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, TypeVar

import requests

from connectors.salesforce.lean import defer_metadata_api

defer_metadata_api()  # before simple_salesforce is imported: its SOAP stack is never used here

from simple_salesforce import Salesforce, SFType  # noqa: E402
from simple_salesforce.exceptions import SalesforceError  # noqa: E402

from connectors.errors import AuthError, ConnectorError, FatalError, RateLimitedError, RetryableError
from connectors.tls import TrustingAdapter
from connectors.salesforce.events import is_id
from connectors.salesforce.settings import DEFAULT_API_VERSION, QUERY_BATCH_MAX, QUERY_BATCH_MIN, SalesforceSettings

_PLACEHOLDER_HOST = "switchboard.salesforce.invalid"
_PLACEHOLDER_ORIGIN = f"https://{_PLACEHOLDER_HOST}"
_SOBJECT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
_T = TypeVar("_T")

#: Over the rolling 24-hour allocation ("TotalRequests Limit exceeded."), calls come back only as
#: those made a day earlier age out: retry in minutes, not seconds.
DAILY_LIMIT_RETRY_AFTER_S = 300.0
#: Over the cap on concurrent long-running requests (25 of 20 s or more in production): it frees up as
#: soon as one of those requests ends, so seconds.
CONCURRENT_LIMIT_RETRY_AFTER_S = 30.0
#: errorCodes worth another attempt although Salesforce answers 4xx.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})


class _TokenRefused(Exception):
    """A non-2xx answer of the token endpoint (``{"error", "error_description"}``)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(status)
        self.status, self.error, self.description = status, error, description


class QueryPage(list):  # type: ignore[type-arg]
    """One batch of records; ``total_size`` is the query's ``totalSize`` (all batches)."""

    total_size: int = 0


class _Session(requests.Session):
    def __init__(self, base_url: str, ca_file: str | None, timeout_s: float, client_name: str | None) -> None:
        super().__init__()
        self._base_url = base_url.rstrip("/")
        self._ca_file = ca_file
        self._timeout_s = timeout_s
        self._call_options = f"client={client_name}" if client_name else None
        self._local = threading.local()
        self.api_usage: tuple[int, int] | None = None
        for prefix in ("https://", "http://"):
            self.mount(prefix, TrustingAdapter(ca_file, max_retries=0))

    def use_token(self, token: str) -> None:
        """The access token for this thread's API requests."""
        self._local.token = token

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if isinstance(url, str) and url.startswith(_PLACEHOLDER_ORIGIN):
            url = self._base_url + url[len(_PLACEHOLDER_ORIGIN):]
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "x-prettyprint"}
            headers["Authorization"] = f"Bearer {self._local.token}"
            if self._call_options:
                headers["Sforce-Call-Options"] = self._call_options
            kwargs["headers"] = headers
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout_s
        if self._ca_file:
            # per request: a session-level verify loses to REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
            kwargs["verify"] = self._ca_file
        response = super().request(method, url, *args, **kwargs)
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.api_usage = (int(match.group(1)), int(match.group(2)))
        return response


class _Tokens:
    """The current access token, fetched from the token endpoint when there is none."""

    def __init__(self, session: _Session, token_url: str, form: Mapping[str, str]) -> None:
        self._session, self._token_url, self._form = session, token_url, dict(form)
        self._lock = threading.Lock()
        self._current: str | None = None
        self.fetched = 0

    def get(self) -> str:
        with self._lock:
            if self._current is None:
                self._current = self._fetch()
            return self._current

    def discard(self, token: str) -> None:
        """Forget ``token`` unless another thread already replaced it."""
        with self._lock:
            if self._current == token:
                self._current = None

    def _fetch(self) -> str:
        response = self._session.post(self._token_url, data=self._form, headers={"Accept": "application/json"})
        try:
            data = response.json()
        except ValueError:
            data = None
        data = data if isinstance(data, dict) else {}
        if not 200 <= response.status_code < 300:
            raise _TokenRefused(response.status_code, str(data.get("error") or "")[:60],
                                str(data.get("error_description") or "")[:200])
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise _TokenRefused(response.status_code, "invalid_response", "no access_token in the answer")
        self.fetched += 1
        return token


def _first_error(content: Any) -> tuple[str, str]:
    """``errorCode`` and ``message`` of Salesforce's error array (``[{"message", "errorCode"}]``)."""
    first = content[0] if isinstance(content, list) and content else content
    if not isinstance(first, dict):
        return "", ""
    code, message = first.get("errorCode"), first.get("message")
    return (str(code)[:60] if code else ""), (" ".join(str(message).split())[:300] if message else "")


def classify(exc: BaseException, operation: str) -> ConnectorError:
    """The one place where Salesforce and transport failures become :mod:`connectors.errors` types."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, _TokenRefused):
        text = ": ".join(p for p in (exc.error, exc.description) if p)
        detail = f"salesforce {operation}: token endpoint HTTP {exc.status}" + (f": {text}" if text else "")
        if exc.status >= 500:
            return RetryableError(detail, code=f"salesforce.oauth.http_{exc.status}")
        return AuthError(f"{detail}: check client_id, client_secret, refresh_token and the connected app",
                         code=f"salesforce.oauth.{exc.error or f'http_{exc.status}'}")
    if isinstance(exc, SalesforceError):
        status = exc.status
        error_code, message = _first_error(exc.content)
        detail = f"salesforce {operation}: HTTP {status}" + (f" {error_code}" if error_code else "") + (
            f": {message}" if message else "")
        code = f"salesforce.{error_code.lower() if error_code else f'http_{status}'}"
        if error_code == "REQUEST_LIMIT_EXCEEDED":
            wait = CONCURRENT_LIMIT_RETRY_AFTER_S if "concurrent" in message.lower() else DAILY_LIMIT_RETRY_AFTER_S
            return RateLimitedError(f"{detail} (retry after {wait:.0f}s)", retry_after=wait, code=code)
        if status == 401:
            return AuthError(f"{detail}: the token was refused after one refresh", code=code)
        if status == 403:
            return AuthError(f"{detail}: check the integration user's permissions", code=code)
        if error_code in RETRYABLE_CODES or status >= 500:
            return RetryableError(detail, code=code)
        return FatalError(detail, code=code)  # 300, 400, 404 (NOT_FOUND, ENTITY_IS_DELETED), 405, 409, 415
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return RetryableError(f"salesforce {operation}: {type(exc).__name__}", code="salesforce.transport")
    return RetryableError(f"salesforce {operation}: unexpected {type(exc).__name__}", code="salesforce.unexpected")


class SalesforceClient:
    """The Salesforce calls the hub makes, each raising only :mod:`connectors.errors` types.

    ``instance_url`` is the org's My Domain URL (or the sandbox's); ``refresh_token`` selects the
    refresh-token flow, otherwise the client-credentials flow is used; ``token_url`` defaults to
    ``<instance_url>/services/oauth2/token``. ``client_name`` is sent in ``Sforce-Call-Options``
    (it shows up in Change Data Capture's ``changeOrigin``). Credentials never leave the session.
    """

    def __init__(
        self,
        instance_url: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        refresh_token: str | None = None,
        token_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        client_name: str | None = "switchboard",
        timeout_s: float = 30.0,
        ca_file: str | None = None,
        threads: int = 4,
    ) -> None:
        if not client_id or not (client_secret or refresh_token):
            raise ValueError("client_id and client_secret (or a refresh_token) are required")
        form = {"client_id": client_id}
        if client_secret:
            form["client_secret"] = client_secret
        if refresh_token:
            form.update(grant_type="refresh_token", refresh_token=refresh_token)
        else:
            form["grant_type"] = "client_credentials"
        base = instance_url.rstrip("/")
        self._session = _Session(base, ca_file, timeout_s, client_name)
        self._tokens = _Tokens(self._session, token_url or f"{base}/services/oauth2/token", form)
        self._version = api_version
        self._sf = Salesforce(session_id="set-per-request", instance_url=_PLACEHOLDER_ORIGIN, version=api_version,
                              session=self._session, object_pairs_hook=dict)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="salesforce")

    @classmethod
    def from_settings(cls, settings: SalesforceSettings, *, ssl_ca_file: str | None = None) -> SalesforceClient:
        """A client for ``settings`` (``ssl_ca_file`` overrides ``settings.ca_file``)."""
        if not settings.configured:
            raise ValueError("salesforce.instance_url, salesforce.client_id and salesforce.client_secret "
                             "(or salesforce.refresh_token) must be set")
        assert settings.instance_url and settings.client_id
        secret = settings.client_secret.get_secret_value() if settings.client_secret else None
        refresh = settings.refresh_token.get_secret_value() if settings.refresh_token else None
        return cls(settings.instance_url, settings.client_id, secret, refresh_token=refresh,
                   token_url=settings.token_endpoint, api_version=settings.api_version,
                   client_name=settings.client_name, timeout_s=settings.timeout_s,
                   ca_file=ssl_ca_file or settings.ca_file)

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """``(used, max)`` of the daily API allocation, from the last ``Sforce-Limit-Info`` seen."""
        return self._session.api_usage

    async def access_token(self, *, renew: bool = False) -> str:
        """The current OAuth access token, for the Streaming API (CometD), which shares it with REST.
        ``renew`` drops the current one first (CometD said ``401::Authentication invalid``)."""

        def fetch() -> str:
            try:
                if renew and self._tokens._current is not None:
                    self._tokens.discard(self._tokens._current)
                return self._tokens.get()
            except Exception as exc:  # noqa: BLE001 - typed here, once
                raise classify(exc, "token") from None

        return await asyncio.get_running_loop().run_in_executor(self._pool, fetch)

    @property
    def instance_url(self) -> str:
        return self._session._base_url

    @property
    def api_version(self) -> str:
        return self._version

    @property
    def tokens_fetched(self) -> int:
        return self._tokens.fetched

    def query(self, soql: str, *, page_size: int | None = None) -> AsyncIterator[QueryPage]:
        """``GET /query?q=``: the records batch by batch, following ``nextRecordsUrl``. ``page_size``
        asks for a batch size (200-2000; Salesforce may send fewer)."""
        return self._pages("query", soql, include_deleted=False, page_size=page_size)

    def query_all(self, soql: str, *, page_size: int | None = None) -> AsyncIterator[QueryPage]:
        """``GET /queryAll?q=``: like :meth:`query`, including deleted (Recycle Bin) and merged
        records (``IsDeleted`` true)."""
        return self._pages("query_all", soql, include_deleted=True, page_size=page_size)

    async def _pages(self, operation: str, soql: str, *, include_deleted: bool,
                     page_size: int | None) -> AsyncIterator[QueryPage]:
        if page_size is not None and not QUERY_BATCH_MIN <= page_size <= QUERY_BATCH_MAX:
            raise ValueError(f"page_size must be {QUERY_BATCH_MIN}..{QUERY_BATCH_MAX}")
        headers = {"Sforce-Query-Options": f"batchSize={page_size}"} if page_size else {}
        data = await self._run(operation, lambda: self._sf.query(soql, include_deleted=include_deleted,
                                                                   headers=headers))
        while True:
            page = QueryPage(r for r in data.get("records") or [] if isinstance(r, dict))
            page.total_size = data.get("totalSize") if isinstance(data.get("totalSize"), int) else len(page)
            yield page
            next_url = data.get("nextRecordsUrl")
            if data.get("done", True) is not False or not next_url:
                return
            if not isinstance(next_url, str) or not next_url.startswith("/services/data/"):
                raise RetryableError(f"salesforce {operation}: unexpected nextRecordsUrl", code="salesforce.unexpected")
            data = await self._run(operation, lambda: self._sf.query_more(next_url, identifier_is_url=True,
                                                                         headers=headers))

    async def get(self, sobject: str, record_id: str, *, fields: list[str] | None = None) -> dict[str, Any]:
        """``GET /sobjects/{sobject}/{id}`` (every field, or ``fields``)."""
        handler, rid = self._sobject(sobject), _record_id(record_id)
        params = {"fields": ",".join(fields)} if fields else None
        return await self._run("get", lambda: handler.get(rid, params=params))

    async def update(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """``PATCH /sobjects/{sobject}/{id}`` (204). With nothing to change, makes no request."""
        handler, rid = self._sobject(sobject), _record_id(record_id)
        if fields:
            await self._run("update", lambda: handler.update(rid, dict(fields)))

    async def create(self, sobject: str, fields: Mapping[str, Any]) -> str:
        """``POST /sobjects/{sobject}`` (201 ``{id, success, errors}``): the new record's id. Not
        idempotent: the caller dedups (e.g. a Task per Jira transition)."""
        handler = self._sobject(sobject)
        answer = await self._run("create", lambda: handler.create(dict(fields)))
        record_id = answer.get("id") if isinstance(answer, dict) else None
        if not (isinstance(answer, dict) and answer.get("success") is True and is_id(record_id)):
            raise FatalError("salesforce create: the answer names no new record", code="salesforce.create_failed")
        return record_id

    async def post_feed_item(self, subject_id: str, segments: list[dict[str, Any]]) -> str:
        """``POST /chatter/feed-elements``: a FeedItem on ``subject_id``'s feed (a record, or a user's
        profile) made of ``segments`` (``Text``, ``Mention``); its id. Not idempotent."""
        body = {"body": {"messageSegments": segments}, "feedElementType": "FeedItem", "subjectId": _record_id(subject_id)}
        answer = await self._run("chatter", lambda: self._sf.restful("chatter/feed-elements", method="POST", json=body))
        element_id = answer.get("id") if isinstance(answer, dict) else None
        if not is_id(element_id):
            raise FatalError("salesforce chatter: the answer names no feed element", code="salesforce.chatter_failed")
        return element_id

    async def feed_elements(self, record_id: str, *, pages: int = 10) -> list[dict[str, Any]]:
        """``GET /chatter/feeds/record/{id}/feed-elements``, newest first, up to ``pages`` pages of 100."""
        rid = _record_id(record_id)
        path = f"chatter/feeds/record/{rid}/feed-elements"
        params: dict[str, Any] | None = {"pageSize": 100}
        elements: list[dict[str, Any]] = []
        for _ in range(pages):
            data = await self._run("chatter", lambda: self._sf.restful(path, params=params))
            data = data if isinstance(data, dict) else {}
            elements += [e for e in data.get("elements") or [] if isinstance(e, dict)]
            next_url = data.get("nextPageUrl")
            marker = f"/v{self._version}/"
            if not isinstance(next_url, str) or marker not in next_url:
                break
            path, params = next_url.split(marker, 1)[1], None
        return elements

    async def get_updated(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """``GET /sobjects/{sobject}/updated/?start=&end=`` → ``{ids, latestDateCovered}``."""
        handler, start, end = self._sobject(sobject), _utc(start), _utc(end)
        return await self._run("get_updated", lambda: handler.updated(start, end))

    async def get_deleted(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """``GET /sobjects/{sobject}/deleted/?start=&end=`` → ``{deletedRecords: [{id, deletedDate}],
        earliestDateAvailable, latestDateCovered}``. Salesforce ignores the seconds, wants ``start``
        more than a minute before ``end`` and keeps deletions 15 days at most."""
        handler, start, end = self._sobject(sobject), _utc(start), _utc(end)
        return await self._run("get_deleted", lambda: handler.deleted(start, end))

    async def limits(self) -> dict[str, Any]:
        """``GET /limits``: ``{"DailyApiRequests": {"Max", "Remaining"}, …}``."""
        return await self._run("limits", self._sf.limits)

    def _sobject(self, name: str) -> SFType:
        if not _SOBJECT.fullmatch(name or ""):
            raise FatalError(f"salesforce: not an sObject name: {name!r}", code="salesforce.invalid_request")
        return SFType(name, "set-per-request", _PLACEHOLDER_HOST, sf_version=self._version, session=self._session,
                      salesforce=self._sf, object_pairs_hook=dict)

    async def _run(self, operation: str, call: Callable[[], _T]) -> _T:
        """Run ``call`` in a worker thread with a token; on ``401 INVALID_SESSION_ID`` fetch a new
        token once and repeat the call."""

        def attempt() -> _T:
            try:
                token = self._tokens.get()
                self._session.use_token(token)
                try:
                    return call()
                except SalesforceError as exc:
                    if exc.status != 401 or _first_error(exc.content)[0] != "INVALID_SESSION_ID":
                        raise
                self._tokens.discard(token)
                self._session.use_token(self._tokens.get())
                return call()  # a second 401 is an AuthError
            except Exception as exc:  # noqa: BLE001 - typed here, once
                raise classify(exc, operation) from None

        return await asyncio.get_running_loop().run_in_executor(self._pool, attempt)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._session.close()


def _record_id(value: str) -> str:
    if not is_id(value):
        raise FatalError(f"salesforce: not a record id: {value!r}", code="salesforce.invalid_request")
    return value


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
