"""The Jira Cloud fake: signed webhooks out, and the REST v3 subset the hub calls.

**Webhooks** (https://developer.atlassian.com/cloud/jira/platform/webhooks/):
:class:`JiraWebhookSender` delivers like Jira Cloud: the raw JSON bytes, ``X-Hub-Signature:
sha256=<hex HMAC-SHA256 of the body keyed with the webhook secret>`` (section "Secure admin
webhooks"), ``X-Atlassian-Webhook-Identifier`` (the same on every retry of one delivery),
``X-Atlassian-Webhook-Retry`` (retries only), ``X-Atlassian-Webhook-Flow`` and Atlassian's User-Agent.

The builders return what Jira Cloud webhooks carry, shaped like the captured webhooks in the shared
contracts folder: the REST v2 representation (``self`` links to ``/rest/api/2/…``, ``description``
as a wiki-markup string), ``timestamp`` in epoch milliseconds, users identified by ``accountId``.
Comment events carry a cut-down ``issue`` (id, key, self and six fields). Values are made up.

**REST v3** (https://developer.atlassian.com/cloud/jira/platform/rest/v3/), Basic auth
``email:api_token``, errors as Atlassian's ``ErrorCollection`` (``{"errorMessages": [...], "errors": {}}``):

- ``GET|PUT /rest/api/3/issue/{idOrKey}`` (api-group-issues): an old key of a moved issue still
  resolves; ``fields=`` honoured; PUT edits ``fields`` (summary, labels, priority, assignee,
  description as ADF, the configured custom number/string fields), unknown fields are a 400.
- ``GET|POST /rest/api/3/search/jql`` (api-group-issue-search, "enhanced search"): the JQL subset
  ``updated|created >=|>|<=|< "yyyy-MM-dd HH:mm"``, ``project = X`` / ``project in (X, Y)``, ``AND``,
  ``ORDER BY updated|created ASC|DESC``; dates are read in the API user's time zone
  (``JiraState.time_zone``), unbounded queries are a 400, ``nextPageToken`` pages. The old
  ``/rest/api/{2,3}/search`` answers 410 Gone (https://developer.atlassian.com/changelog/#CHANGE-2046).
  ``POST /rest/api/3/search/approximate-count`` counts.
- ``GET|POST|DELETE …/issue/{idOrKey}/remotelink[/{linkId}]`` (api-group-issue-remote-links):
  POST upserts by ``globalId`` (201 created, 200 updated; omitted fields become null).
- ``GET|PUT|DELETE …/issue/{idOrKey}/properties/{propertyKey}`` (api-group-issue-properties).
- ``GET|POST …/issue/{idOrKey}/comment`` (api-group-issue-comments): the body must be ADF; a plain
  string is a 400 as in REST v3.
- Burst rate limit per endpoint and method (https://developer.atlassian.com/cloud/jira/platform/rate-limiting/):
  429 with ``Retry-After`` (switchable off, as some real 429s lack it), ``X-RateLimit-Reset``,
  ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``RateLimit-Reason: jira-burst-based``.

Search is eventually consistent in Jira Cloud ("Recent updates might not be immediately visible");
``search_lag_s`` hides issues changed in the last seconds from search to reproduce that.

**Control endpoints** (no auth, never faulted, not recorded), acting as a person in the Jira UI:

``POST /_sandbox/issues``
    Create an issue: ``{"project": "OPS", "summary": "…", "issue_type", "priority", "status",
    "labels", "assignee": {"accountId", "displayName"}, "security", "fix_versions", "description",
    "custom_fields", "project_name", "actor": {…}}``. Answers 201 ``{"issue": <REST v3 issue>,
    "webhooks": [<delivery>…]}``.
``POST /_sandbox/issues/{idOrKey}``
    Change it: the same keys, all optional; ``status`` transitions it; ``project`` moves it (a new
    key, the same id, the old key kept as an alias). ``DELETE`` deletes it.
``GET|POST /_sandbox/config``
    The common ``rate_limits`` switch plus ``webhooks_enabled`` (default false), ``webhook_target``,
    ``webhook_secret`` (write-only), ``retry_after_header`` and ``search_lag_s``.

Every change updates the issue's ``updated`` time and, when webhooks are enabled and a target is
set, delivers the matching signed webhook (control changes before answering; REST edits and
comments in the background, see :meth:`JiraState.settle`). The same story can so be played with
webhooks on, or off for a poller-only run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from .common import CONTROL_PREFIX, STATE_KEY, SandboxError, SandboxState, TokenBucket, retry_after_header, sandbox_app

USER_AGENT = "Atlassian Webhook HTTP Client"
CONTENT_TYPE = "application/json; charset=utf-8"
SEND_TIMEOUT_SECONDS = 10.0  # ours; Atlassian does not publish its webhook timeout
DEFAULT_SITE = "https://example.atlassian.net"

# Jira Cloud's default workflow, priority scheme and issue types: name -> id
_STATUSES = {
    "To Do": ("10000", "new"),
    "Backlog": ("10001", "new"),
    "Open": ("1", "new"),
    "In Progress": ("3", "indeterminate"),
    "In Review": ("10002", "indeterminate"),
    "Done": ("10003", "done"),
    "Resolved": ("5", "done"),
    "Closed": ("6", "done"),
}
_STATUS_CATEGORIES = {
    "new": (2, "blue-gray", "To Do"),
    "indeterminate": (4, "yellow", "In Progress"),
    "done": (3, "green", "Done"),
}
_PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
_ISSUE_TYPES = {
    "Epic": ("10000", "A big user story that needs to be broken down."),
    "Story": ("10001", "Stories track functionality or features expressed as user goals."),
    "Task": ("10002", "A small, distinct piece of work."),
    "Subtask": ("10003", "A small piece of work that's part of a larger task."),
    "Bug": ("10004", "A problem or error."),
    "Incident": ("10005", "An unplanned interruption or reduction in quality of service."),
}
_RESOLUTIONS = {
    "Done": ("10000", "Work has been completed on this issue."),
    "Won't Do": ("10001", "This issue won't be actioned."),
    "Duplicate": ("10002", "The problem is a duplicate of an existing issue."),
    "Cannot Reproduce": ("10003", "All attempts at reproducing this issue failed."),
}
_AUTO: Any = object()  # "derive from the other arguments"

DEFAULT_ACTOR_ID = "5f3e1a2b9c8d7e6f5a4b3c2d"
DEFAULT_ACTOR_NAME = "Alex Oncall"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value Jira sends for ``body`` under the webhook secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as Jira sends it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class SentWebhook:
    """One delivery attempt: what was sent and what came back (``error`` if nothing did)."""

    delivery_id: str
    retry: int
    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None
    response: str | None = None
    error: str | None = None


class JiraWebhookSender:
    """Posts webhook deliveries to ``target_url`` the way Jira Cloud does; ``secret=None`` sends them
    unsigned. Every attempt is kept in :attr:`sent`. A retry of a delivery passes its
    ``delivery_id`` again with ``retry`` = 1, 2, …"""

    def __init__(
        self,
        target_url: str,
        secret: str | None,
        *,
        flow: str = "Primary",
        session: aiohttp.ClientSession | None = None,
        timeout: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        self.target_url = target_url
        self.secret = secret
        self.flow = flow
        self.timeout = timeout
        self._session = session
        self.sent: list[SentWebhook] = []

    async def send(
        self, payload: Mapping[str, Any] | bytes, *, delivery_id: str | None = None, retry: int = 0
    ) -> tuple[int, str]:
        """Deliver once; returns ``(status, response body)``. Connection errors propagate (and are recorded)."""
        body = payload if isinstance(payload, bytes) else encode(payload)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": USER_AGENT,
            "X-Atlassian-Webhook-Identifier": delivery_id or str(uuid.uuid4()),
            "X-Atlassian-Webhook-Flow": self.flow,
        }
        if self.secret is not None:
            headers["X-Hub-Signature"] = sign(self.secret, body)
        if retry:
            headers["X-Atlassian-Webhook-Retry"] = str(retry)
        record = SentWebhook(headers["X-Atlassian-Webhook-Identifier"], retry, headers, body, time.time())
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


# --- payload builders ------------------------------------------------------------------------------


def jira_user(
    account_id: str = DEFAULT_ACTOR_ID,
    display_name: str = DEFAULT_ACTOR_NAME,
    *,
    site: str = DEFAULT_SITE,
    email: str | None = None,
    time_zone: str = "Etc/UTC",
) -> dict[str, Any]:
    """A user as webhooks show it; ``emailAddress`` only when given (Cloud often hides it)."""
    avatar = "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net/{}/128?size={}&s={}"
    user: dict[str, Any] = {
        "self": f"{site}/rest/api/2/user?accountId={account_id}",
        "accountId": account_id,
        "avatarUrls": {f"{n}x{n}": avatar.format(account_id, n, n) for n in (48, 24, 16, 32)},
        "displayName": display_name,
        "active": True,
        "timeZone": time_zone,
        "accountType": "atlassian",
    }
    if email is not None:
        user["emailAddress"] = email
    return user


def issue_created(
    issue_id: str | int,
    key: str,
    project_key: str,
    summary: str,
    *,
    issue_type: str = "Incident",
    priority: str = "High",
    status: str = "To Do",
    labels: Iterable[str] = (),
    site: str = DEFAULT_SITE,
    timestamp_ms: int | None = None,
    user: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """``jira:issue_created``. ``fields`` are the keyword arguments of :func:`issue_json`
    (description, assignee, reporter, security, resolution, fix_versions, components, …)."""
    ts = _now_ms(timestamp_ms)
    actor = dict(user) if user is not None else jira_user(site=site)
    fields.setdefault("reporter", actor)
    fields.setdefault("created_ms", ts)
    issue = issue_json(issue_id, key, project_key, summary, issue_type=issue_type, priority=priority, status=status,
                         labels=labels, site=site, updated_ms=ts, **fields)
    f = issue["fields"]
    initial = [(name, None, value) for name, value in
               (("summary", summary), ("issuetype", issue_type), ("priority", priority), ("status", status))]
    if f["description"]:
        initial.append(("description", None, f["description"]))
    if f["labels"]:
        initial.append(("labels", None, " ".join(f["labels"])))
    items = [_change_item(c) for c in initial]
    for role in ("reporter", "assignee"):
        if f[role]:
            items.append(_user_change(role, None, f[role]))
    return {
        "timestamp": ts,
        "webhookEvent": "jira:issue_created",
        "issue_event_type_name": "issue_created",
        "user": actor,
        "issue": issue,
        "changelog": {"id": _changelog_id(issue_id, ts, items), "items": items},
    }


def issue_updated(
    issue_id: str | int,
    key: str,
    project_key: str,
    summary: str,
    *,
    changes: Sequence[tuple[str, str | None, str | None] | Mapping[str, Any]] = (("status", "To Do", "In Progress"),),
    issue_type: str = "Incident",
    priority: str | None = None,
    status: str | None = None,
    labels: Iterable[str] = (),
    site: str = DEFAULT_SITE,
    timestamp_ms: int | None = None,
    user: Mapping[str, Any] | None = None,
    event_type_name: str | None = None,
    changelog_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """``jira:issue_updated`` with a ``changelog``. The issue shows its state *after* the change:
    ``status`` and ``priority`` default to the ``toString`` of their change (else To Do / High).

    A change is ``(field, fromString, toString)``; for status, priority, issuetype and resolution the
    ids go into ``from``/``to``. A mapping is used as the changelog item itself (missing keys filled
    with null). ``issue_event_type_name`` is derived as Jira does (``issue_assigned`` for assignee-only
    changes, ``issue_generic`` for workflow transitions, else ``issue_updated``) unless given.
    """
    ts = _now_ms(timestamp_ms)
    items = [_change_item(c) for c in changes]
    after = {i["field"]: i["toString"] for i in items}
    issue = issue_json(issue_id, key, project_key, summary, issue_type=issue_type,
                         priority=priority or after.get("priority") or "High",
                         status=status or after.get("status") or "To Do",
                         labels=labels, site=site, updated_ms=ts, **fields)
    if event_type_name is None:
        changed = {i["field"] for i in items}
        event_type_name = (
            "issue_assigned" if changed == {"assignee"} else "issue_generic" if "status" in changed else "issue_updated"
        )
    return {
        "timestamp": ts,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": event_type_name,
        "user": dict(user) if user is not None else jira_user(site=site),
        "issue": issue,
        "changelog": {"id": changelog_id or _changelog_id(issue_id, ts, items), "items": items},
    }


def issue_deleted(
    issue_id: str | int,
    key: str,
    project_key: str,
    summary: str,
    *,
    issue_type: str = "Incident",
    priority: str = "High",
    status: str = "To Do",
    labels: Iterable[str] = (),
    site: str = DEFAULT_SITE,
    timestamp_ms: int | None = None,
    user: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """``jira:issue_deleted``: the issue as it was, with its comment and worklog pages; no changelog."""
    ts = _now_ms(timestamp_ms)
    issue = issue_json(issue_id, key, project_key, summary, issue_type=issue_type, priority=priority, status=status,
                         labels=labels, site=site, updated_ms=ts, **fields)
    issue["fields"]["comment"] = {"comments": [], "maxResults": 0, "total": 0, "startAt": 0}
    issue["fields"]["worklog"] = {"startAt": 0, "maxResults": 20, "total": 0, "worklogs": []}
    return {
        "timestamp": ts,
        "webhookEvent": "jira:issue_deleted",
        "user": dict(user) if user is not None else jira_user(site=site),
        "issue": issue,
    }


def comment_created(
    issue_id: str | int, key: str, project_key: str, summary: str, comment_id: str | int, body: str, **kwargs: Any
) -> dict[str, Any]:
    """``comment_created``; keyword arguments as :func:`comment_event`."""
    return comment_event("comment_created", issue_id, key, project_key, summary, comment_id, body, **kwargs)


def comment_updated(
    issue_id: str | int, key: str, project_key: str, summary: str, comment_id: str | int, body: str, **kwargs: Any
) -> dict[str, Any]:
    return comment_event("comment_updated", issue_id, key, project_key, summary, comment_id, body, **kwargs)


def comment_deleted(
    issue_id: str | int, key: str, project_key: str, summary: str, comment_id: str | int, body: str, **kwargs: Any
) -> dict[str, Any]:
    return comment_event("comment_deleted", issue_id, key, project_key, summary, comment_id, body, **kwargs)


def comment_event(
    webhook_event: str,
    issue_id: str | int,
    key: str,
    project_key: str,
    summary: str,
    comment_id: str | int,
    body: str,
    *,
    author: Mapping[str, Any] | None = None,
    issue_type: str = "Incident",
    priority: str = "High",
    status: str = "To Do",
    assignee: Mapping[str, Any] | None = None,
    site: str = DEFAULT_SITE,
    timestamp_ms: int | None = None,
    created_ms: int | None = None,
    visibility: Mapping[str, str] | None = None,
    project_name: str | None = None,
    project_id: str | None = None,
) -> dict[str, Any]:
    """A comment event. Jira sends no ``user`` and no ``issue_event_type_name`` with these, and
    only a cut-down issue: summary, issuetype, project, assignee, priority, status.
    ``visibility`` (e.g. ``{"type": "role", "value": "Administrators"}``) marks a restricted comment."""
    ts = _now_ms(timestamp_ms)
    author = dict(author) if author is not None else jira_user(site=site)
    full = issue_json(issue_id, key, project_key, summary, issue_type=issue_type, priority=priority, status=status,
                        site=site, updated_ms=ts, assignee=assignee, project_name=project_name, project_id=project_id)
    cut = {name: full["fields"][name] for name in ("summary", "issuetype", "project", "assignee", "priority", "status")}
    comment: dict[str, Any] = {
        "self": f"{site}/rest/api/2/issue/{issue_id}/comment/{comment_id}",
        "id": str(comment_id),
        "author": author,
        "body": body,
        "updateAuthor": author,
        "created": _jira_time(created_ms if created_ms is not None else ts),
        "updated": _jira_time(ts),
        "jsdPublic": visibility is None,
    }
    if visibility is not None:
        comment["visibility"] = dict(visibility)
    return {
        "timestamp": ts,
        "webhookEvent": webhook_event,
        "comment": comment,
        "issue": {"id": str(issue_id), "self": full["self"], "key": key, "fields": cut},
    }


def issue_json(
    issue_id: str | int,
    key: str,
    project_key: str,
    summary: str,
    *,
    issue_type: str = "Incident",
    priority: str = "High",
    status: str = "To Do",
    labels: Iterable[str] = (),
    site: str = DEFAULT_SITE,
    updated_ms: int | None = None,
    created_ms: int | None = None,
    description: str | None = None,
    assignee: Mapping[str, Any] | None = None,
    reporter: Mapping[str, Any] | None = None,
    creator: Mapping[str, Any] | None = None,
    security: str | None = None,
    resolution: str | None = _AUTO,
    fix_versions: Iterable[str] = (),
    components: Iterable[str] = (),
    project_name: str | None = None,
    project_id: str | None = None,
    status_category: str | None = None,
    custom_fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A full issue (``id``, ``self``, ``key``, ``fields``) in the webhook representation.

    ``resolution`` defaults to "Done" when the status is in the done category, else none.
    ``status_category`` (new, indeterminate, done) is needed only for status names not in Jira's
    default workflow (those default to indeterminate).
    """
    updated = _now_ms(updated_ms)
    created = created_ms if created_ms is not None else updated - 3_600_000
    status_json = _status_json(status, site, status_category)
    if resolution is _AUTO:
        resolution = "Done" if status_json["statusCategory"]["key"] == "done" else None
    reporter = dict(reporter) if reporter is not None else jira_user(site=site)
    fields: dict[str, Any] = {
        "statuscategorychangedate": _jira_time(updated),
        "issuetype": _issue_type_json(issue_type, site),
        "timespent": None,
        "project": _project_json(project_key, site, project_name, project_id),
        "fixVersions": [_named_json("version", name, site, archived=False, released=False) for name in fix_versions],
        "aggregatetimespent": None,
        "resolution": _resolution_json(resolution, site) if resolution else None,
        "resolutiondate": _jira_time(updated) if resolution else None,
        "workratio": -1,
        "lastViewed": None,
        "watches": {"self": f"{site}/rest/api/2/issue/{key}/watchers", "watchCount": 1, "isWatching": True},
        "created": _jira_time(created),
        "priority": {
            "self": f"{site}/rest/api/2/priority/{_priority_id(priority)}",
            "iconUrl": f"{site}/images/icons/priorities/{priority.lower()}.svg",
            "name": priority,
            "id": _priority_id(priority),
        },
        "labels": list(labels),
        "aggregatetimeoriginalestimate": None,
        "timeestimate": None,
        "versions": [],
        "issuelinks": [],
        "assignee": dict(assignee) if assignee is not None else None,
        "updated": _jira_time(updated),
        "status": status_json,
        "components": [_named_json("component", name, site) for name in components],
        "timeoriginalestimate": None,
        "description": description,
        "timetracking": {},
        "security": _security_json(security, site) if security else None,
        "attachment": [],
        "aggregatetimeestimate": None,
        "summary": summary,
        "creator": dict(creator) if creator is not None else reporter,
        "subtasks": [],
        "reporter": reporter,
        "aggregateprogress": {"progress": 0, "total": 0},
        "environment": None,
        "duedate": None,
        "progress": {"progress": 0, "total": 0},
        "votes": {"self": f"{site}/rest/api/2/issue/{key}/votes", "votes": 0, "hasVoted": False},
        **(custom_fields or {}),
    }
    return {"id": str(issue_id), "self": f"{site}/rest/api/2/issue/{issue_id}", "key": key, "fields": fields}


