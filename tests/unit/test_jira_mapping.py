"""Jira classify + mapping, over our fixtures and the captured payloads in ../shared/contracts."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import schemas
from connectors.errors import MappingError, UnsupportedEvent
from connectors.jira.events import SUPPORTED_EVENTS, classify
from connectors.jira.mapping import adf_from_text, text_from_adf, to_tracker_event

REPO = Path(__file__).resolve().parents[2]
OWN = REPO / "tests" / "fixtures" / "jira"
CAPTURED = REPO.parent / "shared" / "contracts" / "jira" / "webhooks"
RECEIVED_AT_MS = 1_732_000_000_000
# Headers the receiver must never keep in the envelope.
SECRET_HEADERS = {"authorization", "x-hub-signature"}


def _payload_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".headers.json"))


OWN_FILES = _payload_files(OWN)
CAPTURED_FILES = _payload_files(CAPTURED)
ALL_FILES = [pytest.param(p, id=f"own/{p.name}") for p in OWN_FILES] + (
    [pytest.param(p, id=f"captured/{p.name}") for p in CAPTURED_FILES]
    or [pytest.param(None, id="captured", marks=pytest.mark.skip(reason=f"captured payloads absent: {CAPTURED}"))]
)


def envelope_for(path: Path) -> dict[str, Any]:
    """The inbound.jira record the receiver would produce for this delivery."""
    body = path.read_bytes()
    headers_file = path.with_name(path.stem + ".headers.json")
    raw_headers = json.loads(headers_file.read_bytes()) if headers_file.exists() else {}
    headers = {k.lower(): v for k, v in raw_headers.items() if k.lower() not in SECRET_HEADERS}
    payload = json.loads(body)
    event_type = payload.get("webhookEvent")
    return {
        "schema": "switchboard.inbound/1",
        "source": "jira",
        "delivery_id": headers.get("x-atlassian-webhook-identifier"),
        "event_type": event_type if isinstance(event_type, str) else None,
        "received_at_ms": RECEIVED_AT_MS,
        "headers": headers,
        "payload": payload,
    }


def assert_subset(actual: Any, expected: Any, path: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_subset(actual[key], value, f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def change(field, frm, to, from_id, to_id):
    return {"field": field, "from": frm, "to": to, "from_id": from_id, "to_id": to_id}


NORTHWIND = "https://northwind-ops.atlassian.net"
PRIYA = {"account_id": "5f8e3c2a9b1d4e0071a6c3d2", "display_name": "Priya Raman"}
TOMAS = {"account_id": "712020:8c1d5e2f-4b3a-4e6f-9a0b-7d2c1e3f4a5b", "display_name": "Tomás Ortega"}
SOME = "https://some-instance-test.atlassian.net"
TEST_USER = {"account_id": "5c5f880629be9642ba529340", "display_name": "Test User"}
SAMPLE_USER = {"account_id": "5cedcb4355a88a0fc86388ba", "display_name": "Sample User"}
HEX64 = re.compile(r"[0-9a-f]{64}")
DERIVED = "derived"  # event_id must be the sha256 fallback (no delivery id)

# Per-fixture expectations, written from the payloads by hand. Every own fixture needs one.
EXPECTED: dict[str, dict[str, Any]] = {
    "issue_created__incident.json": {
        "event_id": DERIVED,
        "site": NORTHWIND,
        "kind": "issue_created",
        "occurred_at_ms": 1731589200123,
        "changelog_id": "10500",
        "actor": PRIYA,
        "comment": None,
        "issue": {
            "id": "10231", "key": "OPS-142", "project_key": "OPS", "project_id": "10010",
            "issue_type": "Incident", "priority": "Highest", "status": "To Do", "status_category": "new",
            "summary": "Checkout payments failing for EU card customers", "labels": ["sev1", "payments"],
            "assignee": None, "reporter": PRIYA, "resolution": None, "security_level": None,
            "fix_versions": [], "url": f"{NORTHWIND}/browse/OPS-142", "partial": False,
        },
        "_change_fields": ["description", "labels", "priority", "reporter", "status", "summary"],
        "_changes_include": [
            change("status", None, "To Do", None, "10000"),
            change("reporter", None, "Priya Raman", None, PRIYA["account_id"]),
        ],
    },
    "issue_updated__status_in_progress.json": {
        "event_id": "0a1f3b9e-6c2d-4f87-9e51-3d7a2c8b4f10",
        "kind": "issue_updated",
        "occurred_at_ms": 1731589800456,
        "actor": TOMAS,
        "issue": {"id": "10231", "key": "OPS-142", "status": "In Progress", "status_category": "indeterminate",
                  "assignee": TOMAS, "partial": False},
        "changes": [change("status", "To Do", "In Progress", "10000", "3")],
        "changelog_id": "10501",
    },
    "issue_updated__resolved.json": {
        "event_id": DERIVED,
        "issue": {"id": "10231", "status": "Done", "status_category": "done", "resolution": "Fixed",
                  "fix_versions": ["payments-api 2024.11.2"]},
        "changes": [
            change("fixVersions", None, "payments-api 2024.11.2", None, "10031"),
            change("resolution", None, "Fixed", None, "10001"),
            change("status", "In Progress", "Done", "3", "10001"),
        ],
    },
    "issue_updated__reopened.json": {
        "actor": PRIYA,
        "issue": {"id": "10231", "status": "Reopened", "status_category": "new", "resolution": None},
        "changes": [
            change("resolution", "Fixed", None, "10001", None),
            change("status", "Done", "Reopened", "10001", "4"),
        ],
    },
    "issue_updated__moved_project.json": {
        "issue": {"id": "10231", "key": "SEC-17", "project_key": "SEC", "project_id": "10020",
                  "url": f"{NORTHWIND}/browse/SEC-17"},
        "changes": [
            change("issuekey", "OPS-142", "SEC-17", None, None),
            change("project", "Operations", "Security Response", "10010", "10020"),
            # no fieldId on this item: the display name is kept
            change("Workflow", "OPS: Incident workflow", "SEC: Incident workflow", "10110", "10140"),
        ],
    },
    "issue_created__restricted_security_level.json": {
        "kind": "issue_created",
        "issue": {"id": "10240", "key": "SEC-9", "project_key": "SEC",
                  "security_level": "Security incident responders", "labels": ["credentials"]},
        "_changes_include": [change("security", None, "Security incident responders", None, "10100")],
    },
    "issue_deleted.json": {
        "kind": "issue_deleted",
        "occurred_at_ms": 1731800000222,
        "changes": [],
        "changelog_id": None,
        "actor": PRIYA,
        "issue": {"id": "10229", "key": "OPS-140", "issue_type": "Task", "priority": "Medium",
                  "resolution": "Duplicate", "status_category": "done", "partial": False},
    },
    "comment_created.json": {
        "event_id": "5c2e8d41-97b3-4a0f-b1d6-e4f7a8c9d203",
        "kind": "comment_created",
        "occurred_at_ms": 1731590100987,
        "changes": [],
        "changelog_id": None,
        "actor": TOMAS,  # no top-level user on comment events: the comment's author
        "comment": {
            "id": "10815",
            "body": "Rolled back payments-api to 2024.11.1 ✅\nError rate is back under 0.1 %.\n\n"
            "Keeping it open until the café-region canary is green — see {{deploy-7421}}.",
            "author": TOMAS,
        },
        "issue": {"id": "10231", "key": "OPS-142", "project_key": "OPS", "status": "In Progress",
                  "summary": "Checkout payments failing for EU card customers", "partial": True,
                  "reporter": None, "labels": []},
    },
    "sprint_started.json": {"_unsupported": "sprint_started"},
    # captured payloads
    "webhook-issue-created.json": {
        "site": SOME, "kind": "issue_created", "occurred_at_ms": 1550286113023, "actor": TEST_USER,
        "issue": {"id": "10040", "key": "TES-41", "project_key": "TES", "issue_type": "Story",
                  "priority": "High", "status": "To Do", "labels": ["test-label"], "partial": False,
                  "url": f"{SOME}/browse/TES-41"},
        # "Status" (capitalised display name) on create; the stable fieldId is used
        "_changes_include": [change("status", None, "To Do", None, "10001")],
    },
    "webhook-issue-created-no-description.json": {
        "_changes_include": [change("description", None, None, None, None)],
    },
    "webhook-cloud-issue-created-many-fields.json": {
        "issue": {"id": "10509", "key": "KT-22", "labels": ["Label1", "Label2"],
                  "fix_versions": ["version1", "version2"], "assignee": SAMPLE_USER, "reporter": SAMPLE_USER,
                  "security_level": None},
        # legacy username in `to`, account id in tmpToAccountId
        "_changes_include": [
            change("assignee", None, "Sample User", None, "5cedcb4355a88a0fc86388ba"),
            change("customfield_10073", None, "1", None, "10035"),
            change("fixVersions", None, "d", None, "10000"),
        ],
    },
    "webhook-cloud-issue-updated-custom-field.json": {
        "changes": [change("customfield_10072", "1", "12", None, None)],
    },
    "webhook-issue-assigned-empty-changelog.json": {
        "kind": "issue_updated", "changes": [], "changelog_id": "10500",
        "issue": {"id": "10001", "key": "TEST-123", "assignee": {"account_id": "789012"}},
    },
    "webhook-issue-updated-assigned.json": {
        # old capture without tmpToAccountId: the legacy username is all there is
        "changes": [change("assignee", None, "Test User", None, "admin")],
        "issue": {"assignee": TEST_USER},
    },
    "webhook-issue-updated-assigned-nobody.json": {
        "changes": [change("assignee", "Test User", None, "admin", None)],
        "issue": {"assignee": None},
    },
    "webhook-issue-updated-resolved.json": {
        "issue": {"status": "Done", "status_category": "done", "resolution": "Done"},
        "changes": [change("resolution", None, "Done", None, "10000"),
                    change("status", "In Progress", "Done", "3", "10002")],
    },
    "webhook-issue-updated-reopened.json": {
        "issue": {"status": "To Do", "resolution": None},
        "changes": [change("resolution", "Done", None, "10000", None),
                    change("status", "Done", "To Do", "10002", "10001")],
    },
    "webhook-issue-updated-renamed.json": {
        "changes": [change("summary", "Unit test summary", "Unit test summary 1", None, None)],
    },
    "webhook-issue-updated-labels.json": {
        "changes": [change("labels", "bad test-label", "sad test-label", None, None)],
        "issue": {"labels": ["sad", "test-label"]},
    },
    "webhook-issue-updated-sprint.json": {"changes": [change("Sprint", "Sprint 1", "Sprint 2", None, None)]},
    "webhook-issue-updated-edited.json": {"changelog_id": "10225"},
    "webhook-server-old-issue-updated-no-event-type-edited.json": {
        "kind": "issue_updated",
        "changes": [change("description", "Unit test description, not that long",
                           "Unit test description, not that long, a little longer now", None, None)],
    },
    "webhook-issue-deleted.json": {
        "kind": "issue_deleted", "changes": [], "issue": {"id": "10303", "key": "IDT-19", "partial": False},
    },
    "webhook-cloud-comment-created.json": {
        "kind": "comment_created", "actor": TEST_USER,
        "comment": {"id": "10019", "body": "Added a comment", "author": TEST_USER},
        "issue": {"id": "10040", "key": "TES-41", "partial": True, "status_category": "new"},
    },
    "webhook-cloud-comment-updated.json": {
        "kind": "comment_updated", "actor": TEST_USER,
        "comment": {"id": "10019", "body": "Added a comment, then edited it"},
    },
    "webhook-cloud-comment-deleted.json": {
        # issue.self is ".../rest/api/2/10357" (no /issue/): the site is still found
        "kind": "comment_deleted", "site": "https://mmtest.atlassian.net", "actor": None,
        "comment": {"id": "10757", "body": "wd\n\ndwd"},
        "issue": {"id": "10357", "key": "KT-7", "url": "https://mmtest.atlassian.net/browse/KT-7", "partial": True},
    },
}


def test_every_own_fixture_has_expectations():
    assert OWN_FILES, f"no fixtures in {OWN}"
    missing = [p.name for p in OWN_FILES if p.name not in EXPECTED]
    assert not missing


def test_own_fixtures_cover_every_supported_issue_event_and_an_unsupported_one():
    types = {json.loads(p.read_bytes()).get("webhookEvent") for p in OWN_FILES}
    assert {"jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created"} <= types
    assert types - set(SUPPORTED_EVENTS)


@pytest.mark.parametrize("path", ALL_FILES)
def test_fixture_classifies_maps_and_validates(path: Path):
    envelope = envelope_for(path)
    schemas.validate("inbound.v1", envelope)
    payload = envelope["payload"]
    classified = classify(payload)
    expected = EXPECTED.get(path.name, {})

    if "_unsupported" in expected or not classified.supported:
        assert classified.supported is False
        assert classified.event_type == expected.get("_unsupported", payload.get("webhookEvent"))
        with pytest.raises(UnsupportedEvent):
            to_tracker_event(envelope)
        return

    record = to_tracker_event(envelope)
    schemas.validate("tracker_event.v1", record)
    jsonschema.Draft202012Validator(schemas.load("tracker_event.v1")).validate(record)
    assert orjson.loads(orjson.dumps(record)) == record
    assert to_tracker_event(copy.deepcopy(envelope)) == record

    assert classified.event_type == payload["webhookEvent"]
    assert record["issue"]["id"] == classified.issue_id == str(payload["issue"]["id"])
    assert record["kind"] == payload["webhookEvent"].removeprefix("jira:")
    assert record["issue"]["partial"] is record["kind"].startswith("comment_")
    assert record["received_at_ms"] == RECEIVED_AT_MS
    assert record["occurred_at_ms"] == payload["timestamp"]
    if envelope["delivery_id"]:
        assert record["event_id"] == envelope["delivery_id"]
    else:
        assert HEX64.fullmatch(record["event_id"])

    expected = {k: v for k, v in expected.items() if not k.startswith("_")}
    if expected.get("event_id") == DERIVED:
        assert HEX64.fullmatch(record["event_id"])
        del expected["event_id"]
    assert_subset(record, expected)
    spec = EXPECTED.get(path.name, {})
    if "_change_fields" in spec:
        assert [c["field"] for c in record["changes"]] == spec["_change_fields"]
    for wanted in spec.get("_changes_include", []):
        assert wanted in record["changes"]


def test_comment_and_issue_events_of_one_issue_share_the_key():
    keys = {classify(envelope_for(OWN / name)["payload"]).issue_id for name in (
        "issue_created__incident.json", "issue_updated__moved_project.json", "comment_created.json")}
    assert keys == {"10231"}


# --- classify -----------------------------------------------------------------------------------

def test_classify_old_server_payload_without_issue_event_type_name():
    payload = {"webhookEvent": "jira:issue_updated", "issue": {"id": "10040"}}
    assert classify(payload) == classify({**payload, "issue_event_type_name": "issue_updated"})
    assert classify(payload).supported


def test_classify_integer_id_becomes_string():
    assert classify({"webhookEvent": "comment_created", "issue": {"id": 10040}}).issue_id == "10040"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"webhookEvent": None},
        {"webhookEvent": 7},
        {"webhookEvent": "jira:worklog_updated", "issue": {"id": []}},
        {"webhookEvent": "issuelink_created", "issueLink": {"id": 1}},
        {"webhookEvent": "JIRA:ISSUE_CREATED", "issue": {"key": "OPS-1"}},
    ],
)
def test_classify_unknown_types_are_unsupported_not_errors(payload):
    classified = classify(payload)
    assert classified.supported is False
    assert classified.issue_id is None


def test_classify_unsupported_keeps_an_issue_id_when_there_is_one():
    classified = classify({"webhookEvent": "issue_property_set", "issue": {"id": "10040"}})
    assert (classified.event_type, classified.issue_id, classified.supported) == ("issue_property_set", "10040", False)


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ([], "$"),
        ({"webhookEvent": "jira:issue_created"}, "issue"),
        ({"webhookEvent": "comment_created", "issue": None}, "issue"),
        ({"webhookEvent": "comment_created", "issue": "OPS-1"}, "issue"),
        ({"webhookEvent": "jira:issue_deleted", "issue": {"key": "OPS-1"}}, "issue.id"),
        ({"webhookEvent": "jira:issue_updated", "issue": {"id": ""}}, "issue.id"),
        ({"webhookEvent": "jira:issue_updated", "issue": {"id": True}}, "issue.id"),
        ({"webhookEvent": "jira:issue_updated", "issue": {"id": 1.5}}, "issue.id"),
        ({"webhookEvent": "jira:issue_updated", "issue": {"id": {"value": 1}}}, "issue.id"),
    ],
)
def test_classify_supported_without_usable_issue_id_raises_with_path(payload, path):
    with pytest.raises(MappingError) as info:
        classify(payload)
    assert info.value.path == path


# --- mapping: malformed input -------------------------------------------------------------------

def _envelope(payload: Any, **overrides: Any) -> dict[str, Any]:
    return {"schema": "switchboard.inbound/1", "source": "jira", "delivery_id": None,
            "event_type": None, "received_at_ms": RECEIVED_AT_MS, "headers": {}, "payload": payload, **overrides}


def _mutated(mutate) -> dict[str, Any]:
    envelope = envelope_for(OWN / "issue_updated__resolved.json")
    mutate(envelope["payload"])
    return envelope


def _comment_mutated(mutate) -> dict[str, Any]:
    envelope = envelope_for(OWN / "comment_created.json")
    mutate(envelope["payload"])
    return envelope


def _set(path: str, value: Any):
    def mutate(payload):
        *parents, last = path.split(".")
        target = payload
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def _delete(path: str):
    def mutate(payload):
        *parents, last = path.split(".")
        target = payload
        for part in parents:
            target = target[part]
        del target[last]
    return mutate


MALFORMED = [
    ("envelope-not-object", lambda: ["not", "an", "envelope"], "envelope"),
    ("payload-not-object", lambda: _envelope(["x"]), "envelope.payload"),
    ("payload-missing", lambda: {k: v for k, v in _envelope({}).items() if k != "payload"}, "envelope.payload"),
    ("wrong-source", lambda: _envelope({"webhookEvent": "comment_created"}, source="zendesk"), "envelope.source"),
    ("received-missing", lambda: _envelope({"webhookEvent": "x"}, received_at_ms=None), "envelope.received_at_ms"),
    ("received-string", lambda: _envelope({"webhookEvent": "x"}, received_at_ms="1731"), "envelope.received_at_ms"),
    ("received-bool", lambda: _envelope({"webhookEvent": "x"}, received_at_ms=True), "envelope.received_at_ms"),
    ("delivery-id-object", lambda: _envelope({}, delivery_id={"id": 1}), "envelope.delivery_id"),
    ("issue-missing", lambda: _mutated(_delete("issue")), "issue"),
    ("issue-string", lambda: _mutated(_set("issue", "OPS-142")), "issue"),
    ("issue-id-missing", lambda: _mutated(_delete("issue.id")), "issue.id"),
    ("issue-id-float", lambda: _mutated(_set("issue.id", 10231.0)), "issue.id"),
    ("issue-key-list", lambda: _mutated(_set("issue.key", ["OPS-142"])), "issue.key"),
    ("fields-list", lambda: _mutated(_set("issue.fields", [])), "issue.fields"),
    ("status-string", lambda: _mutated(_set("issue.fields.status", "Done")), "issue.fields.status"),
    ("category-key-object", lambda: _mutated(_set("issue.fields.status.statusCategory.key", {})),
     "issue.fields.status.statusCategory.key"),
    ("project-string", lambda: _mutated(_set("issue.fields.project", "OPS")), "issue.fields.project"),
    ("labels-string", lambda: _mutated(_set("issue.fields.labels", "sev1")), "issue.fields.labels"),
    ("label-object", lambda: _mutated(_set("issue.fields.labels", ["ok", {"x": 1}])), "issue.fields.labels[1]"),
    ("fix-version-string", lambda: _mutated(_set("issue.fields.fixVersions", ["1.2"])),
     "issue.fields.fixVersions[0]"),
    ("assignee-string", lambda: _mutated(_set("issue.fields.assignee", "tomas")), "issue.fields.assignee"),
    ("assignee-id-bool", lambda: _mutated(_set("issue.fields.assignee.accountId", False)),
     "issue.fields.assignee.accountId"),
    ("security-name-list", lambda: _mutated(_set("issue.fields.security", {"name": []})),
     "issue.fields.security.name"),
    ("timestamp-string", lambda: _mutated(_set("timestamp", "1731597000789")), "timestamp"),
    ("timestamp-negative", lambda: _mutated(_set("timestamp", -1)), "timestamp"),
    ("changelog-list", lambda: _mutated(_set("changelog", [])), "changelog"),
    ("changelog-id-list", lambda: _mutated(_set("changelog.id", [1])), "changelog.id"),
    ("items-object", lambda: _mutated(_set("changelog.items", {})), "changelog.items"),
    ("item-string", lambda: _mutated(_set("changelog.items.1", "status")), "changelog.items[1]"),
    ("item-null", lambda: _mutated(_set("changelog.items.0", None)), "changelog.items[0]"),
    ("item-without-field", lambda: _mutated(_set("changelog.items.2", {"fromString": "a", "toString": "b"})),
     "changelog.items[2].field"),
    ("item-tostring-object", lambda: _mutated(_set("changelog.items.2.toString", {"v": 1})),
     "changelog.items[2].toString"),
    ("user-list", lambda: _mutated(_set("user", [])), "user"),
    ("comment-string", lambda: _comment_mutated(_set("comment", "hi")), "comment"),
    ("comment-id-missing", lambda: _comment_mutated(_delete("comment.id")), "comment.id"),
    ("comment-body-list", lambda: _comment_mutated(_set("comment.body", ["hi"])), "comment.body"),
    ("comment-adf-bad-node", lambda: _comment_mutated(_set("comment.body", {"type": "doc", "content": ["x"]})),
     "comment.body.content[0]"),
]


@pytest.mark.parametrize(("build", "path"), [pytest.param(b, p, id=i) for i, b, p in MALFORMED])
def test_malformed_input_raises_mapping_error_with_path(build, path):
    with pytest.raises(MappingError) as info:
        to_tracker_event(build())
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.code == "mapping"


def test_unsupported_event_raises_unsupported():
    with pytest.raises(UnsupportedEvent):
        to_tracker_event(_envelope({"webhookEvent": "worklog_updated", "worklog": {"issueId": "10231"}}))


# --- mapping: optional fields -------------------------------------------------------------------

def test_bare_minimum_payload_maps_to_nulls():
    record = to_tracker_event(_envelope({"webhookEvent": "jira:issue_updated", "issue": {"id": 10040}}))
    schemas.validate("tracker_event.v1", record)
    assert record["site"] is None
    assert record["occurred_at_ms"] == RECEIVED_AT_MS
    assert record["changes"] == [] and record["changelog_id"] is None
    assert record["comment"] is None and record["actor"] is None
    issue = record["issue"]
    assert issue["id"] == "10040"
    assert issue["partial"] is True  # no fields at all
    assert issue["labels"] == [] and issue["fix_versions"] == []
    nullable = set(issue) - {"id", "labels", "fix_versions", "partial"}
    assert {k: issue[k] for k in nullable} == dict.fromkeys(nullable)


def test_explicit_nulls_everywhere_are_accepted():
    payload = {
        "webhookEvent": "jira:issue_updated", "timestamp": None, "user": None, "changelog": None, "comment": None,
        "issue": {"id": "1", "key": None, "self": None, "fields": {
            "project": None, "status": {"name": None, "statusCategory": None}, "labels": None,
            "fixVersions": [None, {"name": None}], "assignee": {}, "security": None, "summary": ""}},
    }
    record = to_tracker_event(_envelope(payload))
    schemas.validate("tracker_event.v1", record)
    assert record["issue"]["partial"] is False
    assert record["issue"]["summary"] is None and record["issue"]["assignee"] is None
    assert record["issue"]["fix_versions"] == []


def test_project_key_falls_back_to_the_issue_key():
    payload = {"webhookEvent": "comment_deleted", "issue": {"id": "7", "key": "DATA_2-31", "fields": {}}}
    assert to_tracker_event(_envelope(payload))["issue"]["project_key"] == "DATA_2"


@pytest.mark.parametrize(("key", "expected"), [("indeterminate", "indeterminate"), ("undefined", None), (None, None)])
def test_status_category_outside_the_three_known_ones_is_null(key, expected):
    payload = {"webhookEvent": "jira:issue_updated",
               "issue": {"id": "1", "fields": {"status": {"name": "Triage", "statusCategory": {"key": key}}}}}
    assert to_tracker_event(_envelope(payload))["issue"]["status_category"] == expected


@pytest.mark.parametrize(
    ("self_url", "site"),
    [
        ("https://acme.atlassian.net/rest/api/2/issue/1", "https://acme.atlassian.net"),
        ("https://jira.example.com/jira/rest/api/2/issue/1", "https://jira.example.com/jira"),
        ("http://localhost:8080/rest/api/2/issue/1", "http://localhost:8080"),
        ("https://bot:pw@acme.atlassian.net/rest/api/2/issue/1", "https://acme.atlassian.net"),
        ("https://acme.atlassian.net/", "https://acme.atlassian.net"),
        ("not a url", None),
        ("ftp://acme.atlassian.net/rest/api/2/issue/1", None),
    ],
)
def test_site_and_url_from_issue_self(self_url, site):
    payload = {"webhookEvent": "jira:issue_updated", "issue": {"id": "1", "key": "OPS-1", "self": self_url}}
    record = to_tracker_event(_envelope(payload))
    assert record["site"] == site
    assert record["issue"]["url"] == (f"{site}/browse/OPS-1" if site else None)


def test_site_falls_back_to_the_comment_self():
    payload = {"webhookEvent": "comment_created", "issue": {"id": "1", "key": "OPS-1"},
               "comment": {"id": "5", "self": "https://acme.atlassian.net/rest/api/2/issue/1/comment/5"}}
    assert to_tracker_event(_envelope(payload))["issue"]["url"] == "https://acme.atlassian.net/browse/OPS-1"


def test_server_users_without_account_id_use_key():
    payload = {"webhookEvent": "jira:issue_updated", "user": {"name": "jdoe", "key": "JIRAUSER10100",
                                                             "displayName": "J. Doe"}, "issue": {"id": "1"}}
    assert to_tracker_event(_envelope(payload))["actor"] == {"account_id": "JIRAUSER10100", "display_name": "J. Doe"}


def test_comment_updated_actor_is_the_update_author_and_deleted_has_none():
    envelope = envelope_for(OWN / "comment_created.json")
    envelope["payload"]["comment"]["updateAuthor"] = {"accountId": "u-2", "displayName": "Editor"}
    envelope["payload"]["webhookEvent"] = "comment_updated"
    assert to_tracker_event(envelope)["actor"] == {"account_id": "u-2", "display_name": "Editor"}
    envelope["payload"]["webhookEvent"] = "comment_deleted"
    assert to_tracker_event(envelope)["actor"] is None


def test_adf_comment_body_is_flattened_to_text():
    envelope = envelope_for(OWN / "comment_created.json")
    envelope["payload"]["comment"]["body"] = adf_from_text("line one\nline two\n\nsecond")
    assert to_tracker_event(envelope)["comment"]["body"] == "line one\nline two\n\nsecond"


# --- event id -----------------------------------------------------------------------------------

def _derived_id(**changes: Any) -> str:
    payload = {"webhookEvent": "comment_updated", "timestamp": 1, "issue": {"id": "1"},
               "changelog": {"id": "9", "items": []}, "comment": {"id": "5"}}
    payload.update(changes)
    return to_tracker_event(_envelope(payload))["event_id"]


def test_derived_event_id_is_stable_and_depends_on_each_part():
    base = _derived_id()
    assert HEX64.fullmatch(base)
    assert _derived_id() == base
    assert _derived_id(user={"accountId": "someone"}) == base  # not part of the identity
    variants = {
        _derived_id(webhookEvent="comment_created"),
        _derived_id(issue={"id": "2"}),
        _derived_id(timestamp=2),
        _derived_id(changelog={"id": "10", "items": []}),
        _derived_id(comment={"id": "6"}),
    }
    assert base not in variants and len(variants) == 5


def test_delivery_id_wins_and_empty_delivery_id_is_ignored():
    payload = {"webhookEvent": "jira:issue_created", "issue": {"id": "1"}}
    assert to_tracker_event(_envelope(payload, delivery_id="d-1"))["event_id"] == "d-1"
    assert HEX64.fullmatch(to_tracker_event(_envelope(payload, delivery_id=""))["event_id"])


def test_mapping_does_not_mutate_the_envelope():
    envelope = envelope_for(OWN / "issue_updated__moved_project.json")
    before = copy.deepcopy(envelope)
    to_tracker_event(envelope)
    assert envelope == before


# --- ADF ----------------------------------------------------------------------------------------

def test_adf_from_text_paragraphs_and_hard_breaks():
    assert adf_from_text("Rolled back.\nWatching.\n\n  \nNext: RCA") == {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Rolled back."}, {"type": "hardBreak"}, {"type": "text", "text": "Watching."},
            ]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Next: RCA"}]},
        ],
    }


@pytest.mark.parametrize("text", ["", "\n\n", "   \n \t "])
def test_adf_from_blank_text_is_an_empty_doc(text):
    assert adf_from_text(text) == {"type": "doc", "version": 1, "content": []}


def test_adf_from_text_normalises_crlf():
    assert adf_from_text("a\r\nb\rc") == adf_from_text("a\nb\nc")


def test_text_from_adf_of_a_rich_document():
    doc = {"type": "doc", "version": 1, "content": [
        {"type": "heading", "attrs": {"level": 3}, "content": [{"type": "text", "text": "Impact"}]},
        {"type": "paragraph", "content": [
            {"type": "text", "text": "Paged "},
            {"type": "mention", "attrs": {"id": "5f8e", "text": "@Priya Raman"}},
            {"type": "text", "text": " ", "marks": [{"type": "strong"}]},
            {"type": "emoji", "attrs": {"shortName": ":fire:", "text": "🔥"}},
            {"type": "hardBreak"},
            {"type": "inlineCard", "attrs": {"url": "https://status.example.com/i/1"}},
        ]},
        {"type": "bulletList", "content": [
            {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "one"}]}]},
            {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "two"}]}]},
        ]},
        {"type": "rule"},
        {"type": "codeBlock", "content": [{"type": "text", "text": "kubectl rollout undo"}]},
    ]}
    assert text_from_adf(doc) == (
        "Impact\n\nPaged @Priya Raman 🔥\nhttps://status.example.com/i/1\n\none\ntwo\n\nkubectl rollout undo"
    )


def test_text_from_adf_passes_strings_and_none():
    assert text_from_adf("h3. wiki *markup*") == "h3. wiki *markup*"
    assert text_from_adf(None) == ""


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ([], "doc"),
        ({"content": []}, "doc"),
        ({"type": "doc", "content": "text"}, "doc.content"),
        ({"type": "doc", "content": [{"type": "paragraph", "content": [{"type": "text"}]}]},
         "doc.content[0].content[0].text"),
    ],
)
def test_text_from_adf_rejects_malformed_nodes(doc, path):
    with pytest.raises(MappingError) as info:
        text_from_adf(doc)
    assert info.value.path == path


_lines = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)


@given(st.lists(st.lists(_lines.filter(str.strip), min_size=1, max_size=4), max_size=4))
def test_adf_round_trip(paragraphs):
    text = "\n\n".join("\n".join(lines) for lines in paragraphs)
    doc = adf_from_text(text)
    assert len(doc["content"]) == len(paragraphs)
    assert text_from_adf(doc) == text
