"""Jira webhook envelope → canonical tracker event (``schemas/tracker_event.v1.json``), and ADF text.

Payload shapes: https://developer.atlassian.com/cloud/jira/platform/webhooks/
Atlassian Document Format: https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/

Pure functions: everything comes from the envelope. Every vendor field is optional; a field of the
wrong type raises MappingError whose ``path`` is relative to the webhook body
(``issue.fields.status``); envelope fields are named ``envelope.<field>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

from connectors.mapping import obj as _obj, open_envelope, text as _str
from connectors.errors import MappingError, UnsupportedEvent
from connectors.jira.events import classify

SCHEMA = "switchboard.tracker_event/1"
SOURCE = "jira"
STATUS_CATEGORIES = frozenset({"new", "indeterminate", "done"})


def to_tracker_event(envelope: dict[str, Any]) -> dict[str, Any]:
    """Map one ``inbound.jira`` envelope to a ``tracker_event/1`` record.

    Raises UnsupportedEvent for event types outside ``events.SUPPORTED_EVENTS`` and MappingError
    for malformed input. The record always carries every key of the schema (unknown → null).
    """
    payload, received_at_ms = open_envelope(envelope, SOURCE)
    delivery_id = _str(envelope.get("delivery_id"), "envelope.delivery_id")

    classified = classify(payload)
    event_type, issue_id = classified.event_type, classified.issue_id
    if not classified.supported or event_type is None or issue_id is None:
        raise UnsupportedEvent(f"jira event {event_type!r} is not handled")
    kind = event_type.removeprefix("jira:")

    raw_issue = payload["issue"]
    fields = _obj(raw_issue.get("fields"), "issue.fields")
    changelog = _obj(payload.get("changelog"), "changelog")
    raw_comment = _obj(payload.get("comment"), "comment")
    changelog_id = _str(changelog.get("id"), "changelog.id") if changelog else None
    comment = _comment(raw_comment) if raw_comment is not None else None
    timestamp = _millis(payload.get("timestamp"), "timestamp")

    site = _site(_str(raw_issue.get("self"), "issue.self"))
    if site is None and raw_comment:
        site = _site(_str(raw_comment.get("self"), "comment.self"))
    issue = _issue(issue_id, raw_issue, fields or {}, site)
    # Comment events carry a cut-down issue (id, key, self, a handful of fields).
    issue["partial"] = kind.startswith("comment_") or fields is None

    return {
        "schema": SCHEMA,
        "event_id": delivery_id or _derived_event_id(event_type, issue_id, timestamp, changelog_id, comment),
        "source": SOURCE,
        "site": site,
        "kind": kind,
        "occurred_at_ms": timestamp if timestamp is not None else received_at_ms,
        "received_at_ms": received_at_ms,
        "issue": issue,
        "changes": _changes(changelog),
        "changelog_id": changelog_id,
        "comment": comment,
        "actor": _actor(kind, payload, raw_comment),
    }


def _issue(issue_id: str, raw: dict[str, Any], fields: dict[str, Any], site: str | None) -> dict[str, Any]:
    key = _str(raw.get("key"), "issue.key")
    project = _obj(fields.get("project"), "issue.fields.project") or {}
    project_key = _str(project.get("key"), "issue.fields.project.key")
    if project_key is None and key and "-" in key:
        project_key = key.rsplit("-", 1)[0]  # issue keys are always <project key>-<number>
    status = _obj(fields.get("status"), "issue.fields.status") or {}
    category = _obj(status.get("statusCategory"), "issue.fields.status.statusCategory") or {}
    status_category = _str(category.get("key"), "issue.fields.status.statusCategory.key")
    return {
        "id": issue_id,
        "key": key,
        "project_key": project_key,
        "project_id": _str(project.get("id"), "issue.fields.project.id"),
        "issue_type": _name(fields, "issuetype"),
        "priority": _name(fields, "priority"),
        "status": _str(status.get("name"), "issue.fields.status.name"),
        # Jira also has an "undefined" ("No Category") category; it means nothing downstream.
        "status_category": status_category if status_category in STATUS_CATEGORIES else None,
        "summary": _str(fields.get("summary"), "issue.fields.summary"),
        "labels": _str_list(fields.get("labels"), "issue.fields.labels"),
        "assignee": _user(fields.get("assignee"), "issue.fields.assignee"),
        "reporter": _user(fields.get("reporter"), "issue.fields.reporter"),
        "resolution": _name(fields, "resolution"),
        "security_level": _name(fields, "security"),
        "fix_versions": _names(fields.get("fixVersions"), "issue.fields.fixVersions"),
        "url": f"{site}/browse/{key}" if site and key else None,
        "partial": False,
    }


def _changes(changelog: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not changelog:
        return []
    items = changelog.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise MappingError("expected a list", path="changelog.items")
    changes = []
    for index, raw in enumerate(items):
        path = f"changelog.items[{index}]"
        item = _obj(raw, path)
        if item is None:
            raise MappingError("expected an object", path=path)
        # `field` is a display name ("Status" on create, "status" on update, custom field names
        # that admins rename); `fieldId` is stable but missing on some items (e.g. "Workflow").
        field = _str(item.get("fieldId"), f"{path}.fieldId") or _str(item.get("field"), f"{path}.field")
        if not field:
            raise MappingError("change without a field", path=f"{path}.field")
        # For user fields, Cloud puts legacy usernames (or null) in from/to and the account ids in
        # tmpFromAccountId/tmpToAccountId.
        from_id = _str(item.get("tmpFromAccountId"), f"{path}.tmpFromAccountId") or _str(
            item.get("from"), f"{path}.from"
        )
        to_id = _str(item.get("tmpToAccountId"), f"{path}.tmpToAccountId") or _str(item.get("to"), f"{path}.to")
        changes.append(
            {
                "field": field,
                "from": _str(item.get("fromString"), f"{path}.fromString"),
                "to": _str(item.get("toString"), f"{path}.toString"),
                "from_id": from_id,
                "to_id": to_id,
            }
        )
    return changes


def _comment(raw: dict[str, Any]) -> dict[str, Any]:
    comment_id = _str(raw.get("id"), "comment.id")
    if not comment_id:
        raise MappingError("comment without an id", path="comment.id")
    body = raw.get("body")
    if isinstance(body, dict):  # ADF, in case a REST v3 shaped body ever arrives
        body = _adf_text(body, "comment.body").strip("\n")
    return {
        "id": comment_id,
        "body": _str(body, "comment.body"),
        "author": _user(raw.get("author"), "comment.author"),
    }


def _actor(kind: str, payload: dict[str, Any], comment: dict[str, Any] | None) -> dict[str, Any] | None:
    actor = _user(payload.get("user"), "user")
    if actor is not None or comment is None:
        return actor
    # Comment events have no top-level `user`. The deleter of a comment is not in the payload.
    if kind == "comment_created":
        return _user(comment.get("author"), "comment.author")
    if kind == "comment_updated":
        return _user(comment.get("updateAuthor"), "comment.updateAuthor")
    return None


def _user(value: Any, path: str) -> dict[str, Any] | None:
    user = _obj(value, path)
    if not user:
        return None
    # Cloud identifies users by accountId only; Server/Data Center payloads have key/name instead.
    account_id = (
        _str(user.get("accountId"), f"{path}.accountId")
        or _str(user.get("key"), f"{path}.key")
        or _str(user.get("name"), f"{path}.name")
    )
    display_name = _str(user.get("displayName"), f"{path}.displayName")
    if account_id is None and display_name is None:
        return None
    return {"account_id": account_id, "display_name": display_name}


def _derived_event_id(
    event_type: str, issue_id: str, timestamp: int | None, changelog_id: str | None, comment: dict[str, Any] | None
) -> str:
    stable = [event_type, issue_id, timestamp, changelog_id, comment["id"] if comment else None]
    return hashlib.sha256(json.dumps(stable, separators=(",", ":")).encode()).hexdigest()


def _site(self_url: str | None) -> str | None:
    if not self_url:
        return None
    parts = urlsplit(self_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    site = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    # Server/Data Center may run under a context path (https://host/jira/rest/api/2/...).
    prefix = parts.path.partition("/rest/")[0] if "/rest/" in parts.path else ""
    return site + prefix.rstrip("/")


def _millis(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MappingError(f"expected epoch milliseconds, got {value!r}", path=path)
    return value




def _name(fields: dict[str, Any], field: str) -> str | None:
    obj = _obj(fields.get(field), f"issue.fields.{field}")
    return _str(obj.get("name"), f"issue.fields.{field}.name") if obj else None


def _str_list(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingError(f"expected a list, got {type(value).__name__}", path=path)
    out = []
    for index, item in enumerate(value):
        text = _str(item, f"{path}[{index}]")
        if text:
            out.append(text)
    return out


def _names(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingError(f"expected a list, got {type(value).__name__}", path=path)
    out = []
    for index, item in enumerate(value):
        obj = _obj(item, f"{path}[{index}]")
        name = _str(obj.get("name"), f"{path}[{index}].name") if obj else None
        if name:
            out.append(name)
    return out


# --- Atlassian Document Format ------------------------------------------------------------------
# Webhooks send descriptions and comment bodies as wiki-markup strings (REST v2 shape); REST v3
# reads and writes them as ADF documents.


def adf_from_text(text: str) -> dict[str, Any]:
    """A minimal ADF document: paragraphs split on blank lines, hard breaks on single newlines.

    The text is kept literally (no markup is interpreted). Whitespace-only lines count as blank.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)

    content = []
    for paragraph in paragraphs:
        inline: list[dict[str, Any]] = []
        for index, line in enumerate(paragraph):
            if index:
                inline.append({"type": "hardBreak"})
            inline.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content}