def _change_item(change: tuple[str, str | None, str | None] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(change, Mapping):
        item = dict.fromkeys(("field", "fieldtype", "fieldId", "from", "fromString", "to", "toString"))
        item["fieldtype"] = "jira"
        item.update(change)
        return item
    name, from_string, to_string = change
    to_id = _ID_FIELDS.get(name)
    custom = name.startswith("customfield_")
    return {
        "field": name,
        "fieldtype": "custom" if custom else "jira",
        "fieldId": name,
        "from": to_id(from_string) if to_id and from_string else None,
        "fromString": from_string,
        "to": to_id(to_string) if to_id and to_string else None,
        "toString": to_string,
    }


def _priority_id(name: str) -> str:
    return _PRIORITIES.get(name) or _stable_id(name)


def _issue_type_id(name: str) -> str:
    return _ISSUE_TYPES.get(name, (_stable_id(name),))[0]


def _resolution_id(name: str) -> str:
    return _RESOLUTIONS.get(name, (_stable_id(name),))[0]


def _status_id(name: str) -> str:
    return _status(name)[0]


# changelog fields whose from/to carry ids (the strings carry names)
_ID_FIELDS = {"status": _status_id, "priority": _priority_id, "issuetype": _issue_type_id, "resolution": _resolution_id}


def _user_change(name: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "field": name,
        "fieldtype": "jira",
        "fieldId": name,
        "from": before["accountId"] if before else None,
        "fromString": before["displayName"] if before else None,
        "to": after["accountId"] if after else None,
        "toString": after["displayName"] if after else None,
    }


def _status(name: str, category: str | None = None) -> tuple[str, str]:
    status_id, default_category = _STATUSES.get(name, (_stable_id(name), "indeterminate"))
    return status_id, category or default_category


def _status_json(name: str, site: str, category: str | None) -> dict[str, Any]:
    status_id, category_key = _status(name, category)
    category_id, colour, category_name = _STATUS_CATEGORIES[category_key]
    return {
        "self": f"{site}/rest/api/2/status/{status_id}",
        "description": "",
        "iconUrl": f"{site}/",
        "name": name,
        "id": status_id,
        "statusCategory": {
            "self": f"{site}/rest/api/2/statuscategory/{category_id}",
            "id": category_id,
            "key": category_key,
            "colorName": colour,
            "name": category_name,
        },
    }


def _issue_type_json(name: str, site: str) -> dict[str, Any]:
    type_id, description = _ISSUE_TYPES.get(name, (_issue_type_id(name), ""))
    return {
        "self": f"{site}/rest/api/2/issuetype/{type_id}",
        "id": type_id,
        "description": description,
        "iconUrl": f"{site}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{type_id}?size=medium",
        "name": name,
        "subtask": name == "Subtask",
        "avatarId": int(type_id),
    }


def _project_json(project_key: str, site: str, name: str | None, project_id: str | None) -> dict[str, Any]:
    pid = project_id or _stable_id(project_key)
    avatar = f"{site}/rest/api/2/universal_avatar/view/type/project/avatar/10400"
    return {
        "self": f"{site}/rest/api/2/project/{pid}",
        "id": pid,
        "key": project_key,
        "name": name or project_key.title(),
        "projectTypeKey": "software",
        "simplified": False,
        "avatarUrls": {
            f"{n}x{n}": f"{avatar}?size={size}"
            for n, size in ((48, "large"), (24, "small"), (16, "xsmall"), (32, "medium"))
        },
    }


def _resolution_json(name: str, site: str) -> dict[str, Any]:
    resolution_id, description = _RESOLUTIONS.get(name, (_resolution_id(name), ""))
    return {
        "self": f"{site}/rest/api/2/resolution/{resolution_id}",
        "id": resolution_id,
        "description": description,
        "name": name,
    }


def _security_json(name: str, site: str) -> dict[str, Any]:
    level_id = _stable_id("security:" + name)
    return {"self": f"{site}/rest/api/2/securitylevel/{level_id}", "id": level_id, "description": "", "name": name}


def _named_json(kind: str, name: str, site: str, **extra: Any) -> dict[str, Any]:
    item_id = _stable_id(f"{kind}:{name}")
    return {"self": f"{site}/rest/api/2/{kind}/{item_id}", "id": item_id, "description": "", "name": name, **extra}


def _stable_id(text: str) -> str:
    """A Jira-looking numeric id, the same for the same name on every run."""
    return str(10100 + int(hashlib.sha1(text.encode()).hexdigest()[:6], 16) % 89900)


def _changelog_id(issue_id: str | int, ts: int, items: list[dict[str, Any]]) -> str:
    return _stable_id(f"{issue_id}:{ts}:{json.dumps(items, sort_keys=True)}")


def _now_ms(timestamp_ms: int | None) -> int:
    return timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)


