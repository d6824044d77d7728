"""A thin Zendesk Support client on zenpy, with typed failures.

Endpoints: Show/Update Ticket https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ ,
List Comments https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/ ,
Show Organization https://developer.zendesk.com/api-reference/ticketing/organizations/organizations/ ,
Incremental Ticket Export, Cursor Based
https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/ .
Errors and limits: https://developer.zendesk.com/api-reference/introduction/rate-limits/ .

zenpy is synchronous (requests); every call runs in a worker thread, never on the event loop.
zenpy gets in the way in five places, all handled by :class:`_Session`, the requests session
handed to it:

* **It retries by itself.** Its ``_call_api`` sleeps out every 429's ``Retry-After`` and tries
  again, forever, on the calling thread; its default HTTP adapter retries 413/503 three times
  (PUT included, which would add an internal note twice). The session raises on any non-2xx
  answer from a response hook, before zenpy sees the response, and mounts adapters without
  retries. Retrying belongs to the delivery pipeline and the poller.
* **It hides status codes** behind ``APIException(json text)``; the hook keeps status,
  ``Retry-After`` and Zendesk's ``error``/``description`` and :func:`classify` types them, here only.
* **It only builds** ``https://{subdomain}.{domain}/api/v2/…``. zenpy is given a placeholder
  origin and the session sends each request to ``base_url`` instead, so ``http://127.0.0.1:PORT``
  (the sandbox) and proxies with a path prefix work, without zenpy's process-wide
  ``ZENPY_FORCE_*`` environment variables.
* **It drops ``per_page``** on cursor follow-up requests (only the ``start_time`` request sends
  it); the session adds it back.
* **It returns objects**, not the JSON Zendesk sent: ``to_dict()`` adds every attribute it knows
  (as null), renames ``via.source.from`` to ``from_``, and it caches tickets by id (a read after
  an update could be stale). The cache is disabled and the session keeps the raw JSON of each
  answer per thread, which is what the methods return.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket
from zenpy.lib.exception import ZenpyException

from connectors.errors import AuthError, ConnectorError, FatalError, RateLimitedError, RetryableError
from connectors.tls import TrustingAdapter
from connectors.zendesk.settings import EXPORT_MAX_PER_PAGE, ZendeskSettings

_PLACEHOLDER_SUBDOMAIN = "switchboard"
_PLACEHOLDER_DOMAIN = "zenpy.invalid"
_PLACEHOLDER_ORIGIN = f"https://{_PLACEHOLDER_SUBDOMAIN}.{_PLACEHOLDER_DOMAIN}"
_T = TypeVar("_T")


class _HttpStatus(Exception):
    """A non-2xx answer, raised inside requests before zenpy can retry or re-wrap it."""

    def __init__(self, status: int, retry_after: str | None, error: str, description: str) -> None:
        super().__init__(status)
        self.status, self.retry_after, self.error, self.description = status, retry_after, error, description


class _Session(requests.Session):
    def __init__(self, base_url: str, ca_file: str | None) -> None:
        super().__init__()
        self._base_url = base_url.rstrip("/")
        self._ca_file = ca_file
        self._local = threading.local()
        for prefix in ("https://", "http://"):
            self.mount(prefix, TrustingAdapter(ca_file, max_retries=0))
        self.hooks["response"].append(self._check)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if isinstance(url, str) and url.startswith(_PLACEHOLDER_ORIGIN):
            url = self._base_url + url[len(_PLACEHOLDER_ORIGIN):]
        if self._ca_file:
            # per request: a session-level verify loses to REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
            kwargs["verify"] = self._ca_file
        extra = getattr(self._local, "params", None)
        if extra:
            kwargs["params"] = {**(kwargs.get("params") or {}), **extra}
        return super().request(method, url, *args, **kwargs)

    def set_params(self, params: dict[str, Any] | None) -> None:
        """Query parameters added to this thread's requests until cleared (None)."""
        self._local.params = params

    def _check(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if not 200 <= response.status_code < 300:
            error, description = _error_text(response)
            raise _HttpStatus(response.status_code, response.headers.get("Retry-After"), error, description)
        self._local.bodies = [*getattr(self._local, "bodies", []), response.content]

    def take_json(self) -> list[dict[str, Any]]:
        """The JSON bodies of the 2xx answers on this thread since the last call, oldest first."""
        bodies, self._local.bodies = getattr(self._local, "bodies", []), []
        pages = [json.loads(body) if body else {} for body in bodies]
        return [page if isinstance(page, dict) else {} for page in pages]


def _error_text(response: requests.Response) -> tuple[str, str]:
    """Zendesk's ``error`` and ``description`` (``{"error": "RecordNotFound", "description":
    "Not found"}``; 401 sends ``{"error": "Couldn't authenticate you"}``). Never the request."""
    try:
        data = response.json()
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    error = data.get("error")
    if isinstance(error, dict):  # some endpoints nest {"title", "message"}
        error = error.get("title") or error.get("message")
    description = data.get("description")
    return (str(error)[:120] if error else ""), (str(description)[:200] if description else "")


def classify(exc: BaseException, operation: str) -> ConnectorError:
    """The one place where Zendesk and transport failures become :mod:`connectors.errors` types."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, _HttpStatus):
        s = exc.status
        text = ": ".join(part for part in (exc.error, exc.description) if part)
        detail = f"zendesk {operation}: HTTP {s}" + (f": {text}" if text else "")
        if s == 429:
            retry_after = _seconds(exc.retry_after)
            return RateLimitedError(f"{detail} (retry after {retry_after}s)", retry_after=retry_after,
                                    code="zendesk.rate_limited")
        if s in (401, 403):
            return AuthError(f"{detail}: check the email, API token and the user's role", code=f"zendesk.http_{s}")
        if s == 409 or s >= 500:
            return RetryableError(detail, code=f"zendesk.http_{s}")
        return FatalError(detail, code=f"zendesk.http_{s}")  # 400, 404, 422 and other refusals
    if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
        return RetryableError(f"zendesk {operation}: {type(exc).__name__}", code="zendesk.transport")
    if isinstance(exc, (requests.RequestException, ZenpyException, ValueError)):
        return RetryableError(f"zendesk {operation}: {type(exc).__name__}", code="zendesk.unexpected")
    return RetryableError(f"zendesk {operation}: unexpected {type(exc).__name__}", code="zendesk.unexpected")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class ZendeskClient:
    """The Zendesk calls the hub makes, each raising only :mod:`connectors.errors` types.

    ``base_url`` is ``https://<subdomain>.zendesk.com`` or the sandbox's URL; ``ca_file`` trusts
    a private CA (the sandbox with TLS). Credentials never leave the session.
    """

    def __init__(
        self,
        base_url: str,
        email: str,
        api_token: str,
        *,
        timeout_s: float = 10.0,
        ca_file: str | None = None,
        threads: int = 4,
    ) -> None:
        if not email or not api_token:
            # checked here: zenpy's own check puts its locals (the session, the email) in the message
            raise ValueError("email and api_token are required")
        self._session = _Session(base_url, ca_file)
        self._zenpy_args = {"subdomain": _PLACEHOLDER_SUBDOMAIN, "domain": _PLACEHOLDER_DOMAIN, "email": email, "token": api_token,
                            "session": self._session, "timeout": timeout_s, "disable_cache": True}
        self._threads = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zendesk")

    @property
    def _zenpy(self) -> Zenpy:
        """This thread's Zenpy (they share the session and its connections).

        Never one for every thread: a Zenpy endpoint keeps the last object it serialised
        (``_dirty_object``) and, when any answer comes back, clears that object's changed attributes,
        whichever thread made it. Shared by the pool, one thread's answer could clear another's
        ticket while it was being serialised: "dictionary changed size during iteration" errors,
        and, when the clearing fell between the ticket and its comment, a PUT whose comment was
        empty, answered 200: an internal note lost (about one run in twenty of the mixed bench).
        """
        zenpy = getattr(self._threads, "zenpy", None)
        if zenpy is None:
            zenpy = self._threads.zenpy = Zenpy(**self._zenpy_args)
        return zenpy

    @classmethod
    def from_settings(cls, settings: ZendeskSettings, *, ssl_ca_file: str | None = None) -> ZendeskClient:
        """A client for ``settings`` (``ssl_ca_file`` overrides ``settings.ca_file``)."""
        if not settings.configured:
            raise ValueError("zendesk.base_url, zendesk.email and zendesk.api_token must all be set")
        assert settings.base_url and settings.email and settings.api_token
        return cls(settings.base_url, settings.email, settings.api_token.get_secret_value(),
                   timeout_s=settings.timeout_s, ca_file=ssl_ca_file or settings.ca_file)

    async def get_ticket(self, ticket_id: int | str) -> dict[str, Any]:
        """``GET /api/v2/tickets/{id}``: the ticket as Zendesk sent it."""
        tid = _numeric_id(ticket_id)
        pages = await self._run("get_ticket", lambda: self._zenpy.tickets(id=tid))
        return pages[-1].get("ticket") or {}

    async def list_comments(self, ticket_id: int | str) -> list[dict[str, Any]]:
        """``GET /api/v2/tickets/{id}/comments``, every page, oldest first."""
        tid = _numeric_id(ticket_id)
        pages = await self._run("list_comments", lambda: list(self._zenpy.tickets.comments(ticket=tid)))
        return [c for page in pages for c in page.get("comments") or [] if isinstance(c, dict)]

    async def get_organization(self, organization_id: int | str) -> dict[str, Any]:
        """``GET /api/v2/organizations/{id}``."""
        oid = _numeric_id(organization_id)
        pages = await self._run("get_organization", lambda: self._zenpy.organizations(id=oid))
        return pages[-1].get("organization") or {}

    async def update_ticket(
        self,
        ticket_id: int | str,
        *,
        custom_fields: dict[str, Any] | None = None,
        add_tags: Iterable[str] | None = None,
        remove_tags: Iterable[str] | None = None,
        internal_note: str | None = None,
    ) -> dict[str, Any]:
        """One ``PUT /api/v2/tickets/{id}``: set custom fields (``{"<field id>": value}``), add
        and remove tags (``additional_tags``/``remove_tags``, leaving other tags alone) and add a
        private comment. Returns the updated ticket; with nothing to change, makes no request and
        returns ``{}``. Not idempotent when it adds a note: the caller dedups."""
        tid = _numeric_id(ticket_id)
        fields = [{"id": _field_id(key), "value": value} for key, value in (custom_fields or {}).items()]
        add, remove = [t for t in add_tags or () if t], [t for t in remove_tags or () if t]
        if not (fields or add or remove or internal_note):
            return {}

        def call() -> Any:
            ticket = Ticket(id=tid)
            if fields:
                ticket.custom_fields = fields
            if add:
                ticket.additional_tags = add
            if remove:
                ticket.remove_tags = remove
            if internal_note:
                ticket.comment = Comment(body=internal_note, public=False)
            return self._zenpy.tickets.update(ticket)

        pages = await self._run("update_ticket", call)
        return pages[-1].get("ticket") or {}

    async def incremental_tickets(
        self, cursor: str | None = None, start_time: int | None = None, *, per_page: int | None = None
    ) -> dict[str, Any]:
        """One page of ``GET /api/v2/incremental/tickets/cursor``: give ``start_time`` (epoch
        seconds) for the first page, then the previous page's ``after_cursor``.

        Returns ``{"tickets": [...], "after_cursor": str | None, "before_cursor": str | None,
        "end_of_stream": bool}``. At most 10 such requests a minute per account (Zendesk's limit;
        the poller meters them).
        """
        if (cursor is None) == (start_time is None):
            raise ValueError("give exactly one of cursor and start_time")
        if per_page is not None and not 1 <= per_page <= EXPORT_MAX_PER_PAGE:
            raise ValueError(f"per_page must be 1..{EXPORT_MAX_PER_PAGE}")

        def call() -> Any:
            if cursor is None:
                return self._zenpy.tickets.incremental(start_time=int(start_time or 0), per_page=per_page)
            self._session.set_params({"per_page": per_page} if per_page else None)
            try:
                return self._zenpy.tickets.incremental(cursor=cursor)
            finally:
                self._session.set_params(None)

        data = (await self._run("incremental_tickets", call))[-1]
        tickets = data.get("tickets")
        return {
            "tickets": tickets if isinstance(tickets, list) else [],
            "after_cursor": data.get("after_cursor") or None,
            "before_cursor": data.get("before_cursor") or None,
            "end_of_stream": bool(data.get("end_of_stream")),
        }

    async def _run(self, operation: str, call: Callable[[], _T]) -> list[dict[str, Any]]:
        """Run ``call`` in a worker thread; the raw JSON of every answer it got (at least one)."""

        def attempt() -> list[dict[str, Any]]:
            self._session.take_json()
            try:
                call()
                return self._session.take_json() or [{}]
            except Exception as exc:  # noqa: BLE001 - typed here, once
                self._session.take_json()
                raise classify(exc, operation) from None

        return await asyncio.get_running_loop().run_in_executor(self._pool, attempt)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._session.close()


def _numeric_id(value: int | str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) <= 0:
        raise FatalError(f"zendesk: not a Zendesk id: {value!r}", code="zendesk.invalid_request")
    return int(text)


def _field_id(value: str | int) -> int:
    text = str(value).strip()
    if not text.isdigit():
        raise FatalError(f"zendesk: custom field ids are numeric, got {value!r}", code="zendesk.invalid_request")
    return int(text)
