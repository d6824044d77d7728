"""Salesforce mapping over our fixtures and the captured samples in ../shared/contracts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from tests.contracts import CONTRACTS, absent, require
from connectors.errors import MappingError, UnsupportedEvent
from connectors.salesforce.events import cdc_envelope, classify, poll_envelope
from connectors.salesforce.mapping import to_sales_events
from connectors.salesforce.settings import FeatureRequestFields

REPO = Path(__file__).resolve().parents[2]
OWN = REPO / "tests" / "fixtures" / "salesforce"
CAPTURED = CONTRACTS / "salesforce" / "samples"
RECEIVED_AT_MS = 1_741_100_000_000
HUB_USER, HUB_CLIENT = "005Hq000000IntGIAS", "switchboard"
REP = "005Hq000000PerSIAS"
OPP, OPP2, OPP3 = "006Hq00000LqWxYIAV", "006Hq00000LqWxZIAV", "006Hq00000LqWyaIAF"
ACC, FR = "001Hq00000Acme1IAB", "a05Hq00000FrDm1IAF"
SAMPLE_ACCOUNT, SAMPLE_USER = "001XX000003DHPmYAO", "005XX000001SvogYAC"


def _own() -> list[Path]:
    return sorted(OWN.glob("*.json"))


def _captured() -> list[Path]:
    if not CAPTURED.is_dir():
        return []
    # the change events, and the one REST sample that is a whole record (rows of the query samples
    # lack SystemModstamp: see test_a_row_without_a_timestamp_names_the_field)
    return sorted([*CAPTURED.glob("cdc-*.json"), CAPTURED / "rest-sobject-get.200.json"])


OWN_FILES, CAPTURED_FILES = _own(), _captured()
ALL_FILES = [pytest.param(p, id=f"own/{p.name}") for p in OWN_FILES] + (
    [pytest.param(p, id=f"captured/{p.name}") for p in CAPTURED_FILES]
    or [pytest.param(None, id="captured", marks=pytest.mark.skip(reason=absent(CAPTURED)))]
)


def envelope_for(path: Path) -> dict[str, Any]:
    """The inbound.salesforce record the poller (poll_*, rest-*) or the CDC bridge would produce."""
    payload = json.loads(path.read_bytes())
    if "attributes" in payload:
        return poll_envelope(payload, received_at_ms=RECEIVED_AT_MS)
    return cdc_envelope(payload, received_at_ms=RECEIVED_AT_MS)


def assert_subset(actual: Any, expected: Any, path: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_subset(actual[key], value, f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


OPPORTUNITY_ROW = {
    "name": "Café Olé — 500 seats", "amount": 125000.0, "currency": "EUR", "stage": "Negotiation/Review",
    "probability": 90.0, "is_closed": False, "is_won": False, "close_date": "2025-03-31", "account_id": ACC,
    "account_name": "Café Olé GmbH", "owner_id": REP,
}
# Per-fixture expectations, written from the payloads by hand: one entry per record produced, or
# "unsupported". ``fields`` is compared whole (only what the payload carries).
EXPECTED: dict[str, list[dict[str, Any]] | str] = {
    "poll_opportunity.json": [{
        "event_id": f"{OPP}:1741079702000", "kind": "upsert", "object": "opportunity", "sobject": "Opportunity",
        "record_id": OPP, "occurred_at_ms": 1741079702000, "fields": OPPORTUNITY_ROW, "changed_fields": [],
        "via_hub": False, "reread_ids": [],
    }],
    "poll_opportunity__deleted.json": [{"kind": "delete", "record_id": OPP, "occurred_at_ms": 1741088400000,
                                        "event_id": f"{OPP}:1741088400000"}],
    "poll_opportunity__no_account.json": [{
        "kind": "upsert", "record_id": OPP2,
        "fields": {**OPPORTUNITY_ROW, "name": "Inbound lead", "amount": None, "stage": "Prospecting",
                   "probability": 10.0, "account_id": None, "account_name": None},
    }],
    "poll_feature_request__written_by_hub.json": [{
        "kind": "upsert", "object": "feature_request", "sobject": "Feature_Request__c", "record_id": FR,
        "via_hub": True,
        "fields": {"name": "Dark mode for the dashboard", "opportunity_id": OPP, "account_id": ACC,
                   "jira_key": "OPS-142", "currency": "EUR",
                   "text": "Dark mode for the dashboard\nAsked for by Café Olé.\nSame as OPS-99?"},
    }],
    "cdc_opportunity__create.json": [{
        "event_id": "00075a1c-3e21-8d4b-f1a0-94c2d7e607d1:1:" + OPP, "kind": "upsert", "record_id": OPP,
        "occurred_at_ms": 1741079702000, "via_hub": False, "reread_ids": [],
        "fields": {"name": "Café Olé — 500 seats", "account_id": ACC, "stage": "Prospecting", "amount": 100000.0,
                   "probability": 10.0, "close_date": "2025-03-31", "is_closed": False, "is_won": False,
                   "owner_id": REP, "currency": "EUR"},
        "changed_fields": ["account_id", "amount", "close_date", "currency", "is_closed", "is_won", "name",
                           "owner_id", "probability", "stage"],
    }],
    "cdc_opportunity__update_closed_won.json": [{
        "kind": "upsert", "occurred_at_ms": 1741084215000,
        "fields": {"stage": "Closed Won", "probability": 100.0, "is_closed": True, "is_won": True, "amount": 125000.0},
        "changed_fields": ["amount", "is_closed", "is_won", "probability", "stage"], "via_hub": False,
    }],
    "cdc_opportunity__update_by_hub_client.json": [{"kind": "upsert", "fields": {}, "changed_fields": [],
                                                    "via_hub": True}],
    "cdc_opportunity__update_nulled_amount.json": [{
        "fields": {"amount": None, "close_date": "2025-04-30"}, "changed_fields": ["amount", "close_date"],
    }],
    "cdc_opportunity__update_merged_record_ids.json": [
        {"record_id": rid, "kind": "upsert", "fields": {"owner_id": "005Hq000000PerTIAS"}, "changed_fields": ["owner_id"],
         "event_id": f"00075a1c-3e21-8d4b-f1a0-94c2d7e607d5:1:{rid}"}
        for rid in (OPP, OPP2, OPP3)
    ],
    "cdc_opportunity__update_wildcard_record_ids.json": [{
        "kind": "reread", "record_id": None, "reread_ids": [], "fields": {}, "object": "opportunity",
        "event_id": "00075a1c-3e21-8d4b-f1a0-94c2d7e607d6:1:Opportunity",
    }],
    "cdc_opportunity__delete.json": [{"kind": "delete", "record_id": OPP, "fields": {}, "occurred_at_ms": 1741087000000}],
    "cdc_opportunity__undelete.json": [{
        "kind": "undelete", "record_id": OPP,
        "fields": {"name": "Café Olé — 500 seats", "stage": "Closed Won", "is_won": True, "is_closed": True,
                   "amount": 125000.0, "probability": 100.0, "close_date": "2025-03-31", "account_id": ACC,
                   "owner_id": REP, "currency": "EUR"},
    }],
    "cdc_opportunity__gap_update.json": [
        {"kind": "reread", "record_id": OPP, "reread_ids": [OPP], "fields": {}},
        {"kind": "reread", "record_id": OPP2, "reread_ids": [OPP2], "fields": {}},
    ],
    "cdc_opportunity__snapshot__unsupported.json": "unsupported",
    "cdc_feature_request__create.json": [{
        "kind": "upsert", "object": "feature_request", "record_id": FR, "via_hub": False,
        "fields": {"name": "Dark mode for the dashboard", "opportunity_id": OPP, "account_id": ACC, "owner_id": REP,
                   "currency": "EUR",
                   "text": "Dark mode for the dashboard\nAsked for by Café Olé 🌙 — see OPS-142"},
    }],
    "cdc_feature_request__update_jira_key.json": [{
        "kind": "upsert", "fields": {"jira_key": "OPS-142"}, "changed_fields": ["jira_key"], "via_hub": False,
    }],
    "cdc_feature_request__update_by_hub_user.json": [{"kind": "upsert", "fields": {}, "changed_fields": [],
                                                      "via_hub": True}],
    "cdc_feature_request__update_diff_description.json": [{
        "kind": "upsert", "record_id": FR, "reread_ids": [FR],
        "fields": {"name": "Dark mode (dashboard and reports)", "text": "Dark mode (dashboard and reports)"},
        "changed_fields": ["name", "text"],
    }],
    "cdc_feature_request__gap_overflow.json": [{"kind": "reread", "record_id": None, "reread_ids": [],
                                                "object": "feature_request", "sobject": "Feature_Request__c"}],
    "cdc_task__create.json": [{"kind": "upsert", "object": "task", "sobject": "Task", "via_hub": True,
                               "fields": {"owner_id": HUB_USER, "currency": "EUR"}}],
    # captured samples (Account change events, a REST record)
    "cdc-account.create.json": [{
        "kind": "upsert", "object": "account", "sobject": "Account", "record_id": SAMPLE_ACCOUNT,
        "occurred_at_ms": 1714640400000, "fields": {"name": "Acme", "owner_id": SAMPLE_USER}, "via_hub": False,
        "event_id": f"0002343d-9d90-e395-ed20-cf416ba652ad:1:{SAMPLE_ACCOUNT}",
    }],
    "cdc-account.update.json": [{"kind": "upsert", "fields": {"name": "Acme Corp"}, "changed_fields": ["name"]}],
    "cdc-account.update-merged-recordIds.json": [
        {"record_id": rid, "fields": {"owner_id": "005XX000001SvohYAC"}, "changed_fields": ["owner_id"]}
        for rid in ("001XX000003DHPmYAO", "001XX000003DHPnYAO", "001XX000003DHPoYAO")
    ],
    "cdc-account.update-wildcard-recordIds.json": [{"kind": "reread", "record_id": None, "reread_ids": []}],
    "cdc-account.delete.json": [{"kind": "delete", "record_id": SAMPLE_ACCOUNT, "fields": {}}],
    "cdc-account.undelete.json": [{"kind": "undelete", "fields": {"name": "Acme Corp", "owner_id": "005XX000001SvohYAC"}}],
    "cdc-account.gap-update.json": [{"kind": "reread", "record_id": SAMPLE_ACCOUNT, "reread_ids": [SAMPLE_ACCOUNT]}],
    "cdc-account.gap-overflow.json": [{"kind": "reread", "record_id": None, "reread_ids": []}],
    "rest-sobject-get.200.json": [{
        "kind": "upsert", "sobject": "Account", "record_id": "001XX000003DHPhYAO", "occurred_at_ms": 1714644000000,
        "fields": {"name": "Acme", "owner_id": SAMPLE_USER}, "event_id": "001XX000003DHPhYAO:1714644000000",
    }],
}


@pytest.fixture
def contract():
    """Load a file under ../shared/contracts (skipped when absent)."""
    require(CAPTURED)
    return lambda relative: json.loads((CONTRACTS / relative).read_bytes())


def _map(envelope: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    options = {"hub_user_id": HUB_USER, "hub_client": HUB_CLIENT, **kwargs}
    return to_sales_events(envelope, **options)


def test_every_own_fixture_has_expectations():
    assert OWN_FILES, f"no fixtures in {OWN}"
    assert [p.name for p in OWN_FILES if p.name not in EXPECTED] == []


def test_own_fixtures_cover_every_kind_both_sources_and_both_objects():
    kinds, objects, styles = set(), set(), set()
    for path in OWN_FILES:
        envelope = envelope_for(path)
        styles.add(classify(envelope["payload"]).style)
        try:
            records = _map(envelope)
        except UnsupportedEvent:
            kinds.add("unsupported")
            continue
        kinds |= {r["kind"] for r in records}
        objects |= {r["object"] for r in records}
    assert kinds == set(schemas.load("sales_event.v1")["properties"]["kind"]["enum"]) | {"unsupported"}
    assert {"opportunity", "feature_request"} < objects and styles == {"poll", "cdc"}


@pytest.mark.parametrize("path", ALL_FILES)
def test_fixture_maps_and_validates(path: Path):
    envelope = envelope_for(path)
    schemas.validate("inbound.v1", envelope)
    expected = EXPECTED[path.name]
    if expected == "unsupported":
        assert classify(envelope["payload"]).supported is False
        with pytest.raises(UnsupportedEvent):
            _map(envelope)
        return

    records = _map(envelope)
    assert len(records) == len(expected)
    assert _map(copy.deepcopy(envelope)) == records  # deterministic
    assert len({r["event_id"] for r in records}) == len(records)
    for record, want in zip(records, expected, strict=True):
        schemas.validate("sales_event.v1", record)
        jsonschema.Draft202012Validator(schemas.load("sales_event.v1")).validate(record)
        assert orjson.loads(orjson.dumps(record)) == record
        assert record["received_at_ms"] == RECEIVED_AT_MS and record["source"] == "salesforce"
        assert_subset(record, {k: v for k, v in want.items() if k != "fields"})
        if "fields" in want:
            assert record["fields"] == want["fields"]
    key = classify(envelope["payload"]).key
    assert key == (records[0]["record_id"] or records[0]["sobject"])


def test_poll_event_id_changes_with_the_record_version_only():
    envelope = envelope_for(OWN / "poll_opportunity.json")
    [first] = _map(envelope)
    envelope["received_at_ms"] += 5000
    envelope["payload"]["Name"] = "renamed, same stamp"
    assert _map(envelope)[0]["event_id"] == first["event_id"]
    envelope["payload"]["SystemModstamp"] = "2025-03-04T09:15:03.000+0000"
    assert _map(envelope)[0]["event_id"] != first["event_id"]


def test_poll_rows_fall_back_to_last_modified_date():
    envelope = envelope_for(OWN / "poll_opportunity.json")
    del envelope["payload"]["SystemModstamp"]
    envelope["payload"]["LastModifiedDate"] = "2025-03-04T10:15:02.000+0100"
    assert _map(envelope)[0]["occurred_at_ms"] == 1741079702000


def test_a_row_without_a_timestamp_names_the_field(contract):
    row = contract("salesforce/samples/rest-query.page1.json")["records"][0]
    with pytest.raises(MappingError) as info:
        _map(poll_envelope(row, received_at_ms=1))
    assert info.value.path == "LastModifiedDate"


def test_a_captured_queryall_row_is_a_delete(contract):
    row = dict(contract("salesforce/samples/rest-queryall.deleted-and-merged.json")["records"][1])
    row["SystemModstamp"] = "2024-05-02T09:30:00.000+0000"
    [record] = _map(poll_envelope(row, received_at_ms=1))
    assert (record["kind"], record["record_id"], record["fields"]) == ("delete", "001XX000003DHPlYAO",
                                                                      {"name": "Merged-away Co"})


@pytest.mark.parametrize(
    ("name", "options", "via_hub"),
    [
        ("cdc_opportunity__update_by_hub_client.json", {}, True),  # changeOrigin client=switchboard
        ("cdc_opportunity__update_by_hub_client.json", {"hub_client": "other-app"}, False),
        ("cdc_opportunity__update_by_hub_client.json", {"hub_client": None}, False),
        ("cdc_feature_request__update_by_hub_user.json", {}, True),  # commitUser
        ("cdc_feature_request__update_by_hub_user.json", {"hub_user_id": "005Hq000000IntG"}, True),  # 15 chars
        ("cdc_feature_request__update_by_hub_user.json", {"hub_user_id": "005hq000000intg"}, False),  # case
        ("cdc_feature_request__update_by_hub_user.json", {"hub_user_id": None}, False),
        ("poll_feature_request__written_by_hub.json", {}, True),  # LastModifiedById
        ("poll_feature_request__written_by_hub.json", {"hub_user_id": REP}, False),
        ("cdc_opportunity__update_closed_won.json", {}, False),
    ],
)
def test_via_hub(name, options, via_hub):
    assert {r["via_hub"] for r in _map(envelope_for(OWN / name), **options)} == {via_hub}


def test_captured_change_origin_client_is_recognised(contract):
    envelope = cdc_envelope(contract("salesforce/samples/cdc-account.update.json"), received_at_ms=1)
    assert _map(envelope)[0]["via_hub"] is False
    assert _map(envelope, hub_client="integration-hub")[0]["via_hub"] is True
    assert _map(envelope, hub_client=None, hub_user_id=SAMPLE_USER)[0]["via_hub"] is True


def test_a_bare_change_event_payload_maps_like_the_cometd_message():
    message = json.loads((OWN / "cdc_opportunity__update_closed_won.json").read_bytes())
    bare = {"source": "salesforce", "received_at_ms": RECEIVED_AT_MS, "payload": message["data"]["payload"]}
    assert _map(bare) == _map(envelope_for(OWN / "cdc_opportunity__update_closed_won.json"))
    bare["payload"]["ChangeEventHeader"]["recordIds"] = ["nope"]
    with pytest.raises(MappingError) as info:
        _map(bare)
    assert info.value.path == "ChangeEventHeader.recordIds[0]"


def test_feature_request_names_come_from_the_settings():
    envelope = envelope_for(OWN / "cdc_feature_request__create.json")
    custom = FeatureRequestFields(object_name="Idea__c", opportunity_field="Deal__c", account_field="Customer__c",
                                  jira_key_field="Issue__c", text_fields=("Description__c",))
    [other] = _map(envelope, feature_request=custom)  # not the configured object: a plain "other"
    assert other["object"] == "feature_request__c" and set(other["fields"]) == {"name", "owner_id", "currency"}
    payload = envelope["payload"]["data"]["payload"]
    payload["ChangeEventHeader"]["entityName"] = "Idea__c"
    payload["Deal__c"], payload["Issue__c"] = payload.pop("Opportunity__c"), "OPS-7"
    [record] = _map(envelope, feature_request=custom)
    assert record["object"] == "feature_request"
    assert record["fields"]["opportunity_id"] == OPP and record["fields"]["jira_key"] == "OPS-7"
    assert record["fields"]["text"] == "Asked for by Café Olé 🌙 — see OPS-142"  # Name is not a text field here
    assert "account_id" not in record["fields"]  # Account__c is not the configured lookup


def test_text_joins_only_the_text_fields_present():
    envelope = envelope_for(OWN / "cdc_feature_request__update_jira_key.json")
    payload = envelope["payload"]["data"]["payload"]
    payload["Description__c"] = "  now mentions OPS-150  "
    payload["ChangeEventHeader"]["changedFields"].append("Description__c")
    [record] = _map(envelope)
    assert record["fields"]["text"] == "now mentions OPS-150" and "name" not in record["fields"]
    assert record["changed_fields"] == ["jira_key", "text"]
    payload["Description__c"] = None
    assert _map(envelope)[0]["fields"]["text"] is None


def test_compound_names_are_joined():
    envelope = envelope_for(OWN / "cdc_task__create.json")
    envelope["payload"]["data"]["payload"]["Name"] = {"Salutation": None, "FirstName": "Anna", "LastName": "Berg"}
    assert _map(envelope)[0]["fields"]["name"] == "Anna Berg"


def test_unsupported_payloads():
    for payload in ({"hello": "world"}, {"data": {"payload": {"x": 1}}},
                    {"ChangeEventHeader": {"entityName": "Account", "changeType": "SNAPSHOT"}}):
        with pytest.raises(UnsupportedEvent):
            to_sales_events({"source": "salesforce", "received_at_ms": 1, "payload": payload})


_HEADER = "data.payload.ChangeEventHeader"


@pytest.mark.parametrize(
    ("name", "mutate", "path"),
    [
        ("poll_opportunity.json", lambda p: p.update(Id="123"), "Id"),
        ("poll_opportunity.json", lambda p: p.pop("Id"), "Id"),
        ("poll_opportunity.json", lambda p: p.update(SystemModstamp="yesterday"), "SystemModstamp"),
        ("poll_opportunity.json", lambda p: p.update(SystemModstamp="2025-03-04T09:15:02"), "SystemModstamp"),
        ("poll_opportunity.json", lambda p: p.update(Amount="125000"), "Amount"),
        ("poll_opportunity.json", lambda p: p.update(IsWon="false"), "IsWon"),
        ("poll_opportunity.json", lambda p: p.update(IsDeleted=1), "IsDeleted"),
        ("poll_opportunity.json", lambda p: p.update(CloseDate="31.03.2025"), "CloseDate"),
        ("poll_opportunity.json", lambda p: p.update(CloseDate="2025-02-30"), "CloseDate"),
        ("poll_opportunity.json", lambda p: p.update(CurrencyIsoCode="eur"), "CurrencyIsoCode"),
        ("poll_opportunity.json", lambda p: p.update(AccountId=42), "AccountId"),
        ("poll_opportunity.json", lambda p: p.update(Account="Acme"), "Account"),
        ("poll_opportunity.json", lambda p: p["Account"].update(Name=["Acme"]), "Account.Name"),
        ("poll_opportunity.json", lambda p: p.update(attributes={"type": "Oppor tunity"}), "attributes.type"),
        ("poll_feature_request__written_by_hub.json", lambda p: p.update(Description__c=5), "Description__c"),
        ("poll_feature_request__written_by_hub.json", lambda p: p.update(LastModifiedById="me"), "LastModifiedById"),
        ("cdc_opportunity__create.json", lambda p: p["data"]["payload"].update(Amount=True), "data.payload.Amount"),
        ("cdc_opportunity__create.json", lambda p: p["data"]["payload"]["ChangeEventHeader"].update(recordIds="x"),
         f"{_HEADER}.recordIds"),
        ("cdc_opportunity__update_merged_record_ids.json",
         lambda p: p["data"]["payload"]["ChangeEventHeader"]["recordIds"].append("006"), f"{_HEADER}.recordIds[3]"),
        ("cdc_opportunity__delete.json", lambda p: p["data"]["payload"]["ChangeEventHeader"].update(recordIds=[]),
         f"{_HEADER}.recordIds"),
        ("cdc_opportunity__create.json", lambda p: p["data"]["payload"]["ChangeEventHeader"].pop("commitTimestamp"),
         f"{_HEADER}.commitTimestamp"),
        ("cdc_opportunity__create.json",
         lambda p: p["data"]["payload"]["ChangeEventHeader"].update(commitTimestamp="1741079702000"),
         f"{_HEADER}.commitTimestamp"),
        ("cdc_opportunity__create.json", lambda p: p["data"]["payload"]["ChangeEventHeader"].pop("transactionKey"),
         f"{_HEADER}.transactionKey"),
        ("cdc_opportunity__create.json",
         lambda p: p["data"]["payload"]["ChangeEventHeader"].update(sequenceNumber=None), f"{_HEADER}.sequenceNumber"),
        ("cdc_opportunity__create.json", lambda p: p["data"]["payload"]["ChangeEventHeader"].update(commitUser="x"),
         f"{_HEADER}.commitUser"),
        ("cdc_opportunity__create.json", lambda p: p["data"]["payload"]["ChangeEventHeader"].update(changeOrigin=7),
         f"{_HEADER}.changeOrigin"),
        ("cdc_opportunity__update_closed_won.json",
         lambda p: p["data"]["payload"]["ChangeEventHeader"].update(changedFields="StageName"),
         f"{_HEADER}.changedFields"),
        ("cdc_feature_request__update_diff_description.json",
         lambda p: p["data"]["payload"]["ChangeEventHeader"].update(diffFields=[1]), f"{_HEADER}.diffFields"),
        ("cdc_opportunity__create.json",
         lambda p: p["data"]["payload"]["ChangeEventHeader"].update(entityName="Opportunity ChangeEvent"),
         f"{_HEADER}.entityName"),
    ],
)
def test_malformed_input_names_the_path(name, mutate, path):
    envelope = envelope_for(OWN / name)
    mutate(envelope["payload"])
    with pytest.raises(MappingError) as info:
        _map(envelope)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"source": "zendesk"}, "envelope.source"),
        ({"payload": []}, "envelope.payload"),
        ({"received_at_ms": None}, "envelope.received_at_ms"),
        ({"received_at_ms": True}, "envelope.received_at_ms"),
        ({"received_at_ms": -1}, "envelope.received_at_ms"),
    ],
)
def test_malformed_envelope_names_the_path(change, path):
    envelope = {**envelope_for(OWN / "poll_opportunity.json"), **change}
    with pytest.raises(MappingError) as info:
        to_sales_events(envelope)
    assert info.value.path == path
    with pytest.raises(MappingError):
        to_sales_events("not an envelope")  # type: ignore[arg-type]
