"""Explicit links (``switchboard link``, ``POST /api/links``): one message on the right topic."""

from __future__ import annotations

import time


def link_message(op: str, ticket_id: str, issue: str) -> tuple[str, str, dict]:
    """``(topic short name, key, value)`` asking to link or unlink a ticket and an issue.

    ``issue`` is a key (``OPS-1``: resolved to the issue id by the key side, which follows moves)
    or a numeric issue id (straight to the issue side).
    """
    msg = {"schema": "switchboard.link_message/1", "op": op, "at_ms": int(time.time() * 1000), "ticket_id": str(ticket_id),
           "route": "explicit", "cause_event_id": f"explicit:{op}:{ticket_id}:{issue}"}
    if issue.isdigit():
        return "links.by_issue", issue, {**msg, "issue_id": issue, "key": None}
    return "links.by_key", issue.upper(), {**msg, "key": issue.upper()}
