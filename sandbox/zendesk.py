"""Fake Zendesk Support API, a signing Zendesk webhook sender and webhook payload builders.

Implemented (paths with or without ``.json``), as documented at
https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ ,
…/ticketing/tickets/ticket_comments/ , …/ticketing/organizations/organizations/ ,
…/ticketing/ticket-management/job_statuses/ and
…/ticketing/ticket-management/incremental_exports/ :

``GET|PUT /api/v2/tickets/{id}``, ``POST /api/v2/tickets``, ``GET /api/v2/tickets/{id}/comments``,
``POST /api/v2/tickets/{id}/merge`` (source tickets are closed with a comment and the
``closed_by_merge`` tag; answered with a completed ``job_status``), ``GET /api/v2/job_statuses/{id}``,
``GET /api/v2/organizations/{id}`` and ``GET /api/v2/incremental/tickets/cursor?start_time=|cursor=``.

Like Zendesk: Basic auth ``{email}/token:{api_token}`` (401 ``{"error": "Couldn't authenticate
you"}``); ids are integers and statuses lower case in REST; errors are ``{"error", "description"}``
(``RecordNotFound``, ``RecordInvalid`` with ``details``, ``InvalidEndpoint``); every API answer
carries ``X-Rate-Limit``/``X-Rate-Limit-Remaining`` for the account limit, and 429 + ``Retry-After``
over it. The export pages by ``(generated_timestamp, id)``, 1000 per page (``per_page`` up to 1000),
leaves out tickets changed in the minute before the request, and allows 10 requests a minute.
``PUT`` takes ``additional_tags``/``remove_tags`` besides ``tags``; a closed ticket refuses updates.

Event-style webhooks (https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/)
have string ids, upper-case status/priority/type and the key order of the captured sample; the
trigger-style body is :data:`connectors.zendesk.events.RECOMMENDED_TRIGGER_BODY` with its
placeholders rendered as Zendesk would (values JSON-escaped). Signing:
https://developer.zendesk.com/documentation/webhooks/verifying/ .

Control endpoints besides the common ``/_sandbox/*`` ones (see :mod:`sandbox.common`), acting as a
person in the agent UI (channel ``web``) — or, with webhooks on, delivering the matching
event-style webhooks in order:

``POST /_sandbox/tickets`` ``{"subject", "comment", "status", "priority", "type", "tags",
"organization_id", "requester_id", "custom_fields": {"<id>": value}, "actor_id"}`` → 201 ``{"ticket"}``;
``POST /_sandbox/tickets/{id}`` ``{"subject", "status", "priority", "tags", "add_tags",
"remove_tags", "custom_fields", "comment": "text" | {"body", "public"}, "actor_id"}`` → ``{"ticket"}``;
``POST /_sandbox/tickets/{id}/merge`` ``{"into": <target id>, "source_comment", "target_comment"}``
→ ``{"ticket", "target"}``; ``POST /_sandbox/organizations`` ``{"name", "id"?}`` → 201;
``GET|POST /_sandbox/webhooks`` ``{"enabled", "target", "secret", "style": "event"|"trigger",
"jira_key_field_id"}`` reads/sets delivery (``GET`` lists what was sent);
``POST /_sandbox/webhooks/flush`` waits until every queued webhook was delivered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web

from connectors.zendesk.events import RECOMMENDED_TRIGGER_BODY

from .common import SandboxError, SandboxState, SlidingWindow, retry_after_header, sandbox_app

# https://developer.zendesk.com/api-reference/introduction/rate-limits/ : account-wide requests per
# minute by plan (Team 200, Growth and Professional 400, Enterprise 700, High Volume add-on 2500).
ACCOUNT_REQUESTS_PER_MINUTE = 400
# incremental_exports page: "You can make up to 10 requests per minute to these endpoints."
EXPORT_REQUESTS_PER_MINUTE = 10
# using-the-incremental-export-api: "items that were created or changed within the minute prior to
# your request are excluded".
EXPORT_EXCLUDES_LAST_S = 60
# Cursor-based export: per_page defaults to and is capped at 1000.
EXPORT_PER_PAGE = 1000
# Merge Tickets: at most 5 source tickets per request.
MERGE_MAX_SOURCES = 5
MERGE_TAG = "closed_by_merge"
# The captured ticket.created sample's account and event schema version.
DEFAULT_ACCOUNT_ID = 12345678
EVENT_VERSION = "2022-11-06"
DEFAULT_SUBDOMAIN = "switchboard"
DEFAULT_WEBHOOK_ID = "01JH3ZK7Q4V5W6X7Y8Z9SANDBOX"
DEFAULT_API_USER_ID = 9000000000100  # the hub's integration user (the token's owner)
DEFAULT_AGENT_ID = 9000000000001  # a person working in the agent UI
DEFAULT_BRAND_ID = 9000000000002
DEFAULT_FORM_ID = 9000000000004
DEFAULT_GROUP_ID = 9000000000005  # the account's default group: every ticket lands there
WEBHOOK_USER_AGENT = "Zendesk Webhook"
WEBHOOK_CONTENT_TYPE = "application/json; charset=utf-8"
# webhooks introduction: Zendesk gives the endpoint about 10-12 s; ours.
WEBHOOK_TIMEOUT_S = 10.0

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
TYPES = ("problem", "incident", "question", "task")
# What {{ticket.status}} renders (English account).
STATUS_DISPLAY = {"new": "New", "open": "Open", "pending": "Pending", "hold": "On-hold", "solved": "Solved",
                  "closed": "Closed"}
# Custom ticket statuses: each system status has a default custom status (ids are ours).
CUSTOM_STATUS_IDS = {status: 9000000000010 + index for index, status in enumerate(STATUSES)}
# REST via.channel → event-webhook detail.via.channel (the captured sample: API → "web_service").
EVENT_CHANNELS = {"api": "web_service", "web": "web_form"}
VIA_DISPLAY = {"api": "Web Service", "web": "Web Form"}

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_.]*)\s*\}\}")


class ZendeskError(Exception):
    """An API refusal: answered with ``status`` and Zendesk's error body."""

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


def not_found() -> ZendeskError:
    return ZendeskError(404, {"error": "RecordNotFound", "description": "Not found"})


def invalid(field_name: str, description: str) -> ZendeskError:
    return ZendeskError(422, {"error": "RecordInvalid", "description": "Record validation errors",
                              "details": {field_name: [{"description": description}]}})


@dataclass
class ZendeskComment:
    id: int
    author_id: int
    body: str
    public: bool
    created_at: float
    channel: str
    audit_id: int


@dataclass
class ZendeskTicket:
    id: int
    subject: str | None
    description: str
    status: str
    requester_id: int
    submitter_id: int
    created_at: float
    updated_at: float
    generated_timestamp: int
    channel: str
    priority: str | None = None
    type: str | None = None
    assignee_id: int | None = None
    organization_id: int | None = None
    external_id: str | None = None
    tags: list[str] = field(default_factory=list)
    custom_fields: dict[int, Any] = field(default_factory=dict)
    comments: list[ZendeskComment] = field(default_factory=list)
    merged_into: int | None = None


