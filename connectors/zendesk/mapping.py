"""Zendesk envelope → canonical support event (``schemas/support_event.v1.json``).

Payload shapes: event-style webhooks
https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/ , trigger-style
bodies as documented in :mod:`connectors.zendesk.events`, and tickets of the incremental export
https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/ .

Pure: everything comes from the envelope and the two keyword arguments. Every vendor field is
optional; a field of the wrong type raises MappingError whose ``path`` is relative to the payload
(``detail.tags``); envelope fields are named ``envelope.<field>``. Ids are always strings and
statuses always lower case (``hold`` for the UI's "On-hold"); a status outside
new/open/pending/hold/solved/closed (``deleted``, ``archived``, ``scrubbed``) is null.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from connectors.mapping import obj as _obj, open_envelope, text as _str
from connectors.errors import MappingError, UnsupportedEvent
from connectors.zendesk.events import (
    EVENT_KINDS,
    EXPORT_EVENT_TYPE,
    TRIGGER_PREFIX,
    TRIGGER_TICKET_KEYS,
    classify,
    ticket_id_of,
)
from connectors.zendesk.signature import parse_timestamp_ms

SCHEMA = "switchboard.support_event/1"
SOURCE = "zendesk"
STATUSES = frozenset({"new", "open", "pending", "hold", "solved", "closed"})
# Display names rendered by {{ticket.status}} that differ from the API value.
_STATUS_ALIASES = {"on-hold": "hold", "on hold": "hold"}


def to_support_event(
    envelope: dict[str, Any], *, hub_user_id: str | None = None, jira_key_field_id: str | None = None
) -> dict[str, Any]:
    """Map one ``inbound.zendesk`` envelope to a ``support_event/1`` record.

    ``hub_user_id`` is the Zendesk user the hub acts as: changes it made get ``via_hub=true``
    (echo-loop guard). ``jira_key_field_id`` is the ticket field holding the linked Jira key.
    Raises UnsupportedEvent for bodies ``events.classify`` does not support and MappingError for
    malformed input. The record always carries every key of the schema (unknown → null).
    """
    payload, received_at_ms = open_envelope(envelope, SOURCE)
    delivery_id = _str(envelope.get("delivery_id"), "envelope.delivery_id")
    event_type = _str(envelope.get("event_type"), "envelope.event_type")
    field_id = str(jira_key_field_id) if jira_key_field_id is not None else None
    hub = str(hub_user_id) if hub_user_id is not None else None

    if event_type == EXPORT_EVENT_TYPE:
        record = _snapshot(payload, field_id)
    else:
        classified = classify(payload)
        if not classified.supported or classified.ticket_id is None or classified.event_type is None:
            raise UnsupportedEvent(f"zendesk {classified.style} body {classified.event_type!r} is not handled")
        if classified.style == "event":
            record = _event(payload, classified.event_type, classified.ticket_id, field_id)
        else:
            record = _trigger(payload, classified.event_type, classified.ticket_id)
        if record["event_id"] is None:
            record["event_id"] = delivery_id

    ticket, comment = record["ticket"], record["comment"]
    if record["event_id"] is None:
        stable = [event_type, ticket["id"], record["occurred_at_ms"], ticket["updated_at_ms"],
                  comment["id"] if comment else None, record["actor_id"], record["kind"]]
        record["event_id"] = hashlib.sha256(json.dumps(stable, separators=(",", ":")).encode()).hexdigest()
    if record["occurred_at_ms"] is None:
        record["occurred_at_ms"] = ticket["updated_at_ms"] if ticket["updated_at_ms"] is not None else received_at_ms
    actor = record["actor_id"]
    return {
        "schema": SCHEMA,
        "event_id": record["event_id"],
        "source": SOURCE,
        "kind": record["kind"],
        "occurred_at_ms": record["occurred_at_ms"],
        "received_at_ms": received_at_ms,
        "ticket": ticket,
        "comment": comment,
        "actor_id": actor,
        "via_hub": hub is not None and actor == hub,
    }


# --- event-style webhooks ------------------------------------------------------------------------


def _event(payload: dict[str, Any], event_type: str, ticket_id: str, field_id: str | None) -> dict[str, Any]:
    detail = _obj(payload.get("detail"), "detail") or {}
    event = _obj(payload.get("event"), "event") or {}
    kind = EVENT_KINDS[event_type]
    ticket = _ticket(
        ticket_id,
        subject=_str(detail.get("subject"), "detail.subject"),
        status=_status(detail.get("status"), "detail.status"),
        organization_id=_id(detail.get("organization_id"), "detail.organization_id"),
        organization_name=None,
        requester_id=_id(detail.get("requester_id"), "detail.requester_id"),
        tags=_tags(detail.get("tags"), "detail.tags"),
        updated_at_ms=_time(detail.get("updated_at"), "detail.updated_at"),
        # the detail has neither custom fields nor the organization's name: never a full ticket
        partial=True,
    )
    if kind == "ticket_status_changed":
        ticket["status"] = _status(event.get("current"), "event.current") or ticket["status"]
    elif kind == "ticket_merged":
        ticket["merged_into"] = _id(event.get("target_ticket_id"), "event.target_ticket_id")
    elif event_type.endswith(".custom_field_changed") and field_id is not None:
        field = _obj(event.get("custom_field"), "event.custom_field") or {}
        if _id(field.get("id"), "event.custom_field.id") == field_id:
            ticket["jira_key_field"] = _field_value(event.get("current"), "event.current")

    comment = None
    actor_id = _id(detail.get("actor_id"), "detail.actor_id")
    if kind == "comment_added":
        raw = _obj(event.get("comment"), "event.comment")
        if raw is None:
            raise MappingError("comment_added without a comment", path="event.comment")
        author = _obj(raw.get("author"), "event.comment.author") or {}
        comment = {
            "id": _id(raw.get("id"), "event.comment.id"),
            "body": _str(raw.get("body"), "event.comment.body") or "",
            "public": _bool(raw.get("is_public"), "event.comment.is_public", default=True),
            "author_id": _id(author.get("id"), "event.comment.author.id"),
        }
        actor_id = actor_id or comment["author_id"]
    return {
        "event_id": _str(payload.get("id"), "id"),
        "kind": kind,
        "occurred_at_ms": _time(payload.get("time"), "time"),
        "ticket": ticket,
        "comment": comment,
        "actor_id": actor_id,
    }


# --- trigger-style bodies --------------------------------------------------------------------------


def _trigger(payload: dict[str, Any], event_type: str, ticket_id: str) -> dict[str, Any]:
    raw = payload["ticket"]
    kind = event_type.removeprefix(TRIGGER_PREFIX)
    organization = _obj(raw.get("organization"), "ticket.organization") or {}
    updated_at_ms = _time(raw.get("updated_at"), "ticket.updated_at")
    ticket = _ticket(
        ticket_id,
        subject=_str(raw.get("subject"), "ticket.subject"),
        status=_status(raw.get("status"), "ticket.status"),
        organization_id=_id(organization.get("id"), "ticket.organization.id"),
        organization_name=_str(organization.get("name"), "ticket.organization.name"),
        requester_id=_id(raw.get("requester_id"), "ticket.requester_id"),
        tags=_tags(raw.get("tags"), "ticket.tags"),
        jira_key_field=_str(raw.get("jira_key"), "ticket.jira_key"),
        url=_url(_str(raw.get("url"), "ticket.url")),
        updated_at_ms=updated_at_ms,
        partial=not TRIGGER_TICKET_KEYS <= set(raw),
    )
    comment = None
    if kind == "comment_added":
        latest = _obj(raw.get("latest_comment"), "ticket.latest_comment")
        if latest is None:
            raise MappingError("comment_added without ticket.latest_comment", path="ticket.latest_comment")
        comment = {
            "id": _id(latest.get("id"), "ticket.latest_comment.id"),
            "body": _str(latest.get("body"), "ticket.latest_comment.body") or "",
            "public": _bool(latest.get("public"), "ticket.latest_comment.public", default=True),
            "author_id": _id(latest.get("author_id"), "ticket.latest_comment.author_id"),
        }
    return {
        "event_id": None,
        "kind": kind,
        "occurred_at_ms": updated_at_ms,
        "ticket": ticket,
        "comment": comment,
        "actor_id": _id(payload.get("actor_id"), "actor_id"),
    }


# --- incremental export ----------------------------------------------------------------------------


def _snapshot(raw: dict[str, Any], field_id: str | None) -> dict[str, Any]:
    ticket_id = ticket_id_of(raw.get("id"), "id", required=True)
    assert ticket_id is not None
    raw_status = _str(raw.get("status"), "status")
    tags = _tags(raw.get("tags"), "tags")
    ticket = _ticket(
        ticket_id,
        subject=_str(raw.get("subject"), "subject"),
        status=_status(raw_status, "status"),
        organization_id=_id(raw.get("organization_id"), "organization_id"),
        organization_name=None,  # the export carries the id only
        requester_id=_id(raw.get("requester_id"), "requester_id"),
        tags=tags,
        jira_key_field=_custom_field(raw.get("custom_fields"), field_id),
        url=_agent_url(_str(raw.get("url"), "url"), ticket_id),
        updated_at_ms=_time(raw.get("updated_at"), "updated_at"),
        partial=False,
    )
    # Export items are whole tickets; a deleted one still appears (status "deleted").
    kind = "ticket_deleted" if raw_status == "deleted" else "snapshot"
    return {"event_id": None, "kind": kind, "occurred_at_ms": None, "ticket": ticket, "comment": None,
            "actor_id": None}


def _custom_field(value: Any, field_id: str | None) -> str | None:
    if value is None or field_id is None:
        return None
    if not isinstance(value, list):
        raise MappingError(f"expected a list, got {type(value).__name__}", path="custom_fields")
    for index, item in enumerate(value):
        field = _obj(item, f"custom_fields[{index}]") or {}
        if _id(field.get("id"), f"custom_fields[{index}].id") == field_id:
            return _field_value(field.get("value"), f"custom_fields[{index}].value")
    return None


# --- shared helpers ------------------------------------------------------------------------------------


def _ticket(ticket_id: str, **fields: Any) -> dict[str, Any]:
    ticket = {
        "id": ticket_id, "subject": None, "status": None, "organization_id": None, "organization_name": None,
        "requester_id": None, "tags": [], "jira_key_field": None, "url": None, "updated_at_ms": None,
        "merged_into": None, "partial": True,
    }  # fmt: skip
    ticket.update(fields)
    return ticket


def _status(value: Any, path: str) -> str | None:
    text = _str(value, path)
    if text is None:
        return None
    status = text.strip().lower()
    status = _STATUS_ALIASES.get(status, status)
    return status if status in STATUSES else None


def _tags(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # {{ticket.tags}} renders space separated
        return value.split()
    if not isinstance(value, list):
        raise MappingError(f"expected a list or a string, got {type(value).__name__}", path=path)
    tags = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise MappingError(f"expected a string, got {type(item).__name__}", path=f"{path}[{index}]")
        if item:
            tags.append(item)
    return tags


def _field_value(value: Any, path: str) -> str | None:
    if isinstance(value, dict):  # custom_field_changed wraps values as {"value": …}
        value = value.get("value")
        path = f"{path}.value"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return _str(value, path)


def _url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.hostname else None


def _agent_url(api_url: str | None, ticket_id: str) -> str | None:
    """``https://acme.zendesk.com/api/v2/tickets/1.json`` → ``https://acme.zendesk.com/agent/tickets/1``."""
    if api_url is None or "/api/v2/" not in api_url:
        return None
    base = api_url.split("/api/v2/", 1)[0]
    return _url(f"{base}/agent/tickets/{ticket_id}")


def _time(value: Any, path: str) -> int | None:
    text = _str(value, path)
    if text is None:
        return None
    millis = parse_timestamp_ms(text)
    if millis is None:
        raise MappingError(f"expected an ISO-8601 time, got {text!r}", path=path)
    return millis


def _id(value: Any, path: str) -> str | None:
    """Zendesk ids: integers in REST, strings in webhooks. "", "0" (webhooks' "none") and negative
    ids (-1 is the system user) are null."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    elif isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value > 0 else None
    raise MappingError(f"expected a numeric id, got {value!r}", path=path)


def _bool(value: Any, path: str, *, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise MappingError(f"expected a boolean, got {value!r}", path=path)



