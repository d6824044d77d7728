"""Run the catch-up pollers (and backfills) against Kafka.

A poller is vendor code (``connectors/<vendor>/poller.py``) that pages through the vendor's change
feed and calls two injected things, provided here:

- ``emit(envelope)``: produce an inbound envelope to ``inbound.<vendor>`` (acks=all), keyed by the
  entity id, so poller and webhook feed the same topic and duplicates between them are harmless;
- ``store``: the poller's watermark, kept as the latest record per poller on the compacted topic
  ``pollers.state``, so a restarted poller resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hub.kafka_admin import ensure_topics
from topics import full_name

log = logging.getLogger("switchboard.pollers")


class KafkaPollerStore:
    """``get()`` / ``put(state)`` of one poller's watermark on ``pollers.state``."""

    def __init__(self, settings: Any, producer: AIOKafkaProducer, name: str) -> None:
        self.settings, self.producer, self.name = settings, producer, name
        self.topic = full_name(settings.kafka.topic_prefix, "pollers.state")

    async def get(self) -> dict[str, Any] | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka.bootstrap_servers, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            latest = None
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, []):
                    if rec.key == self.name.encode() and rec.value is not None:
                        latest = orjson.loads(rec.value)["state"]
            return latest
        finally:
            await consumer.stop()

    async def put(self, state: dict[str, Any]) -> None:
        value = {"schema": "switchboard.poller_state/1", "poller": self.name, "state": state, "at_ms": int(time.time() * 1000)}
        await self.producer.send_and_wait(self.topic, orjson.dumps(value), key=self.name.encode())


def entity_key(vendor: str, envelope: dict[str, Any]) -> str:
    payload = envelope.get("payload") or {}
    if vendor == "jira":
        return str((payload.get("issue") or {}).get("id"))
    if vendor == "salesforce":
        from connectors.salesforce.events import classify

        return str(classify(payload).key)
    return str(payload.get("id"))


async def open_poller(settings: Any, vendor: str):
    """``(poller, producer)`` for ``vendor``; the caller stops the producer."""
    k = settings.kafka
    await ensure_topics(k.bootstrap_servers, k.topic_prefix, k.partitions, k.replication_factor)
    producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    topic = full_name(k.topic_prefix, f"inbound.{vendor}")

    async def emit(envelope: dict[str, Any]) -> None:
        await producer.send_and_wait(topic, orjson.dumps(envelope), key=entity_key(vendor, envelope).encode())

    store = KafkaPollerStore(settings, producer, f"{vendor}-poller")
    if vendor == "jira":
        from connectors.jira.client import JiraClient
        from connectors.jira.poller import JiraPoller

        j = settings.jira
        if not (j.site_url and j.email and j.api_token):
            raise SystemExit("switchboard: the Jira poller needs jira.site_url, jira.email and jira.api_token "
                             "(SWITCHBOARD_JIRA__SITE_URL, SWITCHBOARD_JIRA__EMAIL, SWITCHBOARD_JIRA__API_TOKEN)")
        client = JiraClient(j.site_url, j.email, j.api_token.get_secret_value(), ssl_context=_ssl(settings))
        poller = JiraPoller(client, emit, store, clock=time.time, time_zone=j.time_zone)
    elif vendor == "zendesk":
        from connectors.zendesk.client import ZendeskClient
        from connectors.zendesk.poller import ZendeskPoller

        poller = ZendeskPoller(ZendeskClient.from_settings(settings.zendesk, ssl_ca_file=settings.tls_ca_file), emit, store,
                               clock=time.time, sleep=asyncio.sleep)
    elif vendor == "salesforce":
        from connectors.salesforce.client import SalesforceClient
        from connectors.salesforce.poller import SalesforcePoller, poll_objects

        sf = settings.salesforce
        if not sf.configured:
            raise SystemExit("switchboard: the Salesforce poller needs salesforce.instance_url, client_id and client_secret "
                             "(SWITCHBOARD_SALESFORCE__INSTANCE_URL, __CLIENT_ID, __CLIENT_SECRET)")
        poller = SalesforcePoller(SalesforceClient.from_settings(sf, ssl_ca_file=str(settings.tls_ca_file) if settings.tls_ca_file else None),
                                  emit, store, clock=time.time, sleep=asyncio.sleep,
                                  objects=poll_objects(sf.feature_request, multi_currency=sf.multi_currency),
                                  overlap_s=sf.overlap_s, page_size=sf.page_size)
    else:
        raise SystemExit(f"switchboard: no poller for {vendor!r} (jira, zendesk, salesforce)")
    return poller, producer


async def open_cdc_bridge(settings: Any):
    """``(bridge, producer, close)`` for Salesforce Change Data Capture (``switchboard cdc salesforce``):
    change events to ``inbound.salesforce`` like the poller's rows, the replay ids on
    ``pollers.state`` under ``salesforce-cdc``; gap events re-read through the poller's SOQL."""
    import httpx

    from connectors.salesforce.events import cdc_channel
    from connectors.salesforce.streaming import REPLAY_ALL, REPLAY_NEW, CdcBridge, CometdSession

    sf = settings.salesforce
    if not sf.configured:
        raise SystemExit("switchboard: the Salesforce CDC bridge needs salesforce.instance_url, client_id and client_secret "
                         "(SWITCHBOARD_SALESFORCE__INSTANCE_URL, __CLIENT_ID, __CLIENT_SECRET)")
    poller, producer = await open_poller(settings, "salesforce")
    client = poller._client
    http = httpx.AsyncClient(verify=str(settings.tls_ca_file) if settings.tls_ca_file else True)
    session = CometdSession(http, client.instance_url, client.api_version,
                            lambda renew: client.access_token(renew=renew))
    k = settings.kafka
    topic = full_name(k.topic_prefix, "inbound.salesforce")

    async def emit(envelope: dict[str, Any]) -> None:
        await producer.send_and_wait(topic, orjson.dumps(envelope), key=entity_key("salesforce", envelope).encode())

    channels = {cdc_channel(name): name for name in ("Opportunity", sf.feature_request.object_name)}
    bridge = CdcBridge(session, emit, KafkaPollerStore(settings, producer, "salesforce-cdc"), poller, channels,
                       initial=REPLAY_ALL if sf.cdc_initial_replay == "all" else REPLAY_NEW)

    async def close() -> None:
        await http.aclose()
        client.close()
        await producer.stop()

    return bridge, producer, close


def _ssl(settings: Any):
    if settings.tls_ca_file is None:
        return None
    import ssl

    return ssl.create_default_context(cafile=str(settings.tls_ca_file))