def _jira_time(ms: int) -> str:
    """Jira's timestamp format, e.g. ``2024-03-01T12:00:00.123+0000``."""
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


# --- REST v3 ----------------------------------------------------------------------------------------

API = "/rest/api/3"
DEFAULT_EMAIL = "switchboard@example.com"
DEFAULT_API_TOKEN = "sandbox-jira-api-token"
API_USER_ID = "712020:5b1c3d4e-switchboard"
API_USER_NAME = "Switchboard"

#: search/jql ``maxResults``: "It returns max 5000 issues", the most when only ids or keys are requested.
SEARCH_MAX_RESULTS_IDS = 5000
#: "API may return fewer items per page where a large number of fields are requested" (same
#: parameter). Ours: 100, the cap reported for Jira Cloud searches that return fields.
SEARCH_MAX_RESULTS_FIELDS = 100
SEARCH_DEFAULT_MAX_RESULTS = 50  # search/jql maxResults default
COMMENTS_DEFAULT_MAX_RESULTS = 100  # getComments maxResults default
PROPERTY_MAX_BYTES = 32768  # setIssueProperty: "The maximum length is 32768 characters"
PROPERTY_KEY_MAX_CHARS = 255  # setIssueProperty: propertyKey "The maximum length is 255 characters"
GLOBAL_ID_MAX_CHARS = 255  # RemoteIssueLinkRequest.globalId: "The maximum length is 255 characters"
#: Atlassian does not publish the burst budgets ("REST API rate limits are not published"); ours,
#: per endpoint and HTTP method, a token bucket as Atlassian describes the burst limit.
BURST_RATE_PER_SECOND = 20.0
BURST_CAPACITY = 100
#: Custom fields the fake knows, by id: "number" or "string" (a single-line text field).
DEFAULT_CUSTOM_FIELDS: Mapping[str, str] = {"customfield_10050": "number", "customfield_10051": "string"}

