"""Pure builders of PagerDuty Events API v2 events from an incident view.

PagerDuty docs: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ .
"""

from __future__ import annotations

from typing import Any

#: Events API v2 limits (developer docs, "Trigger Events"): summary ≤ 1024 chars, dedup_key ≤ 255
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255

SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTION = {"triggered": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}


def dedup_key(site: str | None, issue_id: str) -> str:
    """Stable per Jira issue (its id, which survives moves), scoped by site."""
    host = (site or "jira").split("://", 1)[-1].rstrip("/")
    key = f"jira/{host}/{issue_id}"
    if len(key) > MAX_DEDUP_KEY:  # absurdly long host: keep the id, which is what must be stable
        key = f"jira/{host[: MAX_DEDUP_KEY - len(issue_id) - 6]}/{issue_id}"
    return key


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def incident_event(view: dict[str, Any]) -> dict[str, Any]:
    """The trigger payload (``summary``, ``source``, ``severity``, …) for one incident.

    A redacted view (restricted project) carries the key, project and state only.
    """
    key = view.get("key") or f"issue {view.get('issue_id')}"
    severity = view.get("severity") if view.get("severity") in SEVERITIES else "warning"
    source = view.get("site") or "jira"
    if view.get("redacted"):
        return {
            "summary": _clip(f"Restricted incident {key}", MAX_SUMMARY),
            "source": source,
            "severity": severity,
            "component": None,
            "group": view.get("project"),
            "class": None,
            "custom_details": {"issue": key, "status": view.get("status")},
            "links": [{"href": view["url"], "text": key}] if view.get("url") else [],
        }
    summary = f"{key}: {view.get('summary') or '(no summary)'}"
    return {
        "summary": _clip(summary, MAX_SUMMARY),
        "source": source,
        "severity": severity,
        "component": None,
        "group": view.get("project"),
        "class": view.get("issue_type"),
        "custom_details": {
            "issue": key,
            "status": view.get("status"),
            "priority": view.get("priority"),
            "assignee": view.get("assignee"),
            "labels": view.get("labels") or [],
        },
        "links": [{"href": view["url"], "text": f"{key} in Jira"}] if view.get("url") else [],
    }


def send_event_kwargs(event_action: str, dedup: str, event: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``pagerduty.EventsApiV2Client.send_event``."""
    kwargs: dict[str, Any] = {"dedup_key": dedup}
    if event_action == "trigger":
        payload = {k: v for k, v in event.items() if k != "links" and v is not None}
        kwargs["payload"] = payload
        if event.get("links"):
            kwargs["links"] = event["links"]
        kwargs["client"] = "Switchboard"
    return kwargs
