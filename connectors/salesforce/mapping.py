"""Salesforce envelope → canonical sales events (``schemas/sales_event.v1.json``).

Inputs (see :mod:`connectors.salesforce.events`): SOQL rows of the poller
(https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm) and
Change Data Capture events
(https://developer.salesforce.com/docs/atlas.en-us.change_data_capture.meta/change_data_capture/cdc_event_fields_header.htm,
…/cdc_event_fields_body.htm, …/cdc_other_events_gap.htm, …/cdc_other_events_overflow.htm).

Pure: everything comes from the envelope and the keyword arguments. ``fields`` holds only what
the payload carries (a CDC update: the changed fields; nulled fields as null), normalised to the
canonical names. Kinds:

* ``upsert`` — a poll row, or a CDC ``CREATE``/``UPDATE``;
* ``delete`` — a poll row with ``IsDeleted`` (in the Recycle Bin), or a CDC ``DELETE``;
* ``undelete`` — a CDC ``UNDELETE`` (polling sees an undelete as an ``upsert`` after the ``delete``);
* ``reread`` — the event does not say what changed: gap events (``GAP_*``: re-read
  ``reread_ids``), overflow events and wildcard ``recordIds`` (``001*``): ``record_id`` is null and
  ``reread_ids`` is empty, meaning the whole object must be re-read.

An ``upsert`` whose text field arrived as a diff (``diffFields``) leaves it out and names the record
in ``reread_ids``. A CDC event naming several records becomes one record per id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from connectors.mapping import open_envelope
from connectors.errors import MappingError, UnsupportedEvent
from connectors.salesforce.events import (
    GAP_TYPES,
    OVERFLOW_TYPE,
    SOURCE,
    change_event_body,
    classify,
    client_of,
    is_id,
    is_wildcard,
    same_id,
)
from connectors.salesforce.settings import FeatureRequestFields

SCHEMA = "switchboard.sales_event/1"
_SOBJECT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
DEFAULT_FEATURE_REQUEST = FeatureRequestFields()

Convert = Callable[[Any, str], Any]


def _text(value: Any, path: str) -> str | None:
    if isinstance(value, dict):  # compound fields (a Contact's Name) arrive as their parts
        parts = [v.strip() for k, v in value.items() if k != "attributes" and isinstance(v, str) and v.strip()]
        return " ".join(parts) or None
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    raise MappingError(f"expected a string, got {type(value).__name__}", path=path)


def _number(value: Any, path: str) -> float | int | None:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise MappingError(f"expected a number, got {value!r}", path=path)


def _bool(value: Any, path: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise MappingError(f"expected a boolean, got {value!r}", path=path)


def _date(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise MappingError(f"expected a date YYYY-MM-DD, got {value!r}", path=path)


def _id(value: Any, path: str) -> str | None:
    if value is None or value == "":
        return None
    if is_id(value):
        return value
    raise MappingError(f"expected a Salesforce id, got {value!r}", path=path)


def _currency(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 3 and value.isalpha() and value.isupper():
        return value
    raise MappingError(f"expected an ISO 4217 currency code, got {value!r}", path=path)


def _ms(value: Any, path: str) -> int:
    """Salesforce date-times: REST ``2024-05-02T10:00:00.000+0000``, CDC ``…T09:00:00.000Z``."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return int(moment.timestamp() * 1000)
    raise MappingError(f"expected a date-time with a zone, got {value!r}", path=path)


#: canonical field → converter
CONVERTERS: dict[str, Convert] = {
    "name": _text, "amount": _number, "currency": _currency, "stage": _text, "probability": _number,
    "is_closed": _bool, "is_won": _bool, "close_date": _date, "account_id": _id, "account_name": _text,
    "owner_id": _id, "opportunity_id": _id, "jira_key": _text, "text": _text,
}  # fmt: skip
OPPORTUNITY_FIELDS = {
    "Name": "name", "Amount": "amount", "CurrencyIsoCode": "currency", "StageName": "stage",
    "Probability": "probability", "IsClosed": "is_closed", "IsWon": "is_won", "CloseDate": "close_date",
    "AccountId": "account_id", "OwnerId": "owner_id",
}  # fmt: skip
OTHER_FIELDS = {"Name": "name", "OwnerId": "owner_id", "CurrencyIsoCode": "currency"}