# Error texts Jira Cloud answers with, as quoted in reports against Jira clients (the 410: e.g.
# pycontribs/jira#2369; ADF: lesstif/php-jira-rest-client#280 and #412). Other texts here are the fake's own.
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
NOT_AUTHENTICATED = "Client must be authenticated to access this resource."
UNBOUNDED_JQL = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
NOT_ADF = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
COMMENT_NOT_ADF = "Comment body is not valid!"
_ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
_JQL_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
_JQL_PERIOD = re.compile(r"([-+]?)(\d+)([wdhm])")
_PERIOD_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000}


class JiraApiError(Exception):
    """A REST answer other than success, in Atlassian's ErrorCollection shape."""

    def __init__(self, status: int, *messages: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(status, messages)
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})

    def response(self, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response({"errorMessages": self.messages, "errors": self.errors}, status=self.status,
                                 headers=headers)


@dataclass
class JiraIssue:
    """One issue as the fake keeps it. ``description`` is plain text (ADF over REST, a string in webhooks)."""

    id: str
    key: str
    project_key: str
    summary: str
    issue_type: str = "Task"
    priority: str = "Medium"
    status: str = "To Do"
    status_category: str | None = None
    labels: list[str] = field(default_factory=list)
    assignee: dict[str, Any] | None = None
    reporter: dict[str, Any] | None = None
    security: str | None = None
    fix_versions: list[str] = field(default_factory=list)
    description: str | None = None
    custom_fields: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0
    old_keys: list[str] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    remote_links: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Jql:
    conditions: list[Callable[[JiraIssue], bool]]
    order: list[tuple[str, bool]]  # (updated|created, descending)
    text: str


class JiraState(SandboxState):
    """Issues, their remote links, properties and comments, the REST credentials and the switches.

    ``time_zone`` is the API user's profile time zone: JQL dates are read in it and REST dates are
    written in it. ``site`` is the base URL used in ``self`` links and webhooks (default: the URL the
    request came in on). Issues, counters and webhook deliveries are cleared by :meth:`reset`; the
    credentials, projects and custom fields are configuration and stay.
    """

    vendor = "jira"

    def __init__(
        self,
        *,
        email: str = DEFAULT_EMAIL,
        api_token: str = DEFAULT_API_TOKEN,
        site: str | None = None,
        time_zone: str = "UTC",
        projects: Mapping[str, str] | None = None,
        custom_fields: Mapping[str, str] = DEFAULT_CUSTOM_FIELDS,
        webhook_target: str | None = None,
        webhook_secret: str | None = None,
        webhooks_enabled: bool = False,
        rate_limits: bool = True,
        burst_rate: float = BURST_RATE_PER_SECOND,
        burst_capacity: int = BURST_CAPACITY,
        retry_after_header: bool = True,
        search_lag_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(rate_limits=rate_limits, clock=clock, wall_clock=wall_clock)
        self.email, self.api_token = email, api_token
        self.site = site.rstrip("/") if site else None
        self.time_zone = ZoneInfo(time_zone)
        self.projects: dict[str, str] = dict(projects or {})  # key -> name
        self.custom_field_types = dict(custom_fields)
        self.burst_rate, self.burst_capacity = burst_rate, burst_capacity
        self._defaults = {
            "webhook_target": webhook_target,
            "webhook_secret": webhook_secret,
            "webhooks_enabled": webhooks_enabled,
            "retry_after_header": retry_after_header,
            "search_lag_s": search_lag_s,
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._clear()

    def _clear(self) -> None:
        for name, value in self._defaults.items():
            setattr(self, name, value)
        self.issues: dict[str, JiraIssue] = {}
        self.aliases: dict[str, str] = {}  # old key -> issue id
        self.webhooks: list[SentWebhook] = []
        self.outbox: list[dict[str, Any]] = []
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._next_id = 10001
        self._next_number: dict[str, int] = {}
        self._next_link_id = 10000
        self._next_comment_id = 10000

    def reset(self) -> None:
        super().reset()
        self._clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "issues": [
                {"id": i.id, "key": i.key, "old_keys": i.old_keys, "project": i.project_key, "summary": i.summary,
                 "status": i.status, "priority": i.priority, "labels": i.labels, "updated_ms": i.updated_ms,
                 "custom_fields": i.custom_fields, "remote_links": i.remote_links, "properties": i.properties,
                 "comments": [{"id": c["id"], "body": _adf_text(c["body"])} for c in i.comments]}
                for i in self.issues.values()
            ],
            "webhooks": [
                {"delivery_id": w.delivery_id, "event": json.loads(w.body).get("webhookEvent"), "status": w.status,
                 "error": w.error}
                for w in self.webhooks
            ],
        }

    def config(self) -> dict[str, Any]:
        return {
            "rate_limits": self.rate_limits,
            "webhooks_enabled": self.webhooks_enabled,
            "webhook_target": self.webhook_target,
            "webhook_secret_set": self.webhook_secret is not None,
            "retry_after_header": self.retry_after_header,
            "search_lag_s": self.search_lag_s,
        }

    def fault_body(self, status: int) -> Any:
        return {"errorMessages": [f"sandbox fault: HTTP {status}"], "errors": {}}

    def now_ms(self) -> int:
        return int(self.wall_clock() * 1000)

    # --- issues, as a person in the Jira UI changes them ---------------------------------------

    def find(self, id_or_key: str) -> JiraIssue:
        """By id, key, old key of a moved issue, or key in any case (as GET issue resolves them)."""
        issue = self.issues.get(id_or_key)
        if issue is None:
            wanted = id_or_key.upper()
            issue_id = self.aliases.get(wanted) or next((i.id for i in self.issues.values() if i.key == wanted), None)
            issue = self.issues.get(issue_id or "")
        if issue is None:
            raise JiraApiError(404, ISSUE_NOT_FOUND)
        return issue

    def create_issue(
        self,
        project_key: str,
        summary: str,
        *,
        project_name: str | None = None,
        actor: Mapping[str, Any] | None = None,
        site: str | None = None,
        **values: Any,
    ) -> JiraIssue:
        """Create an issue (``values``: the :class:`JiraIssue` fields, e.g. ``priority="Highest"``)."""
        project_key = project_key.upper()
        self.projects.setdefault(project_key, project_name or project_key.title())
        now = self.now_ms()
        issue = JiraIssue(id=str(self._next_id), key=self._new_key(project_key), project_key=project_key,
                          summary=summary, created_ms=now, updated_ms=now, **values)
        self._next_id += 1
        if issue.reporter is None:
            issue.reporter = dict(actor) if actor is not None else jira_user(site=self._site(site))
        self.issues[issue.id] = issue
        self._queue(issue_created(issue.id, issue.key, issue.project_key, issue.summary, timestamp_ms=now,
                                  user=self._actor(actor, site), **self._builder_args(issue, site)))
        return issue

    def update_issue(
        self,
        id_or_key: str,
        *,
        project: str | None = None,
        project_name: str | None = None,
        actor: Mapping[str, Any] | None = None,
        site: str | None = None,
        **values: Any,
    ) -> JiraIssue:
        """Edit, transition (``status=``) or move (``project=``) an issue; only real changes count."""
        issue = self.find(id_or_key)
        changes: list[Any] = []
        for name, value in values.items():
            if name == "custom_fields":
                for field_id, new in value.items():
                    old = issue.custom_fields.get(field_id)
                    if new != old:
                        changes.append((field_id, _text(old), _text(new)))
                        issue.custom_fields[field_id] = new
                continue
            if name not in JiraIssue.__dataclass_fields__ or name in _READ_ONLY:
                raise SandboxError(f"unknown issue field {name!r}")
            old = getattr(issue, name)
            if value == old:
                continue
            if name in ("assignee", "reporter"):
                changes.append(_user_change(name, old, value))
            elif name == "status":
                was_done = _status(old, issue.status_category)[1] == "done"
                is_done = _status(value, values.get("status_category"))[1] == "done"
                if is_done != was_done:
                    changes.append(("resolution", None if is_done else "Done", "Done" if is_done else None))
                changes.append(("status", old, value))
            elif name != "status_category":
                changes.append((_CHANGE_FIELD.get(name, name), _text(old), _text(value)))
            setattr(issue, name, value)
        event_type_name = None
        if project is not None and project.upper() != issue.project_key:
            new_project = project.upper()
            self.projects.setdefault(new_project, project_name or new_project.title())
            old_key, old_project = issue.key, issue.project_key
            issue.key, issue.project_key = self._new_key(new_project), new_project
            issue.old_keys.append(old_key)
            self.aliases[old_key] = issue.id
            changes += [
                {"field": "Key", "fieldId": "issuekey", "fromString": old_key, "toString": issue.key},
                {"field": "project", "fieldId": "project", "from": _stable_id(old_project),
                 "fromString": self.projects[old_project], "to": _stable_id(new_project),
                 "toString": self.projects[new_project]},
            ]
            event_type_name = "issue_moved"
        if changes:
            issue.updated_ms = self.now_ms()
            self._queue(issue_updated(issue.id, issue.key, issue.project_key, issue.summary, changes=changes,
                                      event_type_name=event_type_name, timestamp_ms=issue.updated_ms,
                                      user=self._actor(actor, site), **self._builder_args(issue, site)))
        return issue

    def delete_issue(self, id_or_key: str, *, actor: Mapping[str, Any] | None = None, site: str | None = None
                     ) -> JiraIssue:
        issue = self.find(id_or_key)
        del self.issues[issue.id]
        for old_key in issue.old_keys:
            self.aliases.pop(old_key, None)
        self._queue(issue_deleted(issue.id, issue.key, issue.project_key, issue.summary, timestamp_ms=self.now_ms(),
                                  user=self._actor(actor, site), **self._builder_args(issue, site)))
        return issue

    def add_comment(self, issue: JiraIssue, body: dict[str, Any], *, author: Mapping[str, Any],
                    visibility: Mapping[str, Any] | None = None, site: str | None = None) -> dict[str, Any]:
        now = self.now_ms()
        comment = {"id": str(self._next_comment_id), "body": body, "author": dict(author), "created_ms": now,
                   "updated_ms": now, "visibility": dict(visibility) if visibility else None}
        self._next_comment_id += 1
        issue.comments.append(comment)
        issue.updated_ms = now  # a comment updates the issue, as in Jira
        self._queue(comment_created(
            issue.id, issue.key, issue.project_key, issue.summary, comment["id"], _adf_text(body), author=author,
            issue_type=issue.issue_type, priority=issue.priority, status=issue.status, assignee=issue.assignee,
            site=self._site(site), timestamp_ms=now, visibility=visibility,
            project_name=self.projects[issue.project_key],
        ))
        return comment

    def _new_key(self, project_key: str) -> str:
        number = self._next_number.get(project_key, 1)
        self._next_number[project_key] = number + 1
        return f"{project_key}-{number}"

    def _site(self, site: str | None) -> str:
        return site or self.site or DEFAULT_SITE

    def _actor(self, actor: Mapping[str, Any] | None, site: str | None) -> dict[str, Any]:
        return dict(actor) if actor is not None else jira_user(site=self._site(site))

    def _builder_args(self, issue: JiraIssue, site: str | None) -> dict[str, Any]:
        """Keyword arguments of the payload builders (and :func:`issue_json`) for this issue."""
        custom = dict.fromkeys(self.custom_field_types)
        custom.update(issue.custom_fields)
        return {
            "issue_type": issue.issue_type, "priority": issue.priority, "status": issue.status,
            "status_category": issue.status_category, "labels": list(issue.labels), "site": self._site(site),
            "created_ms": issue.created_ms, "description": issue.description, "assignee": issue.assignee,
            "reporter": issue.reporter, "security": issue.security, "fix_versions": list(issue.fix_versions),
            "project_name": self.projects.get(issue.project_key), "custom_fields": custom,
        }

    # --- webhooks -------------------------------------------------------------------------------

    def _queue(self, payload: dict[str, Any]) -> None:
        if self.webhooks_enabled and self.webhook_target:
            self.outbox.append(payload)

    async def deliver(self) -> list[SentWebhook]:
        """Send the queued webhooks, in order. A failed delivery is recorded, never raised: Jira's
        own action succeeds whatever the webhook receiver does."""
        sent = []
        while self.outbox:
            payload = self.outbox.pop(0)
            if not self.webhook_target:
                continue
            sender = JiraWebhookSender(self.webhook_target, self.webhook_secret)
            try:
                await sender.send(payload)
            except (aiohttp.ClientError, TimeoutError):
                pass  # recorded by the sender
            self.webhooks.extend(sender.sent)
            sent.extend(sender.sent)
        return sent

    def deliver_later(self) -> None:
        """Send the queued webhooks in the background (REST edits do not wait for them)."""
        if self.outbox:
            task = asyncio.get_running_loop().create_task(self._deliver_quietly())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver_quietly(self) -> None:
        await self.deliver()

    async def settle(self) -> None:
        """Wait until every background webhook delivery has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    # --- REST helpers ---------------------------------------------------------------------------

    def authorised(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            email, sep, token = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = f"{self.email}:{self.api_token}".encode()
        return bool(sep) and hmac.compare_digest(f"{email}:{token}".encode(), expected)

    def burst_wait(self, method: str, route: str) -> float:
        bucket = self._buckets.get((method, route))
        if bucket is None:
            bucket = self._buckets[(method, route)] = TokenBucket(self.burst_rate, self.burst_capacity, self.clock)
        return bucket.take()

    def rest_time(self, ms: int) -> str:
        """REST v3 date-times, in the API user's time zone: ``2024-03-01T13:00:00.123+0100``."""
        moment = datetime.fromtimestamp(ms / 1000, self.time_zone)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}" + moment.strftime("%z")

    def rest_issue(self, issue: JiraIssue, site: str, fields: set[str] | None, *, expand: str = _ISSUE_EXPAND
                   ) -> dict[str, Any]:
        """The REST v3 issue; ``fields`` None means ids only (search's default)."""
        doc = _v3_links(issue_json(issue.id, issue.key, issue.project_key, issue.summary, updated_ms=issue.updated_ms,
                                   **self._builder_args(issue, site)))
        if fields is None:
            return {"id": issue.id}
        f = doc["fields"]
        f["description"] = _adf(issue.description) if issue.description else None
        for name in ("created", "updated", "statuscategorychangedate", "resolutiondate"):
            if f.get(name):
                f[name] = self.rest_time(issue.created_ms if name == "created" else issue.updated_ms)
        comments = [self.rest_comment(issue, c, site) for c in issue.comments]
        f["comment"] = {"comments": comments, "self": f"{site}{API}/issue/{issue.id}/comment",
                        "maxResults": len(comments), "total": len(comments), "startAt": 0}
        f["worklog"] = {"startAt": 0, "maxResults": 20, "total": 0, "worklogs": []}
        return {"expand": expand, "id": issue.id, "self": doc["self"], "key": issue.key,
                "fields": {name: value for name, value in f.items() if name in fields}}

    def all_fields(self) -> set[str]:
        probe = JiraIssue(id="0", key="X-0", project_key="X", summary="")
        fields = issue_json("0", "X-0", "X", "", **self._builder_args(probe, None))["fields"]
        return set(fields) | {"comment", "worklog"}

    def rest_comment(self, issue: JiraIssue, comment: dict[str, Any], site: str) -> dict[str, Any]:
        body = {
            "self": f"{site}{API}/issue/{issue.id}/comment/{comment['id']}",
            "id": comment["id"],
            "author": _v3_links(comment["author"]),
            "body": comment["body"],
            "updateAuthor": _v3_links(comment["author"]),
            "created": self.rest_time(comment["created_ms"]),
            "updated": self.rest_time(comment["updated_ms"]),
            "jsdPublic": comment["visibility"] is None,
        }
        if comment["visibility"] is not None:
            body["visibility"] = comment["visibility"]
        return body

    def rest_link(self, issue: JiraIssue, link: dict[str, Any], site: str) -> dict[str, Any]:
        return {"id": link["id"], "self": f"{site}{API}/issue/{issue.key}/remotelink/{link['id']}",
                **{k: v for k, v in link.items() if k != "id" and v is not None}}

    # --- JQL ------------------------------------------------------------------------------------

    def parse_jql(self, text: str) -> _Jql:
        """The subset above; anything else is a 400, an empty restriction is the unbounded-query 400."""
        tokens = _jql_tokens(text)
        conditions: list[Callable[[JiraIssue], bool]] = []
        order: list[tuple[str, bool]] = []
        pos = 0

        def take() -> str:
            nonlocal pos
            if pos >= len(tokens):
                raise _jql_error(text, "the query ends too early")
            pos += 1
            return tokens[pos - 1]

        while pos < len(tokens):
            word = take()
            if word.lower() == "order":
                if take().lower() != "by":
                    raise _jql_error(text, "expected ORDER BY")
                while True:
                    name = take().lower()
                    if name not in ("updated", "created"):
                        raise _jql_error(text, f"the sandbox sorts by updated or created only, not {name!r}")
                    descending = False
                    if pos < len(tokens) and tokens[pos].lower() in ("asc", "desc"):
                        descending = take().lower() == "desc"
                    order.append((name, descending))
                    if pos < len(tokens) and tokens[pos] == ",":
                        take()
                        continue
                    break
                if pos < len(tokens):
                    raise _jql_error(text, f"unexpected {tokens[pos]!r} after ORDER BY")
                break
            name = word.lower()
            if name in ("updated", "created"):
                op = take()
                if op not in _COMPARE:
                    raise _jql_error(text, f"the sandbox compares dates with >=, >, <= or < only, not {op!r}")
                bound = self._jql_date(name, _unquote(take()))
                conditions.append(_date_condition(name, _COMPARE[op], bound))
            elif name == "project":
                op = take().lower()
                if op == "=":
                    values = [_unquote(take())]
                elif op == "in":
                    if take() != "(":
                        raise _jql_error(text, "expected ( after IN")
                    values = []
                    while True:
                        values.append(_unquote(take()))
                        closing = take()
                        if closing == ")":
                            break
                        if closing != ",":
                            raise _jql_error(text, "expected , or ) in the project list")
                else:
                    raise _jql_error(text, f"the sandbox matches projects with = or IN only, not {op!r}")
                keys = {self._project_key(value) for value in values}
                conditions.append(lambda issue, keys=keys: issue.project_key in keys)
            else:
                raise _jql_error(text, f"the sandbox understands updated, created and project, not {word!r}")
            if pos < len(tokens) and tokens[pos].lower() == "and":
                take()
            elif pos < len(tokens) and tokens[pos].lower() != "order":
                raise _jql_error(text, f"expected AND or ORDER BY, not {tokens[pos]!r}")
        if not conditions:
            raise JiraApiError(400, UNBOUNDED_JQL)
        return _Jql(conditions, order, " ".join(tokens))

    def _jql_date(self, field_name: str, value: str) -> int:
        for fmt in _JQL_DATE_FORMATS:
            try:
                local = datetime.strptime(value, fmt)
            except ValueError:
                continue
            return int(local.replace(tzinfo=self.time_zone).timestamp() * 1000)
        period = _JQL_PERIOD.fullmatch(value.replace(" ", ""))
        if period:
            sign = -1 if period[1] == "-" else 1
            return self.now_ms() + sign * int(period[2]) * _PERIOD_MS[period[3]]
        raise JiraApiError(400, f"Date value '{value}' for field '{field_name}' is invalid. Valid formats include: "
                                "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
                                "format e.g. '-5d', '4w 2d'.")

    def _project_key(self, value: str) -> str:
        for key, name in self.projects.items():
            if value.upper() == key or value == _stable_id(key) or value.lower() == name.lower():
                return key
        raise JiraApiError(400, f"The value '{value}' does not exist for the field 'project'.")

    def search(self, query: _Jql, after: list[int] | None, limit: int) -> tuple[list[JiraIssue], list[int] | None]:
        """One page after the cursor ``after`` (the sort key of the last issue seen), and the next cursor."""
        lag_ms = int(self.search_lag_s * 1000)
        now = self.now_ms()
        order = query.order or [("created", False)]

        def sort_key(issue: JiraIssue) -> list[int]:
            values = [issue.updated_ms if name == "updated" else issue.created_ms for name, _ in order]
            values.append(int(issue.id))
            directions = [desc for _, desc in order] + [order[0][1]]
            return [-v if desc else v for v, desc in zip(values, directions, strict=True)]

        found = sorted(
            (i for i in self.issues.values() if now - i.updated_ms >= lag_ms and all(c(i) for c in query.conditions)),
            key=sort_key,
        )
        if after is not None:
            found = [i for i in found if sort_key(i) > after]
        page = found[:limit]
        return page, sort_key(page[-1]) if len(found) > limit else None


_READ_ONLY = frozenset({"id", "key", "project_key", "created_ms", "updated_ms", "old_keys", "comments",
                        "remote_links", "properties"})
_CHANGE_FIELD = {"issue_type": "issuetype", "fix_versions": "Fix Version"}
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
}
_JQL_TOKEN = re.compile(r"\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|>=|<=|!=|[=<>(),]|[^\s\"'=<>!(),]+)")


