"""Fake Salesforce: the OAuth token endpoint, a REST API subset and Change Data Capture events.

Implemented, as documented in the REST API Developer Guide
(https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/) and the OAuth flows
(https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flows.htm):

``POST /services/oauth2/token`` (``client_credentials`` with the client in the form or HTTP Basic,
``refresh_token``); under ``/services/data/vXX.X/``: ``query`` and ``queryAll`` (``?q=``) with
their ``nextRecordsUrl`` follow-ups ``query/01g…-2000``, ``GET|PATCH|DELETE sobjects/{Object}/{id}``,
``POST sobjects/{Object}`` (201 ``{id, errors, success}``), ``GET sobjects/{Object}/updated/`` and
``…/deleted/?start=&end=``, ``GET limits``; Chatter (Connect REST API,
https://developer.salesforce.com/docs/atlas.en-us.chatterapi.meta/chatterapi/): ``POST
chatter/feed-elements`` (a ``FeedItem`` of ``Text`` and ``Mention`` segments on a record's or a
user's feed, 201 with the feed element) and ``GET chatter/feeds/record/{id}/feed-elements`` (newest
first, ``pageSize`` 1-100, default 25, ``nextPageUrl``). Trailing slashes are accepted
(simple-salesforce sends them).

Like Salesforce: errors are JSON arrays of ``{message, errorCode, fields?}``; expired or unknown
tokens get 401 ``INVALID_SESSION_ID``; every API answer carries ``Sforce-Limit-Info:
api-usage=<used>/<max>`` and over the rolling 24-hour allocation the answer is 403
``REQUEST_LIMIT_EXCEEDED`` (``/_sandbox/config {"rate_limits": false}`` switches that off); ids
are 18 characters with the case checksum; ``SystemModstamp``/``LastModifiedDate``/``LastModifiedById``
move on every save, delete and undelete; deleted records stay in the Recycle Bin (``queryAll``
shows them with ``IsDeleted`` true); Opportunity's ``IsClosed``, ``IsWon`` and default
``Probability`` follow ``StageName`` and cannot be written. Query batches default to 2,000
(``Sforce-Query-Options: batchSize=`` 200-2,000); query locators are snapshots that expire after
15 idle minutes, at most 10 per user.

SOQL subset, strict (anything else is ``MALFORMED_QUERY``; unknown fields ``INVALID_FIELD`` and
objects ``INVALID_TYPE``, with Salesforce's caret message)::

    SELECT field [, field …] FROM Object
      [WHERE field op literal [AND field op literal …]]
      [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST] [, …]] [LIMIT n]

fields are ``Name`` or one relationship hop ``Account.Name``; ``op`` is one of ``= != <> < <= > >=``;
literals are date-times (``2024-05-02T10:00:00Z``, ``…+01:00``, optional milliseconds), dates,
numbers, ``'strings'``, ``true``/``false``/``null``.

Change Data Capture (https://developer.salesforce.com/docs/atlas.en-us.change_data_capture.meta/change_data_capture/):
every change to an object in ``cdc_entities`` appends a CometD-shaped event (``{channel, data:
{schema, payload: {ChangeEventHeader, …}, event: {replayId}}}``) to an in-memory list; API changes
carry ``changeOrigin`` ``com/salesforce/api/rest/<ver>;client=<Sforce-Call-Options client>``,
changes made through the control endpoints (a person in the UI) an empty one. Identical changes
to several records in one transaction become one event listing every id.

The Streaming API delivers them over CometD (Bayeux 1.0, long polling only;
https://developer.salesforce.com/docs/atlas.en-us.api_streaming.meta/api_streaming/): ``POST
/cometd/<version>[/…]`` (version 37.0 or later: the replay extension) takes a JSON array of
messages on ``/meta/handshake`` (answers ``ext: {"replay": true}``), ``/meta/subscribe`` (to
``/data/ChangeEvents`` or one object's channel, with ``ext: {"replay": {<channel>: <replayId>}}``,
``-1`` new events only, ``-2`` every retained event; an unknown id is ``400::The replayId … was
invalid``), ``/meta/connect`` (holds until an event is due or the advice ``timeout``, 110 s, or
the client's own ``advice.timeout`` passes) and ``/meta/disconnect``. Same OAuth bearer token as
REST; an invalid one is ``401::Authentication invalid`` with ``reconnect: none`` (on the handshake
``403::Handshake denied`` with the reason in ``ext.sfdc.failureReason``), a forgotten client
``403::Unknown client`` with ``reconnect: handshake``. Events older than ``cdc_retention_s`` (72
hours) are no longer replayed.

Control endpoints besides the common ``/_sandbox/*`` ones (see :mod:`sandbox.common`), acting as a
person in Salesforce (``user_id`` defaults to :data:`DEFAULT_PERSON_USER_ID`):

``POST /_sandbox/records/{Object}`` ``{"fields": {…}, "user_id"}`` → 201 ``{"record"}``;
``PATCH /_sandbox/records/{Object}`` ``{"ids": […], "fields", "user_id"}`` (one transaction) →
``{"records"}``; ``POST /_sandbox/records/{Object}/{id}`` ``{"fields", "user_id"}`` → ``{"record"}``;
``DELETE /_sandbox/records/{Object}/{id}[?user_id=]`` and ``POST …/{id}/undelete`` → ``{"record"}``;
``GET /_sandbox/cdc[?after=<replayId>]`` → ``{"events", "latest_replay_id", …config}``;
``POST /_sandbox/cdc`` ``{"enabled", "entities", "next_gaps": n, "gap_kind": "gap"|"overflow",
"drop_clients": true, "expire_before": replayId}`` (the next ``n`` changes become ``GAP_<type>``
events, or ``GAP_OVERFLOW`` events without ids; CometD clients are forgotten; older events leave
the retention window);
``GET|POST /_sandbox/limits`` ``{"max", "used"}`` (the daily allocation);
``POST /_sandbox/tokens/expire`` (every issued token becomes invalid);
``GET|POST|DELETE /_sandbox/errors`` ``[{"path", "errorCode", "status"?, "message"?, "fields"?,
"count"?}]`` answers the next requests to a path prefix with that error array.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from aiohttp import web

from connectors.salesforce.events import cdc_channel, is_id, to_18

from .common import SandboxError, SandboxState, SlidingWindow, form_fields, mask_secret, sandbox_app

# Limits cheat sheet, "API Request Limits and Allocations": Enterprise Edition starts at 100,000
# requests per rolling 24 hours (plus 1,000 per licence).
DAILY_API_REQUESTS = 100_000
DAILY_WINDOW_S = 24 * 3600
# Session Settings: the default session timeout is 2 hours of inactivity.
SESSION_TIMEOUT_S = 2 * 3600
# Query Options Header: "The default is 2,000; the minimum is 200, and the maximum is 2,000."
QUERY_BATCH_DEFAULT, QUERY_BATCH_MIN, QUERY_BATCH_MAX = 2000, 200, 2000
# QueryLocator: expires after 15 minutes of inactivity; 10 open cursors per user, oldest released.
QUERY_LOCATOR_IDLE_S = 15 * 60
QUERY_LOCATORS_PER_USER = 10
# getDeleted(): no more than 15 days back; start must precede end by more than one minute.
DELETED_RETENTION_S = 15 * 86400
UPDATED_RETENTION_S = 30 * 86400
MIN_API_VERSION, MAX_API_VERSION = 29, 66

DEFAULT_ORG_ID = to_18("00DHq0000001SbX")
DEFAULT_API_USER_ID = to_18("005Hq000000IntG")  # the connected app's run-as (integration) user
DEFAULT_PERSON_USER_ID = to_18("005Hq000000PerS")  # a sales rep working in the UI
DEFAULT_CURRENCY = "USD"
ACTIVE_CURRENCIES = ("USD", "EUR", "GBP", "JPY")
DEFAULT_CDC_ENTITIES = ("Account", "Opportunity", "Feature_Request__c")
# Streaming API: the replay extension needs API 37.0+; the server's long-poll advice is 110 s;
# change events are retained 72 hours.
COMETD_MIN_VERSION = 37
COMETD_TIMEOUT_MS = 110_000
CDC_RETENTION_S = 72 * 3600
ALL_CHANGE_EVENTS = "/data/ChangeEvents"
#: the most events one /meta/connect answer carries (ours; Salesforce batches too)
COMETD_BATCH = 500
KEY_PREFIXES = {"Account": "001", "Opportunity": "006", "Task": "00T", "Feature_Request__c": "a05"}
FEED_ITEM_PREFIX = "0D5"
# Chatter: feed pages default to 25 elements, at most 100; a feed item's text is at most 10,000 characters.
FEED_PAGE_DEFAULT, FEED_PAGE_MAX, FEED_TEXT_MAX = 25, 100, 10_000
QUERY_LOCATOR_PREFIX = "01g"
# Opportunity stages of a new org: default probability, closed, won.
STAGES: dict[str, tuple[float, bool, bool]] = {
    "Prospecting": (10.0, False, False), "Qualification": (10.0, False, False), "Needs Analysis": (20.0, False, False),
    "Value Proposition": (50.0, False, False), "Id. Decision Makers": (60.0, False, False),
    "Perception Analysis": (70.0, False, False), "Proposal/Price Quote": (75.0, False, False),
    "Negotiation/Review": (90.0, False, False), "Closed Won": (100.0, True, True), "Closed Lost": (0.0, True, False),
}  # fmt: skip

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# --- errors -------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A REST refusal: ``status`` and Salesforce's error array."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None,
                 *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(error_code)
        self.status = status
        entry: dict[str, Any] = {"message": message, "errorCode": error_code}
        if fields is not None:
            entry["fields"] = fields
        self.errors = errors if errors is not None else [entry]


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(error)
        self.status, self.body = status, {"error": error, "error_description": description}


#: Bodies of the common fault rules (``/_sandbox/faults`` with a status), per status.
_FAULT_BODIES: dict[int, list[dict[str, Any]]] = {
    401: [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    403: [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    404: [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
    500: [{"message": "An unexpected error occurred. Please include this ErrorId if you contact support: "
                      "1234567890-12345 (-1234567890)", "errorCode": "UNKNOWN_EXCEPTION"}],
    503: [{"message": "Server temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
}
#: Status, message and ``fields`` (as in the captured samples) of the codes ``/_sandbox/errors`` knows.
KNOWN_ERRORS: dict[str, tuple[int, str, list[str] | None]] = {
    "DUPLICATE_VALUE": (400, "duplicate value found: Jira_Key__c duplicates value on record with id: {id}", []),
    "REQUIRED_FIELD_MISSING": (400, "Required fields are missing: [Name]", ["Name"]),
    "UNABLE_TO_LOCK_ROW": (400, "unable to obtain exclusive access to this record or 1 records: {id}", []),
    "MALFORMED_QUERY": (400, "unexpected token: 'FROM'", None),
    "INVALID_FIELD": (400, "No such column 'Nme' on entity 'Account'.", None),
    "INVALID_SESSION_ID": (401, "Session expired or invalid", None),
    "REQUEST_LIMIT_EXCEEDED": (403, "TotalRequests Limit exceeded.", None),
    "NOT_FOUND": (404, "The requested resource does not exist", None),
    "ENTITY_IS_DELETED": (404, "entity is deleted", []),
    "SERVER_UNAVAILABLE": (503, "Server temporarily unavailable", None),
}


# --- objects ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    type: str  # id, string, textarea, picklist, currency, percent, boolean, date, datetime, reference
    updateable: bool = True
    required: bool = False
    #: for references: the relationship name (``Account``) and the object it points to
    relationship: str | None = None
    target: str | None = None


_RO = {"updateable": False}


def _object(**specific: FieldSpec) -> dict[str, FieldSpec]:
    """Id and IsDeleted, the object's own fields, then the owner, currency and audit fields."""
    return {
        "Id": FieldSpec("id", **_RO), "IsDeleted": FieldSpec("boolean", **_RO), **specific,
        "OwnerId": FieldSpec("reference"), "CurrencyIsoCode": FieldSpec("picklist"),
        "CreatedDate": FieldSpec("datetime", **_RO), "CreatedById": FieldSpec("reference", **_RO),
        "LastModifiedDate": FieldSpec("datetime", **_RO), "LastModifiedById": FieldSpec("reference", **_RO),
        "SystemModstamp": FieldSpec("datetime", **_RO),
    }  # fmt: skip


