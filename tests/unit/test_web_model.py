"""The read model behind the web view, fed record by record (no Kafka): redaction, ranking, lineage."""

from __future__ import annotations

from hub.processors.sales import SalesConfig, revenue_summary
from hub.web.model import ReadModel, Viewer

PUBLIC = Viewer("viewer")
LEGAL = Viewer("counsel", restricted_projects=frozenset({"LEGAL"}))
ALL = Viewer("admin", restricted_projects=frozenset({"*"}), admin=True)


def model() -> ReadModel:
    cfg = SalesConfig(rates={"EUR": 1.1})
    m = ReadModel(restricted_projects={"LEGAL", "HR"}, revenue=lambda opps: revenue_summary(cfg, opps))
    # OPS-1: public, two tickets, one open opportunity
    m.apply("table:support-issues", 0, 0, "1", {"issue_id": "1", "last_occurred_ms": 10, "issue": {
        "id": "1", "key": "OPS-1", "project_key": "OPS", "summary": "Checkout is down", "status": "To Do"},
        "tickets": {"7": {"routes": ["field"], "ticket": {"id": 7, "subject": "Cannot pay", "status": "open", "organization_name": "Acme"}},
                    "8": {"routes": ["text"], "ticket": {"id": 8, "subject": "Broken", "status": "new", "organization_id": 2}}}})
    m.apply("table:sales-issues", 0, 0, "1", {"issue_id": "1", "issue": {"id": "1", "key": "OPS-1"}, "frs": {"a0F1": {"routes": ["field"]}},
                                              "opps": {"006A": {"name": "Renewal", "amount": 1000, "currency": "EUR", "probability": 50,
                                                                "stage": "Negotiation", "is_closed": False}}})
    # LEGAL-7: restricted, one ticket, a bigger opportunity
    m.apply("events.tracker", 1, 0, "2", {"event_id": "ev-legal", "kind": "issue_created", "occurred_at_ms": 20, "received_at_ms": 21,
                                          "issue": {"id": "2", "key": "LEGAL-7", "project_key": "LEGAL", "summary": "Subpoena", "status": "To Do"},
                                          "changes": [{"field": "summary", "from": None, "to": "Subpoena"}, {"field": "status", "from": None, "to": "To Do"}]})
    m.apply("table:support-issues", 1, 0, "2", {"issue_id": "2", "last_occurred_ms": 20, "issue": {"id": "2", "key": "LEGAL-7", "project_key": "LEGAL", "summary": "Subpoena"},
                                                "tickets": {"9": {"routes": ["tag"], "ticket": {"id": 9, "subject": "About the subpoena", "status": "open"}}}})
    m.apply("table:sales-issues", 1, 0, "2", {"issue_id": "2", "issue": {"id": "2"}, "frs": {}, "opps": {
        "006B": {"name": "Big deal", "amount": 9000, "currency": "USD", "probability": 10, "is_closed": False}}})
    return m


def test_restricted_issue_is_redacted_for_viewers_without_access():
    m = model()
    for viewer in (PUBLIC, Viewer("hr", restricted_projects=frozenset({"HR"}))):
        doc = m.issue("LEGAL-7", viewer)
        assert doc["restricted"] and doc["redacted"] and doc["summary"] is None
        assert "Subpoena" not in repr(doc) and "subpoena" not in repr(doc)
        assert doc["ticket_count"] == 1 and doc["tickets"][0]["subject"] is None
        assert [r["summary"] for r in m.ranked("revenue", viewer)] == [None, "Checkout is down"]
    for viewer in (LEGAL, ALL):
        doc = m.issue("LEGAL-7", viewer)
        assert doc["summary"] == "Subpoena" and not doc["redacted"] and doc["tickets"][0]["subject"] == "About the subpoena"


def test_security_level_and_missing_project_are_restricted_like_routing():
    m = ReadModel()
    m.apply("events.tracker", 0, 0, "3", {"event_id": "e3", "occurred_at_ms": 1, "issue": {"id": "3", "key": "SEC-1", "project_key": "SEC",
                                                                                             "security_level": "Responders", "summary": "Leak"}})
    m.apply("events.tracker", 0, 1, "4", {"event_id": "e4", "occurred_at_ms": 1, "issue": {"id": "4", "key": None, "project_key": None, "summary": "Who?"}})
    assert m.issue("SEC-1", PUBLIC)["summary"] is None and m.issue("4", PUBLIC)["summary"] is None
    assert m.issue("SEC-1", Viewer("s", frozenset({"SEC"})))["summary"] == "Leak"
    assert m.issue("4", Viewer("s", frozenset({"SEC"})))["summary"] is None  # no project: only "*" sees it
    assert m.issue("4", ALL)["summary"] == "Who?"


def test_ranked_by_revenue_converts_currencies_and_by_tickets_counts():
    m = model()
    by_revenue = m.ranked("revenue", ALL)
    assert [(r["key"], r["revenue_amount"], r["revenue_currency"]) for r in by_revenue] == [("LEGAL-7", 9000.0, "USD"), ("OPS-1", 1100.0, "USD")]
    assert by_revenue[1]["revenue_weighted"] == 550.0
    assert [(r["key"], r["ticket_count"]) for r in m.ranked("tickets", ALL)] == [("OPS-1", 2), ("LEGAL-7", 1)]
    assert [r["key"] for r in m.ranked("revenue", ALL, currency="EUR")] == ["OPS-1"]  # only OPS-1 has EUR at stake
    doc = m.issue("OPS-1", ALL)
    assert doc["organizations"] == ["Acme", "organization 2"] and doc["revenue"]["totals"]["EUR"]["amount"] == 1000.0
    assert doc["feature_requests"] == [{"id": "a0F1", "routes": ["field"]}]


