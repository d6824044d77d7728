"""Unit tests for labels, matchers, lifecycle and severity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.routing import (
    LABEL_NAMES,
    Matcher,
    MatcherError,
    event_labels,
    is_restricted,
    lifecycle_state,
    load_routing,
    parse_matcher,
    restriction_reason,
    severity,
)

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "hub" / "config" / "routing.example.yaml"

# The canonical tracker event of docs/architecture.md, filled in.
TRACKER_EVENT: dict[str, Any] = {
    "schema": "switchboard.tracker_event/1",
    "event_id": "d-1",
    "source": "jira",
    "site": "https://example.atlassian.net",
    "kind": "issue_updated",
    "occurred_at_ms": 1700000000000,
    "received_at_ms": 1700000000123,
    "issue": {
        "id": "10001",
        "key": "OPS-1",
        "project_key": "OPS",
        "project_id": "10000",
        "issue_type": "Incident",
        "priority": "Highest",
        "status": "In Progress",
        "status_category": "indeterminate",
        "summary": "Database down",
        "labels": ["sev1", "db", "sev1"],
        "assignee": {"account_id": "a-1", "display_name": "Ann Example"},
        "reporter": None,
        "resolution": None,
        "security_level": "Staff",
        "fix_versions": [],
        "url": "https://example.atlassian.net/browse/OPS-1",
        "partial": False,
    },
    "changes": [{"field": "status", "from": "To Do", "to": "In Progress", "from_id": "1", "to_id": "3"}],
    "changelog_id": "10100",
    "comment": None,
    "actor": {"account_id": "a-1", "display_name": "Ann Example"},
}


# --- labels ---------------------------------------------------------------------------------------


def test_event_labels_from_a_full_event() -> None:
    assert event_labels(TRACKER_EVENT) == {
        "project": "OPS",
        "issue_type": "Incident",
        "priority": "Highest",
        "status": "In Progress",
        "status_category": "indeterminate",
        "labels": ("sev1", "db"),
        "security_level": "Staff",
        "assignee": "Ann Example",
        "kind": "issue_updated",
        "source": "jira",
    }


def test_event_labels_nulls_become_empty() -> None:
    issue = {"id": "1", "project_key": None, "labels": None, "assignee": None}
    labels = event_labels({"kind": "comment_created", "issue": issue})
    assert set(labels) == set(LABEL_NAMES)
    assert labels["labels"] == ()
    assert all(labels[name] == "" for name in LABEL_NAMES if name not in ("labels", "kind"))
    assert labels["kind"] == "comment_created"


def test_assignee_without_display_name() -> None:
    assert event_labels({"issue": {"assignee": {"account_id": "a-1"}}})["assignee"] == ""


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({}, "issue"),
        ({"issue": []}, "issue"),
        ({"issue": {"priority": 3}}, "issue.priority"),
        ({"issue": {"labels": "sev1"}}, "issue.labels"),
        ({"issue": {"labels": ["ok", 1]}}, "issue.labels"),
        ({"issue": {"assignee": "Ann"}}, "issue.assignee"),
        ({"issue": {"assignee": {"display_name": 5}}}, "issue.assignee.display_name"),
        ({"issue": {}, "kind": 1}, "kind"),
    ],
)
def test_event_labels_rejects_wrong_types_with_the_path(event: dict[str, Any], path: str) -> None:
    with pytest.raises(ValueError, match=rf"^{path}: "):
        event_labels(event)


# --- matchers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "op", "value", "canonical"),
    [
        ('project="OPS"', "project", "=", "OPS", 'project="OPS"'),
        ('  project  !=  "OPS" ', "project", "!=", "OPS", 'project!="OPS"'),
        ('priority=~"High|Highest"', "priority", "=~", "High|Highest", 'priority=~"High|Highest"'),
        ('status!~"Done"', "status", "!~", "Done", 'status!~"Done"'),
        ('assignee=""', "assignee", "=", "", 'assignee=""'),
        (r'status="Won\"t Do"', "status", "=", 'Won"t Do', r'status="Won\"t Do"'),
        (r'status="back\\slash"', "status", "=", "back\\slash", r'status="back\\slash"'),
        # other backslashes pass through; str() escapes every backslash, which parses back the same
        (r'labels=~"sev\d"', "labels", "=~", r"sev\d", r'labels=~"sev\\d"'),
    ],
)
def test_parse_matcher(text: str, name: str, op: str, value: str, canonical: str) -> None:
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.op, matcher.value) == (name, op, value)
    assert str(matcher) == canonical
    assert parse_matcher(str(matcher)) == matcher


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('project=="X"', "expected name="),
        ("project=X", "expected name="),
        ("project='X'", "expected name="),
        ('="X"', "expected name="),
        ('project="X" extra', "expected name="),
        ('project="X', "expected name="),
        ('project~="X"', "expected name="),
        ('project="a"b"', "expected name="),
        ('Project="X"', "unknown label 'Project'"),
        ('priority=~"(High"', "invalid regex"),
        ('priority!~"*"', "invalid regex"),
    ],
)
def test_parse_matcher_rejects(text: str, problem: str) -> None:
    with pytest.raises(MatcherError, match=problem.replace("(", r"\(")):
        parse_matcher(text)


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        (r'labels=~"sev\d"', ("sev1",), True),
        (r'labels=~"sev\d"', ("sev12",), False),
        ('priority=~"(?i)highest"', "HIGHEST", True),
        ('priority=~"High|Highest"', "HighHighest", False),
        ('priority=~"High|Highest"', "Highest", True),
    ],
)
def test_regex_details(text: str, value: Any, expected: bool) -> None:
    matcher = parse_matcher(text)
    assert matcher.matches({matcher.name: value}) is expected


def test_regex_is_compiled_once_at_parse() -> None:
    matcher = parse_matcher('priority=~"High.*"')
    assert matcher._regex is not None and matcher._regex.pattern == "High.*"


def test_matcher_built_directly_compiles_its_regex() -> None:
    assert Matcher("priority", "=~", "High.*").matches({"priority": "Highest"})
    assert not Matcher("priority", "=", "High.*").matches({"priority": "Highest"})
    with pytest.raises(MatcherError, match="invalid regex"):
        Matcher("priority", "!~", "(")
    with pytest.raises(MatcherError, match="unknown operator"):
        Matcher("priority", "==", "High")  # type: ignore[arg-type]


# --- restriction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({"project": "OPS"}, None),
        ({"project": "OPS", "security_level": ""}, None),
        ({"project": "LEGAL"}, "restricted-project"),
        ({"project": "HR", "security_level": "x"}, "restricted-project"),
        ({"project": "OPS", "security_level": "x"}, "security-level"),
        ({}, "missing-project"),
        ({"project": ""}, "missing-project"),
        ({"project": None}, "missing-project"),
        ({"project": ("OPS",)}, "missing-project"),
    ],
)
def test_restriction(labels: dict[str, Any], reason: str | None) -> None:
    cfg = load_routing(EXAMPLE_CONFIG)
    assert restriction_reason(cfg, labels) == reason
    assert is_restricted(cfg, labels) is (reason is not None)


# --- lifecycle and severity -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "category", "state"),
    [
        ("Open", "new", "triggered"),
        (None, None, "triggered"),
        ("In Progress", "indeterminate", "acknowledged"),
        ("in progress", "indeterminate", "triggered"),  # exact comparison
        ("Done", "done", "resolved"),
        ("Closed", "indeterminate", "resolved"),  # listed status, whatever its category
        ("Won't Fix", "done", "resolved"),  # category done, status not listed
        ("In Progress", "done", "resolved"),  # resolved wins
        ("Reopened", "new", "triggered"),
    ],
)
def test_lifecycle_state(status: str | None, category: str | None, state: str) -> None:
    assert lifecycle_state(load_routing(EXAMPLE_CONFIG), status, category) == state


@pytest.mark.parametrize(
    ("priority", "expected"),
    [("Highest", "critical"), ("Blocker", "critical"), ("High", "error"), ("Medium", "warning"),
     ("Low", "info"), ("Lowest", "info"), ("P1", "warning"), (None, "warning"), ("", "warning")],
)
def test_severity(priority: str | None, expected: str) -> None:
    assert severity(load_routing(EXAMPLE_CONFIG), priority) == expected


def test_lifecycle_defaults_when_omitted() -> None:
    cfg = load_routing(
        {
            "incidents": [{"matchers": ['labels="incident"']}],
            "lifecycle": {"default_severity": "info"},
            "receivers": [{"name": "r"}],
            "route": {"receiver": "r"},
        }
    )
    assert lifecycle_state(cfg, "In Progress", "indeterminate") == "triggered"
    assert lifecycle_state(cfg, "Done", "done") == "resolved"
    assert lifecycle_state(cfg, "Done", None) == "triggered"
    assert severity(cfg, "Highest") == "info"