def field_map(sobject: str, feature_request: FeatureRequestFields) -> dict[str, str]:
    """API name → canonical name of the scalar fields mapped for ``sobject`` (text fields apart)."""
    if sobject == "Opportunity":
        return OPPORTUNITY_FIELDS
    if sobject == feature_request.object_name:
        return {**OTHER_FIELDS, feature_request.opportunity_field: "opportunity_id",
                feature_request.account_field: "account_id", feature_request.jira_key_field: "jira_key"}
    return OTHER_FIELDS


def object_kind(sobject: str, feature_request: FeatureRequestFields) -> str:
    if sobject == "Opportunity":
        return "opportunity"
    if sobject == feature_request.object_name:
        return "feature_request"
    return sobject.lower()


def to_sales_events(
    envelope: dict[str, Any],
    *,
    hub_user_id: str | None = None,
    hub_client: str | None = None,
    feature_request: FeatureRequestFields = DEFAULT_FEATURE_REQUEST,
) -> list[dict[str, Any]]:
    """Map one ``inbound.salesforce`` envelope to ``sales_event/1`` records (one per record id).

    ``hub_user_id`` is the integration user and ``hub_client`` the ``Sforce-Call-Options`` client
    name the hub sends: changes they made get ``via_hub=true`` (echo-loop guard).
    ``feature_request`` names the custom object and its fields. Raises UnsupportedEvent for
    payloads :func:`events.classify` does not support and MappingError (with the path) for
    malformed input. Records always carry every key of the schema.
    """
    payload, received_at_ms = open_envelope(envelope, SOURCE)
    classified = classify(payload)
    if classified.style == "poll":
        return [_poll(payload, received_at_ms, hub_user_id, feature_request)]
    if classified.style == "cdc":
        if not classified.supported:
            raise UnsupportedEvent(f"salesforce change event {classified.event_type!r} is not handled")
        return _change_event(payload, received_at_ms, hub_user_id, hub_client, feature_request)
    raise UnsupportedEvent("salesforce payload is neither a SOQL record nor a change event")


# --- poll rows -----------------------------------------------------------------------------------


def _poll(row: dict[str, Any], received_at_ms: int, hub_user_id: str | None,
          fr: FeatureRequestFields) -> dict[str, Any]:
    sobject = _sobject(row["attributes"]["type"], "attributes.type")
    record_id = _id(row.get("Id"), "Id")
    if record_id is None:
        raise MappingError("a SOQL row without its Id", path="Id")
    stamp_field = "SystemModstamp" if "SystemModstamp" in row else "LastModifiedDate"
    stamp = _ms(row.get(stamp_field), stamp_field)
    deleted = _bool(row.get("IsDeleted"), "IsDeleted")
    fields = _fields(row, sobject, fr, "")
    if sobject == "Opportunity" and "Account" in row:  # the relationship: SELECT Account.Name
        account = row["Account"]
        if account is not None and not isinstance(account, dict):
            raise MappingError(f"expected an object, got {type(account).__name__}", path="Account")
        fields["account_name"] = _text((account or {}).get("Name"), "Account.Name")
    return _record(
        event_id=f"{record_id}:{stamp}", kind="delete" if deleted else "upsert", sobject=sobject,
        record_id=record_id, occurred_at_ms=stamp, received_at_ms=received_at_ms, fields=fields,
        changed_fields=[], via_hub=same_id(_id(row.get("LastModifiedById"), "LastModifiedById"), hub_user_id),
        reread_ids=[], fr=fr,
    )


# --- change events ----------------------------------------------------------------------------------