def test_timeline_hides_changed_text_of_restricted_issues():
    m = model()
    hidden = m.issue("LEGAL-7", PUBLIC)["timeline"][0]["changes"]
    assert hidden == [{"field": "summary", "from": None, "to": None}, {"field": "status", "from": None, "to": "To Do"}]
    assert m.issue("LEGAL-7", LEGAL)["timeline"][0]["changes"][0]["to"] == "Subpoena"


def test_trace_joins_inbound_event_actions_and_results_on_the_event_id():
    m = ReadModel()
    m.apply("inbound.jira", 0, 5, "1", {"received_at_ms": 100, "delivery_id": "d-1", "event_type": "jira:issue_created", "payload": {}})
    m.apply("events.tracker", 0, 6, "1", {"event_id": "d-1", "kind": "issue_created", "occurred_at_ms": 90, "received_at_ms": 100,
                                          "issue": {"id": "1", "key": "OPS-1", "project_key": "OPS"}})
    m.apply("links.by_ticket", 1, 0, "7", {"op": "linked", "cause_event_id": "d-1", "at_ms": 101})
    m.apply("actions.pagerduty", 0, 2, "ops|dk", {"action_id": "pd|ops|dk|v1", "version": 1, "service": "ops", "created_at_ms": 102,
                                                   "cause": {"event_id": "d-1", "issue_id": "1"}})
    m.apply("actions.results", 0, 3, "pd|ops|dk|v1", {"action_id": "pd|ops|dk|v1", "vendor": "pagerduty", "key": "ops|dk", "outcome": "sent",
                                                        "vendor_ref": "dk", "calls": ["events.trigger"], "at_ms": 110, "cause_event_id": "d-1"})
    t = m.trace("d-1", ALL)
    assert [h["stage"] for h in t["hops"]] == ["received", "normalized", "processed", "action", "vendor"]
    assert t["hops"][0]["position"] == "inbound.jira:0:5" and t["hops"][-1]["vendor_ref"] == "dk"
    assert m.issue("OPS-1", ALL)["incident"] is None  # no incident state table record yet
    assert m.trace("nope", ALL) is None
    # an event without a delivery id is matched to its webhook by issue id and receive time
    m.apply("inbound.jira", 0, 7, "1", {"received_at_ms": 200, "delivery_id": None, "event_type": "jira:issue_updated"})
    m.apply("events.tracker", 0, 8, "1", {"event_id": "sha-2", "kind": "issue_updated", "received_at_ms": 200, "issue": {"id": "1"}})
    assert m.trace("sha-2", ALL)["hops"][0]["position"] == "inbound.jira:0:7"


def test_incident_refs_and_dead_letters():
    m = ReadModel(restricted_projects={"LEGAL"})
    m.apply("table:incidents", 0, 0, "1", {"issue_id": "1", "state": "triggered", "lifecycle": 1, "version": 2, "restricted": False,
                                           "slack_channels": ["#incidents"], "pagerduty_services": ["ops"], "last_occurred_ms": 5,
                                           "issue": {"key": "OPS-1", "project_key": "OPS", "summary": "Down"}, "transitions": []})
    m.apply("actions.slack", 0, 0, "#incidents|dk", {"action_id": "slack|#incidents|dk|v2", "channel": "#incidents", "version": 2,
                                                      "cause": {"event_id": "e", "issue_id": "1"}, "created_at_ms": 6})
    m.apply("actions.results", 0, 0, "x", {"action_id": "slack|#incidents|dk|v2", "vendor": "slack", "key": "#incidents|dk",
                                           "outcome": "dry_run", "vendor_ref": None, "at_ms": 7})
    inc = m.issue("OPS-1", PUBLIC)["incident"]
    assert inc["state"] == "triggered" and inc["slack"] == [{"target": "#incidents", "outcome": "dry_run", "vendor_ref": None, "at_ms": 7}]
    assert inc["pagerduty"] == [{"target": "ops", "outcome": None, "vendor_ref": None, "at_ms": None}]
    m.apply("deadletter", 1, 4, "k", {"stage": "deliver.pagerduty", "source_topic": "actions.pagerduty", "key": "k", "reason": "400",
                                      "error_code": "fatal", "at_ms": 9, "value": {"summary": "secret text"}})
    m.apply("deadletter", 0, 1, None, {"stage": "receiver.jira", "source_topic": "inbound.jira", "reason": "no issue id", "value": {"x": 1}})
    listed = m.deadletter_list(PUBLIC)
    assert [d["id"] for d in listed] == ["0-1", "1-4"] and [d["replayable"] for d in listed] == [False, True]
    assert "value" not in listed[1] and m.deadletter_list(ALL)[1]["value"] == {"summary": "secret text"}


def test_a_partition_is_stalled_when_its_offset_stands_still_while_lag_grows():
    from aiokafka import TopicPartition

    from hub.web.feed import progress

    a, b = TopicPartition("p.events.tracker", 0), TopicPartition("p.events.tracker", 1)
    seen: dict = {}
    assert progress(seen, {a: 10, b: 5}, {a: 12, b: 5}, 0.0, 60) == ({"p.events.tracker": 2}, [])
    assert progress(seen, {a: 10, b: 5}, {a: 20, b: 9}, 30.0, 60)[1] == []  # not for long enough yet
    assert progress(seen, {a: 10, b: 9}, {a: 25, b: 9}, 61.0, 60) == ({"p.events.tracker": 15}, ["p.events.tracker:0"])
    assert progress(seen, {a: 11, b: 9}, {a: 26, b: 9}, 70.0, 60)[1] == []  # it moved: healthy again
    assert progress(seen, {a: 11, b: 9}, {a: 26, b: 9}, 200.0, 60)[1] == []  # idle with a steady lag is not a stall
