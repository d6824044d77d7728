"""Zendesk classify + mapping over our fixtures and the captured samples in ../shared/contracts."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from connectors.errors import MappingError, UnsupportedEvent
from connectors.zendesk.events import EXPORT_EVENT_TYPE, classify
from connectors.zendesk.mapping import to_support_event

REPO = Path(__file__).resolve().parents[2]
OWN = REPO / "tests" / "fixtures" / "zendesk"
CAPTURED = REPO.parent / "shared" / "contracts" / "zendesk" / "samples"
RECEIVED_AT_MS = 1_741_100_000_000
HUB = "9100000000777"
FIELD = "360012345678"
#: Headers the receiver must never keep in the envelope.
SECRET_HEADERS = {"authorization", "x-zendesk-webhook-signature"}
HEX64 = re.compile(r"[0-9a-f]{64}")
DERIVED = "derived"


def _payload_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".headers.json"))


OWN_FILES = _payload_files(OWN)
CAPTURED_FILES = _payload_files(CAPTURED)
ALL_FILES = [pytest.param(p, id=f"own/{p.name}") for p in OWN_FILES] + (
    [pytest.param(p, id=f"captured/{p.name}") for p in CAPTURED_FILES]
    or [pytest.param(None, id="captured", marks=pytest.mark.skip(reason=f"captured samples absent: {CAPTURED}"))]
)


def envelope_for(path: Path) -> dict[str, Any]:
    """The inbound.zendesk record the receiver (or the poller, for export_*) would produce."""
    body = path.read_bytes()
    headers_file = path.with_name(path.stem + ".headers.json")
    raw_headers = json.loads(headers_file.read_bytes()) if headers_file.exists() else {}
    headers = {k.lower(): v for k, v in raw_headers.items() if k.lower() not in SECRET_HEADERS}
    payload = json.loads(body)
    if path.name.startswith("export_"):
        event_type = EXPORT_EVENT_TYPE
    else:
        event_type = classify(payload).event_type
    return {
        "schema": "switchboard.inbound/1",
        "source": "zendesk",
        "delivery_id": headers.get("x-zendesk-webhook-invocation-id"),
        "event_type": event_type,
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


TICKET_48213 = {
    "id": "48213", "subject": "Checkout payments failing for EU cards", "organization_id": "9100000002001",
    "requester_id": "9100000000555",
}
# Per-fixture expectations, written from the payloads by hand. Every own fixture needs one.
EXPECTED: dict[str, dict[str, Any]] = {
    "event_ticket_created.json": {
        "event_id": "0195a1c2-6f3e-7d41-9a2b-3c4d5e6f7081", "kind": "ticket_created",
        "occurred_at_ms": 1741079560418, "actor_id": "9100000000555", "via_hub": False, "comment": None,
        "ticket": {**TICKET_48213, "status": "new", "tags": ["eu", "payments"], "organization_name": None,
                   "jira_key_field": None, "url": None, "updated_at_ms": 1741079560000, "merged_into": None,
                   "partial": True},
    },
    "event_ticket_status_changed.json": {
        "kind": "ticket_status_changed", "actor_id": "9100000000101", "occurred_at_ms": 1741080011250,
        "ticket": {**TICKET_48213, "status": "open", "partial": True},
    },
    "event_comment_added__internal_note_by_hub.json": {
        "kind": "comment_added", "actor_id": HUB, "via_hub": True,
        "comment": {"id": "39440187712", "body": "Linked to Jira OPS-142 (Highest). Updates will be posted here.",
                    "public": False, "author_id": HUB},
        "ticket": {"tags": ["eu", "jira_linked", "payments"]},
    },
    "event_comment_added__public_reply.json": {
        "event_id": "0195a1d8-44aa-7b0c-9d1e-2f3a4b5c6d7e", "kind": "comment_added", "via_hub": False,
        "comment": {"id": "39440190031", "public": True, "author_id": "9100000000101",
                    "body": 'Hi Anna, we\'re on it — "card_declined" is a known issue 🔧\nNext update within the hour.'},
    },
    "event_tags_changed.json": {"kind": "tags_changed", "via_hub": True,
                                "ticket": {"tags": ["eu", "jira_linked", "payments"]}},
    "event_custom_field_changed__jira_key.json": {
        "kind": "ticket_updated", "via_hub": True, "ticket": {"jira_key_field": "OPS-142", "partial": True},
    },
    "event_custom_field_changed__other_field.json": {"kind": "ticket_updated", "ticket": {"jira_key_field": None}},
    "event_ticket_merged.json": {
        "kind": "ticket_merged", "occurred_at_ms": 1741081470512,
        "ticket": {"id": "48214", "status": "closed", "merged_into": "48213", "tags": ["closed_by_merge", "eu"]},
    },
    "event_ticket_soft_deleted.json": {
        "kind": "ticket_deleted", "ticket": {"id": "48190", "status": None, "organization_id": None, "tags": []},
    },
    "event_ticket_priority_changed.json": {"kind": "ticket_updated", "ticket": {"status": "open"}},
    "event_comment_made_private__unsupported.json": {"_unsupported": "zen:event-type:ticket.comment_made_private"},
    "event_organization_created__unsupported.json": {"_unsupported": "zen:event-type:organization.created"},
    "trigger_ticket_updated.json": {
        "event_id": "8123450006", "kind": "ticket_updated", "occurred_at_ms": 1741082709000,
        "actor_id": "9100000000101", "via_hub": False, "comment": None,
        "ticket": {**TICKET_48213, "status": "pending", "organization_name": "Café Olé GmbH",
                   "tags": ["eu", "jira_linked", "payments"], "jira_key_field": "OPS-142",
                   "url": "https://northwind.zendesk.com/agent/tickets/48213", "updated_at_ms": 1741082709000,
                   "merged_into": None, "partial": False},
    },
    "trigger_comment_added__hub_note.json": {
        "kind": "comment_added", "actor_id": HUB, "via_hub": True,
        "comment": {"id": "39440199999", "body": "Jira OPS-142 moved to In Progress.", "public": False,
                    "author_id": HUB},
        "ticket": {"status": "open", "partial": False},
    },
    "trigger_ticket_created__no_organization.json": {
        "event_id": DERIVED, "kind": "ticket_created", "actor_id": "9100000000557", "comment": None,
        "ticket": {"id": "48230", "status": "new", "organization_id": None, "organization_name": None, "tags": [],
                   "jira_key_field": None, "requester_id": "9100000000557"},
    },
    "trigger_ticket_updated__on_hold.json": {"event_id": DERIVED, "ticket": {"status": "hold"}},
    "trigger_other_body__unsupported.json": {"_unsupported": None},
    "export_ticket.json": {
        "event_id": DERIVED, "kind": "snapshot", "occurred_at_ms": 1741082709000, "actor_id": None, "via_hub": False,
        "comment": None,
        "ticket": {**TICKET_48213, "status": "pending", "organization_name": None,
                   "tags": ["eu", "jira_linked", "payments"], "jira_key_field": "OPS-142",
                   "url": "https://northwind.zendesk.com/agent/tickets/48213", "updated_at_ms": 1741082709000,
                   "merged_into": None, "partial": False},
    },
    "export_ticket__merged_source.json": {
        "kind": "snapshot", "ticket": {"id": "48214", "status": "closed", "jira_key_field": None, "partial": False},
    },
    "export_ticket__deleted.json": {"kind": "ticket_deleted", "ticket": {"id": "48190", "status": None}},
    # captured samples
    "webhook-event.ticket.created.json": {
        "event_id": "cbe4028c-0000-4000-8000-000000000001", "kind": "ticket_created", "occurred_at_ms": 1736331127672,
        "actor_id": "9000000000001",
        "ticket": {"id": "5158", "subject": "Printer on fire", "status": "new", "tags": ["printer"],
                   "organization_id": None, "requester_id": "9000000000001", "partial": True},
    },
    "webhook-event.user.active_changed.json": {"_unsupported": "zen:event-type:user.active_changed"},
}


def test_every_own_fixture_has_expectations():
    assert OWN_FILES, f"no fixtures in {OWN}"
    assert [p.name for p in OWN_FILES if p.name not in EXPECTED] == []


def test_own_fixtures_cover_every_kind_and_both_styles():
    kinds, styles = set(), set()
    for path in OWN_FILES:
        envelope = envelope_for(path)
        if not path.name.startswith("export_"):
            styles.add(classify(envelope["payload"]).style)
        try:
            kinds.add(to_support_event(envelope, hub_user_id=HUB, jira_key_field_id=FIELD)["kind"])
        except UnsupportedEvent:
            kinds.add("unsupported")
    assert kinds == set(schemas.load("support_event.v1")["properties"]["kind"]["enum"]) | {"unsupported"}
    assert styles == {"event", "trigger"}


@pytest.mark.parametrize("path", ALL_FILES)
def test_fixture_classifies_maps_and_validates(path: Path):
    envelope = envelope_for(path)
    schemas.validate("inbound.v1", envelope)
    expected = EXPECTED.get(path.name, {})

    if "_unsupported" in expected:
        classified = classify(envelope["payload"])
        assert classified.supported is False and classified.event_type == expected["_unsupported"]
        with pytest.raises(UnsupportedEvent):
            to_support_event(envelope, hub_user_id=HUB, jira_key_field_id=FIELD)
        return

    record = to_support_event(envelope, hub_user_id=HUB, jira_key_field_id=FIELD)
    schemas.validate("support_event.v1", record)
    jsonschema.Draft202012Validator(schemas.load("support_event.v1")).validate(record)
    assert orjson.loads(orjson.dumps(record)) == record
    assert to_support_event(copy.deepcopy(envelope), hub_user_id=HUB, jira_key_field_id=FIELD) == record
    assert record["received_at_ms"] == RECEIVED_AT_MS and record["source"] == "zendesk"
    if not path.name.startswith("export_"):
        assert record["ticket"]["id"] == classify(envelope["payload"]).ticket_id

    expected = dict(expected)
    if expected.get("event_id") == DERIVED:
        assert HEX64.fullmatch(record["event_id"])
        del expected["event_id"]
    assert_subset(record, expected)


def test_event_id_prefers_the_event_uuid_then_the_delivery_then_a_stable_hash():
    envelope = envelope_for(OWN / "event_ticket_created.json")
    assert to_support_event(envelope)["event_id"] == envelope["payload"]["id"]
    del envelope["payload"]["id"]
    envelope["delivery_id"] = "inv-1"
    assert to_support_event(envelope)["event_id"] == "inv-1"
    envelope["delivery_id"] = None
    first = to_support_event(envelope)["event_id"]
    assert HEX64.fullmatch(first) and to_support_event(copy.deepcopy(envelope))["event_id"] == first
    envelope["payload"]["time"] = "2025-03-04T09:12:41.000000000Z"
    assert to_support_event(envelope)["event_id"] != first


def test_snapshot_event_id_changes_with_the_ticket_version_only():
    envelope = envelope_for(OWN / "export_ticket.json")
    first = to_support_event(envelope)["event_id"]
    envelope["received_at_ms"] += 5000
    assert to_support_event(envelope)["event_id"] == first  # a re-export of the same version
    envelope["payload"]["updated_at"] = "2025-03-04T10:06:00Z"
    assert to_support_event(envelope)["event_id"] != first


def test_via_hub_needs_the_hub_user():
    envelope = envelope_for(OWN / "event_comment_added__internal_note_by_hub.json")
    assert to_support_event(envelope, hub_user_id=HUB)["via_hub"] is True
    assert to_support_event(envelope, hub_user_id="9100000000101")["via_hub"] is False
    assert to_support_event(envelope)["via_hub"] is False


def test_jira_key_needs_the_field_id():
    for name in ("export_ticket.json", "event_custom_field_changed__jira_key.json"):
        envelope = envelope_for(OWN / name)
        assert to_support_event(envelope, jira_key_field_id=FIELD)["ticket"]["jira_key_field"] == "OPS-142"
        assert to_support_event(envelope)["ticket"]["jira_key_field"] is None
        assert to_support_event(envelope, jira_key_field_id="1")["ticket"]["jira_key_field"] is None


def test_custom_field_values_may_come_bare():
    envelope = envelope_for(OWN / "event_custom_field_changed__jira_key.json")
    envelope["payload"]["event"]["current"] = "OPS-7"
    assert to_support_event(envelope, jira_key_field_id=FIELD)["ticket"]["jira_key_field"] == "OPS-7"


def test_trigger_body_missing_recommended_keys_is_partial():
    envelope = envelope_for(OWN / "trigger_ticket_updated.json")
    del envelope["payload"]["ticket"]["jira_key"]
    record = to_support_event(envelope)
    assert record["ticket"]["partial"] is True and record["ticket"]["jira_key_field"] is None


def test_trigger_event_defaults_to_ticket_updated_and_tags_may_be_a_list():
    envelope = envelope_for(OWN / "trigger_ticket_updated.json")
    del envelope["payload"]["event"]
    envelope["payload"]["ticket"]["tags"] = ["a", "", "b"]
    record = to_support_event(envelope)
    assert record["kind"] == "ticket_updated" and record["ticket"]["tags"] == ["a", "b"]


def test_occurred_at_falls_back_to_updated_at_then_receive_time():
    envelope = envelope_for(OWN / "event_ticket_status_changed.json")
    del envelope["payload"]["time"]
    assert to_support_event(envelope)["occurred_at_ms"] == 1741080011000
    del envelope["payload"]["detail"]["updated_at"]
    assert to_support_event(envelope)["occurred_at_ms"] == RECEIVED_AT_MS


def test_minimal_event_uses_the_subject_for_the_ticket_id():
    envelope = {"source": "zendesk", "received_at_ms": 1, "payload": {
        "type": "zen:event-type:ticket.status_changed", "subject": "zen:ticket:77", "event": {"current": "SOLVED"}}}
    record = to_support_event(envelope)
    assert record["ticket"]["id"] == "77" and record["ticket"]["status"] == "solved"
    schemas.validate("support_event.v1", record)


@pytest.mark.parametrize(
    ("name", "mutate", "path"),
    [
        ("event_ticket_created.json", lambda p: p["detail"].update(tags="eu payments"), None),
        ("event_ticket_created.json", lambda p: p["detail"].update(tags=[1]), "detail.tags[0]"),
        ("event_ticket_created.json", lambda p: p["detail"].update(id="abc"), "detail.id"),
        ("event_ticket_created.json", lambda p: p.update(detail="x"), "detail"),
        ("event_ticket_created.json", lambda p: p["detail"].update(updated_at="yesterday"), "detail.updated_at"),
        ("event_ticket_created.json", lambda p: p["detail"].update(requester_id=True), "detail.requester_id"),
        ("event_ticket_created.json", lambda p: p["detail"].update(organization_id="acme"), "detail.organization_id"),
        ("event_ticket_created.json", lambda p: p.update(time=12), "time"),
        ("event_comment_added__public_reply.json", lambda p: p["event"].update(comment=None), "event.comment"),
        ("event_comment_added__public_reply.json", lambda p: p["event"]["comment"].update(is_public="yes"),
         "event.comment.is_public"),
        ("event_ticket_merged.json", lambda p: p["event"].update(target_ticket_id=[1]), "event.target_ticket_id"),
        ("trigger_ticket_updated.json", lambda p: p.update(ticket="48213"), "ticket"),
        ("trigger_ticket_updated.json", lambda p: p["ticket"].update(id=""), "ticket.id"),
        ("trigger_ticket_updated.json", lambda p: p["ticket"].update(organization=[]), "ticket.organization"),
        ("trigger_comment_added__hub_note.json", lambda p: p["ticket"].pop("latest_comment"), "ticket.latest_comment"),
        ("export_ticket.json", lambda p: p.update(id=None), "id"),
        ("export_ticket.json", lambda p: p.update(custom_fields={"a": 1}), "custom_fields"),
        ("export_ticket.json", lambda p: p["custom_fields"].insert(0, "x"), "custom_fields[0]"),
    ],
)
def test_malformed_input_names_the_path(name, mutate, path):
    envelope = envelope_for(OWN / name)
    mutate(envelope["payload"])
    if path is None:  # a string where a list is expected is how {{ticket.tags}} renders: accepted
        assert to_support_event(envelope)["ticket"]["tags"] == ["eu", "payments"]
        return
    with pytest.raises(MappingError) as info:
        to_support_event(envelope, jira_key_field_id=FIELD)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"source": "jira"}, "envelope.source"),
        ({"payload": []}, "envelope.payload"),
        ({"received_at_ms": None}, "envelope.received_at_ms"),
        ({"received_at_ms": True}, "envelope.received_at_ms"),
        ({"delivery_id": 5.5}, "envelope.delivery_id"),
    ],
)
def test_malformed_envelope_names_the_path(change, path):
    envelope = {**envelope_for(OWN / "event_ticket_created.json"), **change}
    with pytest.raises(MappingError) as info:
        to_support_event(envelope)
    assert info.value.path == path