OBJECTS: dict[str, dict[str, FieldSpec]] = {
    "Account": _object(Name=FieldSpec("string", required=True), Description=FieldSpec("textarea")),
    "Opportunity": _object(
        Name=FieldSpec("string", required=True), Description=FieldSpec("textarea"), Amount=FieldSpec("currency"),
        StageName=FieldSpec("picklist", required=True), Probability=FieldSpec("percent"),
        IsClosed=FieldSpec("boolean", **_RO), IsWon=FieldSpec("boolean", **_RO),
        CloseDate=FieldSpec("date", required=True),
        AccountId=FieldSpec("reference", relationship="Account", target="Account"),
    ),
    "Feature_Request__c": _object(
        Name=FieldSpec("string", required=True),
        Opportunity__c=FieldSpec("reference", relationship="Opportunity__r", target="Opportunity"),
        Account__c=FieldSpec("reference", relationship="Account__r", target="Account"),
        Jira_Key__c=FieldSpec("string"), Description__c=FieldSpec("textarea"), Jira_Status__c=FieldSpec("string"),
        Jira_Fix_Version__c=FieldSpec("string"),
    ),
    "Task": _object(
        Subject=FieldSpec("string"), WhoId=FieldSpec("reference"), WhatId=FieldSpec("reference"),
        Description=FieldSpec("textarea"), Status=FieldSpec("picklist"), Priority=FieldSpec("picklist"),
        ActivityDate=FieldSpec("date"),
    ),
}
_DEFAULTS: dict[str, dict[str, Any]] = {"Task": {"Status": "Not Started", "Priority": "Normal"}}
#: Never in change event bodies.
_NOT_IN_CHANGE_EVENTS = frozenset({"Id", "SystemModstamp"})


@dataclass
class SObjectRecord:
    sobject: str
    values: dict[str, Any]  # field → value (date-times as epoch ms)
    deleted_at_ms: int | None = None

    @property
    def id(self) -> str:
        return self.values["Id"]


@dataclass
class _Token:
    user_id: str
    client_id: str
    last_used: float


@dataclass
class _Locator:
    rows: list[dict[str, Any]]
    batch: int
    user_id: str
    last_used: float


@dataclass
class InjectedError:
    path: str
    status: int
    errors: list[dict[str, Any]]
    count: int | None = 1


@dataclass
class _CometdClient:
    client_id: str
    token: str
    #: channel → replay id of the last event delivered (or due: -1 is resolved at subscribe time)
    cursors: dict[str, int] = field(default_factory=dict)


@dataclass
class _Change:
    """One record's part of a transaction, for the change event."""

    change_type: str
    record: SObjectRecord
    changed: list[str] = field(default_factory=list)
    nulled: list[str] = field(default_factory=list)


