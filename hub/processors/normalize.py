"""Normalize: inbound envelopes → canonical events (or the dead-letter topic), one agent per vendor.

Every vendor takes the same ladder: parse the envelope, validate it (``inbound.v1``), map it with
the connector's pure mapping, validate each record against its schema, send it keyed by its
entity. Unprocessable records go to the dead-letter topic with the reason; unsupported ones are
dropped (the receiver already answered them 2xx).

Jira retries a delivery on 408/409/425/429/5xx and timeouts, up to about 30 minutes later, with the
same ``X-Atlassian-Webhook-Identifier``. The receiver drops fast retries from memory; the Jira
normalizer drops the rest durably: the last delivery ids of each issue live in a table keyed by
issue id (bounded per issue, and on the same partition as the issue's events), each with the
offset of the record that carried it. The same record read again after a crash (same offset) is
processed again: its mark may have reached Kafka before the event it produced did, and dropping it
would lose the event. Downstream, event ids make that second pass harmless.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from connectors.errors import MappingError, UnsupportedEvent
from hub.channels import loads
from hub.processors.common import dead_letter, json_table
from schemas import SchemaError, validate

log = logging.getLogger("switchboard.normalize")

MAX_DELIVERIES_PER_ISSUE = 64

#: ``accept(envelope, record, position)`` → False drops the record (a duplicate delivery)
Accept = Callable[[dict[str, Any], dict[str, Any], str], bool]


def register_normalizer(hub, *, vendor: str, to_records: Callable[[dict[str, Any]], list[dict[str, Any]]], schema: str,
                        topic: str, key_of: Callable[[dict[str, Any]], str], accept: Accept | None = None) -> None:
    """One agent ``inbound.<vendor>`` → ``topic`` with the ladder described above."""
    app, channels = hub.app, hub.channels
    source = f"inbound.{vendor}"
    stage = f"normalize.{vendor}"
    stats = hub.pipelines.setdefault(f"normalize-{vendor}", {"in": 0, "out": 0, "duplicate": 0, "dead": 0})

    async def handle(key: bytes | None, raw: bytes, position: str) -> None:
        stats["in"] += 1
        try:
            envelope = loads(raw)
            validate("inbound.v1", envelope)
            records = to_records(envelope)
            for record in records:
                validate(schema, record)
        except UnsupportedEvent:
            return  # the receiver filters these; one that slips through is ignored, as documented
        except (MappingError, SchemaError, ValueError, TypeError) as exc:
            stats["dead"] += 1
            code = getattr(exc, "code", None) or ("schema" if isinstance(exc, SchemaError) else "parse")
            await dead_letter(channels, stage=stage, source_topic=source, key=key, raw=raw, reason=f"{type(exc).__name__}: {exc}", error_code=code)
            return
        for record in records:
            if accept is not None and not accept(envelope, record, position):
                stats["duplicate"] += 1
                continue
            await channels.send(topic, key_of(record), record)
            stats["out"] += 1

    @app.agent(channels[source], name=f"normalize-{vendor}")
    async def normalize(stream):
        async for event in stream.events():
            try:
                await handle(event.key, event.value, f"{event.message.partition}:{event.message.offset}")
            except Exception as exc:  # a bug: dead-letter and keep the partition moving
                log.exception(f"{stage}.crashed")
                await dead_letter(channels, stage=stage, source_topic=source, key=event.key, raw=event.value,
                                  reason=f"internal error: {type(exc).__name__}: {exc}", error_code="internal")


def register(hub) -> None:
    """inbound.jira → events.tracker, with durable delivery dedup and the tickets an issue names."""
    from connectors.jira.mapping import ticket_refs, to_tracker_event

    seen = json_table(hub, "jira-deliveries")
    ticket_field = hub.settings.support.jira_ticket_field_id

    def to_records(envelope: dict[str, Any]) -> list[dict[str, Any]]:
        event = to_tracker_event(envelope)
        refs = ticket_refs(envelope["payload"], field_id=ticket_field)
        if refs:
            event["issue"]["ticket_refs"] = refs
        return [event]

    def accept(envelope: dict[str, Any], event: dict[str, Any], position: str) -> bool:
        delivery_id = envelope.get("delivery_id")
        if not delivery_id:
            return True
        issue_id = event["issue"]["id"]
        recent = [tuple(r) for r in seen.get(issue_id) or []]
        earlier = [pos for d, pos in recent if d == delivery_id]
        if earlier and position not in earlier:
            log.info("jira.delivery.duplicate", extra={"delivery_id": delivery_id, "issue_id": issue_id})
            return False
        if not earlier:
            seen[issue_id] = [list(r) for r in (recent + [(delivery_id, position)])[-MAX_DELIVERIES_PER_ISSUE:]]
        return True

    register_normalizer(hub, vendor="jira", to_records=to_records, schema="tracker_event.v1", topic="events.tracker",
                        key_of=lambda e: str(e["issue"]["id"]), accept=accept)


def register_zendesk(hub) -> None:
    """inbound.zendesk → events.support."""
    from connectors.zendesk.mapping import to_support_event

    z, key_field = hub.settings.zendesk, hub.settings.support.zendesk_key_field_id
    register_normalizer(hub, vendor="zendesk", schema="support_event.v1", topic="events.support",
                        to_records=lambda env: [to_support_event(env, hub_user_id=z.hub_user_id, jira_key_field_id=key_field)],
                        key_of=lambda e: str(e["ticket"]["id"]))


def register_salesforce(hub) -> None:
    """inbound.salesforce → events.sales: one record per record id (a CDC event may name several)."""
    from connectors.salesforce.mapping import to_sales_events

    sf = hub.settings.salesforce
    register_normalizer(hub, vendor="salesforce", schema="sales_event.v1", topic="events.sales",
                        to_records=lambda env: to_sales_events(env, hub_user_id=sf.hub_user_id, hub_client=sf.client_name,
                                                               feature_request=sf.feature_request),
                        key_of=lambda e: str(e.get("record_id") or e.get("sobject")))
