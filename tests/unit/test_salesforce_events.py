"""Salesforce ids, classification and the inbound envelopes."""

from __future__ import annotations

import pytest

import schemas
from tests.contracts import CONTRACTS, require
from connectors.salesforce.events import (
    cdc_channel,
    cdc_envelope,
    classify,
    client_of,
    is_id,
    poll_envelope,
    same_id,
    to_18,
)


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("001XX000003DHPm", "001XX000003DHPmYAO"),  # the ids of the captured samples
        ("005XX000001Svog", "005XX000001SvogYAC"),
        ("001XX000003DHPh", "001XX000003DHPhYAO"),
        ("00000000000000a", "00000000000000aAAA"),
        ("ABCDEABCDEABCDE", "ABCDEABCDEABCDE555"),
    ],
)
def test_to_18_adds_the_case_checksum(short, full):
    assert to_18(short) == full and to_18(full) == full


@pytest.mark.parametrize("bad", ["", "001", "001XX000003DHPm!", "001XX000003DHPmYA", None, 15])
def test_not_ids(bad):
    assert not is_id(bad)
    with pytest.raises(ValueError):
        to_18(bad)


def test_same_id_is_case_sensitive_on_the_significant_part():
    assert same_id("001XX000003DHPm", "001XX000003DHPmYAO")
    assert same_id("001XX000003DHPmYAO", "001XX000003DHPmYAO")
    assert not same_id("001xx000003dhpm", "001XX000003DHPmYAO")
    assert not same_id("001XX000003DHPmYAO", "001XX000003DHPnYAO")
    assert not same_id(None, "001XX000003DHPmYAO") and not same_id(None, None) and not same_id("x", "x")


@pytest.mark.parametrize(
    ("origin", "client"),
    [
        ("com/salesforce/api/rest/62.0;client=switchboard", "switchboard"),
        ("com/salesforce/api/soap/49.0;client=Astro", "Astro"),
        ("com/salesforce/api/rest/62.0", None),
        ("", None),
        (None, None),
        ("com/salesforce/api/rest/62.0;client=", None),
    ],
)
def test_client_of_change_origin(origin, client):
    assert client_of(origin) == client


def test_cdc_channels():
    assert cdc_channel("Account") == "/data/AccountChangeEvent"
    assert cdc_channel("Feature_Request__c") == "/data/Feature_Request__ChangeEvent"


def test_classify_and_envelopes(contract_sample):
    message = contract_sample("cdc-account.update-merged-recordIds.json")
    envelope = cdc_envelope(message, received_at_ms=7)
    schemas.validate("inbound.v1", envelope)
    assert envelope["delivery_id"] == "/data/AccountChangeEvent:103"
    assert envelope["event_type"] == "salesforce:cdc:Account" and envelope["payload"] is message
    assert classify(message).key == "001XX000003DHPmYAO"
    assert classify(contract_sample("cdc-account.gap-overflow.json")).key == "Account"
    assert classify(contract_sample("cdc-account.update-wildcard-recordIds.json")).key == "Account"
    bare = cdc_envelope(message["data"]["payload"], received_at_ms=7)
    assert bare["delivery_id"] is None and bare["event_type"] == "salesforce:cdc:Account"

    row = contract_sample("rest-sobject-get.200.json")
    polled = poll_envelope(row, received_at_ms=8)
    schemas.validate("inbound.v1", polled)
    assert polled["event_type"] == "salesforce:poll:Account" and polled["delivery_id"] is None
    assert classify(row).style == "poll" and classify(row).key == "001XX000003DHPhYAO"
    for other in (contract_sample("oauth-token.200.json"), [], {"attributes": {"type": "Account"}}):
        assert classify(other).supported is False


@pytest.fixture
def contract_sample():
    import json

    folder = require(CONTRACTS / "salesforce" / "samples")
    return lambda name: json.loads((folder / name).read_bytes())