def text_from_adf(doc: Any) -> str:
    """Plain text of an ADF document: blocks separated by a blank line, hard breaks as newlines.

    Marks are dropped; mentions, emoji, statuses and cards become their text or URL. A string is
    returned unchanged (webhook bodies already are text); None is "".
    """
    if doc is None:
        return ""
    if isinstance(doc, str):
        return doc
    return _adf_text(doc, "doc").strip("\n")


_INLINE_ATTR_TEXT = {"mention": "text", "emoji": "text", "inlineCard": "url", "status": "text"}
# Containers whose children are blocks (separated by a blank line) or lines (one per child);
# every other node (paragraph, heading, codeBlock, taskItem, …) concatenates its inline content.
_BLOCK_CONTAINERS = frozenset(
    {"doc", "blockquote", "panel", "expand", "nestedExpand", "table", "layoutSection", "layoutColumn",
     "bodiedExtension"}
)  # fmt: skip
_LINE_CONTAINERS = frozenset(
    {"bulletList", "orderedList", "taskList", "decisionList", "listItem", "tableRow", "tableCell", "tableHeader"}
)


def _adf_text(node: Any, path: str) -> str:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise MappingError("not an ADF node", path=path)
    kind = node["type"]
    if kind == "text":
        text = node.get("text")
        if not isinstance(text, str):
            raise MappingError("ADF text node without text", path=f"{path}.text")
        return text
    if kind == "hardBreak":
        return "\n"
    if kind in _INLINE_ATTR_TEXT:
        attrs = node.get("attrs") if isinstance(node.get("attrs"), dict) else {}
        value = attrs.get(_INLINE_ATTR_TEXT[kind]) or attrs.get("shortName") or ""
        return value if isinstance(value, str) else ""
    children = node.get("content") or []
    if not isinstance(children, list):
        raise MappingError("ADF content is not a list", path=f"{path}.content")
    parts = [_adf_text(child, f"{path}.content[{index}]") for index, child in enumerate(children)]
    if kind in _BLOCK_CONTAINERS:
        return "\n\n".join(part for part in parts if part)
    if kind in _LINE_CONTAINERS:
        return "\n".join(part for part in parts if part)
    return "".join(parts)


