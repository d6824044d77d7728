"""Which Salesforce payloads the hub handles, their envelopes and partition keys, and Salesforce ids.

Two payloads reach ``inbound.salesforce``:

**Poll records** — one row of a SOQL ``queryAll`` made by :mod:`connectors.salesforce.poller`,
exactly as the REST API returns it (``{"attributes": {"type", "url"}, "Id", "SystemModstamp",
"IsDeleted", …}``; https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_queryall.htm).
``event_type`` is ``salesforce:poll:<sObject>``.

**Change Data Capture events** in their documented JSON shape, as the Streaming API (CometD)
delivers them: ``{"channel": "/data/<Entity>ChangeEvent", "data": {"schema", "payload":
{"ChangeEventHeader": {…}, <changed fields>}, "event": {"replayId"}}}``
(https://developer.salesforce.com/docs/atlas.en-us.change_data_capture.meta/change_data_capture/cdc_message_structure.htm,
…/cdc_event_fields_header.htm). The bare ``payload`` object is accepted too. ``event_type`` is
``salesforce:cdc:<entityName>``. Pub/Sub API (gRPC) events are Avro: their bridge decodes them to
this JSON shape first (field bitmaps expanded to names, dates as ISO strings).

Ids: Salesforce ids are 15 characters (case-sensitive) or 18 (the 15 plus a 3-character checksum
of the letter case, safe to compare case-insensitively). The hub keeps ids exactly as Salesforce
gives them (the REST and streaming APIs give 18) and compares them with :func:`same_id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

SOURCE: Final = "salesforce"
INBOUND_SCHEMA: Final = "switchboard.inbound/1"
POLL_EVENT_PREFIX: Final = "salesforce:poll:"
CDC_EVENT_PREFIX: Final = "salesforce:cdc:"

#: changeType values (cdc_event_fields_header.htm). SNAPSHOT is "reserved for future use".
CHANGE_TYPES: Final = frozenset({"CREATE", "UPDATE", "DELETE", "UNDELETE"})
GAP_TYPES: Final = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})
OVERFLOW_TYPE: Final = "GAP_OVERFLOW"

_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
#: ``recordIds`` after some field-type conversions: the object's key prefix and ``*`` (``001*``).
_WILDCARD = re.compile(r"[A-Za-z0-9]{3}\*")
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def is_id(value: Any) -> bool:
    """A 15- or 18-character Salesforce id."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_wildcard(value: Any) -> bool:
    return isinstance(value, str) and _WILDCARD.fullmatch(value) is not None


def to_18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character id (the documented case checksum: for each
    5-character chunk, bit i is set when character i is an upper-case letter)."""
    if not is_id(record_id):
        raise ValueError(f"not a Salesforce id: {record_id!r}")
    if len(record_id) == 18:
        return record_id
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(record_id[start:start + 5]) if "A" <= ch <= "Z")
        suffix += _CHECKSUM_ALPHABET[bits]
    return record_id + suffix


def same_id(a: str | None, b: str | None) -> bool:
    """Whether two ids name the same record: case-sensitive on the 15 significant characters, so a
    15-character id matches its 18-character form and ``…aaa`` never matches ``…AAA``."""
    return is_id(a) and is_id(b) and a[:15] == b[:15]  # type: ignore[index]


def client_of(change_origin: str | None) -> str | None:
    """``com/salesforce/api/rest/62.0;client=switchboard`` → ``switchboard`` (None when absent)."""
    if not change_origin:
        return None
    for part in change_origin.split(";")[1:]:
        key, sep, value = part.partition("=")
        if sep and key.strip() == "client" and value.strip():
            return value.strip()
    return None


def cdc_channel(sobject: str) -> str:
    """The change event channel of an object: ``/data/AccountChangeEvent``,
    ``/data/Feature_Request__ChangeEvent`` for ``Feature_Request__c``."""
    base = sobject[:-3] + "__" if sobject.endswith("__c") else sobject
    return f"/data/{base}ChangeEvent"


@dataclass(frozen=True, slots=True)
class Classified:
    style: Literal["poll", "cdc"] | None
    event_type: str | None
    #: the sObject API name (``Opportunity``, ``Feature_Request__c``)
    sobject: str | None
    #: the Kafka key: the (first) record id, or the sObject name when the event names no record
    key: str | None
    supported: bool


def classify(payload: Any) -> Classified:
    """Classify a parsed payload (a poll record or a change event). Never raises: malformed
    supported payloads are found by the mapping, which names the path."""
    if not isinstance(payload, dict):
        return Classified(None, None, None, None, False)
    attributes = payload.get("attributes")
    if isinstance(attributes, dict) and isinstance(attributes.get("type"), str) and attributes["type"]:
        sobject = attributes["type"]
        record_id = payload.get("Id")
        return Classified("poll", POLL_EVENT_PREFIX + sobject, sobject, record_id if is_id(record_id) else None,
                          is_id(record_id))
    body = change_event_body(payload)
    header = body.get("ChangeEventHeader") if body is not None else None
    if not isinstance(header, dict):
        return Classified(None, None, None, None, False)
    entity = header.get("entityName")
    sobject = entity if isinstance(entity, str) and entity else None
    ids = header.get("recordIds")
    first = ids[0] if isinstance(ids, list) and ids and is_id(ids[0]) else None
    change_type = header.get("changeType")
    supported = sobject is not None and change_type in CHANGE_TYPES | GAP_TYPES | {OVERFLOW_TYPE}
    event_type = CDC_EVENT_PREFIX + sobject if sobject else None
    return Classified("cdc", event_type, sobject, first or sobject, supported)


def change_event_body(payload: dict[str, Any]) -> dict[str, Any] | None:
    """``data.payload`` of a CometD message, or the payload itself when it is a bare event."""
    data = payload.get("data")
    if isinstance(data, dict) and isinstance(data.get("payload"), dict):
        return data["payload"]
    return payload if "ChangeEventHeader" in payload else None


def poll_envelope(record: dict[str, Any], *, received_at_ms: int) -> dict[str, Any]:
    """The ``inbound.salesforce`` envelope of one SOQL row."""
    sobject = (record.get("attributes") or {}).get("type") or "unknown"
    return {"schema": INBOUND_SCHEMA, "source": SOURCE, "delivery_id": None,
            "event_type": POLL_EVENT_PREFIX + sobject, "received_at_ms": received_at_ms, "headers": {},
            "payload": record}  # fmt: skip


def cdc_envelope(message: dict[str, Any], *, received_at_ms: int) -> dict[str, Any]:
    """The ``inbound.salesforce`` envelope of one change event; ``delivery_id`` is
    ``<channel>:<replayId>`` when both are known (replay ids are per channel)."""
    classified = classify(message)
    data = message.get("data")
    event = data.get("event") if isinstance(data, dict) else None
    replay = event.get("replayId") if isinstance(event, dict) else None
    channel = message.get("channel")
    delivery_id = f"{channel}:{replay}" if isinstance(channel, str) and isinstance(replay, int) else None
    return {"schema": INBOUND_SCHEMA, "source": SOURCE, "delivery_id": delivery_id,
            "event_type": classified.event_type, "received_at_ms": received_at_ms, "headers": {},
            "payload": message}  # fmt: skip
