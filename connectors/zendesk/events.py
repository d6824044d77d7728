"""Which Zendesk webhook bodies the hub handles, and the partition key (ticket id) of each.

Two styles reach ``POST /webhooks/zendesk``:

**Event-style** — a webhook subscribed to Zendesk ticket events
(https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/). Zendesk fixes
the body: ``{"type": "zen:event-type:ticket.<name>", "id": <event uuid>, "time", "subject":
"zen:ticket:<id>", "detail": {<ticket: ids as strings, status/priority upper case>}, "event":
{<what changed>}, "account_id", "zendesk_event_version"}``.

**Trigger-style** — a webhook connected to a trigger, whose JSON body the admin writes with
placeholders (https://support.zendesk.com/hc/en-us/articles/4408886858138). Placeholders render
as strings (``{{ticket.status}}`` is the display name, e.g. ``Open`` or ``On-hold``;
``{{ticket.tags}}`` is space separated; ``{{ticket.updated_at}}`` has day resolution, hence
``updated_at_with_timestamp``). Switchboard accepts exactly one shape, :data:`RECOMMENDED_TRIGGER_BODY`:
create one trigger per ``event`` value —

* ``ticket_created`` — conditions: *Ticket is Created*;
* ``ticket_updated`` — conditions: *Ticket is Updated*;
* ``comment_added`` — conditions: *Ticket is Updated* and *Comment is Present (public or private)*;

each with the action *Notify by > Active webhook* and the body from
:func:`recommended_trigger_body` (the Jira-key custom field id filled in). We rely on Zendesk
JSON-escaping placeholder values inside JSON webhook bodies (comment text with quotes or new
lines); a body that is not JSON is refused by the receiver with 400.

Unknown types, other versions of our body and bodies of neither style are ``supported=False``
(answered 2xx and ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from connectors.errors import MappingError

EVENT_PREFIX: Final = "zen:event-type:"
#: ``event_type`` of the envelopes the poller emits (one ticket of the incremental export each).
EXPORT_EVENT_TYPE: Final = "zendesk:incremental_export"
#: ``event_type`` of trigger-style bodies: ``trigger:<event>``.
TRIGGER_PREFIX: Final = "trigger:"
TRIGGER_BODY_VERSION: Final = 1

#: Supported event-style types and the canonical ``kind`` each becomes.
EVENT_KINDS: Final[dict[str, str]] = {
    f"{EVENT_PREFIX}ticket.created": "ticket_created",
    f"{EVENT_PREFIX}ticket.status_changed": "ticket_status_changed",
    f"{EVENT_PREFIX}ticket.comment_added": "comment_added",
    f"{EVENT_PREFIX}ticket.tags_changed": "tags_changed",
    f"{EVENT_PREFIX}ticket.merged": "ticket_merged",
    f"{EVENT_PREFIX}ticket.soft_deleted": "ticket_deleted",
    f"{EVENT_PREFIX}ticket.permanently_deleted": "ticket_deleted",
    f"{EVENT_PREFIX}ticket.custom_field_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.subject_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.priority_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.type_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.organization_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.requester_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.agent_assignment_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.group_assignment_changed": "ticket_updated",
    f"{EVENT_PREFIX}ticket.undeleted": "ticket_updated",
}
#: The ``event`` values of the recommended trigger body (they are canonical kinds already).
TRIGGER_EVENTS: Final = frozenset({"ticket_created", "ticket_updated", "comment_added"})

_JIRA_FIELD = "<JIRA_KEY_FIELD_ID>"
#: The one trigger body Switchboard understands. ``<JIRA_KEY_FIELD_ID>`` is the id of the ticket
#: field holding the linked Jira key; ``<EVENT>`` one of :data:`TRIGGER_EVENTS`.
RECOMMENDED_TRIGGER_BODY: Final = """{
  "switchboard": 1,
  "event": "<EVENT>",
  "actor_id": "{{current_user.id}}",
  "ticket": {
    "id": "{{ticket.id}}",
    "subject": "{{ticket.title}}",
    "status": "{{ticket.status}}",
    "requester_id": "{{ticket.requester.id}}",
    "organization": {"id": "{{ticket.organization.id}}", "name": "{{ticket.organization.name}}"},
    "tags": "{{ticket.tags}}",
    "jira_key": "{{ticket.ticket_field_<JIRA_KEY_FIELD_ID>}}",
    "url": "{{ticket.link}}",
    "via": "{{ticket.via}}",
    "updated_at": "{{ticket.updated_at_with_timestamp}}",
    "latest_comment": {
      "id": "{{ticket.latest_comment.id}}",
      "body": "{{ticket.latest_comment.value}}",
      "public": "{{ticket.latest_comment.is_public}}",
      "author_id": "{{ticket.latest_comment.author.id}}"
    }
  }
}
"""
#: Keys of ``ticket`` in the recommended body; a body carrying all of them is a full ticket.
TRIGGER_TICKET_KEYS: Final = frozenset(
    {"id", "subject", "status", "requester_id", "organization", "tags", "jira_key", "url", "updated_at"}
)

_TICKET_SUBJECT = re.compile(r"zen:ticket:(\d+)")


def recommended_trigger_body(event: str, jira_key_field_id: str | int) -> str:
    """The trigger's JSON body for ``event`` (one of :data:`TRIGGER_EVENTS`), ready to paste."""
    if event not in TRIGGER_EVENTS:
        raise ValueError(f"event must be one of {sorted(TRIGGER_EVENTS)}")
    field = str(jira_key_field_id)
    if not field.isdigit():
        raise ValueError("jira_key_field_id must be the numeric id of a ticket field")
    return RECOMMENDED_TRIGGER_BODY.replace("<EVENT>", event).replace(_JIRA_FIELD, field)


