"""``switchboard routes test FILE EVENT.json``: which route an event takes through a routing file, and why.

Pure apart from reading the two files: the same functions the incidents processor uses
(:func:`is_incident`, :func:`route`, :func:`lifecycle_state`, :func:`severity`), plus a walk of the
tree that records, for every node visited, whether each matcher matched. Nothing is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub.routing.labels import event_labels
from hub.routing.loader import load_routing
from hub.routing.tree import Route, RoutingConfig, is_incident, lifecycle_state, restriction_reason, route, severity


def load_event(raw: dict[str, Any]) -> dict[str, Any]:
    """A tracker event as given, or one mapped from a raw Jira webhook body (``webhookEvent`` + ``issue``)."""
    if raw.get("schema", "").startswith("switchboard.tracker_event/") or ("issue" in raw and "event_id" in raw):
        return raw
    if "webhookEvent" in raw:
        from connectors.jira.mapping import to_tracker_event

        return to_tracker_event({"schema": "switchboard.inbound/1", "source": "jira", "delivery_id": "routes-test",
                                 "event_type": raw.get("webhookEvent"), "received_at_ms": 0, "headers": {}, "payload": raw})
    raise ValueError("the event is neither a tracker event (events.tracker) nor a Jira webhook body (webhookEvent)")


def _walk(node: Route, labels: dict[str, Any], depth: int, lines: list[str]) -> bool:
    marks = [f"{m} {'✓' if m.matches(labels) else '✗'}" for m in node.matchers]
    ok = all(m.matches(labels) for m in node.matchers)
    lines.append(f"{'  ' * depth}{node.path} → {node.receiver}{' (continue)' if node.continue_ else ''}: "
                 f"{', '.join(marks) or 'no matchers'}{'' if ok else '  — not taken'}")
    if not ok:
        return False
    for child in node.routes:
        if _walk(child, labels, depth + 1, lines) and not child.continue_:
            lines.append(f"{'  ' * (depth + 1)}(stops here: {child.path} matched without continue)")
            break
    return True


def explain(cfg: RoutingConfig, event: dict[str, Any]) -> str:
    labels = event_labels(event)
    lines = ["labels: " + ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items()) if v not in (None, "", []))]
    rules = [i for i, rule in enumerate(cfg.incidents) if all(m.matches(labels) for m in rule.matchers)]
    if not is_incident(cfg, labels):
        lines.append("incident: no — no rule under `incidents` matches, so nothing is paged or posted")
        return "\n".join(lines)
    rule = cfg.incidents[rules[0]]
    lines.append(f"incident: yes — incidents[{rules[0]}] matches ({', '.join(str(m) for m in rule.matchers)})")
    issue = event.get("issue") or {}
    lines.append(f"state: {lifecycle_state(cfg, issue.get('status'), issue.get('status_category'))}, "
                 f"severity: {severity(cfg, issue.get('priority'))}")
    reason = restriction_reason(cfg, labels)
    lines.append(f"restricted: {'yes (' + reason + ')' if reason else 'no'}")
    lines.append("tree:")
    _walk(cfg.route, labels, 1, lines)
    result = route(cfg, labels)
    lines.append("deliveries:")
    for d in result.deliveries:
        lines.append(f"  {d.route_path} receiver {d.receiver}: slack {list(d.slack_channels) or '-'}, "
                     f"pagerduty {list(d.pagerduty_services) or '-'}, group {d.group_key}")
    if not result.deliveries:
        lines.append("  none")
    for dropped in result.dropped:
        lines.append(f"dropped: {dropped.channel} (receiver {dropped.receiver}): {dropped.reason} — the channel does not allow this project")
    if reason:
        lines.append("PagerDuty pages without the summary (restricted)")
    return "\n".join(lines)


def explain_file(routing_file: str | Path, event_file: str | Path) -> str:
    from hub.routing.loader import RoutingConfigError

    try:
        cfg = load_routing(Path(routing_file))
    except RoutingConfigError as exc:
        raise ValueError(f"{routing_file}: {exc}") from None
    try:
        raw = json.loads(Path(event_file).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{event_file}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{event_file}: expected a JSON object")
    return explain(cfg, load_event(raw))
