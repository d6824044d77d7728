"""Incidents: from canonical tracker events to desired-state actions for PagerDuty and Slack.

The agent (registered by :func:`register`) is thin; the logic is the pure :func:`decide`, which takes
the stored state of one issue and one event and returns the new state and whether to emit. Emitting
is idempotent: actions are versioned snapshots, so re-processing an event after a crash, a replay
from offset 0, or a duplicate delivery only re-sends what delivery already has, and delivery skips it.

State per Jira issue id (the table value)::

    issue            merged issue fields (a partial comment-event issue never blanks known fields)
    incident         True once the issue matched the incident rules (sticky)
    lifecycle        1 for the first opening, +1 at each reopening (a new PagerDuty incident)
    state            triggered | acknowledged | resolved
    version          +1 whenever what the vendors should show changes
    last_occurred_ms the newest event applied; older ones update nothing but the transitions
    recent_event_ids the last event ids applied (duplicates re-emit the current snapshot)
    transitions      status transitions, for the Slack thread
    slack_channels / pagerduty_services   every target this incident was ever routed to (sticky)
    restricted       sticky: once restricted, never shown in full to a channel that doesn't allow it
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from connectors.pagerduty import mapping as pd_mapping
from connectors.slack import mapping as slack_mapping
from hub.routing import event_labels, is_incident, lifecycle_state, route, severity

log = logging.getLogger("switchboard.incidents")

MAX_RECENT_EVENTS = 32
MAX_TRANSITIONS = 50

_MERGE_SKIP = {"partial"}


def _merge_issue(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old or {})
    partial = bool(new.get("partial"))
    for k, v in new.items():
        if k in _MERGE_SKIP:
            continue
        if partial and (v is None or v == [] or v == ""):
            continue
        merged[k] = v
    merged["partial"] = False if not partial else bool(old is None)
    return merged


def _labels_for(issue: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return event_labels({"kind": event.get("kind"), "source": event.get("source"), "issue": issue})


def _fingerprint(state: dict[str, Any]) -> str:
    issue = state["issue"]
    assignee = (issue.get("assignee") or {}).get("display_name") if isinstance(issue.get("assignee"), dict) else None
    parts = (
        issue.get("key"), issue.get("summary"), issue.get("status"), issue.get("priority"), assignee,
        state["state"], state["lifecycle"], len(state["transitions"]), state["restricted"],
        tuple(state["slack_channels"]), tuple(state["pagerduty_services"]), state.get("deleted"),
    )
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def decide(cfg: Any, state: dict[str, Any] | None, event: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """Apply one tracker event to one issue's state. Returns ``(new_state, emit)``.

    ``new_state`` is ``None`` for an issue that is not (and never was) an incident: no state is
    kept for ordinary issues. ``emit`` says whether the current snapshot must be (re-)emitted.
    """
    event_id = event["event_id"]
    if state is not None and event_id in state["recent_event_ids"]:
        return state, True  # a duplicate or a re-processing after a crash: re-emit, same version
    occurred = int(event.get("occurred_at_ms") or 0)
    stale = state is not None and occurred < state["last_occurred_ms"]
    issue = state["issue"] if (state and stale) else _merge_issue(state["issue"] if state else None, event["issue"])
    labels = _labels_for(issue, event)
    if state is None and not is_incident(cfg, labels):
        return None, False

    new = dict(state) if state else {
        "issue_id": str(event["issue"]["id"]), "site": event.get("site"), "incident": True,
        "lifecycle": 0, "state": None, "version": 0, "last_occurred_ms": 0, "recent_event_ids": [],
        "transitions": [], "slack_channels": [], "pagerduty_services": [], "restricted": False,
        "deleted": False, "route_path": "", "fingerprint": "",
    }
    new["recent_event_ids"] = (list(new["recent_event_ids"]) + [event_id])[-MAX_RECENT_EVENTS:]
    transitions = list(new["transitions"])
    prev_status = (state or {}).get("issue", {}).get("status") if state else None

    # status transitions, from the changelog when there is one (also for stale events: order them)
    # (Jira names the field "status" or "Status"; a created event lists "None → To Do": no transition)
    status_changes = [c for c in event.get("changes") or []
                      if str(c.get("field") or "").lower() == "status" and event.get("kind") != "issue_created"]
    actor = (event.get("actor") or {}).get("display_name")
    for i, change in enumerate(status_changes):
        tid = f"{event_id}:{i}"
        if not any(t["id"] == tid for t in transitions):
            transitions.append({"id": tid, "at_ms": occurred, "from": change.get("from"), "to": change.get("to"), "actor": actor})
    if stale:
        transitions.sort(key=lambda t: t["at_ms"])
        new["transitions"] = transitions[-MAX_TRANSITIONS:]
        return _finish(new), True

    new["issue"] = issue
    new["last_occurred_ms"] = max(occurred, new["last_occurred_ms"])
    if not status_changes and state is not None and issue.get("status") != prev_status and issue.get("status"):
        transitions.append({"id": f"{event_id}:s", "at_ms": occurred, "from": prev_status, "to": issue.get("status"), "actor": actor})

    if event.get("kind") == "issue_deleted":
        target = "resolved"
        if not new["deleted"]:
            new["deleted"] = True
            transitions.append({"id": f"{event_id}:deleted", "at_ms": occurred, "from": issue.get("status"), "to": "deleted", "actor": actor, "note": "issue deleted in Jira"})
    else:
        target = lifecycle_state(cfg, issue.get("status"), issue.get("status_category"))
    if target != "resolved" and new["state"] in (None, "resolved"):
        new["lifecycle"] += 1
    elif new["state"] is None:  # first seen already resolved: one lifecycle, triggered then resolved
        new["lifecycle"] += 1
    new["state"] = target

    result = route(cfg, labels)
    for d in result.deliveries:
        for ch in d.slack_channels:
            if ch not in new["slack_channels"]:
                new["slack_channels"].append(ch)
        for svc in d.pagerduty_services:
            if svc not in new["pagerduty_services"]:
                new["pagerduty_services"].append(svc)
        new["route_path"] = d.route_path
    for dropped in result.dropped:
        log.info("routing.restricted-dropped", extra={"issue_id": new["issue_id"], "channel": dropped.channel, "reason": dropped.reason})
    new["slack_channels"] = list(new["slack_channels"])
    new["pagerduty_services"] = list(new["pagerduty_services"])
    new["restricted"] = bool(new["restricted"] or result.restricted)
    new["transitions"] = transitions[-MAX_TRANSITIONS:]
    return _finish(new), True


def _finish(new: dict[str, Any]) -> dict[str, Any]:
    fp = _fingerprint(new)
    if fp != new.get("fingerprint"):
        new["fingerprint"] = fp
        new["version"] += 1
    return new


def view(cfg: Any, state: dict[str, Any], *, redacted: bool) -> dict[str, Any]:
    issue = state["issue"]
    assignee = issue.get("assignee")
    return {
        "issue_id": state["issue_id"],
        "key": issue.get("key"),
        "summary": issue.get("summary"),
        "url": issue.get("url"),
        "site": state.get("site"),
        "project": issue.get("project_key"),
        "priority": issue.get("priority"),
        "severity": severity(cfg, issue.get("priority")),
        "state": state["state"],
        "status": "Deleted" if state.get("deleted") else issue.get("status"),
        "assignee": assignee.get("display_name") if isinstance(assignee, dict) else None,
        "issue_type": issue.get("issue_type"),
        "labels": list(issue.get("labels") or []),
        "redacted": redacted,
    }


def channel_allows(cfg: Any, channel: str, state: dict[str, Any]) -> bool:
    """May this channel show the incident in full? Unrestricted: yes. Restricted: only if allowed."""
    if not state["restricted"]:
        return True
    project = state["issue"].get("project_key")
    channels = getattr(cfg, "channels", {}) or {}
    spec = channels.get(channel)
    allow = getattr(spec, "allow_restricted", ()) if spec is not None else ()
    return bool(project) and project in allow


def build_actions(cfg: Any, state: dict[str, Any], *, cause_event_id: str, now_ms: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The snapshots to emit for the current state: ``[(topic short name, key, value), …]``."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    dedup = pd_mapping.dedup_key(state.get("site"), state["issue_id"])
    cause = {"event_id": cause_event_id, "source": "jira", "issue_id": state["issue_id"]}
    # PagerDuty is not a public channel, but restricted incidents still page without their summary
    pd_view = view(cfg, state, redacted=state["restricted"])
    pd_event = pd_mapping.incident_event(pd_view)
    for svc in state["pagerduty_services"]:
        key = f"{svc}|{dedup}"
        out.append(("actions.pagerduty", key, {
            "schema": "switchboard.action.pagerduty/1",
            "action_id": f"pd|{key}|v{state['version']}",
            "key": key, "service": svc, "dedup_key": dedup,
            "lifecycle": state["lifecycle"], "version": state["version"], "state": state["state"],
            "event": pd_event, "cause": cause, "attempt": 0, "created_at_ms": now_ms,
        }))
    for channel in state["slack_channels"]:
        redacted = not channel_allows(cfg, channel, state)
        msg = slack_mapping.incident_message(view(cfg, state, redacted=redacted))
        thread = [{"id": t["id"], "text": slack_mapping.transition_text(t, redacted=redacted)} for t in state["transitions"]]
        key = f"{channel}|{dedup}"
        out.append(("actions.slack", key, {
            "schema": "switchboard.action.slack/1",
            "action_id": f"slack|{key}|v{state['version']}",
            "key": key, "channel": channel, "version": state["version"],
            "message": msg, "thread": thread, "cause": cause, "attempt": 0, "created_at_ms": now_ms,
        }))
    return out


def register(hub) -> None:
    """The agent: events.tracker → incident state → actions.pagerduty / actions.slack."""
    import time

    from hub.channels import loads
    from hub.processors.common import dead_letter, json_table

    app, channels = hub.app, hub.channels
    table = json_table(hub, "incidents")
    stats = hub.pipelines.setdefault("incidents", {"in": 0, "emitted": 0, "dead": 0})

    async def handle(key: bytes | None, raw: bytes) -> None:
        stats["in"] += 1
        event = loads(raw)
        issue_id = str(event["issue"]["id"])
        stored = table.get(issue_id)  # one read: each is a store lookup and a JSON decode
        state, emit = decide(hub.routing, stored, event)
        if state is None:
            return
        if state is not stored:  # decide returns the stored state itself when nothing changed
            table[issue_id] = state
        if emit:
            for topic, akey, value in build_actions(hub.routing, state, cause_event_id=event["event_id"], now_ms=int(time.time() * 1000)):
                await channels.send(topic, akey, value)
                stats["emitted"] += 1

    @app.agent(channels["events.tracker"], name="incidents")
    async def incidents(stream):
        async for key, raw in stream.items():
            try:
                await handle(key, raw)
            except Exception as exc:  # a poisoned event must not stall its partition
                stats["dead"] += 1
                log.exception("incidents.crashed")
                await dead_letter(channels, stage="incidents", source_topic="events.tracker", key=key, raw=raw,
                                  reason=f"{type(exc).__name__}: {exc}", error_code="internal")