@dataclass(frozen=True, slots=True)
class Classified:
    event_type: str | None
    #: the ticket id as a string: the Kafka key
    ticket_id: str | None
    supported: bool
    style: Literal["event", "trigger"]


def classify(payload: dict[str, Any]) -> Classified:
    """Classify a parsed webhook body.

    A body with a string ``type`` is event-style; anything else is trigger-style (the admin wrote
    it). A supported body whose ticket id is missing or malformed raises MappingError naming the
    path; unsupported bodies never raise.
    """
    if not isinstance(payload, dict):
        raise MappingError("webhook body is not a JSON object", path="$")
    event_type = payload.get("type")
    if isinstance(event_type, str) and event_type:
        supported = event_type in EVENT_KINDS
        try:
            ticket_id = _event_ticket_id(payload)
        except MappingError:
            if supported:
                raise
            ticket_id = None
        return Classified(event_type, ticket_id, supported, "event")

    event = payload.get("event", "ticket_updated")
    version = payload.get("switchboard")
    if isinstance(version, bool) or version not in (TRIGGER_BODY_VERSION, str(TRIGGER_BODY_VERSION)):
        return Classified(None, None, False, "trigger")
    if not isinstance(event, str):
        return Classified(None, None, False, "trigger")
    event_type = TRIGGER_PREFIX + event
    if event not in TRIGGER_EVENTS:
        return Classified(event_type, None, False, "trigger")
    ticket = payload.get("ticket")
    if not isinstance(ticket, dict):
        raise MappingError("trigger body without a ticket object", path="ticket")
    return Classified(event_type, ticket_id_of(ticket.get("id"), "ticket.id", required=True), True, "trigger")


def _event_ticket_id(payload: dict[str, Any]) -> str:
    detail = payload.get("detail")
    if detail is not None and not isinstance(detail, dict):
        raise MappingError(f"expected an object, got {type(detail).__name__}", path="detail")
    ticket_id = ticket_id_of((detail or {}).get("id"), "detail.id", required=False)
    if ticket_id is not None:
        return ticket_id
    subject = payload.get("subject")
    match = _TICKET_SUBJECT.fullmatch(subject) if isinstance(subject, str) else None
    if match is None:
        raise MappingError("no ticket id in detail.id or subject", path="detail.id")
    return match.group(1)


def ticket_id_of(value: Any, path: str, *, required: bool) -> str | None:
    """A Zendesk ticket id (integer in REST, string in webhooks) as a string of digits."""
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return str(int(value))
    raise MappingError(f"expected a positive ticket id, got {value!r}", path=path)