def _change_event(payload: dict[str, Any], received_at_ms: int, hub_user_id: str | None, hub_client: str | None,
                  fr: FeatureRequestFields) -> list[dict[str, Any]]:
    body = change_event_body(payload) or {}
    prefix = "data.payload." if body is not payload else ""
    hp = prefix + "ChangeEventHeader"
    header = body["ChangeEventHeader"]
    sobject = _sobject(header["entityName"], f"{hp}.entityName")
    change_type = header["changeType"]
    transaction = _text(header.get("transactionKey"), f"{hp}.transactionKey")
    sequence = header.get("sequenceNumber")
    if transaction is None:
        raise MappingError("missing", path=f"{hp}.transactionKey")
    if isinstance(sequence, bool) or not isinstance(sequence, int):
        raise MappingError(f"expected an integer, got {sequence!r}", path=f"{hp}.sequenceNumber")
    committed = header.get("commitTimestamp")
    if isinstance(committed, bool) or not isinstance(committed, int) or committed < 0:
        raise MappingError(f"expected epoch milliseconds, got {committed!r}", path=f"{hp}.commitTimestamp")
    ids = header.get("recordIds")
    if not isinstance(ids, list):
        raise MappingError(f"expected a list, got {type(ids).__name__}", path=f"{hp}.recordIds")
    for index, value in enumerate(ids):
        if not (is_id(value) or is_wildcard(value)):
            raise MappingError(f"expected a record id or a prefix with *, got {value!r}",
                               path=f"{hp}.recordIds[{index}]")
    changed = _names(header.get("changedFields"), f"{hp}.changedFields")
    diffs = set(_names(header.get("diffFields"), f"{hp}.diffFields"))
    origin = header.get("changeOrigin")
    if origin is not None and not isinstance(origin, str):
        raise MappingError(f"expected a string, got {type(origin).__name__}", path=f"{hp}.changeOrigin")
    commit_user = _id(header.get("commitUser"), f"{hp}.commitUser")
    via_hub = (hub_client is not None and client_of(origin) == hub_client) or same_id(commit_user, hub_user_id)

    def record(record_id: str | None, kind: str, fields: dict[str, Any], changed_fields: list[str],
               reread_ids: list[str]) -> dict[str, Any]:
        return _record(
            event_id=f"{transaction}:{sequence}:{record_id or sobject}", kind=kind, sobject=sobject,
            record_id=record_id, occurred_at_ms=committed, received_at_ms=received_at_ms, fields=fields,
            changed_fields=changed_fields, via_hub=via_hub, reread_ids=reread_ids, fr=fr,
        )

    if change_type == OVERFLOW_TYPE or any(is_wildcard(i) for i in ids):
        return [record(None, "reread", {}, [], [])]
    if not ids:
        raise MappingError(f"a {change_type} event without record ids", path=f"{hp}.recordIds")
    if change_type in GAP_TYPES:
        return [record(i, "reread", {}, [], [i]) for i in ids]
    if change_type == "DELETE":
        return [record(i, "delete", {}, [], []) for i in ids]

    values = {k: v for k, v in body.items() if k != "ChangeEventHeader" and k not in diffs}
    fields = _fields(values, sobject, fr, prefix)
    if change_type == "UPDATE":
        touched = set(changed) - diffs
        changed_fields = sorted({c for api, c in field_map(sobject, fr).items() if api in touched}
                                | ({"text"} if touched & set(fr.text_fields) and sobject == fr.object_name else set()))
    else:
        changed_fields = sorted(fields)
    unknown_text = sobject == fr.object_name and bool(diffs & set(fr.text_fields))
    kind = "undelete" if change_type == "UNDELETE" else "upsert"
    return [record(i, kind, dict(fields), changed_fields, [i] if unknown_text else []) for i in ids]


def _sobject(value: str, path: str) -> str:
    if _SOBJECT.fullmatch(value) is None:
        raise MappingError(f"not an sObject API name: {value!r}", path=path)
    return value


def _names(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MappingError("expected a list of field names", path=path)
    return value


# --- shared ----------------------------------------------------------------------------------------------


def _fields(values: dict[str, Any], sobject: str, fr: FeatureRequestFields, prefix: str) -> dict[str, Any]:
    """The canonical fields present in ``values`` (an SOQL row or a change event body)."""
    fields: dict[str, Any] = {}
    for api, canonical in field_map(sobject, fr).items():
        if api in values:
            fields[canonical] = CONVERTERS[canonical](values[api], prefix + api)
    if sobject == fr.object_name:
        present = [api for api in fr.text_fields if api in values]
        if present:
            texts = [_text(values[api], prefix + api) for api in present]
            fields["text"] = "\n".join(t for t in texts if t) or None
    return fields


def _record(*, event_id: str, kind: str, sobject: str, record_id: str | None, occurred_at_ms: int,
            received_at_ms: int, fields: dict[str, Any], changed_fields: list[str], via_hub: bool,
            reread_ids: list[str], fr: FeatureRequestFields) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "event_id": event_id,
        "source": SOURCE,
        "kind": kind,
        "object": object_kind(sobject, fr),
        "sobject": sobject,
        "record_id": record_id,
        "occurred_at_ms": occurred_at_ms,
        "received_at_ms": received_at_ms,
        "fields": fields,
        "changed_fields": changed_fields,
        "via_hub": via_hub,
        "reread_ids": reread_ids,
    }
