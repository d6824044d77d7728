"""Which Jira webhook events the hub handles, and the partition key of each.

Event names and payload shapes: https://developer.atlassian.com/cloud/jira/platform/webhooks/
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from connectors.errors import MappingError

ISSUE_CREATED: Final = "jira:issue_created"
ISSUE_UPDATED: Final = "jira:issue_updated"
ISSUE_DELETED: Final = "jira:issue_deleted"
COMMENT_CREATED: Final = "comment_created"
COMMENT_UPDATED: Final = "comment_updated"
COMMENT_DELETED: Final = "comment_deleted"

SUPPORTED_EVENTS: Final[tuple[str, ...]] = (
    ISSUE_CREATED,
    ISSUE_UPDATED,
    ISSUE_DELETED,
    COMMENT_CREATED,
    COMMENT_UPDATED,
    COMMENT_DELETED,
)


@dataclass(frozen=True, slots=True)
class Classified:
    event_type: str | None
    #: the issue's stable numeric id as a string: the Kafka key. Keys change on a project move.
    issue_id: str | None
    supported: bool


def classify(payload: dict[str, Any]) -> Classified:
    """Classify a parsed webhook body.

    The type comes from ``webhookEvent`` only: ``issue_event_type_name`` is absent from older
    Server payloads and is a sub-type (``issue_assigned``, ``issue_generic``) when present.
    Unknown or missing types are ``supported=False`` (answer 2xx, ignore). A supported type whose
    ``issue.id`` is missing or malformed raises MappingError naming the path.
    """
    if not isinstance(payload, dict):
        raise MappingError("webhook body is not a JSON object", path="$")
    event_type = payload.get("webhookEvent")
    if not isinstance(event_type, str) or not event_type:
        return Classified(event_type=None, issue_id=None, supported=False)
    if event_type not in SUPPORTED_EVENTS:
        issue = payload.get("issue")
        issue_id = _issue_id(issue) if isinstance(issue, dict) and _valid_id(issue.get("id")) else None
        return Classified(event_type=event_type, issue_id=issue_id, supported=False)

    issue = payload.get("issue")
    if not isinstance(issue, dict):
        raise MappingError(f"{event_type} without an issue object", path="issue")
    return Classified(event_type=event_type, issue_id=_issue_id(issue), supported=True)


def _valid_id(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _issue_id(issue: dict[str, Any]) -> str:
    value = issue.get("id")
    if not _valid_id(value):
        raise MappingError(f"expected a non-empty string or integer id, got {type(value).__name__}", path="issue.id")
    return str(value)
