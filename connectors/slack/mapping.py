"""Pure builders of Slack messages (Block Kit) from an incident view.

Slack docs: https://api.slack.com/reference/block-kit/blocks ,
https://api.slack.com/reference/surfaces/formatting#escaping .

Text that comes from trackers or tickets is untrusted: it is escaped (``&``, ``<``, ``>``) so that
mention syntax (``<!channel>``, ``<@U123>``, ``<#C123>``, ``<!subteam^…>``) arrives as literal text and
never notifies anyone, and bare ``@channel``/``@here``/``@everyone`` are broken with a zero-width
joiner. Only the hub's own link markup is emitted unescaped.
"""

from __future__ import annotations

import re
from typing import Any

#: Slack truncates/refuses longer section texts (Block Kit: section text ≤ 3000 chars)
MAX_SECTION_TEXT = 3000
#: chat.postMessage `text` is truncated by Slack beyond 40,000 characters
MAX_TEXT = 40000

_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_WORD_JOINER = "\u2060"

STATE_EMOJI = {"triggered": ":red_circle:", "acknowledged": ":large_orange_circle:", "resolved": ":large_green_circle:"}
STATE_LABEL = {"triggered": "Triggered", "acknowledged": "Acknowledged", "resolved": "Resolved"}


def neutralize(text: str | None, limit: int = MAX_SECTION_TEXT) -> str:
    """Escape untrusted text for Slack mrkdwn so that it can never mention or link anyone."""
    if not text:
        return ""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = _BROADCAST.sub(lambda m: "@" + _WORD_JOINER + m.group(1), out)
    if len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


def _link(url: str | None, label: str) -> str:
    if url and url.startswith(("https://", "http://")) and not any(c in url for c in "<>|"):
        return f"<{url}|{label}>"
    return label


def incident_message(view: dict[str, Any]) -> dict[str, Any]:
    """The message for one incident: a header line, fields, and a context line.

    ``view`` keys: key, summary, url, project, priority, severity, state, status, assignee,
    issue_type, redacted (bool: show the key and state only).
    """
    state = view.get("state") or "triggered"
    key = neutralize(view.get("key") or "issue", 100)
    emoji = STATE_EMOJI.get(state, ":white_circle:")
    label = STATE_LABEL.get(state, state)
    if view.get("redacted"):
        text = f"{emoji} {label}: restricted incident {key}"
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} *{label}* · {key}\n_This incident is in a restricted project; details are not shown here._"}},
        ]
        return {"text": text, "blocks": blocks}
    summary = neutralize(view.get("summary") or "(no summary)", 1000)
    title = f"{emoji} *{label}* · {_link(view.get('url'), key)}: {summary}"
    fields = [
        ("Severity", view.get("severity")),
        ("Status", view.get("status")),
        ("Priority", view.get("priority")),
        ("Assignee", view.get("assignee") or "Unassigned"),
    ]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": title[:MAX_SECTION_TEXT]}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{neutralize(str(value), 200)}"} for name, value in fields if value],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{neutralize(view.get('project') or '', 100)} · {neutralize(view.get('issue_type') or '', 100)} · via Switchboard"}]},
    ]
    text = f"{label}: {key} {summary} (severity {view.get('severity') or 'unknown'}, status {view.get('status') or 'unknown'})"
    return {"text": text[:MAX_TEXT], "blocks": blocks}


def transition_text(transition: dict[str, Any], redacted: bool = False) -> str:
    """A thread reply for one transition: ``In Progress → Done by Ada``."""
    frm = neutralize(transition.get("from") or "—", 100)
    to = neutralize(transition.get("to") or "—", 100)
    actor = transition.get("actor")
    by = f" by {neutralize(actor, 100)}" if actor and not redacted else ""
    note = transition.get("note")
    suffix = f" ({neutralize(note, 200)})" if note else ""
    return f"Status {frm} → {to}{by}{suffix}"
