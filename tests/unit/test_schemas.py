"""The schema helper and the inbound / tracker_event schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

import schemas
from schemas import SchemaError

SCHEMA_DIR = Path(schemas.__file__).resolve().parent
ALL = sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))

USER = {"account_id": "5f8e3c2a9b1d4e0071a6c3d2", "display_name": "Priya Raman"}
TRACKER = {
    "schema": "switchboard.tracker_event/1",
    "event_id": "0a1f3b9e-6c2d-4f87-9e51-3d7a2c8b4f10",
    "source": "jira",
    "site": "https://example.atlassian.net",
    "kind": "issue_updated",
    "occurred_at_ms": 1700000000000,
    "received_at_ms": 1700000000123,
    "issue": {
        "id": "10001", "key": "OPS-1", "project_key": "OPS", "project_id": "10000", "issue_type": "Incident",
        "priority": "Highest", "status": "In Progress", "status_category": "indeterminate", "summary": "Down",
        "labels": ["sev1"], "assignee": dict(USER), "reporter": None, "resolution": None, "security_level": None,
        "fix_versions": ["1.2"], "url": "https://example.atlassian.net/browse/OPS-1", "partial": False,
    },
    "changes": [{"field": "status", "from": "To Do", "to": "In Progress", "from_id": "1", "to_id": "3"}],
    "changelog_id": "10100",
    "comment": {"id": "10815", "body": "on it", "author": dict(USER)},
    "actor": dict(USER),
}
INBOUND = {
    "schema": "switchboard.inbound/1", "source": "jira", "delivery_id": "d-1", "event_type": "jira:issue_updated",
    "received_at_ms": 1700000000000, "headers": {"x-atlassian-webhook-retry": "1"},
    "payload": {"webhookEvent": "jira:issue_updated", "issue": {"id": "10001"}, "anything": [1, {"at": "all"}]},
}


def _with(record, path, value=..., delete=False):
    out = copy.deepcopy(record)
    *parents, last = path.split(".")
    target = out
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if delete:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return out


@pytest.mark.parametrize("name", ALL)
def test_every_schema_file_is_valid_2020_12_and_loads_by_stem(name):
    document = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)
    assert schemas.load(name) == document
    assert callable(schemas.validator(name))


def test_names_lists_every_file():
    assert schemas.names() == ALL
    assert {"inbound.v1", "tracker_event.v1"} <= set(ALL)


def test_validator_is_compiled_once():
    assert schemas.validator("tracker_event.v1") is schemas.validator("tracker_event.v1")


def test_load_returns_a_private_copy():
    schemas.load("tracker_event.v1")["properties"].clear()
    assert "issue" in schemas.load("tracker_event.v1")["properties"]
    schemas.validate("tracker_event.v1", TRACKER)


@pytest.mark.parametrize("name", ["nope.v1", "../pyproject", "tracker_event.v1.json", ""])
def test_unknown_names_raise_key_error(name):
    with pytest.raises(KeyError):
        schemas.load(name)
    with pytest.raises(KeyError):
        schemas.validator(name)


def test_examples_are_valid():
    schemas.validate("tracker_event.v1", TRACKER)
    schemas.validate("inbound.v1", INBOUND)


NULLABLE_TRACKER = [
    "site", "changelog_id", "comment", "actor", "comment.body", "comment.author",
    *(f"issue.{k}" for k in ("key", "project_key", "project_id", "issue_type", "priority", "status",
                              "status_category", "summary", "assignee", "reporter", "resolution",
                              "security_level", "url")),
    "issue.assignee.account_id", "issue.assignee.display_name",
    "changes.0.from", "changes.0.to", "changes.0.from_id", "changes.0.to_id",
]


@pytest.mark.parametrize("path", NULLABLE_TRACKER)
def test_tracker_nullable_fields_accept_null(path):
    schemas.validate("tracker_event.v1", _with(TRACKER, path, None))


@pytest.mark.parametrize("path", ["delivery_id", "event_type"])
def test_inbound_nullable_fields_accept_null(path):
    schemas.validate("inbound.v1", _with(INBOUND, path, None))


BAD_TRACKER = [
    ("extra-top-level", lambda r: {**r, "payload": {}}, ""),
    ("missing-issue", lambda r: _with(r, "issue", delete=True), ""),
    ("missing-actor", lambda r: _with(r, "actor", delete=True), ""),
    ("wrong-schema", lambda r: _with(r, "schema", "switchboard.tracker_event/2"), "schema"),
    ("unknown-kind", lambda r: _with(r, "kind", "worklog_updated"), "kind"),
    ("event-id-null", lambda r: _with(r, "event_id", None), "event_id"),
    ("occurred-string", lambda r: _with(r, "occurred_at_ms", "1700000000000"), "occurred_at_ms"),
    ("received-float", lambda r: _with(r, "received_at_ms", 1.5), "received_at_ms"),
    ("issue-id-int", lambda r: _with(r, "issue.id", 10001), "issue.id"),
    ("issue-id-null", lambda r: _with(r, "issue.id", None), "issue.id"),
    ("issue-extra", lambda r: _with(r, "issue.components", []), "issue"),
    ("issue-missing-url", lambda r: _with(r, "issue.url", delete=True), "issue"),
    ("bad-category", lambda r: _with(r, "issue.status_category", "undefined"), "issue.status_category"),
    ("partial-null", lambda r: _with(r, "issue.partial", None), "issue.partial"),
    ("labels-null", lambda r: _with(r, "issue.labels", None), "issue.labels"),
    ("label-int", lambda r: _with(r, "issue.labels", [1]), "issue.labels[0]"),
    ("user-extra", lambda r: _with(r, "actor.email", "a@example.com"), "actor"),
    ("change-no-field", lambda r: _with(r, "changes.0.field", delete=True), "changes[0]"),
    ("change-field-null", lambda r: _with(r, "changes.0.field", None), "changes[0].field"),
    ("comment-id-null", lambda r: _with(r, "comment.id", None), "comment.id"),
    ("site-not-url", lambda r: _with(r, "site", "example.atlassian.net"), "site"),
]


@pytest.mark.parametrize(("mutate", "path"), [pytest.param(m, p, id=i) for i, m, p in BAD_TRACKER])
def test_bad_tracker_records_raise_schema_error_with_path(mutate, path):
    record = mutate(TRACKER)
    with pytest.raises(SchemaError) as info:
        schemas.validate("tracker_event.v1", record)
    assert info.value.schema == "tracker_event.v1"
    assert info.value.path == path
    assert str(info.value).startswith("tracker_event.v1: ")
    assert info.value.message
    # the reference implementation agrees that the record is invalid
    assert not jsonschema.Draft202012Validator(schemas.load("tracker_event.v1")).is_valid(record)


BAD_INBOUND = [
    ("extra-top-level", lambda r: {**r, "raw": "…"}, ""),
    ("payload-list", lambda r: _with(r, "payload", []), "payload"),
    ("source-upper", lambda r: _with(r, "source", "Jira"), "source"),
    ("header-authorization", lambda r: _with(r, "headers.authorization", "Basic eDp5"), "headers"),
    ("header-signature", lambda r: _with(r, "headers.x-hub-signature", "sha256=00"), "headers"),
    ("header-not-lowercase", lambda r: _with(r, "headers.X-Atlassian-Webhook-Flow", "Primary"), "headers"),
    ("header-value-list", lambda r: _with(r, "headers.x-atlassian-webhook-flow", ["Primary"]),
     "headers.x-atlassian-webhook-flow"),
    ("received-negative", lambda r: _with(r, "received_at_ms", -1), "received_at_ms"),
    ("delivery-id-empty", lambda r: _with(r, "delivery_id", ""), "delivery_id"),
]


@pytest.mark.parametrize(("mutate", "path"), [pytest.param(m, p, id=i) for i, m, p in BAD_INBOUND])
def test_bad_inbound_records_raise_schema_error_with_path(mutate, path):
    record = mutate(INBOUND)
    with pytest.raises(SchemaError) as info:
        schemas.validate("inbound.v1", record)
    assert info.value.path == path
    assert not jsonschema.Draft202012Validator(schemas.load("inbound.v1")).is_valid(record)


@pytest.mark.parametrize("record", [None, [], "x", 1])
def test_non_objects_fail_at_the_root(record):
    with pytest.raises(SchemaError) as info:
        schemas.validate("tracker_event.v1", record)
    assert info.value.path == ""
