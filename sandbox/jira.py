"""Jira Cloud webhook sender and payload builders: https://developer.atlassian.com/cloud/jira/platform/webhooks/

:class:`JiraWebhookSender` delivers like Jira Cloud: the raw JSON bytes, ``X-Hub-Signature:
sha256=<hex HMAC-SHA256 of the body keyed with the webhook secret>`` (section "Secure admin
webhooks"), ``X-Atlassian-Webhook-Identifier`` (the same on every retry of one delivery),
``X-Atlassian-Webhook-Retry`` (retries only), ``X-Atlassian-Webhook-Flow`` and Atlassian's User-Agent.

The builders return what Jira Cloud webhooks carry, shaped like the captured webhooks in the shared
contracts folder: the REST v2 representation (``self`` links to ``/rest/api/2/…``, ``description``
as a wiki-markup string), ``timestamp`` in epoch milliseconds, users identified by ``accountId``.
Comment events carry a cut-down ``issue`` (id, key, self and six fields). Values are made up.

:func:`create_app` serves only the ``/_sandbox/*`` control endpoints and records anything else
(answered 404): the Jira REST fake comes later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web

from .common import SandboxState, sandbox_app

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


class JiraState(SandboxState):
    """Nothing but the call log and the control switches, until the Jira REST fake exists."""

    vendor = "jira"


def create_app(state: JiraState | None = None) -> web.Application:
    return sandbox_app(state if state is not None else JiraState())


__all__ = [
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
