"""The webhook receiver: verify, parse, classify, enqueue, answer. Nothing else happens here.

One aiohttp server and one idempotent aiokafka producer with ``acks=all``. A delivery is answered
2xx only after Kafka acknowledged it; when the broker cannot take it the answer is 503 with
``Retry-After`` and the vendor retries (Jira retries 5xx for about 30 minutes). The guard ladder,
each rung with its own status and log key:

======================  ======  ==============================
too large               413     ``jira.webhook.too-large``
bad/missing signature   401     ``jira.webhook.bad-signature``
not JSON / not object   400     ``jira.webhook.bad-json``
unsupported event type  202     ``jira.webhook.ignored`` (zulip-style: answered and dropped)
no issue id             202     stored on the dead-letter topic with the reason
duplicate delivery id   200     ``jira.webhook.duplicate``
Kafka unavailable       503     ``jira.webhook.store-failed``
stored                  202     ``jira.webhook.accepted``
======================  ======  ==============================
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from connectors.errors import MappingError
from connectors.jira import events as jira_events
from connectors.jira.signature import verify as verify_jira
from hub.settings import Settings
from topics import full_name

log = logging.getLogger("switchboard.receiver")

#: delivery headers worth keeping with the event (never Authorization or signatures)
KEPT_HEADERS = ("x-atlassian-webhook-identifier", "x-atlassian-webhook-retry", "x-atlassian-webhook-flow", "user-agent", "content-type")
#: JSON nesting deeper than this is refused before parsing (orjson itself stops at 1024)
MAX_DEPTH = 64


class _LRU:
    def __init__(self, size: int) -> None:
        self.size, self._d = size, OrderedDict()

    def seen(self, key: str) -> bool:
        if key in self._d:
            self._d.move_to_end(key)
            return True
        return False

    def add(self, key: str) -> None:
        if self.size <= 0:
            return
        self._d[key] = None
        if len(self._d) > self.size:
            self._d.popitem(last=False)


def _too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Bracket depth outside strings, without parsing: refuse pathological nesting cheaply."""
    depth = 0
    in_str = False
    esc = False
    for b in body:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x7B, 0x5B):
            depth += 1
            if depth > limit:
                return True
        elif b in (0x7D, 0x5D):
            depth -= 1
    return False


class Receiver:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.dedup = _LRU(settings.receiver.dedup_cache_size)
        self.topic_inbound = full_name(settings.kafka.topic_prefix, "inbound.jira")
        self.topic_dead = full_name(settings.kafka.topic_prefix, "deadletter")
        secret = settings.jira.webhook_secret
        self._jira_secret = secret.get_secret_value().encode() if secret is not None else None
        self.counts: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=1,
            request_timeout_ms=int(self.settings.kafka.produce_timeout_s * 1000),
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.jira.max_body_bytes)
        app.router.add_post("/webhooks/jira", self.jira)
        app.router.add_get("/health", self.health)
        app.router.add_get("/stats", self.stats)
        return app

    async def health(self, request: web.Request) -> web.Response:
        ok = self.producer is not None
        return web.json_response({"status": "ok" if ok else "starting"}, status=200 if ok else 503)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.counts)

    def _refuse(self, status: int, key: str, message: str, **extra: Any) -> web.Response:
        self._count(key)
        log.warning(key, extra=extra)
        return web.json_response({"error": message}, status=status)

    async def jira(self, request: web.Request) -> web.Response:
        limit = self.settings.jira.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, "jira.webhook.too-large", f"body larger than {limit} bytes")
        try:
            body = await request.read()  # aiohttp stops at client_max_size (= limit)
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, "jira.webhook.too-large", f"body larger than {limit} bytes")
        except (asyncio.IncompleteReadError, ConnectionError):
            return self._refuse(400, "jira.webhook.bad-body", "could not read the body")
        if self._jira_secret is not None or self.settings.jira.require_signature:
            if not verify_jira(self._jira_secret or b"", body, request.headers.get("X-Hub-Signature")):
                return self._refuse(401, "jira.webhook.bad-signature", "missing or invalid X-Hub-Signature")
        if _too_deep(body):
            return self._refuse(400, "jira.webhook.bad-json", f"JSON nested deeper than {MAX_DEPTH}")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._refuse(400, "jira.webhook.bad-json", "body is not valid UTF-8 JSON")
        if not isinstance(payload, dict):
            return self._refuse(400, "jira.webhook.bad-json", "body is not a JSON object")

        delivery_id = request.headers.get("X-Atlassian-Webhook-Identifier")
        if delivery_id and self.dedup.seen(delivery_id):
            self._count("jira.webhook.duplicate")
            return web.json_response({"status": "duplicate"}, status=200)
        headers = {h: request.headers[h] for h in KEPT_HEADERS if h in request.headers}
        envelope = {
            "schema": "switchboard.inbound/1", "source": "jira", "delivery_id": delivery_id,
            "event_type": payload.get("webhookEvent") if isinstance(payload.get("webhookEvent"), str) else None,
            "received_at_ms": int(time.time() * 1000), "headers": headers, "payload": payload,
        }
        try:
            classified = jira_events.classify(payload)
        except MappingError as exc:
            # well signed but unprocessable: keep it, with the reason, where an admin can replay it
            dead = {
                "schema": "switchboard.deadletter/1", "stage": "receiver.jira", "source_topic": "inbound.jira",
                "key": None, "value": envelope, "value_text": None, "reason": str(exc), "error_code": exc.code,
                "at_ms": envelope["received_at_ms"],
            }
            if not await self._produce(self.topic_dead, None, dead):
                return self._refuse(503, "jira.webhook.store-failed", "event store unavailable, retry later")
            self._count("jira.webhook.dead-lettered")
            return web.json_response({"status": "dead-lettered", "reason": str(exc)}, status=202)
        if not classified.supported:
            self._count("jira.webhook.ignored")
            return web.json_response({"status": "ignored", "event_type": classified.event_type}, status=202)
        if not await self._produce(self.topic_inbound, classified.issue_id.encode(), envelope):
            resp = self._refuse(503, "jira.webhook.store-failed", "event store unavailable, retry later")
            resp.headers["Retry-After"] = "5"
            return resp
        if delivery_id:
            self.dedup.add(delivery_id)
        self._count("jira.webhook.accepted")
        return web.json_response({"status": "accepted"}, status=202)

    async def _produce(self, topic: str, key: bytes | None, value: dict[str, Any]) -> bool:
        assert self.producer is not None
        try:
            await asyncio.wait_for(self.producer.send_and_wait(topic, orjson.dumps(value), key=key),
                                   timeout=self.settings.kafka.produce_timeout_s)
            return True
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.error("jira.webhook.store-failed", extra={"error": type(exc).__name__})
            return False


async def serve(settings: Settings, *, host: str | None = None, port: int | None = None, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the receiver until ``stop`` is set (or forever)."""
    from hub.kafka_admin import ensure_topics

    k = settings.kafka
    await ensure_topics(k.bootstrap_servers, k.topic_prefix, k.partitions, k.replication_factor)
    receiver = Receiver(settings)
    await receiver.start()
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or settings.receiver.host, settings.receiver.port if port is None else port)
    await site.start()
    log.info("receiver.started", extra={"port": runner.addresses[0][1] if runner.addresses else None})
    print(f"switchboard receiver listening on http://{host or settings.receiver.host}:{runner.addresses[0][1]}/webhooks/jira", flush=True)
    if ready is not None:
        ready.set()
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await runner.cleanup()
        await receiver.stop()