_ZENDESK_TICKET_URL = re.compile(r"https?://[A-Za-z0-9.-]+/agent/tickets/([0-9]{1,12})\b")
_TICKET_ID = re.compile(r"(?<![0-9A-Za-z])#?([0-9]{1,12})(?![0-9A-Za-z])")


def ticket_refs(payload: dict[str, Any], *, field_id: str | None) -> list[str]:
    """Support ticket ids a Jira issue names: Zendesk ticket URLs in its description or in any
    string field, and the ids in the configured ``field_id`` (text like ``"123, #456"``). Pure."""
    issue = payload.get("issue") if isinstance(payload, dict) else None
    fields = issue.get("fields") if isinstance(issue, dict) else None
    if not isinstance(fields, dict):
        return []
    found: list[str] = []

    def add(ticket_id: str) -> None:
        if ticket_id not in found:
            found.append(ticket_id)

    for name, value in fields.items():
        text = value if isinstance(value, str) else text_from_adf(value) if name == "description" and isinstance(value, dict) else None
        if text:
            for m in _ZENDESK_TICKET_URL.finditer(text):
                add(m.group(1))
    if field_id:
        value = fields.get(field_id)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            add(str(int(value)))
        elif isinstance(value, str):
            for m in _TICKET_ID.finditer(value):
                add(m.group(1))
    return found