@dataclass
class ZendeskOrganization:
    id: int
    name: str
    created_at: float


@dataclass
class _Update:
    """What one change did, for the audit and the webhooks."""

    ticket: ZendeskTicket
    actor_id: int
    created: bool = False
    status: tuple[str, str] | None = None
    subject: tuple[str | None, str | None] | None = None
    tags_added: list[str] = field(default_factory=list)
    tags_removed: list[str] = field(default_factory=list)
    fields: list[tuple[int, Any, Any]] = field(default_factory=list)
    comment: ZendeskComment | None = None
    merged_into: int | None = None


class ZendeskState(SandboxState):
    """One Zendesk account: tickets with comments, organizations, job statuses, webhook delivery.

    ``credentials`` maps email to API token; ``None`` accepts any ``{email}/token:{token}`` pair.
    API calls act as ``api_user_id`` (channel ``api``), control endpoints as ``agent_id``
    (channel ``web``). ``custom_field_ids`` are the account's ticket fields, listed on every ticket.
    """

    vendor = "zendesk"

    def __init__(
        self,
        *,
        credentials: Mapping[str, str] | None = None,
        organizations: Mapping[int, str] | None = None,
        custom_field_ids: Iterable[int] = (),
        api_user_id: int = DEFAULT_API_USER_ID,
        agent_id: int = DEFAULT_AGENT_ID,
        account_id: int = DEFAULT_ACCOUNT_ID,
        subdomain: str = DEFAULT_SUBDOMAIN,
        webhooks_enabled: bool = False,
        webhook_target: str | None = None,
        webhook_secret: str | None = None,
        webhook_style: str = "event",
        jira_key_field_id: int | None = None,
        first_ticket_id: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.credentials = dict(credentials) if credentials is not None else None
        self.configured_organizations = dict(organizations or {})
        self.custom_field_ids = sorted(set(custom_field_ids) | ({jira_key_field_id} if jira_key_field_id else set()))
        self.api_user_id, self.agent_id, self.account_id = api_user_id, agent_id, account_id
        self.base_url = f"https://{subdomain}.zendesk.com"
        self.first_ticket_id = first_ticket_id
        self._webhook_defaults = {"enabled": webhooks_enabled, "target": webhook_target, "secret": webhook_secret,
                                  "style": webhook_style, "jira_key_field_id": jira_key_field_id}
        self._queue: asyncio.Queue[bytes | dict[str, Any]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._init_vendor()

    def _init_vendor(self) -> None:
        now = self.wall_clock()
        self.tickets: dict[int, ZendeskTicket] = {}
        self.organizations = {oid: ZendeskOrganization(oid, name, now) for oid, name in self.configured_organizations.items()}
        self.job_statuses: dict[str, dict[str, Any]] = {}
        self.account_window = SlidingWindow(ACCOUNT_REQUESTS_PER_MINUTE, 60.0, self.clock)
        self.export_window = SlidingWindow(EXPORT_REQUESTS_PER_MINUTE, 60.0, self.clock)
        self.webhook_config = dict(self._webhook_defaults)
        self.generated_webhooks: list[bytes | dict[str, Any]] = []
        self.sender: ZendeskWebhookSender | None = None
        self._next_ticket = self.first_ticket_id
        self._next_id = 10_000_000_001  # comments and audits

    def reset(self) -> None:
        super().reset()
        if self._worker is not None:
            self._worker.cancel()
        self._queue, self._worker = None, None
        self._init_vendor()

    # --- auth and limits ---------------------------------------------------------------------------

    def authenticate(self, header: str | None) -> None:
        scheme, _, value = (header or "").partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8") if scheme.lower() == "basic" else ""
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, _, token = decoded.partition(":")
        email, sep, kind = user.rpartition("/")
        ok = bool(sep and kind == "token" and email and token)
        if ok and self.credentials is not None:
            ok = hmac.compare_digest(self.credentials.get(email, "").encode(), token.encode())
        if not ok:
            raise ZendeskError(401, {"error": "Couldn't authenticate you"})

    def rate_headers(self) -> dict[str, str]:
        window = self.account_window
        remaining = window.limit - len([t for t in window.hits if t > self.clock() - window.window])
        return {"X-Rate-Limit": str(window.limit), "X-Rate-Limit-Remaining": str(max(0, remaining))}

    def fault_body(self, status: int) -> dict[str, Any]:
        return _ERROR_BODIES.get(status) or {"error": "ServiceUnavailable" if status >= 500 else "InvalidValue",
                                             "description": f"HTTP {status}"}

    # --- tickets -------------------------------------------------------------------------------------

    def ticket(self, ticket_id: int) -> ZendeskTicket:
        found = self.tickets.get(ticket_id)
        if found is None:
            raise not_found()
        return found

    def create_ticket(
        self,
        *,
        subject: str | None,
        comment: str,
        public: bool = True,
        actor_id: int,
        channel: str,
        status: str | None = None,
        priority: str | None = None,
        type: str | None = None,
        tags: Iterable[str] = (),
        organization_id: int | None = None,
        requester_id: int | None = None,
        assignee_id: int | None = None,
        external_id: str | None = None,
        custom_fields: Mapping[int, Any] | None = None,
    ) -> _Update:
        if not comment or not str(comment).strip():
            raise invalid("description", "Description: cannot be blank")
        status = status or ("open" if assignee_id else "new")
        self._check_values(status=status, priority=priority, type=type, organization_id=organization_id)
        now = self.wall_clock()
        ticket = ZendeskTicket(
            id=self._next_ticket, subject=subject, description=str(comment), status=status,
            requester_id=requester_id or actor_id, submitter_id=actor_id, created_at=now, updated_at=now,
            generated_timestamp=int(now), channel=channel, priority=priority, type=type, assignee_id=assignee_id,
            organization_id=organization_id, external_id=external_id, tags=_unique(tags),
            custom_fields=dict(custom_fields or {}),
        )
        self._next_ticket += 1
        self.tickets[ticket.id] = ticket
        update = _Update(ticket, actor_id, created=True)
        update.comment = self._add_comment(ticket, str(comment), public, actor_id, channel)
        self._after(update)
        return update

    def update_ticket(
        self,
        ticket_id: int,
        *,
        actor_id: int,
        channel: str,
        subject: str | None = None,
        status: str | None = None,
        priority: str | None = None,
        type: str | None = None,
        tags: Iterable[str] | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        custom_fields: Mapping[int, Any] | None = None,
        comment: str | None = None,
        public: bool = True,
        organization_id: int | None = None,
        safe_update_stamp: str | None = None,
        _merge: bool = False,
    ) -> _Update:
        ticket = self.ticket(ticket_id)
        if ticket.status == "closed":
            raise invalid("status", "Status: closed prevents ticket update")
        if safe_update_stamp is not None and safe_update_stamp != _iso(ticket.updated_at):
            raise ZendeskError(409, _ERROR_BODIES[409])
        self._check_values(status=status, priority=priority, type=type, organization_id=organization_id)
        update = _Update(ticket, actor_id)
        if subject is not None and subject != ticket.subject:
            update.subject, ticket.subject = (ticket.subject, subject), subject
        if status is not None and status != ticket.status:
            update.status, ticket.status = (ticket.status, status), status
        if priority is not None:
            ticket.priority = priority
        if type is not None:
            ticket.type = type
        if organization_id is not None:
            ticket.organization_id = organization_id
        before = list(ticket.tags)
        new_tags = _unique(tags) if tags is not None else list(before)
        new_tags = [t for t in _unique([*new_tags, *add_tags]) if t not in set(remove_tags)]
        ticket.tags = new_tags
        update.tags_added = [t for t in new_tags if t not in before]
        update.tags_removed = [t for t in before if t not in new_tags]
        for field_id, value in (custom_fields or {}).items():
            previous = ticket.custom_fields.get(field_id)
            if previous != value:
                ticket.custom_fields[field_id] = value
                update.fields.append((field_id, previous, value))
        if comment is not None and str(comment).strip():
            update.comment = self._add_comment(ticket, str(comment), public, actor_id, channel)
        if _merge:
            return update
        self._after(update)
        return update

    def merge(
        self,
        target_id: int,
        source_ids: Iterable[int],
        *,
        actor_id: int,
        channel: str,
        target_comment: str | None = None,
        source_comment: str | None = None,
        target_public: bool = False,
        source_public: bool = False,
    ) -> dict[str, Any]:
        sources = list(dict.fromkeys(source_ids))
        if not sources or len(sources) > MERGE_MAX_SOURCES:
            raise ZendeskError(400, {"error": "InvalidValue",
                                     "description": f"ids must name 1 to {MERGE_MAX_SOURCES} tickets"})
        target = self.ticket(target_id)
        tickets = [self.ticket(sid) for sid in sources]
        for ticket in [target, *tickets]:
            if ticket.status == "closed":
                raise invalid("base", f"Ticket #{ticket.id} is closed and cannot be merged")
        if target_id in sources:
            raise invalid("base", "A ticket cannot be merged into itself")
        updates = []
        for ticket in tickets:
            text = source_comment or f'This request was closed and merged into request #{target.id} "{target.subject}".'
            update = self.update_ticket(ticket.id, actor_id=actor_id, channel=channel, status="closed",
                                        add_tags=[MERGE_TAG], comment=text, public=source_public, _merge=True)
            ticket.merged_into = update.merged_into = target.id
            updates.append(update)
        listed = ", ".join(f"#{t.id}" for t in tickets)
        text = target_comment or f"Requests {listed} were closed and merged into this request."
        updates.append(self.update_ticket(target.id, actor_id=actor_id, channel=channel, comment=text,
                                          public=target_public, _merge=True))
        for update in updates:
            self._after(update)
        job_id = uuid.uuid4().hex
        job = {
            "id": job_id,
            "message": f"Completed at {datetime.fromtimestamp(self.wall_clock(), timezone.utc):%Y-%m-%d %H:%M:%S +0000}",
            "progress": len(sources),
            "results": [{"action": "update", "id": sid, "status": "Updated", "success": True} for sid in sources],
            "status": "completed",
            "total": len(sources),
            "url": f"{self.base_url}/api/v2/job_statuses/{job_id}.json",
        }
        self.job_statuses[job_id] = job
        return job

    def _check_values(self, *, status: str | None, priority: str | None, type: str | None,
                      organization_id: int | None) -> None:
        if status is not None and status not in STATUSES:
            raise invalid("status", f"Status: {status} is not valid")
        if priority is not None and priority not in PRIORITIES:
            raise invalid("priority", f"Priority: {priority} is not valid")
        if type is not None and type not in TYPES:
            raise invalid("type", f"Type: {type} is not valid")
        if organization_id is not None and organization_id not in self.organizations:
            raise invalid("organization_id", "Organization: is invalid")

    def _add_comment(self, ticket: ZendeskTicket, body: str, public: bool, author_id: int, channel: str) -> ZendeskComment:
        comment = ZendeskComment(self._new_id(), author_id, body, public, self.wall_clock(), channel, self._new_id())
        ticket.comments.append(comment)
        return comment

    def _after(self, update: _Update) -> None:
        ticket = update.ticket
        now = self.wall_clock()
        ticket.updated_at = now
        # generated_timestamp only moves forward; the export pages by it.
        ticket.generated_timestamp = max(ticket.generated_timestamp, int(now))
        self._queue_webhooks(self._webhooks_for(update))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_organization(self, name: str, organization_id: int | None = None) -> ZendeskOrganization:
        oid = organization_id or 9000000001000 + len(self.organizations) + 1
        org = ZendeskOrganization(oid, name, self.wall_clock())
        self.organizations[oid] = org
        return org

    # --- JSON shapes ---------------------------------------------------------------------------------

    def ticket_json(self, ticket: ZendeskTicket) -> dict[str, Any]:
        """A ticket as REST shows it (the keys of the ShowTicket example)."""
        fields = {fid: None for fid in self.custom_field_ids} | ticket.custom_fields
        return {
            "assignee_id": ticket.assignee_id,
            "collaborator_ids": [],
            "created_at": _iso(ticket.created_at),
            "custom_fields": [{"id": fid, "value": value} for fid, value in sorted(fields.items())],
            "custom_status_id": CUSTOM_STATUS_IDS[ticket.status],
            "description": ticket.description,
            "due_at": None,
            "external_id": ticket.external_id,
            "follower_ids": [],
            "from_messaging_channel": False,
            "generated_timestamp": ticket.generated_timestamp,
            "group_id": DEFAULT_GROUP_ID,
            "has_incidents": False,
            "id": ticket.id,
            "organization_id": ticket.organization_id,
            "priority": ticket.priority,
            "problem_id": None,
            "raw_subject": ticket.subject,
            "recipient": None,
            "requester_id": ticket.requester_id,
            "satisfaction_rating": None,
            "sharing_agreement_ids": [],
            "status": ticket.status,
            "subject": ticket.subject,
            "submitter_id": ticket.submitter_id,
            "tags": list(ticket.tags),
            "type": ticket.type,
            "updated_at": _iso(ticket.updated_at),
            "url": f"{self.base_url}/api/v2/tickets/{ticket.id}.json",
            "via": _via(ticket.channel),
        }

    def comment_json(self, comment: ZendeskComment) -> dict[str, Any]:
        return {
            "attachments": [],
            "audit_id": comment.audit_id,
            "author_id": comment.author_id,
            "body": comment.body,
            "created_at": _iso(comment.created_at),
            "html_body": f'<div class="zd-comment" dir="auto"><p dir="auto">{html.escape(comment.body)}</p></div>',
            "id": comment.id,
            "metadata": {"system": {}, "custom": {}},
            "plain_body": comment.body,
            "public": comment.public,
            "type": "Comment",
            "via": _via(comment.channel),
        }

    def organization_json(self, org: ZendeskOrganization) -> dict[str, Any]:
        return {
            "created_at": _iso(org.created_at), "details": None, "domain_names": [], "external_id": None,
            "group_id": None, "id": org.id, "name": org.name, "notes": None, "organization_fields": {},
            "shared_comments": False, "shared_tickets": False, "tags": [], "updated_at": _iso(org.created_at),
            "url": f"{self.base_url}/api/v2/organizations/{org.id}.json",
        }  # fmt: skip

    def audit_json(self, update: _Update) -> dict[str, Any]:
        ticket, events = update.ticket, []
        kind = "Create" if update.created else "Change"
        if update.comment is not None:
            events.append({"id": self._new_id(), "type": "Comment", "author_id": update.comment.author_id,
                           "body": update.comment.body, "public": update.comment.public})
        if update.created:
            events += [{"id": self._new_id(), "type": "Create", "field_name": "subject", "value": ticket.subject},
                       {"id": self._new_id(), "type": "Create", "field_name": "status", "value": ticket.status}]
        if update.status:
            events.append({"id": self._new_id(), "type": kind, "field_name": "status", "value": update.status[1],
                           "previous_value": update.status[0]})
        if update.tags_added or update.tags_removed:
            events.append({"id": self._new_id(), "type": kind, "field_name": "tags", "value": list(ticket.tags)})
        for field_id, previous, value in update.fields:
            events.append({"id": self._new_id(), "type": kind, "field_name": str(field_id), "value": value,
                           "previous_value": previous})
        return {
            "id": update.comment.audit_id if update.comment else self._new_id(),
            "ticket_id": ticket.id,
            "created_at": _iso(ticket.updated_at),
            "author_id": update.actor_id,
            "metadata": {"system": {}, "custom": {}},
            "via": _via(ticket.channel if update.created else "api"),
            "events": events,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "tickets": {str(t.id): {**self.ticket_json(t), "comments": [self.comment_json(c) for c in t.comments]}
                        for t in self.tickets.values()},
            "organizations": {str(o.id): self.organization_json(o) for o in self.organizations.values()},
            "webhooks": self.webhooks_json(),
        }

    # --- incremental export ---------------------------------------------------------------------------

    def export_page(self, *, start_time: int | None, cursor: str | None, per_page: int | None) -> dict[str, Any]:
        """One page of the cursor-based export. Positions are ``(generated_timestamp, id)``; the
        cursor names the last position returned (``base64("<ts>.0||<id>|")``, as Zendesk's look)."""
        if (start_time is None) == (cursor is None):
            raise ZendeskError(400, {"error": "InvalidValue",
                                     "description": "Give either start_time or cursor"})
        size = EXPORT_PER_PAGE if per_page is None else per_page
        if not 1 <= size:
            raise ZendeskError(400, {"error": "InvalidValue", "description": "per_page must be positive"})
        size = min(size, EXPORT_PER_PAGE)
        now = self.wall_clock()
        if start_time is not None:
            if start_time > now:
                raise ZendeskError(400, {"error": "InvalidValue", "description": "start_time is in the future"})
            position = (start_time, 0)
        else:
            position = _decode_cursor(cursor or "")
        horizon = int(now) - EXPORT_EXCLUDES_LAST_S
        ready = sorted(
            (t for t in self.tickets.values()
             if (t.generated_timestamp, t.id) > position and t.generated_timestamp <= horizon),
            key=lambda t: (t.generated_timestamp, t.id),
        )
        page = ready[:size]
        after = (page[-1].generated_timestamp, page[-1].id) if page else position
        after_cursor = _encode_cursor(after)
        before_cursor = _encode_cursor(position) if cursor is not None else None
        url = f"{self.base_url}/api/v2/incremental/tickets/cursor.json?cursor="
        return {
            "after_cursor": after_cursor,
            "after_url": url + after_cursor,
            "before_cursor": before_cursor,
            "before_url": url + before_cursor if before_cursor else None,
            "end_of_stream": len(ready) <= size,
            "tickets": [self.ticket_json(t) for t in page],
        }

    # --- webhooks ---------------------------------------------------------------------------------------

    def webhooks_json(self) -> dict[str, Any]:
        config = self.webhook_config
        return {
            "enabled": config["enabled"], "target": config["target"], "style": config["style"],
            "has_secret": bool(config["secret"]), "jira_key_field_id": config["jira_key_field_id"],
            "generated": len(self.generated_webhooks),
            "sent": [s.to_json() for s in (self.sender.sent if self.sender else [])],
        }  # fmt: skip

    def configure_webhooks(self, data: Mapping[str, Any]) -> None:
        unknown = set(data) - set(self.webhook_config)
        if unknown:
            raise SandboxError(f"unknown webhook settings: {sorted(unknown)}")
        if "enabled" in data and not isinstance(data["enabled"], bool):
            raise SandboxError("'enabled' must be a boolean")
        if data.get("style", "event") not in ("event", "trigger"):
            raise SandboxError("'style' must be 'event' or 'trigger'")
        for key in ("target", "secret"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise SandboxError(f"'{key}' must be a string or null")
        self.webhook_config.update(data)
        self.sender = None  # rebuilt with the new target and secret

    def _webhooks_for(self, update: _Update) -> list[bytes | dict[str, Any]]:
        ticket = self.ticket_json(update.ticket)
        common = {"actor_id": update.actor_id, "account_id": self.account_id, "when": self.wall_clock()}
        if self.webhook_config["style"] == "trigger":
            comment = self.comment_json(update.comment) if update.comment else None
            latest = self.comment_json(update.ticket.comments[-1]) if update.ticket.comments else None
            event = "ticket_created" if update.created else "comment_added" if comment else "ticket_updated"
            org = self.organizations.get(update.ticket.organization_id or 0)
            return [trigger_body(ticket, event=event, actor_id=update.actor_id, latest_comment=latest,
                                 organization_name=org.name if org else None,
                                 jira_key_field_id=self.webhook_config["jira_key_field_id"])]
        if update.created:
            return [ticket_created_event(ticket, **common)]
        payloads: list[bytes | dict[str, Any]] = []
        if update.comment is not None:
            payloads.append(comment_added_event(ticket, self.comment_json(update.comment), **common))
        if update.status:
            payloads.append(status_changed_event(ticket, update.status[0], **common))
        if update.subject:
            payloads.append(subject_changed_event(ticket, update.subject[0], **common))
        if update.tags_added or update.tags_removed:
            payloads.append(tags_changed_event(ticket, update.tags_added, update.tags_removed, **common))
        for field_id, previous, value in update.fields:
            payloads.append(custom_field_changed_event(ticket, field_id, value, previous, **common))
        if update.merged_into is not None:
            payloads.append(merged_event(ticket, update.merged_into, **common))
        return payloads

    def _queue_webhooks(self, payloads: list[bytes | dict[str, Any]]) -> None:
        self.generated_webhooks.extend(payloads)
        if not (payloads and self.webhook_config["enabled"] and self.webhook_config["target"]):
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._deliver(self._queue))
        for payload in payloads:
            self._queue.put_nowait(payload)

    async def _deliver(self, queue: asyncio.Queue[bytes | dict[str, Any]]) -> None:
        while True:
            payload = await queue.get()
            try:
                if self.sender is None:
                    if self._http is None or self._http.closed:
                        self._http = aiohttp.ClientSession()
                    self.sender = ZendeskWebhookSender(
                        self.webhook_config["target"], self.webhook_config["secret"], account_id=self.account_id,
                        session=self._http, clock=self.wall_clock)
                await self.sender.send(payload)
            except Exception:  # noqa: BLE001 - recorded by the sender; the queue must keep draining
                pass
            finally:
                queue.task_done()

    async def flush_webhooks(self) -> None:
        """Wait until every queued webhook was delivered (or failed)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        if self._http is not None:
            await self._http.close()


# --- webhook sender ---------------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Zendesk-Webhook-Signature``: base64 HMAC-SHA256 of ``timestamp + body``."""
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as Zendesk sends event webhooks (the captured signing vector's bytes)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class SentWebhook:
    """One delivery: what was sent and what came back (``error`` if nothing did)."""

    invocation_id: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None
    response: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"invocation_id": self.invocation_id, "headers": self.headers, "at": self.at, "status": self.status,
                "error": self.error, "body": self.body.decode("utf-8", errors="replace")}


class ZendeskWebhookSender:
    """Posts webhook requests to ``target_url`` as Zendesk does: raw JSON bytes, signed with the
    webhook's signing secret (``secret=None`` sends them unsigned), Zendesk's headers. Every
    attempt is kept in :attr:`sent`."""

    def __init__(
        self,
        target_url: str,
        secret: str | None,
        *,
        webhook_id: str = DEFAULT_WEBHOOK_ID,
        account_id: int = DEFAULT_ACCOUNT_ID,
        session: aiohttp.ClientSession | None = None,
        timeout: float = WEBHOOK_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target_url, self.secret = target_url, secret
        self.webhook_id, self.account_id = webhook_id, account_id
        self.timeout, self.clock = timeout, clock
        self._session = session
        self.sent: list[SentWebhook] = []

    async def send(
        self, payload: Mapping[str, Any] | bytes, *, timestamp: str | None = None, invocation_id: str | None = None
    ) -> tuple[int, str]:
        """Deliver once; returns ``(status, response body)``. Connection errors propagate (and are recorded)."""
        body = payload if isinstance(payload, bytes) else encode(payload)
        timestamp = timestamp or _iso(self.clock())
        headers = {
            "Content-Type": WEBHOOK_CONTENT_TYPE,
            "User-Agent": WEBHOOK_USER_AGENT,
            "X-Zendesk-Account-Id": str(self.account_id),
            "X-Zendesk-Webhook-Id": self.webhook_id,
            "X-Zendesk-Webhook-Invocation-Id": invocation_id or str(uuid.uuid4().int)[:19],
        }
        if self.secret is not None:
            headers["X-Zendesk-Webhook-Signature"] = sign(self.secret, timestamp, body)
            headers["X-Zendesk-Webhook-Signature-Timestamp"] = timestamp
        record = SentWebhook(headers["X-Zendesk-Webhook-Invocation-Id"], headers, body, self.clock())
        self.sent.append(record)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            if self._session is not None:
                status, text = await self._post(self._session, body, headers, timeout)
            else:
                async with aiohttp.ClientSession() as session:
                    status, text = await self._post(session, body, headers, timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        record.status, record.response = status, text
        return status, text

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str], timeout: aiohttp.ClientTimeout
    ) -> tuple[int, str]:
        async with session.post(self.target_url, data=body, headers=headers, timeout=timeout) as resp:
            return resp.status, await resp.text()


# --- payload builders ---------------------------------------------------------------------------------------
# Each takes a ticket as REST shows it (ZendeskState.ticket_json, or any ShowTicket-shaped dict).


def ticket_event(
    name: str,
    ticket: Mapping[str, Any],
    event: Mapping[str, Any] | None = None,
    *,
    actor_id: int | str | None = None,
    account_id: int = DEFAULT_ACCOUNT_ID,
    event_id: str | None = None,
    when: float | None = None,
) -> dict[str, Any]:
    """``zen:event-type:ticket.<name>`` with the captured sample's keys in its (sorted) order."""
    moment = time.time() if when is None else when
    return {
        "account_id": account_id,
        "detail": event_detail(ticket, actor_id=actor_id),
        "event": dict(event or {}),
        "id": event_id or str(uuid.uuid4()),
        "subject": f"zen:ticket:{ticket['id']}",
        "time": _iso_ns(moment),
        "type": f"zen:event-type:ticket.{name}",
        "zendesk_event_version": EVENT_VERSION,
    }


def event_detail(ticket: Mapping[str, Any], *, actor_id: int | str | None = None) -> dict[str, Any]:
    """The ``detail`` object: ids as strings, status/priority/type upper case, ``via.channel`` only."""
    via = ticket.get("via") or {}
    channel = via.get("channel") if isinstance(via, Mapping) else None
    return {
        "actor_id": _sid(actor_id if actor_id is not None else ticket.get("submitter_id")),
        "assignee_id": _sid(ticket.get("assignee_id")),
        "brand_id": _sid(ticket.get("brand_id") or DEFAULT_BRAND_ID),
        "created_at": ticket.get("created_at"),
        "custom_status": _sid(ticket.get("custom_status_id")),
        "description": ticket.get("description"),
        "external_id": ticket.get("external_id"),
        "form_id": _sid(ticket.get("ticket_form_id") or DEFAULT_FORM_ID),
        "group_id": _sid(ticket.get("group_id")),
        "id": str(ticket["id"]),
        "is_public": ticket.get("is_public", True),
        "organization_id": _sid(ticket.get("organization_id")),
        "priority": _upper(ticket.get("priority")),
        "requester_id": _sid(ticket.get("requester_id")),
        "status": _upper(ticket.get("status")),
        "subject": ticket.get("subject"),
        "submitter_id": _sid(ticket.get("submitter_id")),
        "tags": list(ticket.get("tags") or []),
        "type": _upper(ticket.get("type")),
        "updated_at": ticket.get("updated_at"),
        "via": {"channel": EVENT_CHANNELS.get(channel, channel)},
    }


def ticket_created_event(ticket: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    return ticket_event("created", ticket, {}, **kwargs)


def status_changed_event(ticket: Mapping[str, Any], previous: str, **kwargs: Any) -> dict[str, Any]:
    return ticket_event("status_changed", ticket, {"current": _upper(ticket.get("status")),
                                                   "previous": _upper(previous)}, **kwargs)


def subject_changed_event(ticket: Mapping[str, Any], previous: str | None, **kwargs: Any) -> dict[str, Any]:
    return ticket_event("subject_changed", ticket, {"current": ticket.get("subject"), "previous": previous}, **kwargs)


def comment_added_event(
    ticket: Mapping[str, Any], comment: Mapping[str, Any], *, author_name: str = "Sandbox Agent",
    is_staff: bool = True, **kwargs: Any
) -> dict[str, Any]:
    """``comment`` as the comments endpoint shows it (``id``, ``author_id``, ``body``, ``public``)."""
    event = {"comment": {
        "author": {"id": _sid(comment.get("author_id")), "is_staff": is_staff, "name": author_name},
        "body": comment.get("body"),
        "id": _sid(comment.get("id")),
        "is_public": bool(comment.get("public", True)),
    }}
    return ticket_event("comment_added", ticket, event, **kwargs)


def tags_changed_event(
    ticket: Mapping[str, Any], added: Iterable[str], removed: Iterable[str], **kwargs: Any
) -> dict[str, Any]:
    return ticket_event("tags_changed", ticket, {"tags_added": list(added), "tags_removed": list(removed)}, **kwargs)


def custom_field_changed_event(
    ticket: Mapping[str, Any], field_id: int | str, current: Any, previous: Any, *, title: str = "Jira key",
    field_type: str = "text", **kwargs: Any
) -> dict[str, Any]:
    event = {
        "current": {"value": current},
        "custom_field": {"id": str(field_id), "title": title, "type": field_type},
        "previous": {"value": previous},
    }
    return ticket_event("custom_field_changed", ticket, event, **kwargs)


def merged_event(ticket: Mapping[str, Any], target_id: int | str, **kwargs: Any) -> dict[str, Any]:
    """On the source ticket of a merge (closed by then)."""
    return ticket_event("merged", ticket, {"target_ticket_id": str(target_id)}, **kwargs)


def soft_deleted_event(ticket: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    return ticket_event("soft_deleted", {**ticket, "status": "deleted"}, {}, **kwargs)


def trigger_body(
    ticket: Mapping[str, Any],
    *,
    event: str = "ticket_updated",
    actor_id: int | str | None = None,
    organization_name: str | None = None,
    jira_key_field_id: int | str | None = None,
    latest_comment: Mapping[str, Any] | None = None,
    template: str = RECOMMENDED_TRIGGER_BODY,
) -> bytes:
    """The raw body Zendesk sends for a trigger using ``template`` (the recommended one by default),
    placeholders rendered like Zendesk: strings, JSON-escaped; unknown placeholders render empty."""
    body = template.replace("<EVENT>", event)
    if jira_key_field_id is not None:
        body = body.replace("<JIRA_KEY_FIELD_ID>", str(jira_key_field_id))
    fields = {str(f.get("id")): f.get("value") for f in ticket.get("custom_fields") or [] if isinstance(f, Mapping)}
    url = str(ticket.get("url") or "")
    base = url.split("/api/v2/", 1)[0] if "/api/v2/" in url else f"https://{DEFAULT_SUBDOMAIN}.zendesk.com"
    via = ticket.get("via") or {}
    comment = latest_comment or {}
    values: dict[str, Any] = {
        "current_user.id": actor_id,
        "ticket.id": ticket.get("id"),
        "ticket.title": ticket.get("subject"),
        "ticket.status": STATUS_DISPLAY.get(str(ticket.get("status")), ticket.get("status")),
        "ticket.requester.id": ticket.get("requester_id"),
        "ticket.organization.id": ticket.get("organization_id"),
        "ticket.organization.name": organization_name,
        "ticket.tags": " ".join(ticket.get("tags") or []),
        "ticket.link": f"{base}/agent/tickets/{ticket.get('id')}",
        "ticket.via": VIA_DISPLAY.get(via.get("channel") if isinstance(via, Mapping) else "", ""),
        "ticket.updated_at_with_timestamp": ticket.get("updated_at"),
        "ticket.latest_comment.id": comment.get("id"),
        "ticket.latest_comment.value": comment.get("body"),
        "ticket.latest_comment.is_public": (str(bool(comment.get("public"))).lower() if comment else None),
        "ticket.latest_comment.author.id": comment.get("author_id"),
    }

    def render(match: re.Match[str]) -> str:
        name = match.group(1)
        value = fields.get(name.removeprefix("ticket.ticket_field_")) if name.startswith("ticket.ticket_field_") \
            else values.get(name)
        text = "" if value is None else str(value)
        return json.dumps(text, ensure_ascii=False)[1:-1]  # escaped, without the quotes

    return _PLACEHOLDER.sub(render, body).encode()


# --- HTTP ------------------------------------------------------------------------------------------------------

_ERROR_BODIES: dict[int, dict[str, Any]] = {
    400: {"error": "InvalidValue", "description": "Invalid request"},
    401: {"error": "Couldn't authenticate you"},
    403: {"error": "Forbidden", "description": "You do not have access to this page. Please contact the account "
                                               "owner of this help desk for further help."},
    404: {"error": "RecordNotFound", "description": "Not found"},
    409: {"error": "UpdateConflict", "description": "Safe Update prevented the update due to outdated ticket data. "
                                                    "Please fetch the latest ticket data and try again."},
    422: {"error": "RecordInvalid", "description": "Record validation errors"},
    429: {"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"},
}
_EXT = "{ext:(?:\\.json)?}"
Handler = Callable[[web.Request, ZendeskState], Awaitable[web.Response]]


def _rest(handler: Handler, *, export: bool = False) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Auth, the account (and export) rate limit, JSON errors and the rate-limit headers."""

    async def wrapped(request: web.Request) -> web.Response:
        state: ZendeskState = request.app[STATE]
        try:
            state.authenticate(request.headers.get("Authorization"))
            if state.rate_limits:
                wait = state.account_window.hit()
                if not wait and export:
                    wait = state.export_window.hit()
                    if wait:
                        raise ZendeskError(429, {"error": "APIRateLimitExceeded", "description":
                                                 "Number of allowed incremental export API requests per minute exceeded"},
                                           {"Retry-After": retry_after_header(wait)})
                if wait:
                    raise ZendeskError(429, _ERROR_BODIES[429], {"Retry-After": retry_after_header(wait)})
            response = await handler(request, state)
        except ZendeskError as exc:
            response = web.json_response(exc.body, status=exc.status, headers=exc.headers)
        response.headers.update(state.rate_headers())
        return response

    return wrapped


async def _json_body(request: web.Request, key: str | None = None) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        raise ZendeskError(400, {"error": "InvalidJSON", "description": "The request body is not valid JSON"}) from None
    if not isinstance(data, dict) or (key is not None and not isinstance(data.get(key), dict)):
        raise ZendeskError(400, {"error": "InvalidValue", "description": f"Expected a JSON object{f' with {key!r}' if key else ''}"})
    return data[key] if key is not None else data


def _path_id(request: web.Request, name: str = "id") -> int:
    text = request.match_info[name]
    if not text.isdigit():
        raise not_found()
    return int(text)


async def _show_ticket(request: web.Request, state: ZendeskState) -> web.Response:
    return web.json_response({"ticket": state.ticket_json(state.ticket(_path_id(request)))})


async def _create_ticket(request: web.Request, state: ZendeskState) -> web.Response:
    data = await _json_body(request, "ticket")
    comment = data.get("comment") if isinstance(data.get("comment"), dict) else {}
    update = state.create_ticket(
        subject=_opt_str(data, "subject"), comment=_opt_str(comment, "body") or _opt_str(data, "description") or "",
        public=comment.get("public", True) is not False, actor_id=_opt_int(comment, "author_id") or state.api_user_id,
        channel="api", status=_opt_str(data, "status"), priority=_opt_str(data, "priority"),
        type=_opt_str(data, "type"), tags=_str_list(data, "tags") or (), organization_id=_opt_int(data, "organization_id"),
        requester_id=_opt_int(data, "requester_id"), assignee_id=_opt_int(data, "assignee_id"),
        external_id=_opt_str(data, "external_id"), custom_fields=_api_fields(data.get("custom_fields")),
    )
    ticket = state.ticket_json(update.ticket)  # the spec's TicketResponse: no audit on create
    return web.json_response({"ticket": ticket}, status=201, headers={"Location": ticket["url"]})


async def _update_ticket(request: web.Request, state: ZendeskState) -> web.Response:
    ticket_id = _path_id(request)
    state.ticket(ticket_id)
    data = await _json_body(request, "ticket")
    comment = data.get("comment") if isinstance(data.get("comment"), dict) else {}
    update = state.update_ticket(
        ticket_id, actor_id=state.api_user_id, channel="api", subject=_opt_str(data, "subject"),
        status=_opt_str(data, "status"), priority=_opt_str(data, "priority"), type=_opt_str(data, "type"),
        tags=_str_list(data, "tags"), add_tags=_str_list(data, "additional_tags") or (),
        remove_tags=_str_list(data, "remove_tags") or (), custom_fields=_api_fields(data.get("custom_fields")),
        comment=_opt_str(comment, "body") or _opt_str(comment, "html_body"),
        public=comment.get("public", True) is not False, organization_id=_opt_int(data, "organization_id"),
        safe_update_stamp=_opt_str(data, "updated_stamp") if data.get("safe_update") is True else None,
    )
    return web.json_response({"ticket": state.ticket_json(update.ticket), "audit": state.audit_json(update)})


async def _list_comments(request: web.Request, state: ZendeskState) -> web.Response:
    ticket = state.ticket(_path_id(request))
    comments = [state.comment_json(c) for c in ticket.comments]
    return web.json_response({"comments": comments})  # one page: the spec's TicketCommentsResponse


async def _merge(request: web.Request, state: ZendeskState) -> web.Response:
    target = _path_id(request)
    data = await _json_body(request)
    ids = data.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) or (isinstance(i, str) and i.isdigit()) for i in ids):
        raise ZendeskError(400, {"error": "InvalidValue", "description": "ids must be a list of ticket ids"})
    job = state.merge(
        target, [int(i) for i in ids], actor_id=state.api_user_id, channel="api",
        target_comment=_opt_str(data, "target_comment"), source_comment=_opt_str(data, "source_comment"),
        target_public=data.get("target_comment_is_public") is True,
        source_public=data.get("source_comment_is_public") is True,
    )
    return web.json_response({"job_status": job})


async def _show_job(request: web.Request, state: ZendeskState) -> web.Response:
    job = state.job_statuses.get(request.match_info["id"])
    if job is None:
        raise not_found()
    return web.json_response({"job_status": job})


async def _show_organization(request: web.Request, state: ZendeskState) -> web.Response:
    org = state.organizations.get(_path_id(request))
    if org is None:
        raise not_found()
    return web.json_response({"organization": state.organization_json(org)})


async def _export(request: web.Request, state: ZendeskState) -> web.Response:
    query = request.query
    try:
        start_time = int(query["start_time"]) if "start_time" in query else None
        per_page = int(query["per_page"]) if "per_page" in query else None
    except ValueError:
        raise ZendeskError(400, {"error": "InvalidValue", "description": "start_time and per_page are integers"}) from None
    return web.json_response(state.export_page(start_time=start_time, cursor=query.get("cursor"), per_page=per_page))


async def _unknown_endpoint(request: web.Request) -> web.Response:
    return web.json_response({"error": "InvalidEndpoint", "description": "Not found"}, status=404)


# --- control endpoints ------------------------------------------------------------------------------------------


async def _control(request: web.Request, action: Callable[[ZendeskState, dict[str, Any]], Any]) -> web.Response:
    state: ZendeskState = request.app[STATE]
    try:
        raw = await request.read()
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise SandboxError("expected a JSON object")
        status, body = action(state, data)
    except (ValueError, SandboxError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except ZendeskError as exc:
        return web.json_response(exc.body, status=exc.status)
    return web.json_response(body, status=status)


def _ctl_create(state: ZendeskState, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    comment = data.get("comment", data.get("description", ""))
    update = state.create_ticket(
        subject=_opt_str(data, "subject"), comment=comment if isinstance(comment, str) else "",
        public=data.get("public", True) is not False, actor_id=_opt_int(data, "actor_id") or state.agent_id,
        channel="web", status=_opt_str(data, "status"), priority=_opt_str(data, "priority"),
        type=_opt_str(data, "type"), tags=_str_list(data, "tags") or (), organization_id=_opt_int(data, "organization_id"),
        requester_id=_opt_int(data, "requester_id"), custom_fields=_control_fields(data.get("custom_fields")),
    )
    return 201, {"ticket": state.ticket_json(update.ticket)}


def _ctl_update(ticket_id: int) -> Callable[[ZendeskState, dict[str, Any]], tuple[int, dict[str, Any]]]:
    def action(state: ZendeskState, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        comment = data.get("comment")
        body, public = (comment.get("body"), comment.get("public", True)) if isinstance(comment, dict) else (comment, True)
        if body is not None and not isinstance(body, str):
            raise SandboxError("'comment' must be a string or {\"body\", \"public\"}")
        update = state.update_ticket(
            ticket_id, actor_id=_opt_int(data, "actor_id") or state.agent_id, channel="web",
            subject=_opt_str(data, "subject"), status=_opt_str(data, "status"), priority=_opt_str(data, "priority"),
            type=_opt_str(data, "type"), tags=_str_list(data, "tags"), add_tags=_str_list(data, "add_tags") or (),
            remove_tags=_str_list(data, "remove_tags") or (), custom_fields=_control_fields(data.get("custom_fields")),
            comment=body, public=public is not False, organization_id=_opt_int(data, "organization_id"),
        )
        return 200, {"ticket": state.ticket_json(update.ticket)}

    return action


def _ctl_merge(source_id: int) -> Callable[[ZendeskState, dict[str, Any]], tuple[int, dict[str, Any]]]:
    def action(state: ZendeskState, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        target = _opt_int(data, "into")
        if target is None:
            raise SandboxError("'into' (the target ticket id) is required")
        state.merge(target, [source_id], actor_id=_opt_int(data, "actor_id") or state.agent_id, channel="web",
                    target_comment=_opt_str(data, "target_comment"), source_comment=_opt_str(data, "source_comment"))
        return 200, {"ticket": state.ticket_json(state.ticket(source_id)),
                     "target": state.ticket_json(state.ticket(target))}

    return action


def _ctl_organization(state: ZendeskState, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    name = _opt_str(data, "name")
    if not name:
        raise SandboxError("'name' is required")
    return 201, {"organization": state.organization_json(state.add_organization(name, _opt_int(data, "id")))}


async def _ctl_create_route(request: web.Request) -> web.Response:
    return await _control(request, _ctl_create)


async def _ctl_organization_route(request: web.Request) -> web.Response:
    return await _control(request, _ctl_organization)


async def _ctl_ticket_route(request: web.Request) -> web.Response:
    if not request.match_info["id"].isdigit():
        return web.json_response(_ERROR_BODIES[404], status=404)
    ticket_id = int(request.match_info["id"])
    return await _control(request, _ctl_merge(ticket_id) if request.path.endswith("/merge") else _ctl_update(ticket_id))


async def _get_webhooks(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].webhooks_json())


async def _set_webhooks(request: web.Request) -> web.Response:
    def action(state: ZendeskState, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        state.configure_webhooks(data)
        return 200, state.webhooks_json()

    return await _control(request, action)


async def _flush_webhooks(request: web.Request) -> web.Response:
    state: ZendeskState = request.app[STATE]
    await state.flush_webhooks()
    return web.json_response(state.webhooks_json())


STATE: web.AppKey[ZendeskState] = web.AppKey("zendesk_state", ZendeskState)


def create_app(state: ZendeskState | None = None) -> web.Application:
    state = state if state is not None else ZendeskState()
    app = sandbox_app(state)
    app[STATE] = state
    api = "/api/v2"
    routes = [
        ("GET", f"{api}/tickets/{{id}}{_EXT}", _rest(_show_ticket)),
        ("PUT", f"{api}/tickets/{{id}}{_EXT}", _rest(_update_ticket)),
        ("POST", f"{api}/tickets{_EXT}", _rest(_create_ticket)),
        ("GET", f"{api}/tickets/{{id}}/comments{_EXT}", _rest(_list_comments)),
        ("POST", f"{api}/tickets/{{id}}/merge{_EXT}", _rest(_merge)),
        ("GET", f"{api}/job_statuses/{{id}}{_EXT}", _rest(_show_job)),
        ("GET", f"{api}/organizations/{{id}}{_EXT}", _rest(_show_organization)),
        ("GET", f"{api}/incremental/tickets/cursor{_EXT}", _rest(_export, export=True)),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path.replace("{id}", "{id:[^/.]+}"), handler)
    app.router.add_post("/_sandbox/tickets", _ctl_create_route)
    app.router.add_post("/_sandbox/tickets/{id}", _ctl_ticket_route)
    app.router.add_post("/_sandbox/tickets/{id}/merge", _ctl_ticket_route)
    app.router.add_post("/_sandbox/organizations", _ctl_organization_route)
    app.router.add_get("/_sandbox/webhooks", _get_webhooks)
    app.router.add_post("/_sandbox/webhooks", _set_webhooks)
    app.router.add_post("/_sandbox/webhooks/flush", _flush_webhooks)
    app.router.add_route("*", api + "/{tail:.*}", _unknown_endpoint)

    async def _close(_: web.Application) -> None:
        await state.close()

    app.on_cleanup.append(_close)
    return app


# --- helpers ------------------------------------------------------------------------------------------------------


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ns(seconds: float) -> str:
    whole = int(seconds)
    nanos = int(round((seconds - whole) * 1e9)) % 1_000_000_000
    return datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _via(channel: str) -> dict[str, Any]:
    return {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}}


def _sid(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _upper(value: Any) -> str | None:
    return str(value).upper() if value else None


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _encode_cursor(position: tuple[int, int]) -> str:
    return base64.b64encode(f"{position[0]}.0||{position[1]}|".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        text = base64.b64decode(cursor, validate=True).decode()
        match = re.fullmatch(r"(\d+)\.0\|\|(\d+)\|", text)
        if match:
            return int(match.group(1)), int(match.group(2))
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise ZendeskError(400, {"error": "InvalidPaginationParameter", "description": "Invalid cursor"})


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ZendeskError(400, {"error": "InvalidValue", "description": f"{key} must be a string"})


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ZendeskError(400, {"error": "InvalidValue", "description": f"{key} must be an id"})


def _str_list(data: Mapping[str, Any], key: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ZendeskError(400, {"error": "InvalidValue", "description": f"{key} must be a list of strings"})


def _api_fields(value: Any) -> dict[int, Any]:
    """REST ``custom_fields``: ``[{"id": 1, "value": "x"}]``."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ZendeskError(400, {"error": "InvalidValue", "description": "custom_fields must be a list"})
    out = {}
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), int) or isinstance(item.get("id"), bool):
            raise invalid("custom_fields", "Custom fields: each needs a numeric id")
        out[item["id"]] = item.get("value")
    return out


def _control_fields(value: Any) -> dict[int, Any]:
    """Control ``custom_fields``: ``{"<id>": value}`` (or the REST list)."""
    if isinstance(value, dict):
        if not all(str(k).isdigit() for k in value):
            raise SandboxError("custom_fields keys must be numeric field ids")
        return {int(k): v for k, v in value.items()}
    return _api_fields(value)


__all__ = [
    "ZendeskState",
    "ZendeskWebhookSender",
    "SentWebhook",
    "create_app",
    "comment_added_event",
    "custom_field_changed_event",
    "encode",
    "event_detail",
    "merged_event",
    "sign",
    "soft_deleted_event",
    "status_changed_event",
    "subject_changed_event",
    "tags_changed_event",
    "ticket_created_event",
    "ticket_event",
    "trigger_body",
]
