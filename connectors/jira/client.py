"""Jira Cloud REST v3 client: the calls the hub makes, with every failure typed once.

Endpoints (https://developer.atlassian.com/cloud/jira/platform/rest/v3/):
issue search ``POST /rest/api/3/search/jql`` and ``/search/approximate-count`` (api-group-issue-search),
``GET|PUT /rest/api/3/issue/{id}`` (api-group-issues), remote links (api-group-issue-remote-links),
issue properties (api-group-issue-properties), comments (api-group-issue-comments).
Auth: Basic ``email:api_token`` (https://developer.atlassian.com/cloud/jira/platform/basic-auth-for-rest-apis/).
Rate limits: https://developer.atlassian.com/cloud/jira/platform/rate-limiting/

:func:`error_for` is the only place where an HTTP answer becomes a :mod:`connectors.errors` type;
transport failures become :class:`RetryableError` in :meth:`JiraClient._send`.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from connectors.errors import AuthError, ConnectorError, FatalError, RateLimitedError, RetryableError
from connectors.jira.mapping import adf_from_text

SEARCH_PATH = "/rest/api/3/search/jql"
#: search/jql ``maxResults``: "It returns max 5000 issues" (fewer when fields are requested: page on).
SEARCH_MAX_PAGE_SIZE = 5000
#: Fields that take Atlassian Document Format in REST v3 (editIssue): plain text is converted.
ADF_FIELDS = frozenset({"description", "environment"})
USER_AGENT = "switchboard-jira/1"
_DETAIL_MAX_CHARS = 300


class JiraClient:
    """One ``httpx.AsyncClient`` per instance; call :meth:`close` (or use ``async with``) when done.

    Every method raises only :class:`~connectors.errors.ConnectorError` subclasses for vendor or
    transport failures. ``transport`` replaces the network (tests).
    """

    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: str,
        *,
        timeout_s: float = 10,
        ssl_context: ssl.SSLContext | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL such as https://example.atlassian.net")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("base_url must not carry credentials, a query or a fragment")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(email, api_token),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=timeout_s,
            verify=ssl_context if ssl_context is not None else True,
            transport=transport,
        )

    async def __aenter__(self) -> JiraClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- search ---------------------------------------------------------------------------------

    async def search_jql(
        self, jql: str, *, fields: Sequence[str], page_size: int = 100
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the pages of a JQL search, following ``nextPageToken`` until the last page.

        ``fields`` must be named: this endpoint returns ids only by default. Jira may return fewer
        than ``page_size`` issues per page. A page token repeated by Jira is a FatalError (it would
        loop forever).
        """
        if not 1 <= page_size <= SEARCH_MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {SEARCH_MAX_PAGE_SIZE}")
        body: dict[str, Any] = {"jql": jql, "fields": _names(fields), "maxResults": page_size}
        seen: set[str] = set()
        while True:
            data = await self._json("POST", SEARCH_PATH, "search_jql", json=body)
            issues = data.get("issues") if isinstance(data, dict) else None
            if not isinstance(issues, list):
                raise RetryableError("jira search_jql: the answer has no issues list", code="jira.bad_response")
            yield issues
            token = data.get("nextPageToken")
            # "The nextPageToken field is not included in the response for the last page"
            if data.get("isLast") is True or not isinstance(token, str) or not token:
                return
            if token in seen:
                raise FatalError("jira search_jql: Jira repeated a page token", code="jira.pagination")
            seen.add(token)
            body["nextPageToken"] = token

    async def approximate_count(self, jql: str) -> int:
        """Jira's estimate of how many issues match (for progress reports; not exact)."""
        data = await self._json("POST", "/rest/api/3/search/approximate-count", "approximate_count", json={"jql": jql})
        count = data.get("count") if isinstance(data, dict) else None
        if not isinstance(count, int):
            raise RetryableError("jira approximate_count: the answer has no count", code="jira.bad_response")
        return count

    # --- issues ---------------------------------------------------------------------------------

    async def get_issue(self, id_or_key: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """The issue by id or key (an old key of a moved issue resolves to it; ``key`` is the current one)."""
        params = {"fields": ",".join(_names(fields))} if fields is not None else None
        return await self._json("GET", _issue_path(id_or_key), "get_issue", params=params)

    async def update_fields(self, issue_id: str, fields: Mapping[str, Any]) -> None:
        """Edit fields (``PUT …/issue/{id}`` with ``{"fields": …}``); text for ADF fields is converted."""
        body = {name: adf_from_text(value) if name in ADF_FIELDS and isinstance(value, str) else value
                for name, value in fields.items()}
        await self._send("PUT", _issue_path(issue_id), "update_fields", json={"fields": body})

    async def add_comment(self, issue_id: str, adf_body: dict[str, Any] | str) -> dict[str, Any]:
        """Add a comment. REST v3 refuses a plain string body, so text is converted to ADF."""
        body = adf_from_text(adf_body) if isinstance(adf_body, str) else adf_body
        return await self._json("POST", _issue_path(issue_id, "comment"), "add_comment", json={"body": body})

    # --- remote links ---------------------------------------------------------------------------

    async def upsert_remote_link(
        self,
        issue_id: str,
        *,
        global_id: str,
        url: str,
        title: str,
        summary: str | None = None,
        status: bool | Mapping[str, Any] | None = None,
        icon_url: str | None = None,
    ) -> dict[str, Any]:
        """Create, or update the link with this ``global_id`` (Jira nulls what is not sent, so every
        call sends the whole link). ``status``: True shows the linked item resolved (struck
        through), or Jira's own ``{"resolved": bool, "icon": {…}}``. Returns ``{"id", "self"}``."""
        obj: dict[str, Any] = {"url": url, "title": title}
        if summary is not None:
            obj["summary"] = summary
        if icon_url is not None:
            obj["icon"] = {"url16x16": icon_url, "title": title}
        if isinstance(status, bool):
            obj["status"] = {"resolved": status}
        elif isinstance(status, Mapping):
            obj["status"] = dict(status)
        elif status is not None:  # e.g. a vendor status name: decide what "resolved" means before calling
            raise TypeError(f"status must be a bool or Jira's status object, not {type(status).__name__}")
        return await self._json("POST", _issue_path(issue_id, "remotelink"), "upsert_remote_link",
                                json={"globalId": global_id, "object": obj})

    async def delete_remote_link(self, issue_id: str, global_id: str) -> None:
        await self._send("DELETE", _issue_path(issue_id, "remotelink"), "delete_remote_link",
                         params={"globalId": global_id})

    async def get_remote_links(self, issue_id: str) -> list[dict[str, Any]]:
        data = await self._json("GET", _issue_path(issue_id, "remotelink"), "get_remote_links")
        if not isinstance(data, list):
            raise RetryableError("jira get_remote_links: expected a list", code="jira.bad_response")
        return data

    # --- issue properties -----------------------------------------------------------------------

    async def set_property(self, issue_id: str, key: str, value: Any) -> None:
        """Store ``value`` (any JSON, at most 32 KB) under ``key`` on the issue."""
        await self._send("PUT", _issue_path(issue_id, "properties", key), "set_property",
                         content=json.dumps(value, separators=(",", ":")).encode(),
                         headers={"Content-Type": "application/json"})

    async def get_property(self, issue_id: str, key: str) -> Any:
        """The property's value; a missing property (or issue) is a FatalError ``jira.not_found``."""
        data = await self._json("GET", _issue_path(issue_id, "properties", key), "get_property")
        if not isinstance(data, dict) or "value" not in data:
            raise RetryableError("jira get_property: the answer has no value", code="jira.bad_response")
        return data["value"]

    # --- transport ------------------------------------------------------------------------------

    async def _json(self, method: str, path: str, operation: str, **kwargs: Any) -> Any:
        response = await self._send(method, path, operation, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise RetryableError(f"jira {operation}: the answer is not JSON", code="jira.bad_response") from None

    async def _send(self, method: str, path: str, operation: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise RetryableError(f"jira {operation}: timed out", code="jira.timeout") from None
        except httpx.TransportError as exc:  # connection refused/reset, DNS, TLS, protocol errors
            raise RetryableError(f"jira {operation}: {type(exc).__name__}", code="jira.connection") from None
        if response.is_success:
            return response
        raise error_for(response, operation)


def error_for(response: httpx.Response, operation: str, *, now: float | None = None) -> ConnectorError:
    """The typed error for a non-2xx Jira answer. Messages hold the status, the operation and Jira's
    own errorMessages/errors (which never echo credentials), nothing from the request."""
    status = response.status_code
    where = f"jira {operation}: HTTP {status}"
    detail = _detail(response)
    said = f": {detail}" if detail else ""
    if status == 429:
        reason = response.headers.get("RateLimit-Reason")
        return RateLimitedError(
            f"{where} rate limited{f' ({reason})' if reason else ''}{said}",
            retry_after=retry_after(response.headers, now=now),
            code="jira.rate_limited",
        )
    if status in (401, 403):
        return AuthError(f"{where}, check the Jira email and API token and their permissions{said}",
                         code="jira.unauthorized" if status == 401 else "jira.forbidden")
    if status == 404:
        return FatalError(f"{where}, not found or not visible to this user{said}", code="jira.not_found")
    if status == 410:
        return FatalError(f"{where}, Jira removed this endpoint; search with POST {SEARCH_PATH}{said}",
                          code="jira.gone")
    if status == 409 or status >= 500:
        # "Some transient 5XX errors are accompanied by a Retry-After header" (rate-limiting page):
        # honour it like a rate limit, so nothing is sent to Jira before it elapses.
        wait = retry_after(response.headers, now=now)
        if wait is not None:
            return RateLimitedError(f"{where}{said}", retry_after=wait, code=f"jira.http_{status}")
        return RetryableError(f"{where}{said}", code=f"jira.http_{status}")
    if status == 400:
        return FatalError(f"{where}, Jira refused the request{said}", code="jira.bad_request")
    return FatalError(f"{where}{said}", code=f"jira.http_{status}")


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date), else ``X-RateLimit-Reset`` (ISO 8601,
    Atlassian writes ``yyyy-MM-ddTHH:mmZ``), else None. Never negative."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            moment = datetime.fromisoformat(reset.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return max(0.0, moment.timestamp() - now)
    return None


def _detail(response: httpx.Response) -> str:
    """Jira's ErrorCollection as one line: ``msg1; msg2; field: message``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(m) for m in body.get("errorMessages") or [] if m]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{name}: {message}" for name, message in errors.items()]
    text = "; ".join(parts)
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 1] + "…"


def _issue_path(issue_id: str, *rest: str) -> str:
    return "/".join(["/rest/api/3/issue", *(quote(str(part), safe="") for part in (issue_id, *rest))])


def _names(fields: Sequence[str]) -> list[str]:
    return [fields] if isinstance(fields, str) else list(fields)
