"""The incident processor's pure logic, on the example routing file."""

import pytest

from hub.processors.incidents import build_actions, decide
from hub.routing import load_routing
from hub.settings import DEFAULT_ROUTING_FILE

CFG = load_routing(DEFAULT_ROUTING_FILE)
SITE = "https://example.atlassian.net"


def event(eid, t, *, kind="issue_updated", issue_id="10001", key="OPS-1", project="OPS", status="To Do",
          priority="Highest", issue_type="Incident", summary="Checkout is down", changes=(), partial=False,
          security=None, labels=()):
    return {
        "schema": "switchboard.tracker_event/1", "event_id": eid, "source": "jira", "site": SITE, "kind": kind,
        "occurred_at_ms": t, "received_at_ms": t + 5,
        "issue": {"id": issue_id, "key": key, "project_key": project, "project_id": "1", "issue_type": issue_type,
                  "priority": priority, "status": status, "status_category": None, "summary": summary,
                  "labels": list(labels), "assignee": None, "reporter": None, "resolution": None,
                  "security_level": security, "fix_versions": [], "url": f"{SITE}/browse/{key}", "partial": partial},
        "changes": [{"field": "status", "from": a, "to": b, "from_id": None, "to_id": None} for a, b in changes],
        "changelog_id": None, "comment": None, "actor": {"account_id": "u1", "display_name": "Ada"},
    }


def run(*events):
    state = None
    emitted = []
    for e in events:
        state, emit = decide(CFG, state, e)
        if emit and state is not None:
            emitted.append(build_actions(CFG, state, cause_event_id=e["event_id"], now_ms=0))
    return state, emitted


def test_ordinary_issue_keeps_no_state():
    state, emitted = run(event("e1", 1, issue_type="Task", priority="Low"))
    assert state is None and emitted == []


def test_incident_lifecycle_versions_and_targets():
    state, emitted = run(
        event("e1", 1, kind="issue_created"),
        event("e2", 2, status="In Progress", changes=[("To Do", "In Progress")]),
        event("e3", 3, status="Done", changes=[("In Progress", "Done")]),
    )
    assert state["lifecycle"] == 1 and state["state"] == "resolved" and state["version"] == 3
    assert state["slack_channels"] == ["#incidents"] and state["pagerduty_services"] == ["ops"]
    pd = [v for topic, _, v in emitted[-1] if topic == "actions.pagerduty"]
    slack = [v for topic, _, v in emitted[-1] if topic == "actions.slack"]
    assert len(pd) == 1 and pd[0]["state"] == "resolved" and pd[0]["dedup_key"] == "jira/example.atlassian.net/10001"
    assert len(slack) == 1 and [t["text"] for t in slack[0]["thread"]] == [
        "Status To Do → In Progress by Ada", "Status In Progress → Done by Ada"]


def test_duplicate_event_re_emits_the_same_version():
    e1 = event("e1", 1, kind="issue_created")
    state, emitted = run(e1, e1)
    assert len(emitted) == 2 and emitted[0] == emitted[1]


def test_stale_event_changes_no_field():
    state, _ = run(event("e1", 10, kind="issue_created"), event("e0", 5, summary="old summary"))
    assert state["issue"]["summary"] == "Checkout is down"


def test_reopen_opens_a_new_lifecycle():
    state, _ = run(
        event("e1", 1, kind="issue_created"),
        event("e2", 2, status="Done", changes=[("To Do", "Done")]),
        event("e3", 3, status="To Do", changes=[("Done", "To Do")]),
    )
    assert (state["lifecycle"], state["state"]) == (2, "triggered")


def test_partial_comment_issue_does_not_blank_known_fields():
    state, _ = run(
        event("e1", 1, kind="issue_created"),
        event("e2", 2, kind="comment_created", priority=None, issue_type=None, summary="Checkout is down", partial=True, project=None),
    )
    assert state["issue"]["priority"] == "Highest" and state["issue"]["project_key"] == "OPS"


def test_restricted_incident_reaches_only_its_channel_and_pages_without_summary():
    state, emitted = run(event("e1", 1, kind="issue_created", issue_id="20001", key="LEGAL-7", project="LEGAL",
                               summary="Acquisition of Contoso leaked"))
    actions = emitted[-1]
    channels = [v["channel"] for t, _, v in actions if t == "actions.slack"]
    assert channels == ["#legal-incidents"]
    for topic, _, value in actions:
        if topic == "actions.pagerduty":
            assert "Contoso" not in repr(value)


def test_issue_moved_into_a_restricted_project_is_redacted_where_it_was_public():
    state, emitted = run(
        event("e1", 1, kind="issue_created", summary="Payroll export broken"),
        event("e2", 2, key="LEGAL-9", project="LEGAL"),
    )
    public = [v for t, _, v in emitted[-1] if t == "actions.slack" and v["channel"] == "#incidents"]
    assert public, "the public message must still be updated (to hide what it showed)"
    assert "Payroll" not in repr(public[0]["message"])


def test_security_level_makes_an_issue_restricted():
    state, emitted = run(event("e1", 1, kind="issue_created", security="Staff only", summary="Secret thing"))
    assert state["restricted"]
    assert not [v for t, _, v in emitted[-1] if t == "actions.slack"]


@pytest.mark.parametrize("text", ["<!channel> help", "ping <@U123> now", "@here look"])
def test_mentions_from_tracker_text_are_neutralised(text):
    _, emitted = run(event("e1", 1, kind="issue_created", summary=text))
    msg = [v for t, _, v in emitted[-1] if t == "actions.slack"][0]["message"]
    rendered = repr(msg)
    assert "<!channel>" not in rendered and "<@U123>" not in rendered and "@here" not in rendered
