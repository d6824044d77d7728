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
KEPT_HEADERS = ("x-atlassian-webhook-identifier", "x-atlassian-webhook-retry", "x-atlassian-webhook-flow",
                "x-zendesk-webhook-id", "x-zendesk-webhook-invocation-id", "user-agent", "content-type")
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


def _text(value: str) -> str:
    """A header value as valid UTF-8 text: aiohttp keeps undecodable header bytes as lone surrogates,
    which orjson refuses to encode (a 500 for a well-signed delivery)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


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
        self.topic_dead = full_name(settings.kafka.topic_prefix, "deadletter")
        secret = settings.jira.webhook_secret
        self._jira_secret = secret.get_secret_value().encode() if secret is not None else None
        zsecret = settings.zendesk.webhook_secret
        self._zendesk_secret = zsecret.get_secret_value().encode() if zsecret is not None else None
        self.counts: dict[str, int] = {}
        from hub.metrics import ReceiverMetrics

        self.metrics = ReceiverMetrics()

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        connector, _, result = key.partition(".webhook.")
        if result:  # "<vendor>.webhook.<result>": one event in (or refused), per connector
            self.metrics.webhooks.labels(connector, result).inc()

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
        app = web.Application(client_max_size=max(self.settings.jira.max_body_bytes, self.settings.zendesk.max_body_bytes))
        app.router.add_post("/webhooks/jira", self.jira)
        app.router.add_post("/webhooks/zendesk", self.zendesk)
        app.router.add_post("/api/links", self.link_api)
        app.router.add_get("/health", self.health)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/metrics", self.metrics_page)
        return app

    async def metrics_page(self, request: web.Request) -> web.Response:
        from hub.metrics import CONTENT_TYPE

        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

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
        def verify(body: bytes) -> bool:
            if self._jira_secret is None and not self.settings.jira.require_signature:
                return True
            return verify_jira(self._jira_secret or b"", body, request.headers.get("X-Hub-Signature"))

        def classify(payload: dict) -> tuple[str | None, str | None, bool]:
            c = jira_events.classify(payload)
            return c.event_type, c.issue_id, c.supported

        return await self._ingest(request, vendor="jira", limit=self.settings.jira.max_body_bytes, verify=verify, classify=classify,
                                  delivery_id=request.headers.get("X-Atlassian-Webhook-Identifier"), signature_header="X-Hub-Signature")

    async def zendesk(self, request: web.Request) -> web.Response:
        from connectors.zendesk import events as zendesk_events
        from connectors.zendesk.signature import verify as verify_zendesk

        zs = self.settings.zendesk

        def verify(body: bytes) -> bool:
            if self._zendesk_secret is None and not zs.require_signature:
                return True
            return verify_zendesk(self._zendesk_secret or b"", request.headers.get("X-Zendesk-Webhook-Signature-Timestamp") or "", body,
                                  request.headers.get("X-Zendesk-Webhook-Signature") or "", now=time.time(), window_s=zs.replay_window_s)

        def classify(payload: dict) -> tuple[str | None, str | None, bool]:
            c = zendesk_events.classify(payload)
            return c.event_type, c.ticket_id, c.supported

        # trigger bodies carry no event id: the invocation id is the same on every retry of one delivery
        invocation = request.headers.get("X-Zendesk-Webhook-Invocation-Id")
        return await self._ingest(request, vendor="zendesk", limit=zs.max_body_bytes, verify=verify, classify=classify,
                                  delivery_id=f"zendesk:inv:{invocation}" if invocation else None,
                                  signature_header="X-Zendesk-Webhook-Signature")

    async def _ingest(self, request: web.Request, *, vendor: str, limit: int, verify, classify, delivery_id: str | None,
                      signature_header: str) -> web.Response:
        """The guard ladder shared by every webhook: size, signature, JSON, classify, dedup, store."""
        with self.metrics.latency.labels(vendor).time():
            return await self._guard_ladder(request, vendor=vendor, limit=limit, verify=verify, classify=classify,
                                            delivery_id=delivery_id, signature_header=signature_header)

    async def _guard_ladder(self, request: web.Request, *, vendor: str, limit: int, verify, classify, delivery_id: str | None,
                            signature_header: str) -> web.Response:
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, f"{vendor}.webhook.too-large", f"body larger than {limit} bytes")
        try:
            body = await request.read()  # aiohttp stops at client_max_size
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, f"{vendor}.webhook.too-large", f"body larger than {limit} bytes")
        except (asyncio.IncompleteReadError, ConnectionError, web.RequestPayloadError):  # cut short, bad chunking or Content-Encoding
            return self._refuse(400, f"{vendor}.webhook.bad-body", "could not read the body")
        if len(body) > limit:
            return self._refuse(413, f"{vendor}.webhook.too-large", f"body larger than {limit} bytes")
        if not verify(body):
            return self._refuse(401, f"{vendor}.webhook.bad-signature", f"missing, stale or invalid {signature_header}")
        if _too_deep(body):
            return self._refuse(400, f"{vendor}.webhook.bad-json", f"JSON nested deeper than {MAX_DEPTH}")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._refuse(400, f"{vendor}.webhook.bad-json", "body is not valid UTF-8 JSON")
        if not isinstance(payload, dict):
            return self._refuse(400, f"{vendor}.webhook.bad-json", "body is not a JSON object")
        if delivery_id is None and vendor == "zendesk" and isinstance(payload.get("id"), str):
            delivery_id = f"zendesk:{payload['id']}"  # event webhooks carry a unique event id
        if delivery_id:
            delivery_id = _text(delivery_id)
        if delivery_id and self.dedup.seen(delivery_id):
            self._count(f"{vendor}.webhook.duplicate")
            return web.json_response({"status": "duplicate"}, status=200)
        headers = {h: _text(request.headers[h]) for h in KEPT_HEADERS if h in request.headers}
        received = int(time.time() * 1000)
        envelope = {"schema": "switchboard.inbound/1", "source": vendor, "delivery_id": delivery_id, "event_type": None,
                    "received_at_ms": received, "headers": headers, "payload": payload}
        try:
            event_type, entity_id, supported = classify(payload)
            envelope["event_type"] = event_type
        except MappingError as exc:
            # well signed but unprocessable: keep it, with the reason, where an admin can see it
            dead = {
                "schema": "switchboard.deadletter/1", "stage": f"receiver.{vendor}", "source_topic": f"inbound.{vendor}",
                "key": None, "value": envelope, "value_text": None, "reason": str(exc), "error_code": exc.code, "at_ms": received,
            }
            if not await self._produce(self.topic_dead, None, dead):
                return self._refuse(503, f"{vendor}.webhook.store-failed", "event store unavailable, retry later")
            self._count(f"{vendor}.webhook.dead-lettered")
            return web.json_response({"status": "dead-lettered", "reason": str(exc)}, status=202)
        if not supported:
            self._count(f"{vendor}.webhook.ignored")
            return web.json_response({"status": "ignored", "event_type": event_type}, status=202)
        if not await self._produce(full_name(self.settings.kafka.topic_prefix, f"inbound.{vendor}"), str(entity_id).encode(), envelope):
            resp = self._refuse(503, f"{vendor}.webhook.store-failed", "event store unavailable, retry later")
            resp.headers["Retry-After"] = "5"
            return resp
        if delivery_id:
            self.dedup.add(delivery_id)
        self._count(f"{vendor}.webhook.accepted")
        return web.json_response({"status": "accepted"}, status=202)

    async def link_api(self, request: web.Request) -> web.Response:
        """``POST /api/links`` ``{"ticket_id": "123", "issue": "OPS-1" | "10001", "op": "link" | "unlink"}``."""
        token = self.settings.receiver.api_token
        if token is None:
            return web.json_response({"error": "the link API is off: set receiver.api_token"}, status=404)
        import hmac

        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.get_secret_value().encode()):
            return self._refuse(401, "api.links.unauthorized", "missing or invalid bearer token")
        try:
            body = orjson.loads(await request.read())  # JSON is UTF-8 (RFC 8259): a charset parameter is not consulted
            ticket_id, issue, op = body["ticket_id"], body["issue"], body.get("op", "link")
            ticket_id, issue = (str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in (ticket_id, issue))
            if (op not in ("link", "unlink") or not isinstance(ticket_id, str) or not isinstance(issue, str)
                    or not (ticket_id.isascii() and ticket_id.isdigit()) or not issue.strip()):
                raise ValueError
        except (ValueError, KeyError, TypeError, asyncio.IncompleteReadError, ConnectionError, web.RequestPayloadError):
            return web.json_response({"error": 'expected {"ticket_id": "<digits>", "issue": "<key or id>", "op": "link"|"unlink"}'}, status=400)
        from hub.links import link_message

        topic, key, value = link_message(op, ticket_id, issue)
        if not await self._produce(full_name(self.settings.kafka.topic_prefix, topic), key.encode(), value):
            return self._refuse(503, "api.links.store-failed", "event store unavailable, retry later")
        return web.json_response({"status": "accepted", "op": op, "ticket_id": ticket_id, "issue": issue}, status=202)

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
