"""The label set that routing reads from a canonical tracker event.

Matchers, incident rules and ``group_by`` only ever see these labels, never the event itself, so
the routing configuration stays independent of the event schema (docs/architecture.md,
``events.tracker``). Every label is always present: a missing or null field becomes ``""``, as a
missing label does in Alertmanager. ``labels`` is the only multi-valued label (a tuple, possibly
empty); the others are plain strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

LabelValue: TypeAlias = str | tuple[str, ...]
Labels: TypeAlias = Mapping[str, LabelValue]

#: Every label name a matcher or ``group_by`` may use. The loader rejects any other name, so a
#: typo such as ``projet="LEGAL"`` fails at load time instead of silently never matching.
LABEL_NAMES: tuple[str, ...] = (
    "project",
    "issue_type",
    "priority",
    "status",
    "status_category",
    "labels",
    "security_level",
    "assignee",
    "kind",
    "source",
)

#: Labels whose value is a tuple of strings rather than a string.
MULTI_VALUED: frozenset[str] = frozenset({"labels"})


def event_labels(tracker_event: Mapping[str, Any]) -> dict[str, LabelValue]:
    """Return the routing labels of a canonical tracker event (``switchboard.tracker_event/1``).

    Promise: the result has exactly the keys of :data:`LABEL_NAMES`; single-valued labels are
    strings (``""`` when the field is missing or null), ``labels`` is a tuple of distinct strings
    in the event's order. ``project`` is ``issue.project_key`` and ``assignee`` the assignee's
    display name.

    The caller must pass the issue's *known* state: comment events carry a partial issue
    (``issue.partial``), so merge it with the last full state first, or a restricted issue could
    look like one with no project and no security level.

    Raises ``ValueError`` naming the field path when a field has the wrong type.
    """
    issue = tracker_event.get("issue")
    if not isinstance(issue, Mapping):
        raise ValueError("issue: expected an object")
    assignee = issue.get("assignee")
    if assignee is not None and not isinstance(assignee, Mapping):
        raise ValueError("issue.assignee: expected an object or null")
    return {
        "project": _text(issue, "project_key", "issue."),
        "issue_type": _text(issue, "issue_type", "issue."),
        "priority": _text(issue, "priority", "issue."),
        "status": _text(issue, "status", "issue."),
        "status_category": _text(issue, "status_category", "issue."),
        "labels": _text_list(issue, "labels", "issue."),
        "security_level": _text(issue, "security_level", "issue."),
        "assignee": _text(assignee, "display_name", "issue.assignee.") if assignee else "",
        "kind": _text(tracker_event, "kind", ""),
        "source": _text(tracker_event, "source", ""),
    }


def _text(obj: Mapping[str, Any], key: str, prefix: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{prefix}{key}: expected a string or null")
    return value


def _text_list(obj: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{prefix}{key}: expected a list of strings or null")
    return tuple(dict.fromkeys(value))
