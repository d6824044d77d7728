"""``switchboard web``: the operators' view and its JSON API (aiohttp, server-rendered HTML, no build step).

Routes (every one but ``/health``, ``/metrics`` and the OpenAPI document needs a viewer, see
``web.viewers`` in the settings: a bearer token for tools, basic auth for browsers):

=====================================  ==========================================================
``GET /``                              ranked lists: by revenue at stake, by customer tickets
``GET /issues/{ref}``                  one issue: tickets, revenue, incident, timeline
``GET /deadletters``                   dead letters with reasons; admins get a replay button
``POST /deadletters/{id}/replay``      the button (form with a per-viewer CSRF token)
``GET /trace/{event_id}``              the lineage of one event
``GET /api/v1/…``                      the same as JSON (``/api/v1/openapi.json`` describes it)
``GET /health``                        200 once caught up and no partition of the worker is stalled
``GET /metrics``                       Prometheus
=====================================  ==========================================================
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
import os
import re
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from hub.metrics import CONTENT_TYPE, TopicMetrics
from hub.web import openapi
from hub.web.feed import Feed
from hub.web.model import ReadModel, Viewer

log = logging.getLogger("switchboard.web")

PUBLIC = ("/health", "/metrics", "/api/v1/openapi.json")
VIEWER_KEY = web.AppKey("viewer", Viewer)
DL_ID = re.compile(r"^[0-9]{1,9}-[0-9]{1,19}$")


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def _error(status: int, message: str, **headers: str) -> web.Response:
    resp = _json({"error": message}, status)
    resp.headers.update(headers)
    return resp


def build_model(settings) -> ReadModel:
    """A read model configured like the worker: routing's restricted projects, sales' revenue rules."""
    from hub.processors.sales import revenue_summary, sales_config
    from hub.routing import load_routing

    routing = load_routing(settings.routing_file)

    class _HubLike:  # sales_config reads hub.settings only
        pass

    hub = _HubLike()
    hub.settings = settings
    cfg = sales_config(hub)
    return ReadModel(restricted_projects=routing.restricted_projects, revenue=lambda opps: revenue_summary(cfg, opps),
                     timeline_size=settings.web.timeline_size, deadletter_size=settings.web.deadletter_size)


class WebView:
    def __init__(self, settings, model: ReadModel, feed: Feed | None, metrics: TopicMetrics | None = None) -> None:
        self.settings = settings
        self.model = model
        self.feed = feed
        self.metrics = metrics or (feed.metrics if feed else None)
        self.producer: AIOKafkaProducer | None = None
        self._csrf_key = os.urandom(32)
        self._viewers = settings.web.viewers

    # ------------------------------------------------------------------ auth

    def authenticate(self, request: web.Request) -> Viewer | None:
        header = request.headers.get("Authorization", "")
        scheme, _, cred = header.partition(" ")
        found = None
        if scheme.lower() == "bearer" and cred:
            given = cred.strip().encode("utf-8", "surrogateescape")
            for name, v in self._viewers.items():  # every viewer compared, in constant time each
                if v.token is not None and hmac.compare_digest(given, v.token.get_secret_value().encode()):
                    found = (name, v, "bearer")
        elif scheme.lower() == "basic" and cred:
            try:
                user, _, password = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            v = self._viewers.get(user)
            expected = v.password.get_secret_value().encode() if v is not None and v.password is not None else os.urandom(16)
            if hmac.compare_digest(password.encode("utf-8", "surrogateescape"), expected) and v is not None:
                found = (user, v, "basic")
        if found is None:
            return None
        name, v, how = found
        request["auth_scheme"] = how
        return Viewer(name=name, restricted_projects=frozenset(v.restricted_projects), admin=v.admin)

    @web.middleware
    async def auth_middleware(self, request: web.Request, handler):
        if request.path in PUBLIC:
            return await handler(request)
        viewer = self.authenticate(request)
        if viewer is None:
            log.info("web.unauthorized", extra={"path": request.path})
            return _error(401, "missing or invalid credentials", **{"WWW-Authenticate": 'Basic realm="Switchboard", charset="UTF-8"'})
        request["viewer"] = viewer
        return await handler(request)

    def csrf(self, viewer: Viewer) -> str:
        return hmac.new(self._csrf_key, viewer.name.encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth_middleware], client_max_size=64 * 1024)
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/metrics", self.metrics_page)
        r.add_get("/api/v1/openapi.json", self.openapi_doc)
        r.add_get("/api/v1/issues/{ref}", self.api_issue)
        r.add_get("/api/v1/ranked", self.api_ranked)
        r.add_get("/api/v1/deadletters", self.api_deadletters)
        r.add_post("/api/v1/deadletters/{id}/replay", self.api_replay)
        r.add_get("/api/v1/trace/{event_id}", self.api_trace)
        r.add_get("/api/v1/status", self.api_status)
        r.add_get("/", self.page_index)
        r.add_get("/issues/{ref}", self.page_issue)
        r.add_get("/deadletters", self.page_deadletters)
        r.add_post("/deadletters/{id}/replay", self.page_replay)
        r.add_get("/trace/{event_id}", self.page_trace)
        return app

    async def start_producer(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap_servers, acks="all", enable_idempotence=True,
                                         request_timeout_ms=int(self.settings.kafka.produce_timeout_s * 1000))
        await self.producer.start()

    # ------------------------------------------------------------------ public

    async def health(self, request: web.Request) -> web.Response:
        caught_up = self.feed is None or self.feed.caught_up.is_set()
        stalled = self.feed.stalled if self.feed else []
        ok = caught_up and not stalled
        return _json({"status": "ok" if ok else ("catching-up" if not caught_up else "stalled"), "stalled_partitions": stalled},
                     200 if ok else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = self.metrics.render() if self.metrics else b""
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def openapi_doc(self, request: web.Request) -> web.Response:
        return _json(openapi.document())

    # ------------------------------------------------------------------ API

    async def api_issue(self, request: web.Request) -> web.Response:
        doc = self.model.issue(request.match_info["ref"], request["viewer"])
        return _json(doc) if doc is not None else _error(404, "no such issue in the view")

    def _ranked_args(self, request: web.Request) -> tuple[str, int, str | None]:
        by = request.query.get("by", "revenue")
        if by not in ("revenue", "tickets"):
            raise ValueError("by must be revenue or tickets")
        raw_limit = request.query.get("limit", "50")
        if not re.fullmatch(r"[0-9]{1,4}", raw_limit) or not 1 <= int(raw_limit) <= 1000:
            raise ValueError("limit must be an integer from 1 to 1000")
        currency = request.query.get("currency")
        if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError("currency must be a three-letter ISO code")
        return by, int(raw_limit), currency

    async def api_ranked(self, request: web.Request) -> web.Response:
        try:
            by, limit, currency = self._ranked_args(request)
        except ValueError as exc:
            return _error(400, str(exc))
        return _json({"by": by, "items": self.model.ranked(by, request["viewer"], limit=limit, currency=currency)})

    async def api_deadletters(self, request: web.Request) -> web.Response:
        return _json({"items": self.model.deadletter_list(request["viewer"])})

    async def api_replay(self, request: web.Request) -> web.Response:
        if request.get("auth_scheme") != "bearer":
            return _error(403, "replaying through the API needs a bearer token (the page has its own form)")
        return await self._replay(request["viewer"], request.match_info["id"], as_json=True)

    async def _replay(self, viewer: Viewer, dl_id: str, *, as_json: bool) -> web.Response:
        from hub.replay import put_back, replayable

        if not viewer.admin:
            return _error(403, "only admins may replay dead letters")
        dead = self.model.deadletter(dl_id) if DL_ID.match(dl_id) else None
        if dead is None:
            return _error(404, "no such dead letter in the view")
        if not replayable(dead):
            return _error(409, "this dead letter cannot be replayed (no record kept, or the receiver refused it)")
        if self.producer is None:
            return _error(503, "no Kafka producer")
        try:
            topic = await asyncio.wait_for(put_back(self.producer, self.settings.kafka.topic_prefix, dead),
                                           timeout=self.settings.kafka.produce_timeout_s)
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.error("web.replay-failed", extra={"id": dl_id, "error": type(exc).__name__})
            return _error(503, "Kafka did not take the record; try again")
        self.model.replayed[dl_id] = self.model.replayed.get(dl_id, 0) + 1
        log.info("web.replayed", extra={"id": dl_id, "topic": topic, "viewer": viewer.name, "stage": dead.get("stage")})
        return _json({"status": "replayed", "id": dl_id, "topic": topic})

    async def api_trace(self, request: web.Request) -> web.Response:
        doc = self.model.trace(request.match_info["event_id"], request["viewer"])
        return _json(doc) if doc is not None else _error(404, "no such event in the view")

    async def api_status(self, request: web.Request) -> web.Response:
        return _json({"caught_up": self.feed is None or self.feed.caught_up.is_set(),
                      "stalled_partitions": self.feed.stalled if self.feed else [], **self.model.stats(),
                      "viewer": request["viewer"].name})

    # ------------------------------------------------------------------ pages

    async def page_index(self, request: web.Request) -> web.Response:
        viewer = request["viewer"]
        parts = [_ranked_table("Issues by revenue at stake", self.model.ranked("revenue", viewer), money=True),
                 _ranked_table("Issues by customer tickets", self.model.ranked("tickets", viewer), money=False)]
        return _page("Switchboard", "".join(parts), viewer)

    async def page_issue(self, request: web.Request) -> web.Response:
        viewer = request["viewer"]
        doc = self.model.issue(request.match_info["ref"], viewer)
        if doc is None:
            return _page("Not found", "<p>No such issue in the view.</p>", viewer, status=404)
        return _page(doc.get("key") or doc["issue_id"], _issue_html(doc), viewer)

    async def page_deadletters(self, request: web.Request) -> web.Response:
        viewer = request["viewer"]
        rows = []
        for d in self.model.deadletter_list(viewer):
            button = ""
            if viewer.admin and d["replayable"]:
                button = (f'<form method="post" action="/deadletters/{_e(d["id"])}/replay">'
                          f'<input type="hidden" name="csrf" value="{self.csrf(viewer)}">'
                          f'<button type="submit" data-replay="{_e(d["id"])}">Replay</button></form>')
            replayed = f'<span class="ok">replayed ×{d["replayed"]}</span>' if d["replayed"] else ""
            rows.append(f'<tr data-deadletter="{_e(d["id"])}"><td>{_ts(d.get("at_ms"))}</td><td>{_e(d.get("stage"))}</td>'
                        f'<td>{_e(d.get("source_topic"))}</td><td>{_e(d.get("key"))}</td><td>{_e(d.get("error_code"))}</td>'
                        f'<td class="reason">{_e(d.get("reason"))}</td><td>{button}{replayed}</td></tr>')
        flash = request.query.get("replayed")
        note = f'<p class="ok" id="flash">Dead letter {_e(flash)} put back on its topic.</p>' if flash else ""
        body = note + ('<table><tr><th>at</th><th>stage</th><th>source topic</th><th>key</th><th>code</th><th>reason</th><th></th></tr>'
                       + "".join(rows) + "</table>" if rows else "<p>No dead letters.</p>")
        return _page("Dead letters", body, viewer)

    async def page_replay(self, request: web.Request) -> web.Response:
        viewer = request["viewer"]
        form = await request.post()
        if not hmac.compare_digest(str(form.get("csrf", "")), self.csrf(viewer)):
            return _error(403, "stale or missing form token: reload the page")
        dl_id = request.match_info["id"]
        resp = await self._replay(viewer, dl_id, as_json=False)
        if resp.status != 200:
            return resp
        raise web.HTTPSeeOther(f"/deadletters?replayed={dl_id}")

    async def page_trace(self, request: web.Request) -> web.Response:
        viewer = request["viewer"]
        doc = self.model.trace(request.match_info["event_id"], viewer)
        if doc is None:
            return _page("Not found", "<p>No such event in the view.</p>", viewer, status=404)
        return _page(f"Trace {doc['event_id']}", _trace_html(doc), viewer)


# ---------------------------------------------------------------------- HTML helpers

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#222}nav a{margin-right:1rem}table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}th{background:#f4f4f4}.muted{color:#777}
.ok{color:#176b2c}.bad{color:#a11}.reason{max-width:40rem}.redacted{font-style:italic;color:#777}h2{margin-top:1.5rem}"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _ts(ms: Any) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _page(title: str, body: str, viewer: Viewer, status: int = 200) -> web.Response:
    doc = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · Switchboard</title>'
           f'<style>{CSS}</style></head><body><nav><a href="/">Ranked issues</a><a href="/deadletters">Dead letters</a>'
           f'<span class="muted">signed in as {_e(viewer.name)}</span></nav><h1>{_e(title)}</h1>{body}</body></html>')
    return web.Response(text=doc, status=status, content_type="text/html", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        "X-Frame-Options": "DENY", "Cache-Control": "no-store"})


def _summary(doc: dict[str, Any]) -> str:
    if doc.get("redacted"):
        return '<span class="redacted">restricted issue: summary hidden</span>'
    return _e(doc.get("summary"))


def _money(amount: Any, currency: Any) -> str:
    return f"{float(amount or 0):,.2f} {_e(currency or '')}".strip()


def _ranked_table(title: str, rows: list[dict[str, Any]], *, money: bool) -> str:
    if not rows:
        return f"<h2>{_e(title)}</h2><p class='muted'>Nothing yet.</p>"
    head = "<tr><th>#</th><th>issue</th><th>summary</th><th>status</th><th>revenue at stake</th><th>weighted</th><th>tickets</th></tr>"
    body = []
    for i, r in enumerate(rows, 1):
        ref = r.get("key") or r["issue_id"]
        body.append(f'<tr data-issue="{_e(ref)}"><td>{i}</td><td><a href="/issues/{_e(ref)}">{_e(ref)}</a></td><td>{_summary(r)}</td>'
                    f'<td>{_e(r.get("status"))}</td><td>{_money(r["revenue_amount"], r["revenue_currency"]) if r["revenue_currency"] else ""}</td>'
                    f'<td>{_money(r["revenue_weighted"], r["revenue_currency"]) if r["revenue_currency"] else ""}</td><td>{r["ticket_count"]}</td></tr>')
    table_id = "by-revenue" if money else "by-tickets"
    return f'<h2>{_e(title)}</h2><table id="{table_id}">{head}{"".join(body)}</table>'


def _issue_html(doc: dict[str, Any]) -> str:
    out = [f'<p id="summary">{_summary(doc)}</p>',
           f'<p>Project {_e(doc.get("project"))} · status <b id="status">{_e(doc.get("status"))}</b>'
           + (f' · <a href="{_e(doc["url"])}">open in Jira</a>' if doc.get("url") else "") + "</p>"]
    # tickets
    out.append(f'<h2>Customer tickets <span class="muted">({doc["ticket_count"]} tickets, {doc["organization_count"]} organisations)</span></h2>')
    if doc["tickets"]:
        out.append('<table id="tickets"><tr><th>ticket</th><th>subject</th><th>organisation</th><th>status</th><th>linked by</th></tr>')
        for t in doc["tickets"]:
            subject = '<span class="redacted">hidden</span>' if doc.get("redacted") else _e(t.get("subject"))
            link = f'<a href="{_e(t["url"])}">#{_e(t["id"])}</a>' if t.get("url") else f"#{_e(t['id'])}"
            out.append(f'<tr data-ticket="{_e(t["id"])}"><td>{link}</td><td>{subject}</td><td>{_e(t.get("organization"))}</td>'
                       f'<td>{_e(t.get("status"))}</td><td>{_e(", ".join(t["routes"]))}</td></tr>')
        out.append("</table>")
    else:
        out.append("<p class='muted'>No linked tickets.</p>")
    # revenue
    rev = doc.get("revenue")
    out.append("<h2>Revenue at stake</h2>")
    if rev and rev.get("open_count"):
        totals = ", ".join(f'{_money(t["amount"], c)} (weighted {_money(t["weighted"], c)}, {t["count"]} open)' for c, t in rev["totals"].items())
        conv = rev.get("converted")
        out.append(f'<p id="revenue">{totals}' + (f' · total {_money(conv["amount"], conv["currency"])}' if conv else "")
                   + (f' · earliest close {_e(rev.get("earliest_close_date"))}' if rev.get("earliest_close_date") else "") + "</p>")
        out.append('<table id="opportunities"><tr><th>opportunity</th><th>account</th><th>stage</th><th>amount</th><th>close date</th></tr>')
        for o in rev["opportunities"]:
            out.append(f'<tr><td>{_e(o.get("name") or o["id"])}</td><td>{_e(o.get("account"))}</td><td>{_e(o.get("stage"))}</td>'
                       f'<td>{_money(o["amount"], o["currency"])}</td><td>{_e(o.get("close_date"))}</td></tr>')
        out.append("</table>")
    else:
        out.append("<p class='muted'>No open opportunities.</p>")
    if doc.get("feature_requests"):
        out.append("<p>Feature requests: " + ", ".join(f'{_e(f["id"])} ({_e(", ".join(f["routes"]))})' for f in doc["feature_requests"]) + "</p>")
    # incident
    inc = doc.get("incident")
    out.append("<h2>Incident</h2>")
    if inc:
        out.append(f'<p id="incident">State <b>{_e(inc["state"])}</b> · lifecycle {_e(inc["lifecycle"])}'
                   + (" · deleted in Jira" if inc.get("deleted") else "") + "</p><ul>")
        for ref in inc["pagerduty"]:
            out.append(f'<li>PagerDuty service {_e(ref["target"])}: {_e(ref.get("outcome"))} · dedup key <code>{_e(ref.get("vendor_ref"))}</code></li>')
        for ref in inc["slack"]:
            out.append(f'<li>Slack {_e(ref["target"])}: {_e(ref.get("outcome"))} · message ts <code>{_e(ref.get("vendor_ref"))}</code></li>')
        out.append("</ul>")
    else:
        out.append("<p class='muted'>Not an incident.</p>")
    # timeline
    out.append('<h2>Timeline</h2><table id="timeline"><tr><th>at</th><th>what</th><th>detail</th><th>effect</th></tr>')
    for e in doc["timeline"]:
        if e["type"] == "event":
            what = f'{_e(e["topic"])}: {_e(e.get("kind"))}'
            detail = ", ".join(f'{_e(c["field"])}: {_e(c["from"])} → {_e(c["to"])}' for c in e.get("changes") or [])
            if e.get("ticket_id"):
                detail = f"ticket #{_e(e['ticket_id'])}"
        else:
            what = f'{_e(e["topic"])}: {_e(e.get("action_id"))}'
            detail = f"v{_e(e.get('version'))}"
        results = "; ".join(f'{_e(r["outcome"])}' + (f' ({_e(r["detail"])})' if r.get("detail") else "") for r in e.get("results") or [])
        trace = f' <a href="/trace/{_e(e["event_id"])}">trace</a>' if e.get("event_id") else ""
        out.append(f"<tr><td>{_ts(e.get('at_ms'))}</td><td>{what}</td><td>{detail}{trace}</td><td>{results}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _trace_html(doc: dict[str, Any]) -> str:
    rows = "".join(f'<tr><td>{_e(h["stage"])}</td><td>{_ts(h.get("at_ms"))}</td><td>{_e(h["topic"])} <span class="muted">{_e(h["position"])}</span></td>'
                   f'<td>{_e(h.get("processor"))}</td><td>{_e(h["detail"])}</td></tr>' for h in doc["hops"])
    issues = ", ".join(f'<a href="/issues/{_e(i)}">{_e(i)}</a>' for i in doc["issue_ids"])
    return (f"<p>Issues: {issues or '—'}</p><table id='trace'><tr><th>stage</th><th>at</th><th>topic</th><th>processor</th><th>detail</th></tr>"
            f"{rows}</table>")


# ---------------------------------------------------------------------- entry point

async def _watch_routing(settings, model: ReadModel, stop: asyncio.Event) -> None:
    from hub.reload import RoutingWatcher

    watcher = RoutingWatcher(settings.routing_file, lambda cfg: setattr(model, "restricted_projects", frozenset(cfg.restricted_projects)))
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.routing_reload_s)
        except asyncio.TimeoutError:
            watcher.check()


async def serve(settings, *, host: str | None = None, port: int | None = None, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run the view until ``stop`` is set (or forever): feed, lag watcher, producer for replays, HTTP."""
    stop = stop or asyncio.Event()
    metrics = TopicMetrics()
    model = build_model(settings)
    feed = Feed(settings, model, metrics)
    view = WebView(settings, model, feed, metrics)
    await feed.start()
    await view.start_producer()
    tasks = [asyncio.create_task(feed.run(stop)), asyncio.create_task(feed.watch_lag(stop))]
    if settings.routing_reload_s > 0:  # the restricted projects follow the routing file, as in the worker
        tasks.append(asyncio.create_task(_watch_routing(settings, model, stop)))
    runner = web.AppRunner(view.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or settings.web.host, settings.web.port if port is None else port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else None
    log.info("web.started", extra={"port": bound, "viewers": sorted(settings.web.viewers)})
    print(f"switchboard web listening on http://{host or settings.web.host}:{bound}/", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        stop.set()
        await runner.cleanup()
        for t in tasks:
            try:
                await asyncio.wait_for(t, timeout=5)
            except (asyncio.TimeoutError, Exception):
                t.cancel()
        await feed.stop()
        if view.producer is not None:
            await view.producer.stop()
