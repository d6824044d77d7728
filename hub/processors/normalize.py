"""Normalize: inbound webhook envelopes → canonical tracker events (or the dead-letter topic).

Jira retries a delivery on 408/409/425/429/5xx and timeouts, up to about 30 minutes later, with the
same ``X-Atlassian-Webhook-Identifier``. The receiver drops fast retries from memory; this agent
drops the rest durably: the last delivery ids of each issue live in a table keyed by issue id
(bounded per issue, and on the same partition as the issue's events), each with the offset of the
record that carried it. The same record read again after a crash (same offset) is processed
again: its mark may have reached Kafka before the event it produced did, and dropping it would
lose the event. Downstream, event ids make that second pass harmless.
"""

from __future__ import annotations

import logging
import time

from connectors.errors import MappingError, UnsupportedEvent
from connectors.jira.mapping import ticket_refs, to_tracker_event
from hub.channels import loads
from hub.processors.common import dead_letter, json_table
from schemas import SchemaError, validate

log = logging.getLogger("switchboard.normalize")

MAX_DELIVERIES_PER_ISSUE = 64


def register(hub) -> None:
    app, channels = hub.app, hub.channels
    seen = json_table(hub, "jira-deliveries")
    stats = hub.pipelines.setdefault("normalize", {"in": 0, "out": 0, "duplicate": 0, "dead": 0})
    ticket_field = hub.settings.support.jira_ticket_field_id

    async def handle(key: bytes | None, raw: bytes, position: str) -> None:
        stats["in"] += 1
        try:
            envelope = loads(raw)
            validate("inbound.v1", envelope)
            event = to_tracker_event(envelope)
            refs = ticket_refs(envelope["payload"], field_id=ticket_field)
            if refs:
                event["issue"]["ticket_refs"] = refs
            validate("tracker_event.v1", event)
        except UnsupportedEvent:
            return  # the receiver filters these; one that slips through is ignored, as documented
        except (MappingError, SchemaError, ValueError, TypeError) as exc:
            stats["dead"] += 1
            code = getattr(exc, "code", None) or ("schema" if isinstance(exc, SchemaError) else "parse")
            await dead_letter(channels, stage="normalize.jira", source_topic="inbound.jira", key=key, raw=raw,
                              reason=f"{type(exc).__name__}: {exc}", error_code=code)
            return
        issue_id = event["issue"]["id"]
        delivery_id = envelope.get("delivery_id")
        if delivery_id:
            recent = [tuple(r) for r in seen.get(issue_id) or []]
            earlier = [pos for d, pos in recent if d == delivery_id]
            if earlier and position not in earlier:
                stats["duplicate"] += 1
                log.info("jira.delivery.duplicate", extra={"delivery_id": delivery_id, "issue_id": issue_id})
                return
            if not earlier:
                seen[issue_id] = [list(r) for r in (recent + [(delivery_id, position)])[-MAX_DELIVERIES_PER_ISSUE:]]
        await channels.send("events.tracker", issue_id, event)
        stats["out"] += 1

    @app.agent(channels["inbound.jira"], name="normalize-jira")
    async def normalize_jira(stream):
        async for event in stream.events():
            key, raw = event.key, event.value
            try:
                await handle(key, raw, f"{event.message.partition}:{event.message.offset}")
            except Exception as exc:  # a bug: dead-letter and keep the partition moving
                log.exception("normalize.crashed")
                await dead_letter(channels, stage="normalize.jira", source_topic="inbound.jira", key=key, raw=raw,
                                  reason=f"internal error: {type(exc).__name__}: {exc}", error_code="internal")


def register_zendesk(hub) -> None:
    """inbound.zendesk → events.support (the same ladder as Jira: parse, map, validate, send)."""
    from connectors.zendesk.mapping import to_support_event

    app, channels = hub.app, hub.channels
    z = hub.settings.zendesk
    stats = hub.pipelines.setdefault("normalize-zendesk", {"in": 0, "out": 0, "dead": 0})

    async def handle(key: bytes | None, raw: bytes) -> None:
        stats["in"] += 1
        try:
            envelope = loads(raw)
            validate("inbound.v1", envelope)
            event = to_support_event(envelope, hub_user_id=z.hub_user_id, jira_key_field_id=hub.settings.support.zendesk_key_field_id)
            validate("support_event.v1", event)
        except UnsupportedEvent:
            return
        except (MappingError, SchemaError, ValueError, TypeError) as exc:
            stats["dead"] += 1
            code = getattr(exc, "code", None) or ("schema" if isinstance(exc, SchemaError) else "parse")
            await dead_letter(channels, stage="normalize.zendesk", source_topic="inbound.zendesk", key=key, raw=raw,
                              reason=f"{type(exc).__name__}: {exc}", error_code=code)
            return
        await channels.send("events.support", str(event["ticket"]["id"]), event)
        stats["out"] += 1

    @app.agent(channels["inbound.zendesk"], name="normalize-zendesk")
    async def normalize_zendesk(stream):
        async for key, raw in stream.items():
            try:
                await handle(key, raw)
            except Exception as exc:
                log.exception("normalize.crashed")
                await dead_letter(channels, stage="normalize.zendesk", source_topic="inbound.zendesk", key=key, raw=raw,
                                  reason=f"internal error: {type(exc).__name__}: {exc}", error_code="internal")


def register_salesforce(hub) -> None:
    """inbound.salesforce → events.sales: one canonical record per record id (a CDC event may name several)."""
    from connectors.salesforce.mapping import to_sales_events

    app, channels = hub.app, hub.channels
    sf = hub.settings.salesforce
    stats = hub.pipelines.setdefault("normalize-salesforce", {"in": 0, "out": 0, "dead": 0})

    async def handle(key: bytes | None, raw: bytes) -> None:
        stats["in"] += 1
        try:
            envelope = loads(raw)
            validate("inbound.v1", envelope)
            records = to_sales_events(envelope, hub_user_id=sf.hub_user_id, hub_client=sf.client_name, feature_request=sf.feature_request)
            for record in records:
                validate("sales_event.v1", record)
        except UnsupportedEvent:
            return
        except (MappingError, SchemaError, ValueError, TypeError) as exc:
            stats["dead"] += 1
            code = getattr(exc, "code", None) or ("schema" if isinstance(exc, SchemaError) else "parse")
            await dead_letter(channels, stage="normalize.salesforce", source_topic="inbound.salesforce", key=key, raw=raw,
                              reason=f"{type(exc).__name__}: {exc}", error_code=code)
            return
        for record in records:
            await channels.send("events.sales", str(record["record_id"]), record)
            stats["out"] += 1

    @app.agent(channels["inbound.salesforce"], name="normalize-salesforce")
    async def normalize_salesforce(stream):
        async for key, raw in stream.items():
            try:
                await handle(key, raw)
            except Exception as exc:
                log.exception("normalize.crashed")
                await dead_letter(channels, stage="normalize.salesforce", source_topic="inbound.salesforce", key=key, raw=raw,
                                  reason=f"internal error: {type(exc).__name__}: {exc}", error_code="internal")