class SalesforceState(SandboxState):
    """One Salesforce org: records by object, OAuth tokens, query locators, the API allocation and
    the change events published.

    ``clients`` maps connected-app client ids to secrets and ``refresh_tokens`` refresh tokens to
    client ids; ``None`` accepts any non-empty value. Tokens act as ``api_user_id``; the control
    endpoints as ``person_user_id`` unless told otherwise.
    """

    vendor = "salesforce"

    def __init__(
        self,
        *,
        clients: Mapping[str, str] | None = None,
        refresh_tokens: Mapping[str, str] | None = None,
        api_user_id: str = DEFAULT_API_USER_ID,
        person_user_id: str = DEFAULT_PERSON_USER_ID,
        org_id: str = DEFAULT_ORG_ID,
        daily_api_requests: int = DAILY_API_REQUESTS,
        session_timeout_s: float = SESSION_TIMEOUT_S,
        cdc_entities: Iterable[str] = DEFAULT_CDC_ENTITIES,
        cdc_enabled: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.clients = dict(clients) if clients is not None else None
        self.refresh_tokens = dict(refresh_tokens) if refresh_tokens is not None else None
        self.api_user_id, self.person_user_id, self.org_id = api_user_id, person_user_id, org_id
        self.session_timeout_s = session_timeout_s
        self._daily_default = daily_api_requests
        self._cdc_default = (cdc_enabled, tuple(cdc_entities))
        self._signing_key = secrets.token_bytes(16)
        self._init_vendor()

    def _init_vendor(self) -> None:
        self.records: dict[str, dict[str, SObjectRecord]] = {name: {} for name in OBJECTS}
        self.tokens: dict[str, _Token] = {}
        self.locators: dict[str, _Locator] = {}
        self.api_window = SlidingWindow(self._daily_default, DAILY_WINDOW_S, self.clock)
        self.cdc_enabled, entities = self._cdc_default
        self.cdc_entities = set(entities)
        self.cdc_events: list[dict[str, Any]] = []
        self.next_gaps, self.gap_kind = 0, "gap"
        self.cometd_clients: dict[str, _CometdClient] = {}
        self.feed_items: list[dict[str, Any]] = []  # Chatter feed elements, oldest first
        self.cdc_expired_before = 0  # replay ids below this left the retention window
        self.cometd_timeout_ms = COMETD_TIMEOUT_MS
        self.injected: list[InjectedError] = []
        self.created_at_ms = int(self.wall_clock() * 1000)
        self._counters: dict[str, int] = {}
        self._commit_number = 10_716_283_339_728  # the captured samples' neighbourhood

    def reset(self) -> None:
        super().reset()
        self._init_vendor()

    def fault_response(self, rule: Any) -> web.Response:
        response = super().fault_response(rule)
        response.headers["Sforce-Limit-Info"] = self.limit_info()
        return response

    def fault_body(self, status: int) -> Any:
        return _FAULT_BODIES.get(status) or [{"message": f"HTTP {status}", "errorCode": "UNKNOWN_EXCEPTION"}]

    def new_id(self, prefix: str) -> str:
        count = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = count
        digits = ""
        while count:
            count, rest = divmod(count, 62)
            digits = _BASE62[rest] + digits
        return to_18(f"{prefix}Hq0{digits.rjust(9, '0')}")

    # --- OAuth and limits ---------------------------------------------------------------------------

    def issue_token(self, form: Mapping[str, str], basic: tuple[str, str] | None, instance_url: str) -> dict[str, Any]:
        """The token endpoint's answer for ``form`` (client credentials or refresh token)."""
        grant = form.get("grant_type")
        client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret", ""))
        if grant not in ("client_credentials", "refresh_token"):
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        if not client_id or (self.clients is not None and client_id not in self.clients):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        known_secret = self.clients.get(client_id) if self.clients is not None else None
        secret_ok = bool(secret) and (known_secret is None or hmac.compare_digest(known_secret, secret))
        if grant == "client_credentials" and not secret_ok:
            raise OAuthError("invalid_grant", "authentication failure")
        if grant == "refresh_token":
            if secret and not secret_ok:
                raise OAuthError("invalid_client", "invalid client credentials")
            refresh = form.get("refresh_token", "")
            owner = self.refresh_tokens.get(refresh) if self.refresh_tokens is not None else client_id
            if not refresh or owner != client_id:
                raise OAuthError("invalid_grant", "expired access/refresh token")
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(48)}"
        self.tokens[token] = _Token(self.api_user_id, client_id, self.clock())
        issued_at = str(int(self.wall_clock() * 1000))
        identity = f"https://login.salesforce.com/id/{self.org_id}/{self.api_user_id}"
        signature = base64.b64encode(hmac.new(self._signing_key, (identity + issued_at).encode(),
                                              hashlib.sha256).digest()).decode()
        return {"access_token": token, "signature": signature, "scope": "api", "instance_url": instance_url,
                "id": identity, "token_type": "Bearer", "issued_at": issued_at}  # fmt: skip

    def authenticate(self, header: str | None) -> str:
        """The user id of a valid ``Authorization: Bearer|OAuth <token>``; 401 otherwise."""
        scheme, _, token = (header or "").partition(" ")
        found = self.tokens.get(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
        now = self.clock()
        if found is None or now - found.last_used > self.session_timeout_s:
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        found.last_used = now
        return found.user_id

    def expire_tokens(self) -> int:
        expired = len(self.tokens)
        self.tokens.clear()
        return expired

    def count_request(self) -> None:
        if self.rate_limits and self.api_window.hit():
            raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        if not self.rate_limits:
            self.api_window.hits.append(self.clock())  # still counted, never refused

    def api_used(self) -> int:
        window = self.api_window
        while window.hits and window.hits[0] <= self.clock() - window.window:
            window.hits.popleft()
        return len(window.hits)

    def limit_info(self) -> str:
        return f"api-usage={self.api_used()}/{self.api_window.limit}"

    def set_allocation(self, maximum: int | None = None, used: int | None = None) -> None:
        if maximum is not None:
            self.api_window.limit = maximum
        if used is not None:
            self.api_window.hits.clear()
            self.api_window.hits.extend([self.clock()] * used)

    def limits_json(self) -> dict[str, Any]:
        maximum = self.api_window.limit
        return {"DailyApiRequests": {"Max": maximum, "Remaining": max(0, maximum - self.api_used())}}

    def inject(self, data: Any) -> list[InjectedError]:
        items = data if isinstance(data, list) else [data]
        added = []
        for item in items:
            if not isinstance(item, dict) or set(item) - {"path", "errorCode", "status", "message", "fields", "count"}:
                raise SandboxError('expected {"path", "errorCode", "status"?, "message"?, "fields"?, "count"?}')
            path, code = item.get("path"), item.get("errorCode")
            if not isinstance(path, str) or not path.startswith("/services/"):
                raise SandboxError("'path' must start with /services/")
            if not isinstance(code, str) or not code:
                raise SandboxError("'errorCode' is required")
            status, message, fields = KNOWN_ERRORS.get(code, (400, code.replace("_", " ").lower(), None))
            status = item.get("status", status)
            count = item.get("count", 1)
            if not isinstance(status, int) or not 300 <= status <= 599:
                raise SandboxError("'status' must be an HTTP error status")
            if count is not None and (not isinstance(count, int) or count < 1):
                raise SandboxError("'count' must be a positive integer or null")
            entry: dict[str, Any] = {"message": item.get("message", message.replace("{id}", self.new_id("001"))),
                                     "errorCode": code}
            fields = item.get("fields", fields)
            if fields is not None:
                entry["fields"] = fields
            added.append(InjectedError(path, status, [entry], count))
        self.injected.extend(added)
        return added

    def take_injected(self, path: str) -> None:
        for error in self.injected:
            if path.startswith(error.path):
                if error.count is not None:
                    error.count -= 1
                    if error.count == 0:
                        self.injected.remove(error)
                raise ApiError(error.status, "", "", errors=error.errors)

    # --- records ------------------------------------------------------------------------------------------

    def record(self, sobject: str, record_id: str, *, deleted_ok: bool = False) -> SObjectRecord:
        records = self.records.get(sobject)
        found = records.get(to_18(record_id)) if records is not None and is_id(record_id) else None
        if found is None:
            raise not_found()
        if found.values["IsDeleted"] and not deleted_ok:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return found

    def create(self, sobject: str, values: Mapping[str, Any], *, user_id: str, origin: str = "") -> SObjectRecord:
        """A new record (``origin`` is the change events' ``changeOrigin``: empty for the UI)."""
        specs = self._specs(sobject)
        clean = self._check(sobject, values)
        now = self._now_ms()
        merged = {name: None for name in specs} | _DEFAULTS.get(sobject, {}) | clean
        missing = [n for n, s in specs.items() if s.required and merged.get(n) in (None, "")]
        if missing:
            raise ApiError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                           missing)
        merged.update(Id=self.new_id(KEY_PREFIXES[sobject]), IsDeleted=False, CreatedDate=now, CreatedById=user_id,
                      LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
        merged["OwnerId"] = merged["OwnerId"] or user_id
        merged["CurrencyIsoCode"] = merged["CurrencyIsoCode"] or DEFAULT_CURRENCY
        if sobject == "Opportunity":
            _apply_stage(merged, clean)
        record = SObjectRecord(sobject, merged)
        self.records[sobject][record.id] = record
        self._publish([_Change("CREATE", record)], user_id, origin)
        return record

    def update(self, sobject: str, ids: Iterable[str], values: Mapping[str, Any], *, user_id: str,
               origin: str = "") -> list[SObjectRecord]:
        """One transaction saving ``values`` on every record of ``ids``."""
        records = [self.record(sobject, rid) for rid in ids]
        clean = self._check(sobject, values)
        specs = self._specs(sobject)
        for name, value in clean.items():
            if specs[name].required and value in (None, ""):
                raise ApiError(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name])
        now = self._now_ms()
        changes = []
        for record in records:
            before = dict(record.values)
            record.values.update(clean)
            if sobject == "Opportunity":
                _apply_stage(record.values, clean)
            record.values.update(LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
            # "changedFields … including the LastModifiedDate system field" (even within the same millisecond)
            changed = [n for n in specs if n not in _NOT_IN_CHANGE_EVENTS
                       and (record.values[n] != before[n] or n == "LastModifiedDate")]
            nulled = [n for n in changed if record.values[n] is None]
            changes.append(_Change("UPDATE", record, changed, nulled))
        self._publish(changes, user_id, origin)
        return records

    def delete(self, sobject: str, record_id: str, *, user_id: str, origin: str = "") -> SObjectRecord:
        record = self.record(sobject, record_id)
        now = self._now_ms()
        record.values.update(IsDeleted=True, LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
        record.deleted_at_ms = now
        self._publish([_Change("DELETE", record)], user_id, origin)
        return record

    def undelete(self, sobject: str, record_id: str, *, user_id: str, origin: str = "") -> SObjectRecord:
        record = self.record(sobject, record_id, deleted_ok=True)
        if not record.values["IsDeleted"]:
            raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin", [])
        now = self._now_ms()
        record.values.update(IsDeleted=False, LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
        record.deleted_at_ms = None
        self._publish([_Change("UNDELETE", record)], user_id, origin)
        return record

    def _specs(self, sobject: str) -> dict[str, FieldSpec]:
        specs = OBJECTS.get(sobject)
        if specs is None:
            raise not_found()
        return specs

    def _check(self, sobject: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with canonical field names, each checked like the REST API does."""
        specs = self._specs(sobject)
        by_lower = {name.lower(): name for name in specs}
        clean: dict[str, Any] = {}
        for given, value in values.items():
            name = by_lower.get(given.lower())
            if name is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{given}' on sobject of type {sobject}")
            spec = specs[name]
            if not spec.updateable:
                raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                               f"Unable to create/update fields: {name}. Please check the security settings of this "
                               "field and verify that it is read/write for your profile or permission set.", [name])
            clean[name] = _checked_value(sobject, name, spec, value)
        return clean

    def _now_ms(self) -> int:
        return int(self.wall_clock() * 1000)

    # --- JSON shapes --------------------------------------------------------------------------------------

    def record_json(self, record: SObjectRecord, version: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """A record as ``GET /sobjects/{Object}/{id}`` shows it (every field unless ``fields``)."""
        out: dict[str, Any] = {"attributes": _attributes(record, version)}
        for name in fields if fields is not None else OBJECTS[record.sobject]:
            out[name] = _rest_value(OBJECTS[record.sobject][name], record.values[name])
        return out

    def revenue_at_stake(self, opportunity_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """What an issue asked for by these opportunities should show as revenue at stake, straight
        from this org's records (the tests' and the bench's yardstick, not the hub's code): the open,
        undeleted ones, one total per currency (count, amount, probability-weighted amount, cents
        rounded half up)."""
        from decimal import ROUND_HALF_UP, Decimal

        cent = Decimal("0.01")
        totals: dict[str, dict[str, Any]] = {}
        for oid in set(opportunity_ids):
            rec = self.records["Opportunity"].get(oid)
            if rec is None or rec.deleted_at_ms is not None or rec.values.get("IsClosed"):
                continue
            v = rec.values
            amount = Decimal(str(v.get("Amount") or 0)).quantize(cent)
            weighted = (amount * Decimal(str(v.get("Probability") or 0)) / 100).quantize(cent, ROUND_HALF_UP)
            t = totals.setdefault(v.get("CurrencyIsoCode") or "USD", {"count": 0, "amount": Decimal(0), "weighted": Decimal(0)})
            t["count"] += 1
            t["amount"] += amount
            t["weighted"] += weighted
        return {c: {"count": t["count"], "amount": float(t["amount"]), "weighted": float(t["weighted"])}
                for c, t in sorted(totals.items())}

    def snapshot(self) -> dict[str, Any]:
        return {
            "records": {name: {rid: self.record_json(r, "62.0") for rid, r in records.items()}
                        for name, records in self.records.items()},
            "tokens": len(self.tokens), "query_locators": len(self.locators),
            "api_usage": {"used": self.api_used(), "max": self.api_window.limit},
            "cdc": self.cdc_json(),
            "feed_items": self.feed_items,
        }  # fmt: skip

    # --- queries -------------------------------------------------------------------------------------------

    def query(self, soql: str, *, include_deleted: bool, batch: int | None, version: str,
              user_id: str) -> dict[str, Any]:
        parsed = parse_soql(soql)
        records = [r for r in self.records[parsed.sobject].values() if include_deleted or not r.values["IsDeleted"]]
        for path, op, literal in parsed.where:
            records = [r for r in records if _compare(r.values.get(path[0]), op, literal)]
        for path, descending, nulls_last in reversed(parsed.order):
            present = [r for r in records if r.values.get(path[0]) is not None]
            absent = [r for r in records if r.values.get(path[0]) is None]
            present.sort(key=lambda r: r.values[path[0]], reverse=descending)
            records = present + absent if nulls_last else absent + present
        if parsed.limit is not None:
            records = records[:parsed.limit]
        rows = [self._row(r, parsed.select, version) for r in records]
        size = QUERY_BATCH_DEFAULT if batch is None else min(QUERY_BATCH_MAX, max(QUERY_BATCH_MIN, batch))
        if len(rows) <= size:
            return {"totalSize": len(rows), "done": True, "records": rows}
        mine = [k for k, v in self.locators.items() if v.user_id == user_id]
        for stale in mine[:max(0, len(mine) - QUERY_LOCATORS_PER_USER + 1)]:
            del self.locators[stale]  # the oldest cursors are released
        locator = self.new_id(QUERY_LOCATOR_PREFIX)
        self.locators[locator] = _Locator(rows, size, user_id, self.clock())
        return self._page(locator, 0, version)

    def query_more(self, locator: str, offset: int, version: str) -> dict[str, Any]:
        found = self.locators.get(locator)
        if found is not None and self.clock() - found.last_used > QUERY_LOCATOR_IDLE_S:
            del self.locators[locator]
            found = None
        if found is None or not 0 < offset < len(found.rows):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        found.last_used = self.clock()
        return self._page(locator, offset, version)

    def _page(self, locator: str, offset: int, version: str) -> dict[str, Any]:
        found = self.locators[locator]
        end = offset + found.batch
        page: dict[str, Any] = {"totalSize": len(found.rows), "done": end >= len(found.rows)}
        if end < len(found.rows):
            page["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        else:
            del self.locators[locator]
        page["records"] = found.rows[offset:end]
        return page

    def _row(self, record: SObjectRecord, select: list[tuple[str, ...]], version: str) -> dict[str, Any]:
        row: dict[str, Any] = {"attributes": _attributes(record, version)}
        specs = OBJECTS[record.sobject]
        for path in select:
            if len(path) == 1:
                row[path[0]] = _rest_value(specs[path[0]], record.values[path[0]])
                continue
            reference, target_field = path
            spec = specs[reference]
            assert spec.relationship and spec.target
            target_id = record.values[reference]
            target = self.records[spec.target].get(target_id) if target_id else None
            if target is None:
                row[spec.relationship] = None
                continue
            nested = row.get(spec.relationship) or {"attributes": _attributes(target, version)}
            nested[target_field] = _rest_value(OBJECTS[spec.target][target_field], target.values[target_field])
            row[spec.relationship] = nested
        return row

    def changed_between(self, sobject: str, start: str, end: str, *, deleted: bool) -> dict[str, Any]:
        """``sobjects/{Object}/updated`` or ``…/deleted``: seconds are ignored; start must precede end
        by more than a minute and lie within the retention."""
        self._specs(sobject)
        start_ms, end_ms = _minute_ms(start, "start"), _minute_ms(end, "end")
        now = self._now_ms()
        retention = DELETED_RETENTION_S if deleted else UPDATED_RETENTION_S
        if end_ms - start_ms <= 60_000:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate by "
                                                            "more than one minute")
        if start_ms < now - retention * 1000:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than "
                                                            f"{retention // 86400} days ago")
        covered = min(end_ms, now // 60_000 * 60_000)
        records = self.records[sobject].values()
        if deleted:
            gone = sorted((r for r in records if r.deleted_at_ms is not None and start_ms <= r.deleted_at_ms < covered),
                          key=lambda r: r.deleted_at_ms or 0)
            earliest = max(self.created_at_ms, now - retention * 1000) // 60_000 * 60_000
            return {"deletedRecords": [{"id": r.id, "deletedDate": _rest_time(r.deleted_at_ms or 0)} for r in gone],
                    "earliestDateAvailable": _rest_time(earliest), "latestDateCovered": _rest_time(covered)}
        found = sorted((r for r in records if not r.values["IsDeleted"]
                        and start_ms <= r.values["SystemModstamp"] < covered), key=lambda r: r.values["SystemModstamp"])
        return {"ids": [r.id for r in found], "latestDateCovered": _rest_time(covered)}

    # --- change data capture ---------------------------------------------------------------------------------

    def cdc_json(self, after: int = 0) -> dict[str, Any]:
        events = [e for e in self.cdc_events if e["data"]["event"]["replayId"] > after]
        return {"enabled": self.cdc_enabled, "entities": sorted(self.cdc_entities), "next_gaps": self.next_gaps,
                "gap_kind": self.gap_kind, "latest_replay_id": len(self.cdc_events), "events": events}

    def configure_cdc(self, data: Mapping[str, Any]) -> None:
        unknown = set(data) - {"enabled", "entities", "next_gaps", "gap_kind", "drop_clients", "expire_before"}
        if unknown:
            raise SandboxError(f"unknown cdc settings: {sorted(unknown)}")
        if not isinstance(data.get("enabled", True), bool):
            raise SandboxError("'enabled' must be a boolean")
        entities = data.get("entities")
        if entities is not None and (not isinstance(entities, list) or not set(entities) <= set(OBJECTS)):
            raise SandboxError(f"'entities' must be a list of {sorted(OBJECTS)}")
        gaps = data.get("next_gaps", 0)
        if not isinstance(gaps, int) or isinstance(gaps, bool) or gaps < 0:
            raise SandboxError("'next_gaps' must be a non-negative integer")
        if data.get("gap_kind", "gap") not in ("gap", "overflow"):
            raise SandboxError("'gap_kind' must be 'gap' or 'overflow'")
        expire = data.get("expire_before", 0)
        if not isinstance(expire, int) or isinstance(expire, bool) or expire < 0:
            raise SandboxError("'expire_before' must be a replay id")
        if data.get("drop_clients"):
            self.cometd_clients.clear()
        self.cdc_expired_before = max(self.cdc_expired_before, expire)
        self.cdc_enabled = data.get("enabled", self.cdc_enabled)
        self.cdc_entities = set(entities) if entities is not None else self.cdc_entities
        self.next_gaps = data.get("next_gaps", self.next_gaps)
        self.gap_kind = data.get("gap_kind", self.gap_kind)

    # --- Chatter ---------------------------------------------------------------------------------------------

    def post_feed_item(self, data: Mapping[str, Any], *, user_id: str, version: str) -> dict[str, Any]:
        """A FeedItem on a record's or a user's feed, as ``POST chatter/feed-elements`` makes it."""
        def invalid(message: str) -> ApiError:
            return ApiError(400, "INVALID_API_INPUT", message)

        if data.get("feedElementType") != "FeedItem":
            raise invalid("feedElementType: FeedItem is the only supported type")
        subject = data.get("subjectId")
        if not is_id(subject):
            raise invalid("subjectId: a record or user id is required")
        subject = to_18(subject)
        if not subject.startswith("005") and not any(subject in records and not records[subject].values["IsDeleted"]
                                                     for records in self.records.values()):
            raise not_found()
        segments = (data.get("body") or {}).get("messageSegments") if isinstance(data.get("body"), dict) else None
        if not isinstance(segments, list) or not segments:
            raise invalid("body.messageSegments: at least one segment is required")
        shown: list[dict[str, Any]] = []
        for segment in segments:
            kind = segment.get("type") if isinstance(segment, dict) else None
            if kind == "Text" and isinstance(segment.get("text"), str):
                shown.append({"type": "Text", "text": segment["text"]})
            elif kind == "Mention" and is_id(segment.get("id")) and str(segment["id"]).startswith("005"):
                user = to_18(segment["id"])
                shown.append({"type": "Mention", "text": f"@{user}", "record": {"id": user, "type": "User"}})
            else:
                raise invalid("body.messageSegments: Text (text) and Mention (a user id) are supported")
        text = "".join(s["text"] for s in shown)
        if len(text) > FEED_TEXT_MAX:
            raise invalid(f"body: the text is over {FEED_TEXT_MAX} characters")
        element_id = self.new_id(FEED_ITEM_PREFIX)
        element = {
            "id": element_id, "feedElementType": "FeedItem", "type": "TextPost", "actor": {"id": user_id, "type": "User"},
            "parent": {"id": subject}, "body": {"text": text, "messageSegments": shown},
            "createdDate": _rest_time(self._now_ms()), "url": f"/services/data/v{version}/chatter/feed-elements/{element_id}",
        }  # fmt: skip
        self.feed_items.append(element)
        return element

    def record_feed(self, record_id: str, *, page: int, page_size: int, version: str) -> dict[str, Any]:
        rid = to_18(record_id)
        elements = [e for e in reversed(self.feed_items) if e["parent"]["id"] == rid]
        chunk = elements[page * page_size:(page + 1) * page_size]
        base = f"/services/data/v{version}/chatter/feeds/record/{rid}/feed-elements"
        more = (page + 1) * page_size < len(elements)
        return {"elements": chunk, "currentPageUrl": f"{base}?page={page}&pageSize={page_size}",
                "nextPageUrl": f"{base}?page={page + 1}&pageSize={page_size}" if more else None}

    # --- Streaming API (CometD) ----------------------------------------------------------------------------

    def _retained_from(self) -> int:
        """The oldest replay id still retained (72 hours, or what ``expire_before`` left)."""
        horizon = self._now_ms() - CDC_RETENTION_S * 1000
        first = self.cdc_expired_before or 1
        for event in self.cdc_events[first - 1:]:
            if event["data"]["payload"]["ChangeEventHeader"]["commitTimestamp"] >= horizon:
                return event["data"]["event"]["replayId"]
        return len(self.cdc_events) + 1

    def cometd_due(self, client: _CometdClient) -> list[dict[str, Any]]:
        """The events due to ``client`` (oldest first, at most a batch), its cursors moved past them."""
        due: list[dict[str, Any]] = []
        start = max(min(client.cursors.values(), default=len(self.cdc_events)), self._retained_from() - 1)
        for event in self.cdc_events[start:]:
            replay = event["data"]["event"]["replayId"]
            for channel, cursor in client.cursors.items():
                if replay > cursor and channel in (event["channel"], ALL_CHANGE_EVENTS):
                    due.append({"channel": channel, "data": event["data"]})
                    client.cursors[channel] = replay
            if len(due) >= COMETD_BATCH:
                break
        return due

    def cometd_message(self, message: Any, token: str | None) -> dict[str, Any]:
        """The answer to one Bayeux message other than ``/meta/connect`` (handled by the server)."""
        if not isinstance(message, dict) or not isinstance(message.get("channel"), str):
            return {"successful": False, "error": "400::Bad request: expected Bayeux messages"}
        channel = message["channel"]
        base: dict[str, Any] = {"channel": channel}
        if "id" in message:
            base["id"] = message["id"]
        auth_error = self._cometd_auth(token)
        if channel == "/meta/handshake":
            if auth_error:
                return {**base, "successful": False, "error": "403::Handshake denied", "advice": {"reconnect": "none"},
                        "ext": {"sfdc": {"failureReason": auth_error}}}
            client = _CometdClient(uuid.uuid4().hex[:26], token or "")
            self.cometd_clients[client.client_id] = client
            return {**base, "successful": True, "version": "1.0", "minimumVersion": "1.0", "clientId": client.client_id,
                    "supportedConnectionTypes": ["long-polling"], "ext": {"replay": True, "payload.format": True},
                    "advice": {"interval": 0, "timeout": self.cometd_timeout_ms, "reconnect": "retry"}}
        client = self.cometd_clients.get(message.get("clientId") or "")
        if client is not None:
            base["clientId"] = client.client_id
        if auth_error:
            return {**base, "successful": False, "error": auth_error, "advice": {"reconnect": "none", "interval": 0}}
        if client is None:
            return {**base, "successful": False, "error": "403::Unknown client", "advice": {"reconnect": "handshake", "interval": 0}}
        if channel == "/meta/disconnect":
            del self.cometd_clients[client.client_id]
            return {**base, "successful": True}
        if channel in ("/meta/subscribe", "/meta/unsubscribe"):
            subscription = message.get("subscription")
            base["subscription"] = subscription
            known = {ALL_CHANGE_EVENTS} | {cdc_channel(name) for name in self.cdc_entities}
            if subscription not in known:
                return {**base, "successful": False,
                        "error": f"400::The channel you requested to subscribe to does not exist {subscription}"}
            if channel == "/meta/unsubscribe":
                client.cursors.pop(subscription, None)
                return {**base, "successful": True}
            replay = ((message.get("ext") or {}).get("replay") or {}).get(subscription, -1)
            retained = self._retained_from()
            if replay == -1:
                cursor = len(self.cdc_events)
            elif replay == -2:
                cursor = retained - 1
            elif isinstance(replay, int) and not isinstance(replay, bool) and retained - 1 <= replay <= len(self.cdc_events):
                cursor = replay
            else:
                return {**base, "successful": False,
                        "error": f"400::The replayId {{{replay}}} you provided was invalid.  Please provide a valid ID, "
                                 "-2 to replay all events, or -1 to replay only new events."}
            client.cursors[subscription] = cursor
            return {**base, "successful": True}
        return {**base, "successful": False, "error": f"400::Unknown channel {channel}"}

    def _cometd_auth(self, token: str | None) -> str | None:
        if not token:
            return "401::Request requires authentication"
        try:
            self.authenticate(token)
        except ApiError:
            return "401::Authentication invalid"
        return None

    def _publish(self, changes: list[_Change], user_id: str, origin: str) -> None:
        """One transaction's change events; identical changes share one event."""
        sobject = changes[0].record.sobject
        if not (self.cdc_enabled and sobject in self.cdc_entities):
            return
        groups: dict[str, tuple[_Change, list[str], dict[str, Any]]] = {}
        for change in changes:
            body = self._body(change)
            key = json.dumps([change.change_type, change.changed, change.nulled, body], sort_keys=True)
            groups.setdefault(key, (change, [], body))[1].append(change.record.id)
        transaction = str(uuid.uuid4())
        self._commit_number += 1
        for sequence, (change, ids, body) in enumerate(groups.values(), start=1):
            change_type, changed, nulled = change.change_type, change.changed, change.nulled
            if self.next_gaps:
                self.next_gaps -= 1
                change_type, body, changed, nulled = f"GAP_{change_type}", {}, [], []
                if self.gap_kind == "overflow":
                    change_type, ids = "GAP_OVERFLOW", []
            header = {
                "entityName": sobject, "recordIds": ids, "changeType": change_type, "changeOrigin": origin,
                "transactionKey": transaction, "sequenceNumber": sequence, "commitTimestamp": self._now_ms(),
                "commitNumber": self._commit_number, "commitUser": user_id, "nulledFields": nulled, "diffFields": [],
                "changedFields": changed,
            }  # fmt: skip
            replay_id = len(self.cdc_events) + 1
            self.cdc_events.append({"channel": cdc_channel(sobject), "data": {
                "schema": _schema_id(sobject), "payload": {"ChangeEventHeader": header, **body},
                "event": {"replayId": replay_id}}})

    def _body(self, change: _Change) -> dict[str, Any]:
        """CREATE and UNDELETE carry every non-null field, UPDATE the changed ones, DELETE none."""
        specs, values = OBJECTS[change.record.sobject], change.record.values
        if change.change_type == "DELETE":
            return {}
        if change.change_type == "UPDATE":
            names = change.changed
        else:
            names = [n for n in specs if n not in _NOT_IN_CHANGE_EVENTS and values[n] is not None]
            if change.change_type == "CREATE":
                names = [n for n in names if n != "IsDeleted"]
        return {n: _cdc_value(specs[n], values[n]) for n in names}


# --- values ---------------------------------------------------------------------------------------------------


def _checked_value(sobject: str, name: str, spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    kind = spec.type
    ok = {
        "string": isinstance(value, str), "textarea": isinstance(value, str), "picklist": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "currency": isinstance(value, (int, float)) and not isinstance(value, bool),
        "percent": isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(kind, isinstance(value, str))  # fmt: skip
    if not ok:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {kind} from {type(value).__name__} "
                                                 f"value {value!r} for field {name}")
    if kind in ("currency", "percent"):
        return float(value)
    if kind == "reference":
        if not is_id(value):
            raise ApiError(400, "MALFORMED_ID", f"{name}: id value of incorrect type: {value}", [name])
        return to_18(value)
    if kind == "date":
        try:
            if len(value) == 10:
                return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
        raise ApiError(400, "JSON_PARSER_ERROR", f"Cannot deserialize value of type date from String {value!r} "
                                                 f"for field {name}")
    if name == "StageName" and sobject == "Opportunity" and value not in STAGES:
        raise ApiError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", f"Stage: bad value for restricted picklist "
                                                                       f"field: {value}", [name])
    if name == "CurrencyIsoCode" and value not in ACTIVE_CURRENCIES:
        raise ApiError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", f"Currency ISO Code: bad value for restricted "
                                                                       f"picklist field: {value}", [name])
    return value


def _apply_stage(values: dict[str, Any], written: Mapping[str, Any]) -> None:
    """IsClosed/IsWon follow the stage; Probability too unless it was written in the same save."""
    if "StageName" not in written:
        return
    probability, closed, won = STAGES[values["StageName"]]
    values.update(IsClosed=closed, IsWon=won)
    if "Probability" not in written:
        values["Probability"] = probability


def _attributes(record: SObjectRecord, version: str) -> dict[str, str]:
    return {"type": record.sobject, "url": f"/services/data/v{version}/sobjects/{record.sobject}/{record.id}"}


def _rest_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def _cdc_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _rest_value(spec: FieldSpec, value: Any) -> Any:
    return _rest_time(value) if spec.type == "datetime" and value is not None else value


def _cdc_value(spec: FieldSpec, value: Any) -> Any:
    return _cdc_time(value) if spec.type == "datetime" and value is not None else value


def _schema_id(sobject: str) -> str:
    """A stable 22-character schema id per entity (the samples' ``IeRuaY6cbI_HsV8Rv1Mc5g`` shape)."""
    return base64.urlsafe_b64encode(hashlib.sha256(sobject.encode()).digest()[:16]).decode().rstrip("=")


def _minute_ms(text: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace(" ", "+"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(400, "INVALID_REPLICATION_DATE",
                       f"{name}: expected a date-time such as 2024-05-02T10:00:00+00:00")
    return int(moment.timestamp()) // 60 * 60_000


def _compare(value: Any, op: str, literal: Any) -> bool:
    if literal is None or value is None:
        if op == "=":
            return value is None and literal is None
        if op == "!=":
            return (value is None) != (literal is None)
        return False
    if op == "=":
        return value == literal
    if op == "!=":
        return value != literal
    try:
        return {"<": value < literal, "<=": value <= literal, ">": value > literal, ">=": value >= literal}[op]
    except TypeError:
        return False


# --- SOQL subset -------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<comma>,)
""", re.VERBOSE)
_KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST",
                       "LIMIT", "TRUE", "FALSE", "NULL", "OR", "NOT", "IN", "LIKE", "GROUP", "HAVING", "OFFSET",
                       "INCLUDES", "EXCLUDES", "FOR", "WITH", "USING", "TYPEOF"})
_TYPE_NAMES = {"datetime": "dateTime", "date": "date", "boolean": "boolean", "currency": "currency",
               "percent": "percent"}


@dataclass
class SoqlQuery:
    sobject: str
    select: list[tuple[str, ...]]
    where: list[tuple[tuple[str, ...], str, Any]]
    order: list[tuple[tuple[str, ...], bool, bool]]
    limit: int | None


class _Parser:
    def __init__(self, soql: str) -> None:
        self.soql = soql
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(soql):
            match = _TOKEN.match(soql, position)
            if match is None:
                self.fail(position, f"unexpected token: '{soql[position]}'")
            assert match is not None
            if match.lastgroup != "ws":
                self.tokens.append((match.lastgroup or "", match.group(), position))
            position = match.end()
        self.index = 0

    def fail(self, position: int, message: str, code: str = "MALFORMED_QUERY") -> None:
        row = self.soql.count("\n", 0, position) + 1
        column = position - (self.soql.rfind("\n", 0, position) + 1) + 1
        caret = " " * (column - 1) + "^"
        raise ApiError(400, code, f"\n{self.soql}\n{caret}\nERROR at Row:{row}:Column:{column}\n{message}")

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("eof", "<EOF>", len(self.soql))

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        self.index += 1
        return token

    def keyword(self, *words: str) -> str | None:
        kind, text, _ = self.peek()
        if kind == "name" and text.upper() in words:
            self.index += 1
            return text.upper()
        return None

    def expect(self, word: str) -> None:
        if self.keyword(word) is None:
            _, text, position = self.peek()
            self.fail(position, f"unexpected token: '{text}'")

    def identifier(self) -> tuple[str, int]:
        kind, text, position = self.take()
        if kind != "name" or text.upper() in _KEYWORDS:
            self.fail(position, f"unexpected token: '{text}'")
        return text, position


def parse_soql(soql: str) -> SoqlQuery:
    """Parse and resolve the subset described in the module docstring; ApiError otherwise."""
    p = _Parser(soql)
    p.expect("SELECT")
    raw_fields = [p.identifier()]
    while p.peek()[0] == "comma":
        p.take()
        raw_fields.append(p.identifier())
    p.expect("FROM")
    sobject_text, sobject_position = p.identifier()
    sobject = next((name for name in OBJECTS if name.lower() == sobject_text.lower()), None)
    if sobject is None:
        p.fail(sobject_position, f"sObject type '{sobject_text}' is not supported. If you are attempting to use a "
                                 "custom object, be sure to append the '__c' after the entity name. Please reference "
                                 "your WSDL or the describe call for the appropriate names.", "INVALID_TYPE")
    assert sobject is not None

    def resolve(text: str, position: int, *, plain: bool = False) -> tuple[str, ...]:
        specs = OBJECTS[sobject]
        first, _, second = text.partition(".")
        if not second:
            name = next((n for n in specs if n.lower() == first.lower()), None)
            if name is not None:
                return (name,)
        elif not plain:
            reference = next((n for n, s in specs.items()
                              if s.relationship and s.relationship.lower() == first.lower()), None)
            target = OBJECTS[specs[reference].target or ""] if reference else {}
            name = next((n for n in target if n.lower() == second.lower()), None)
            if reference and name:
                return (reference, name)
        p.fail(position, f"No such column '{text}' on entity '{sobject}'.", "INVALID_FIELD")
        raise AssertionError

    select = [resolve(text, position) for text, position in raw_fields]
    where: list[tuple[tuple[str, ...], str, Any]] = []
    if p.keyword("WHERE"):
        while True:
            text, position = p.identifier()
            path = resolve(text, position, plain=True)
            kind, op, op_position = p.take()
            if kind != "op":
                p.fail(op_position, f"unexpected token: '{op}'")
            where.append((path, "!=" if op == "<>" else op, _literal(p, sobject, path[0])))
            if not p.keyword("AND"):
                break
    order: list[tuple[tuple[str, ...], bool, bool]] = []
    if p.keyword("ORDER"):
        p.expect("BY")
        while True:
            text, position = p.identifier()
            path = resolve(text, position, plain=True)
            descending = p.keyword("ASC", "DESC") == "DESC"
            nulls_last = descending
            if p.keyword("NULLS"):
                which = p.keyword("FIRST", "LAST")
                if which is None:
                    p.fail(p.peek()[2], f"unexpected token: '{p.peek()[1]}'")
                nulls_last = which == "LAST"
            order.append((path, descending, nulls_last))
            if p.peek()[0] != "comma":
                break
            p.take()
    limit = None
    if p.keyword("LIMIT"):
        kind, text, position = p.take()
        if kind != "number" or not text.isdigit():
            p.fail(position, f"unexpected token: '{text}'")
        limit = int(text)
    kind, text, position = p.peek()
    if kind != "eof":
        p.fail(position, f"unexpected token: '{text}'")
    return SoqlQuery(sobject, select, where, order, limit)


def _literal(p: _Parser, sobject: str, name: str) -> Any:
    kind, text, position = p.take()
    spec = OBJECTS[sobject][name]
    if kind == "name" and text.upper() == "NULL":
        return None
    expected = {"datetime": "datetime", "date": "date", "boolean": "name", "currency": "number", "percent": "number"}
    wanted = expected.get(spec.type, "string")
    if kind != wanted or (wanted == "name" and text.upper() not in ("TRUE", "FALSE")):
        if kind in ("name", "comma", "op", "eof") and wanted != "name":
            p.fail(position, f"unexpected token: '{text}'")
        type_name = _TYPE_NAMES.get(spec.type, "string")
        quoted = "must be enclosed in quotes" if wanted == "string" else "should not be enclosed in quotes"
        p.fail(position, f"value of filter criterion for field '{name}' must be of type {type_name} and {quoted}",
               "INVALID_FIELD")
    if kind == "datetime":
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    if kind == "number":
        return float(text)
    if kind == "name":
        return text.upper() == "TRUE"
    if kind == "string":
        value = re.sub(r"\\(.)", r"\1", text[1:-1])
        return to_18(value) if spec.type in ("id", "reference") and is_id(value) else value
    return text  # a date: ISO strings compare in order


# --- HTTP ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    version: str
    user_id: str
    origin: str


RestHandler = Callable[[web.Request, "SalesforceState", _Context], Awaitable[web.StreamResponse]]


def _call_client(header: str | None) -> str | None:
    """``Sforce-Call-Options: client=SampleCaseSensitiveToken/100, defaultNamespace=battle``."""
    for part in (header or "").split(","):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == "client" and value.strip():
            return value.strip()
    return None


def _record_sforce_headers(state: SalesforceState, request: web.Request) -> None:
    """The call log keeps ``x-*`` headers; Salesforce's own are ``Sforce-*``."""
    for call in reversed(state.calls):
        if call.path == request.path:
            call.headers.update({k.lower(): v for k, v in request.headers.items() if k.lower().startswith("sforce-")})
            return


def _rest(handler: RestHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Version, auth, the daily allocation, injected errors, error arrays and Sforce-Limit-Info."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        state: SalesforceState = request.app[STATE]
        _record_sforce_headers(state, request)
        try:
            version = request.match_info["version"]
            if not MIN_API_VERSION <= int(version.split(".")[0]) <= MAX_API_VERSION:
                raise not_found()
            user_id = state.authenticate(request.headers.get("Authorization"))
            state.count_request()
            state.take_injected(request.path)
            client = _call_client(request.headers.get("Sforce-Call-Options"))
            origin = f"com/salesforce/api/rest/{version}" + (f";client={client}" if client else "")
            response = await handler(request, state, _Context(version, user_id, origin))
        except ApiError as exc:
            response = web.json_response(exc.errors, status=exc.status)
        response.headers["Sforce-Limit-Info"] = state.limit_info()
        return response

    return wrapped


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "Unexpected character: expected a JSON object at [line:1, column:1]")
    return data


def _sobject(request: web.Request) -> str:
    name = request.match_info["sobject"]
    found = next((n for n in OBJECTS if n.lower() == name.lower()), None)
    if found is None:
        raise not_found()
    return found


def _record_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if not is_id(value):
        raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {value}")
    return value


async def _token(request: web.Request) -> web.Response:
    state: SalesforceState = request.app[STATE]
    raw = await request.read()
    form = form_fields(raw) if request.content_type == "application/x-www-form-urlencoded" else {}
    for call in reversed(state.calls):  # keep secrets out of the call log
        if call.path == request.path and isinstance(call.body, dict):
            call.body = {k: mask_secret(v) if k in ("client_secret", "refresh_token") else v
                         for k, v in call.body.items()}
            break
    basic = None
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            basic = (user, password) if sep else None
        except (ValueError, UnicodeDecodeError):
            basic = None
    try:
        body = state.issue_token(form, basic, f"{request.scheme}://{request.host}")
    except OAuthError as exc:
        return web.json_response(exc.body, status=exc.status)
    return web.json_response(body, headers={"Cache-Control": "no-cache, no-store"})


def _batch_size(request: web.Request) -> int | None:
    for part in request.headers.get("Sforce-Query-Options", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip() == "batchSize" and value.strip().isdigit():
            return int(value.strip())
    return None


def _query(include_deleted: bool) -> RestHandler:
    async def handler(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
        soql = request.query.get("q", "")
        if not soql.strip():
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        return web.json_response(state.query(soql, include_deleted=include_deleted, batch=_batch_size(request),
                                             version=ctx.version, user_id=ctx.user_id))

    return handler


async def _query_more(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    locator, _, offset = request.match_info["locator"].rpartition("-")
    if not offset.isdigit():
        raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return web.json_response(state.query_more(locator, int(offset), ctx.version))


async def _limits(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    return web.json_response(state.limits_json())


async def _get_record(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    sobject = _sobject(request)
    record = state.record(sobject, _record_id(request))
    fields = None
    if request.query.get("fields"):
        by_lower = {n.lower(): n for n in OBJECTS[sobject]}
        fields = []
        for given in request.query["fields"].split(","):
            name = by_lower.get(given.strip().lower())
            if name is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{given.strip()}' on sobject of type {sobject}")
            fields.append(name)
    return web.json_response(state.record_json(record, ctx.version, fields))


async def _update_record(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    sobject, record_id = _sobject(request), _record_id(request)
    state.update(sobject, [record_id], await _json_object(request), user_id=ctx.user_id, origin=ctx.origin)
    return web.Response(status=204)


async def _delete_record(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    state.delete(_sobject(request), _record_id(request), user_id=ctx.user_id, origin=ctx.origin)
    return web.Response(status=204)


async def _create_record(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    sobject = _sobject(request)
    record = state.create(sobject, await _json_object(request), user_id=ctx.user_id, origin=ctx.origin)
    return web.json_response({"id": record.id, "errors": [], "success": True}, status=201, headers={
        "Location": _attributes(record, ctx.version)["url"]})


def _changed(deleted: bool) -> RestHandler:
    async def handler(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
        start, end = request.query.get("start"), request.query.get("end")
        if not start or not end:
            raise ApiError(400, "MISSING_ARGUMENT", "start and end are required")
        return web.json_response(state.changed_between(_sobject(request), start, end, deleted=deleted))

    return handler


async def _post_feed_element(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    element = state.post_feed_item(await _json_object(request), user_id=ctx.user_id, version=ctx.version)
    return web.json_response(element, status=201)


async def _record_feed(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    record_id = _record_id(request)
    page, size = request.query.get("page", "0"), request.query.get("pageSize", str(FEED_PAGE_DEFAULT))
    if not (page.isdigit() and size.isdigit() and 1 <= int(size) <= FEED_PAGE_MAX):
        raise ApiError(400, "INVALID_API_INPUT", f"pageSize: between 1 and {FEED_PAGE_MAX}")
    return web.json_response(state.record_feed(record_id, page=int(page), page_size=int(size), version=ctx.version))


async def _unknown(request: web.Request, state: SalesforceState, ctx: _Context) -> web.Response:
    raise not_found()


# --- control endpoints -------------------------------------------------------------------------------------------


async def _control(request: web.Request, action: Callable[[SalesforceState, dict[str, Any]], tuple[int, Any]]
                   ) -> web.Response:
    state: SalesforceState = request.app[STATE]
    try:
        raw = await request.read()
        data = json.loads(raw) if raw else {}
        if not isinstance(data, (dict, list)):
            raise SandboxError("expected a JSON object")
        status, body = action(state, data)
    except (ValueError, SandboxError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except ApiError as exc:
        return web.json_response(exc.errors, status=exc.status)
    return web.json_response(body, status=status)


def _actor(state: SalesforceState, data: Mapping[str, Any]) -> str:
    user_id = data.get("user_id") or state.person_user_id
    if not (is_id(user_id) and user_id.startswith("005")):
        raise SandboxError("'user_id' must be a User id (005…)")
    return to_18(user_id)


def _fields_of(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) - {"fields", "user_id", "ids"}:
        raise SandboxError('expected {"fields": {...}, "user_id"?}')
    fields = data.get("fields", {})
    if not isinstance(fields, dict):
        raise SandboxError("'fields' must be an object")
    return fields


def _control_sobject(request: web.Request) -> str:
    name = request.match_info["sobject"]
    if name not in OBJECTS:
        raise SandboxError(f"unknown object {name!r}: one of {sorted(OBJECTS)}")
    return name


async def _ctl_create(request: web.Request) -> web.Response:
    def action(state: SalesforceState, data: Any) -> tuple[int, Any]:
        sobject = _control_sobject(request)
        record = state.create(sobject, _fields_of(data), user_id=_actor(state, data))
        return 201, {"record": state.record_json(record, "62.0")}

    return await _control(request, action)


async def _ctl_update_many(request: web.Request) -> web.Response:
    def action(state: SalesforceState, data: Any) -> tuple[int, Any]:
        sobject, fields = _control_sobject(request), _fields_of(data)
        ids = data.get("ids")
        if not isinstance(ids, list) or not ids:
            raise SandboxError("'ids' must be a non-empty list of record ids")
        records = state.update(sobject, ids, fields, user_id=_actor(state, data))
        return 200, {"records": [state.record_json(r, "62.0") for r in records]}

    return await _control(request, action)


async def _ctl_record(request: web.Request) -> web.Response:
    def action(state: SalesforceState, data: Any) -> tuple[int, Any]:
        sobject, record_id = _control_sobject(request), request.match_info["id"]
        if request.method == "DELETE":
            record = state.delete(sobject, record_id, user_id=_actor(state, dict(request.query)))
        elif request.path.endswith("/undelete"):
            record = state.undelete(sobject, record_id, user_id=_actor(state, data))
        else:
            record = state.update(sobject, [record_id], _fields_of(data), user_id=_actor(state, data))[0]
        return 200, {"record": state.record_json(record, "62.0")}

    return await _control(request, action)


async def _ctl_get_cdc(request: web.Request) -> web.Response:
    after = request.query.get("after", "0")
    if not after.isdigit():
        return web.json_response({"error": "'after' must be a replay id"}, status=400)
    return web.json_response(request.app[STATE].cdc_json(int(after)))


async def _ctl_set_cdc(request: web.Request) -> web.Response:
    def action(state: SalesforceState, data: Any) -> tuple[int, Any]:
        if not isinstance(data, dict):
            raise SandboxError("expected a JSON object")
        state.configure_cdc(data)
        return 200, {k: v for k, v in state.cdc_json().items() if k != "events"}

    return await _control(request, action)


async def _ctl_limits(request: web.Request) -> web.Response:
    def action(state: SalesforceState, data: Any) -> tuple[int, Any]:
        if request.method == "POST":
            if not isinstance(data, dict) or set(data) - {"max", "used"} or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data.values()):
                raise SandboxError('expected {"max": n, "used": n}')
            state.set_allocation(data.get("max"), data.get("used"))
        return 200, {"max": state.api_window.limit, "used": state.api_used(), "enforced": state.rate_limits}

    return await _control(request, action)


async def _ctl_expire_tokens(request: web.Request) -> web.Response:
    return web.json_response({"expired": request.app[STATE].expire_tokens()})


async def _ctl_errors(request: web.Request) -> web.Response:
    def action(state: SalesforceState, data: Any) -> tuple[int, Any]:
        if request.method == "POST":
            state.inject(data)
        elif request.method == "DELETE":
            state.injected.clear()
        return 200, {"errors": [{"path": e.path, "status": e.status, "body": e.errors, "count": e.count}
                                for e in state.injected]}

    return await _control(request, action)


async def _cometd(request: web.Request) -> web.Response:
    """One Bayeux request: a JSON array of messages; ``/meta/connect`` holds until events are due."""
    state: SalesforceState = request.app[STATE]
    version = request.match_info["version"]
    if not COMETD_MIN_VERSION <= int(version.split(".")[0]) <= MAX_API_VERSION:
        return web.json_response([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}], status=404)
    try:
        messages = json.loads(await request.read() or b"null")
    except ValueError:
        messages = None
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list) or not messages:
        return web.json_response([{"successful": False, "error": "400::Bad request: expected Bayeux messages"}], status=400)
    token = request.headers.get("Authorization")
    answers: list[dict[str, Any]] = []
    for message in messages:
        if not (isinstance(message, dict) and message.get("channel") == "/meta/connect"):
            answers.append(state.cometd_message(message, token))
            continue
        reply: dict[str, Any] = {"channel": "/meta/connect", **({"id": message["id"]} if "id" in message else {})}
        client = state.cometd_clients.get(message.get("clientId") or "")
        auth_error = state._cometd_auth(token)
        if auth_error:
            answers.append({**reply, "successful": False, "error": auth_error, "advice": {"reconnect": "none", "interval": 0}})
            continue
        if client is None:
            answers.append({**reply, "successful": False, "error": "403::Unknown client",
                            "advice": {"reconnect": "handshake", "interval": 0}})
            continue
        advice = message.get("advice") if isinstance(message.get("advice"), dict) else {}
        wait_ms = advice.get("timeout", state.cometd_timeout_ms)
        wait_ms = min(state.cometd_timeout_ms, wait_ms) if isinstance(wait_ms, int) and wait_ms >= 0 else state.cometd_timeout_ms
        deadline = state.clock() + wait_ms / 1000
        due = state.cometd_due(client)
        while not due and state.clock() < deadline and client.client_id in state.cometd_clients:
            await asyncio.sleep(0.05)
            due = state.cometd_due(client)
        answers.extend(due)
        answers.append({**reply, "clientId": client.client_id, "successful": client.client_id in state.cometd_clients,
                        "advice": {"interval": 0, "timeout": state.cometd_timeout_ms, "reconnect": "retry"}})
    return web.json_response(answers)


STATE: web.AppKey[SalesforceState] = web.AppKey("salesforce_state", SalesforceState)


def create_app(state: SalesforceState | None = None) -> web.Application:
    state = state if state is not None else SalesforceState()
    app = sandbox_app(state)
    app[STATE] = state
    api = "/services/data/v{version:\\d+\\.\\d}"
    slash = "{slash:/?}"
    sobject = "{sobject:[A-Za-z][A-Za-z0-9_]*}"
    app.router.add_post("/services/oauth2/token", _token)
    app.router.add_post("/cometd/{version:\\d+\\.\\d}", _cometd)
    app.router.add_post("/cometd/{version:\\d+\\.\\d}/{tail:.*}", _cometd)
    routes: list[tuple[str, str, RestHandler]] = [
        ("GET", f"{api}/query{slash}", _query(False)),
        ("GET", f"{api}/queryAll{slash}", _query(True)),
        ("GET", f"{api}/query/{{locator:[A-Za-z0-9]+-\\d+}}", _query_more),
        ("GET", f"{api}/queryAll/{{locator:[A-Za-z0-9]+-\\d+}}", _query_more),
        ("GET", f"{api}/limits{slash}", _limits),
        ("GET", f"{api}/sobjects/{sobject}/updated{slash}", _changed(False)),
        ("GET", f"{api}/sobjects/{sobject}/deleted{slash}", _changed(True)),
        ("POST", f"{api}/sobjects/{sobject}{slash}", _create_record),
        ("GET", f"{api}/sobjects/{sobject}/{{id}}", _get_record),
        ("PATCH", f"{api}/sobjects/{sobject}/{{id}}", _update_record),
        ("DELETE", f"{api}/sobjects/{sobject}/{{id}}", _delete_record),
        ("POST", f"{api}/chatter/feed-elements{slash}", _post_feed_element),
        ("GET", f"{api}/chatter/feeds/record/{{id}}/feed-elements{slash}", _record_feed),
        ("*", f"{api}/{{tail:.*}}", _unknown),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _rest(handler))
    control = "/_sandbox/records/{sobject}"
    app.router.add_post(control, _ctl_create)
    app.router.add_patch(control, _ctl_update_many)
    app.router.add_post(control + "/{id}", _ctl_record)
    app.router.add_delete(control + "/{id}", _ctl_record)
    app.router.add_post(control + "/{id}/undelete", _ctl_record)
    app.router.add_get("/_sandbox/cdc", _ctl_get_cdc)
    app.router.add_post("/_sandbox/cdc", _ctl_set_cdc)
    app.router.add_get("/_sandbox/limits", _ctl_limits)
    app.router.add_post("/_sandbox/limits", _ctl_limits)
    app.router.add_post("/_sandbox/tokens/expire", _ctl_expire_tokens)
    for method in ("GET", "POST", "DELETE"):
        app.router.add_route(method, "/_sandbox/errors", _ctl_errors)
    return app


__all__ = ["OBJECTS", "SalesforceState", "SObjectRecord", "create_app", "parse_soql"]