def _jql_tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _JQL_TOKEN.match(text, pos)
        if match is None:
            raise _jql_error(text, f"cannot read {text[pos:]!r}")
        tokens.append(match[1])
        pos = match.end()
    return tokens


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _jql_error(text: str, reason: str) -> JiraApiError:
    return JiraApiError(400, f"Error in the JQL Query: {reason} (query: {text!r}).")


def _date_condition(name: str, compare: Callable[[int, int], bool], bound: int) -> Callable[[JiraIssue], bool]:
    attribute = "updated_ms" if name == "updated" else "created_ms"
    return lambda issue: compare(getattr(issue, attribute), bound)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: one paragraph per blank-line-separated block."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    return {"type": "doc", "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": b}]} for b in blocks]}


def _adf_text(node: Any) -> str:
    """The text of an ADF document, paragraphs separated by a blank line (the fake needs no more)."""
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    parts = [_adf_text(child) for child in node.get("content") or []]
    return ("\n\n" if node.get("type") == "doc" else "").join(parts)


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and isinstance(value.get("content"), list)


def _v3_links(value: Any) -> Any:
    """REST v3 answers link to ``/rest/api/3/…`` where webhooks link to ``/rest/api/2/…``."""
    if isinstance(value, dict):
        return {k: (v.replace("/rest/api/2/", "/rest/api/3/") if k == "self" and isinstance(v, str) else _v3_links(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_v3_links(v) for v in value]
    return value


def _field_spec(values: Iterable[Any]) -> list[str]:
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def _select_fields(spec: list[str], every: set[str], *, default_all: bool) -> set[str] | None:
    """Which fields to return: ``*all``/``*navigable``, names, ``-name`` exclusions; None = ids only."""
    if not spec:
        return set(every) if default_all else None
    excluded = {s[1:] for s in spec if s.startswith("-")}
    named = {s for s in spec if not s.startswith(("*", "-"))} - {"id", "key"}
    if "*all" in spec or "*navigable" in spec or (excluded and not named):
        return every - excluded
    return (named & every) - excluded if named else None


def _encode_token(query: _Jql, cursor: list[int]) -> str:
    raw = json.dumps({"q": hashlib.sha1(query.text.encode()).hexdigest()[:12], "k": cursor}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(query: _Jql, token: str) -> list[int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["q"] != hashlib.sha1(query.text.encode()).hexdigest()[:12]:
            raise ValueError("token of another query")
        cursor = data["k"]
        if not isinstance(cursor, list) or not all(isinstance(v, int) for v in cursor):
            raise ValueError("bad cursor")
        return cursor
    except (ValueError, KeyError, TypeError):
        raise JiraApiError(400, "The nextPageToken is invalid.") from None


def _int_arg(value: Any, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        raise JiraApiError(400, f"'{name}' must be an integer.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise JiraApiError(400, f"'{name}' must be an integer.") from None


def _state(request: web.Request) -> JiraState:
    state = request.app[STATE_KEY]
    assert isinstance(state, JiraState)
    return state


def _site_of(request: web.Request) -> str:
    state = _state(request)
    return state.site or f"{request.scheme}://{request.host}"


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise JiraApiError(400, "No content to map due to end-of-input")
    try:
        return json.loads(raw)
    except ValueError:
        raise JiraApiError(400, "Unexpected character in the request body: it is not valid JSON.") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _rest(handler: Handler) -> Handler:
    """Burst limit, then Basic auth, then the handler; JiraApiError becomes the ErrorCollection answer."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        if state.rate_limits:
            route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
            wait = state.burst_wait(request.method, route)
            if wait:
                return _rate_limited(state, wait)
        if not state.authorised(request):
            return JiraApiError(401, NOT_AUTHENTICATED).response()
        try:
            return await handler(request)
        except JiraApiError as exc:
            return exc.response()

    return endpoint


def _rate_limited(state: JiraState, wait: float) -> web.Response:
    seconds = math.ceil(wait)
    # Atlassian: "the timestamp (in ISO 8601 format) when the rate limit will reset, calculated as the
    # request timestamp plus the Retry-After period ... yyyy-MM-ddTHH:mmZ". Minutes are rounded up here
    # so a client that only has this header never retries early.
    reset = datetime.fromtimestamp(math.ceil((state.wall_clock() + seconds) / 60) * 60, timezone.utc)
    headers = {
        "X-RateLimit-Limit": str(state.burst_capacity),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
        "RateLimit-Reason": "jira-burst-based",
    }
    if state.retry_after_header:
        headers["Retry-After"] = retry_after_header(seconds)
    return JiraApiError(429, "Rate limit exceeded.").response(headers)


async def _search_removed(request: web.Request) -> web.Response:
    return JiraApiError(410, SEARCH_REMOVED).response()


@_rest
async def _get_issue(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    fields = _select_fields(_field_spec(request.query.getall("fields", [])), state.all_fields(), default_all=True)
    return web.json_response(state.rest_issue(issue, _site_of(request), fields or set()))


@_rest
async def _edit_issue(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    body = await _json_body(request)
    if not isinstance(body, dict) or not (body.get("fields") or body.get("update")):
        raise JiraApiError(400, "Can not edit an issue without fields or updates.")
    if body.get("update"):
        raise JiraApiError(400, "The sandbox edits issues through 'fields' only.")
    fields = body["fields"]
    if not isinstance(fields, dict):
        raise JiraApiError(400, "'fields' must be an object.")
    values, errors = _field_edits(state, fields)
    if errors:
        raise JiraApiError(400, errors=errors)
    site = _site_of(request)
    state.update_issue(issue.id, actor=jira_user(API_USER_ID, API_USER_NAME, site=site), site=site, **values)
    state.deliver_later()
    if request.query.get("returnIssue", "").lower() == "true":
        return web.json_response(state.rest_issue(issue, site, state.all_fields()))
    return web.Response(status=204)


def _field_edits(state: JiraState, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate an edit's ``fields`` as Jira does; returns the JiraIssue values and the errors map."""
    values: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in fields.items():
        if name == "summary":
            if not isinstance(value, str) or not value.strip():
                errors[name] = "You must specify a summary of the issue."
            else:
                values["summary"] = value
        elif name == "labels":
            if not isinstance(value, list) or not all(isinstance(v, str) and v and " " not in v for v in value):
                errors[name] = "Labels must be a list of strings without spaces."
            else:
                values["labels"] = value
        elif name == "priority":
            chosen = value.get("name") or next(
                (n for n, pid in _PRIORITIES.items() if pid == value.get("id")), None
            ) if isinstance(value, dict) else None
            if chosen not in _PRIORITIES:
                errors[name] = "Specify a valid priority (id or name)."
            else:
                values["priority"] = chosen
        elif name == "description":
            if value is not None and not _is_adf(value):
                errors[name] = NOT_ADF
            else:
                values["description"] = _adf_text(value) if value else None
        elif name == "assignee":
            if value is not None and not (isinstance(value, dict) and isinstance(value.get("accountId"), str)):
                errors[name] = "Specify the assignee by accountId."
            else:
                values["assignee"] = jira_user(value["accountId"], value["accountId"]) if value else None
        elif state.custom_field_types.get(name) == "number":
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                errors[name] = "Operation value must be a number"
            else:
                custom[name] = value
        elif state.custom_field_types.get(name) == "string":
            if value is not None and not isinstance(value, str):
                errors[name] = "Operation value must be a string"
            else:
                custom[name] = value
        else:
            errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
    if custom:
        values["custom_fields"] = custom
    return values, errors


@_rest
async def _search_jql(request: web.Request) -> web.Response:
    state = _state(request)
    if request.method == "POST":
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise JiraApiError(400, "The request body must be a JSON object.")
        unknown = set(body) - {"jql", "nextPageToken", "maxResults", "fields", "expand", "properties",
                               "fieldsByKeys", "reconcileIssues"}
        if unknown:  # SearchAndReconcileRequestBean has additionalProperties: false
            raise JiraApiError(400, f"Unrecognized field \"{sorted(unknown)[0]}\" in the request body.")
        jql, token = body.get("jql"), body.get("nextPageToken")
        raw_fields = body.get("fields") or []
        if not isinstance(raw_fields, list):
            raise JiraApiError(400, "'fields' must be a list of strings.")
        max_results = _int_arg(body.get("maxResults"), "maxResults", SEARCH_DEFAULT_MAX_RESULTS)
    else:
        jql, token = request.query.get("jql"), request.query.get("nextPageToken")
        raw_fields = request.query.getall("fields", [])
        max_results = _int_arg(request.query.get("maxResults"), "maxResults", SEARCH_DEFAULT_MAX_RESULTS)
    if not isinstance(jql, str) or not jql.strip():
        raise JiraApiError(400, UNBOUNDED_JQL)
    if max_results < 1:
        raise JiraApiError(400, "'maxResults' must be greater than 0.")
    query = state.parse_jql(jql)
    fields = _select_fields(_field_spec(raw_fields), state.all_fields(), default_all=False)
    limit = min(max_results, SEARCH_MAX_RESULTS_FIELDS if fields else SEARCH_MAX_RESULTS_IDS)
    after = _decode_token(query, token) if token else None
    page, cursor = state.search(query, after, limit)
    site = _site_of(request)
    result: dict[str, Any] = {"issues": [state.rest_issue(i, site, fields, expand="") for i in page],
                              "isLast": cursor is None}
    if cursor is not None:  # "not included in the response for the last page"
        result["nextPageToken"] = _encode_token(query, cursor)
    return web.json_response(result)


@_rest
async def _approximate_count(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("jql"), str) or not body["jql"].strip():
        raise JiraApiError(400, UNBOUNDED_JQL)
    query = state.parse_jql(body["jql"])
    page, _ = state.search(query, None, len(state.issues) or 1)
    return web.json_response({"count": len(page)})


@_rest
async def _get_remote_links(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    site = _site_of(request)
    global_id = request.query.get("globalId")
    if global_id is not None:
        return web.json_response(state.rest_link(issue, _link_by_global_id(issue, global_id), site))
    return web.json_response([state.rest_link(issue, link, site) for link in issue.remote_links])


@_rest
async def _get_remote_link(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    return web.json_response(state.rest_link(issue, _link_by_id(state, issue, request.match_info["link"]),
                                             _site_of(request)))


@_rest
async def _upsert_remote_link(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise JiraApiError(400, "The request body must be a JSON object.")
    obj = body.get("object")
    errors = {}
    if not isinstance(obj, dict):
        errors["object"] = "'object' is required."
    else:
        for required in ("title", "url"):
            if not isinstance(obj.get(required), str) or not obj[required]:
                errors[required] = f"'{required}' is required."
        status = obj.get("status")
        if status is not None and not (isinstance(status, dict) and isinstance(status.get("resolved", False), bool)):
            errors["status"] = "'status' must be an object whose 'resolved' is a boolean."  # ours: Jira's text unknown
    global_id = body.get("globalId")
    if global_id is not None and (not isinstance(global_id, str) or len(global_id) > GLOBAL_ID_MAX_CHARS):
        errors["globalId"] = f"'globalId' must be a string of at most {GLOBAL_ID_MAX_CHARS} characters."
    if errors:
        raise JiraApiError(400, errors=errors)
    # "If a globalId is provided and a remote issue link with that global ID is found it is updated.
    # Any fields without values in the request are set to null."
    fresh = {k: body.get(k) for k in ("globalId", "application", "relationship", "object")}
    existing = next((link for link in issue.remote_links if global_id and link["globalId"] == global_id), None)
    if existing is not None:
        existing.update(fresh)
        link, status = existing, 200
    else:
        link, status = {"id": state._next_link_id, **fresh}, 201
        state._next_link_id += 1
        issue.remote_links.append(link)
    return web.json_response({"id": link["id"], "self": f"{_site_of(request)}{API}/issue/{issue.key}/remotelink/"
                                                        f"{link['id']}"}, status=status)


@_rest
async def _delete_remote_link_by_global_id(request: web.Request) -> web.Response:
    issue = _state(request).find(request.match_info["issue"])
    global_id = request.query.get("globalId")
    if not global_id:
        raise JiraApiError(400, "A globalId must be provided.")
    issue.remote_links.remove(_link_by_global_id(issue, global_id))
    return web.Response(status=204)


@_rest
async def _delete_remote_link(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    issue.remote_links.remove(_link_by_id(state, issue, request.match_info["link"]))
    return web.Response(status=204)


def _link_by_global_id(issue: JiraIssue, global_id: str) -> dict[str, Any]:
    link = next((link for link in issue.remote_links if link["globalId"] == global_id), None)
    if link is None:
        raise JiraApiError(404, f"No remote link with globalId '{global_id}' on issue {issue.key}.")
    return link


def _link_by_id(state: JiraState, issue: JiraIssue, link_id: str) -> dict[str, Any]:
    if not link_id.isdigit():
        raise JiraApiError(400, "The remote link id is invalid.")
    link = next((link for link in issue.remote_links if link["id"] == int(link_id)), None)
    if link is None:
        elsewhere = any(link["id"] == int(link_id) for i in state.issues.values() for link in i.remote_links)
        if elsewhere:  # "the remote issue link does not belong to the issue"
            raise JiraApiError(400, f"Remote link {link_id} does not belong to issue {issue.key}.")
        raise JiraApiError(404, f"No remote link with id {link_id}.")
    return link


@_rest
async def _get_property(request: web.Request) -> web.Response:
    issue = _state(request).find(request.match_info["issue"])
    key = request.match_info["key"]
    if key not in issue.properties:
        raise JiraApiError(404, f"The property with key '{key}' does not exist.")
    return web.json_response({"key": key, "value": issue.properties[key]})


@_rest
async def _set_property(request: web.Request) -> web.Response:
    issue = _state(request).find(request.match_info["issue"])
    key = request.match_info["key"]
    raw = await request.read()
    if len(key) > PROPERTY_KEY_MAX_CHARS:
        raise JiraApiError(400, f"The property key is longer than {PROPERTY_KEY_MAX_CHARS} characters.")
    if len(raw) > PROPERTY_MAX_BYTES:
        raise JiraApiError(400, f"The property value is longer than {PROPERTY_MAX_BYTES} bytes.")
    value = await _json_body(request)
    created = key not in issue.properties
    issue.properties[key] = value  # entity properties do not change the issue's `updated`
    return web.Response(status=201 if created else 200)


@_rest
async def _delete_property(request: web.Request) -> web.Response:
    issue = _state(request).find(request.match_info["issue"])
    if issue.properties.pop(request.match_info["key"], _AUTO) is _AUTO:
        raise JiraApiError(404, f"The property with key '{request.match_info['key']}' does not exist.")
    return web.Response(status=204)


@_rest
async def _get_comments(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    start = max(0, _int_arg(request.query.get("startAt"), "startAt", 0))
    limit = max(1, _int_arg(request.query.get("maxResults"), "maxResults", COMMENTS_DEFAULT_MAX_RESULTS))
    page = issue.comments[start : start + limit]
    site = _site_of(request)
    return web.json_response({"comments": [state.rest_comment(issue, c, site) for c in page], "maxResults": limit,
                              "startAt": start, "total": len(issue.comments)})


@_rest
async def _add_comment(request: web.Request) -> web.Response:
    state = _state(request)
    issue = state.find(request.match_info["issue"])
    body = await _json_body(request)
    if not isinstance(body, dict) or not _is_adf(body.get("body")):
        raise JiraApiError(400, errors={"comment": COMMENT_NOT_ADF})
    visibility = body.get("visibility")
    if visibility is not None and not (isinstance(visibility, dict) and visibility.get("type") in ("group", "role")):
        raise JiraApiError(400, errors={"visibility": "Visibility must name a group or a role."})
    site = _site_of(request)
    comment = state.add_comment(issue, body["body"], author=jira_user(API_USER_ID, API_USER_NAME, site=site),
                                visibility=visibility, site=site)
    state.deliver_later()
    return web.json_response(state.rest_comment(issue, comment, site), status=201)


# --- control endpoints -------------------------------------------------------------------------------

_CONTROL_ISSUE_KEYS = frozenset(
    {"summary", "issue_type", "priority", "status", "status_category", "labels", "assignee", "security",
     "fix_versions", "description", "custom_fields", "project_name", "actor"}
)

_CONTROL_TYPES = {"labels": list, "fix_versions": list, "project": str, "summary": str, "issue_type": str,
                  "priority": str, "status": str, "status_category": str, "security": str, "description": str,
                  "project_name": str}


def _control_values(state: JiraState, data: Any, site: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SandboxError("expected a JSON object")
    unknown = set(data) - _CONTROL_ISSUE_KEYS - {"project"}
    if unknown:
        raise SandboxError(f"unknown keys: {sorted(unknown)}")
    values = dict(data)
    for name, value in values.items():
        expected = _CONTROL_TYPES.get(name)
        if expected is list and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise SandboxError(f"{name!r} must be a list of strings")
        if expected is str and value is not None and not isinstance(value, str):
            raise SandboxError(f"{name!r} must be a string")
    for role in ("assignee", "actor"):
        person = values.get(role)
        if person is not None:
            if not isinstance(person, dict) or not isinstance(person.get("accountId"), str):
                raise SandboxError(f"{role!r} must be {{\"accountId\": …, \"displayName\": …}} or null")
            values[role] = jira_user(person["accountId"], person.get("displayName") or person["accountId"], site=site)
    custom = values.get("custom_fields")
    if custom is not None and (not isinstance(custom, dict) or set(custom) - set(state.custom_field_types)):
        raise SandboxError(f"custom_fields must be an object with keys among {sorted(state.custom_field_types)}")
    return values


async def _control(request: web.Request, change: Callable[[JiraState, dict[str, Any], str], JiraIssue],
                   status: int = 200) -> web.Response:
    state = _state(request)
    site = _site_of(request)
    try:
        data = await request.json() if request.can_read_body else {}
        values = _control_values(state, data, site)
        issue = change(state, values, site)
    except (ValueError, SandboxError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except JiraApiError as exc:
        return web.json_response({"error": "; ".join(exc.messages) or str(exc.errors)}, status=exc.status)
    sent = await state.deliver()
    return web.json_response(
        {"issue": state.rest_issue(issue, site, state.all_fields()),
         "webhooks": [{"delivery_id": s.delivery_id, "status": s.status, "error": s.error} for s in sent]},
        status=status,
    )


async def _control_create(request: web.Request) -> web.Response:
    def create(state: JiraState, values: dict[str, Any], site: str) -> JiraIssue:
        project, summary = values.pop("project", None), values.pop("summary", None)
        if not isinstance(project, str) or not project or not isinstance(summary, str) or not summary:
            raise SandboxError("'project' and 'summary' are required strings")
        return state.create_issue(project, summary, site=site, **values)

    return await _control(request, create, status=201)


async def _control_update(request: web.Request) -> web.Response:
    def update(state: JiraState, values: dict[str, Any], site: str) -> JiraIssue:
        return state.update_issue(request.match_info["issue"], site=site, **values)

    return await _control(request, update)


async def _control_delete(request: web.Request) -> web.Response:
    def delete(state: JiraState, values: dict[str, Any], site: str) -> JiraIssue:
        return state.delete_issue(request.match_info["issue"], actor=values.get("actor"), site=site)

    return await _control(request, delete)


_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "rate_limits": (bool,),
    "webhooks_enabled": (bool,),
    "retry_after_header": (bool,),
    "webhook_target": (str, type(None)),
    "webhook_secret": (str, type(None)),
    "search_lag_s": (int, float),
}


@web.middleware
async def _config_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serves ``/_sandbox/config`` for the Jira fake: the common switch plus Jira's own."""
    if request.path != CONTROL_PREFIX + "config":
        return await handler(request)
    state = _state(request)
    if request.method == "POST":
        try:
            data = await request.json()
        except ValueError:
            data = None
        bad = not isinstance(data, dict) or any(
            k not in _CONFIG_TYPES or not isinstance(v, _CONFIG_TYPES[k]) or (isinstance(v, bool) and bool not in
                                                                                _CONFIG_TYPES[k])
            for k, v in data.items()
        )
        if bad or (data.get("search_lag_s") or 0) < 0:
            types = {k: "/".join(t.__name__ for t in ts) for k, ts in _CONFIG_TYPES.items()}
            return web.json_response({"error": f"expected an object with some of {types}"}, status=400)
        for name, value in data.items():
            setattr(state, name, value)
    return web.json_response(state.config())


def create_app(state: JiraState | None = None) -> web.Application:
    state = state if state is not None else JiraState()
    app = sandbox_app(state)
    app.middlewares.append(_config_middleware)
    issue = API + "/issue/{issue}"
    routes: list[tuple[str, str, Handler]] = [
        ("GET", issue, _get_issue),
        ("PUT", issue, _edit_issue),
        ("GET", API + "/search/jql", _search_jql),
        ("POST", API + "/search/jql", _search_jql),
        ("POST", API + "/search/approximate-count", _approximate_count),
        ("GET", issue + "/remotelink", _get_remote_links),
        ("POST", issue + "/remotelink", _upsert_remote_link),
        ("DELETE", issue + "/remotelink", _delete_remote_link_by_global_id),
        ("GET", issue + "/remotelink/{link}", _get_remote_link),
        ("DELETE", issue + "/remotelink/{link}", _delete_remote_link),
        ("GET", issue + "/properties/{key}", _get_property),
        ("PUT", issue + "/properties/{key}", _set_property),
        ("DELETE", issue + "/properties/{key}", _delete_property),
        ("GET", issue + "/comment", _get_comments),
        ("POST", issue + "/comment", _add_comment),
        ("POST", CONTROL_PREFIX + "issues", _control_create),
        ("POST", CONTROL_PREFIX + "issues/{issue}", _control_update),
        ("DELETE", CONTROL_PREFIX + "issues/{issue}", _control_delete),
    ]
    for version in ("2", "3"):  # removed in 2025 (CHANGE-2046): 410 Gone, whatever the credentials
        routes += [("GET", f"/rest/api/{version}/search", _search_removed),
                   ("POST", f"/rest/api/{version}/search", _search_removed)]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


__all__ = [
    "JiraApiError",
    "JiraIssue",
    "JiraState",
    "JiraWebhookSender",
    "SentWebhook",
    "comment_created",
    "comment_deleted",
    "comment_event",
    "comment_updated",
    "create_app",
    "encode",
    "issue_created",
    "issue_deleted",
    "issue_json",
    "issue_updated",
    "jira_user",
    "sign",
]
