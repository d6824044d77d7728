"""``switchboard`` — the one command-line entry point.

    switchboard worker              run the stream processors and delivery (faust worker)
    switchboard receiver            run the webhook receiver
    switchboard broker start|stop|status|logs   a local single-node Kafka (Maven-fetched)
    switchboard sandbox             run the fake Slack / PagerDuty / Jira servers
    switchboard demo [--once]       everything above, plus a scripted incident scenario
    switchboard check-config        validate settings and the routing file, name the bad key
    switchboard topics              create the declared topics, print them
    switchboard replay              put dead letters back on their source topics
    switchboard link TICKET ISSUE   link a Zendesk ticket and a Jira issue (--unlink to undo)
    switchboard poller jira|zendesk catch up what webhooks missed (--once, --interval)
    switchboard backfill jira|zendesk --since DATE   re-read a period, with a progress bar
    switchboard cdc salesforce      bridge Salesforce Change Data Capture to the hub (--once)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def _settings(args):
    from hub.settings import ConfigError, load_settings

    try:
        return load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"switchboard: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def check_config(settings) -> list[str]:
    """Problems that stop the hub from doing its job, each naming the key to fix."""
    from hub.logs import is_level
    from hub.routing import load_routing
    from hub.routing.loader import RoutingConfigError

    problems = []
    try:
        routing = load_routing(settings.routing_file)
    except (RoutingConfigError, OSError) as exc:
        return [f"routing_file ({settings.routing_file}): {exc}"]
    services = {svc for r in routing.receivers.values() for svc in r.pagerduty_services}
    channels = {ch for r in routing.receivers.values() for ch in r.slack_channels}
    if not settings.pagerduty.dry_run:
        for svc in sorted(services - set(settings.pagerduty.services)):
            problems.append(f"pagerduty.services.{svc}: the routing file pages service {svc!r} but no routing key is set "
                            f"(SWITCHBOARD_PAGERDUTY__SERVICES__{svc.upper()}), or set pagerduty.dry_run")
    if settings.sales.enabled and not settings.support.enabled:
        problems.append("sales.enabled: the sales path needs support.enabled (it shares the key side that follows Jira keys)")
    if channels and settings.slack.bot_token is None and not settings.slack.dry_run:
        problems.append("slack.bot_token: the routing file posts to Slack but no bot token is set (SWITCHBOARD_SLACK__BOT_TOKEN), or set slack.dry_run")
    if not is_level(settings.log_level):
        problems.append("log_level: not a level name (DEBUG, INFO, WARNING, ERROR or CRITICAL)")
    return problems


def cmd_check_config(args) -> int:
    settings = _settings(args)
    problems = check_config(settings)
    for p in problems:
        print(f"switchboard: configuration error: {p}", file=sys.stderr)
    if not problems:
        print(f"configuration OK (routing file {settings.routing_file}, Kafka {settings.kafka.bootstrap_servers})")
    return 1 if problems else 0


def cmd_worker(args) -> int:
    import faust  # noqa: F401 - imported here so that other commands start fast

    from hub.app import build_app
    from hub.kafka_admin import ensure_topics
    from hub.logs import setup_logging

    settings = _settings(args)
    setup_logging(settings.log_level)
    problems = check_config(settings)
    if problems:
        for p in problems:
            print(f"switchboard: configuration error: {p}", file=sys.stderr)
        return 2
    from hub.loop import use_event_loop

    loop_name = use_event_loop(settings.event_loop)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    k = settings.kafka
    loop.run_until_complete(ensure_topics(k.bootstrap_servers, k.topic_prefix, k.partitions, k.replication_factor))
    hub = build_app(settings)
    log = logging.getLogger("switchboard.worker")

    @hub.app.on_rebalance_complete.connect
    async def _ready(sender, **kwargs):
        log.info("worker.ready", extra={"event_loop": loop_name})
        print("worker.ready", flush=True)

    if settings.routing_reload_s > 0:
        import os

        from hub.reload import RoutingWatcher, worker_settings_watcher

        watcher = RoutingWatcher(settings.routing_file, lambda cfg: setattr(hub, "routing", cfg), settings=settings)
        # the settings file, on the same cadence: hot keys applied, others named (hub/reload.py)
        settings_watcher = worker_settings_watcher(hub, watcher, getattr(args, "config", None) or os.environ.get("SWITCHBOARD_CONFIG"),
                                                   validate=check_config)

        @hub.app.timer(interval=settings.routing_reload_s)
        async def _reload_routing():
            if settings_watcher is not None:
                settings_watcher.check()
            watcher.check()

    if settings.metrics.worker_port:
        from prometheus_client import start_http_server

        from hub.metrics import worker_registry

        start_http_server(settings.metrics.worker_port, addr=settings.metrics.host, registry=worker_registry(lambda: dict(hub.pipelines)))

    from hub.app import worker_class

    worker = worker_class(hub)(hub.app, loop=loop, loglevel=settings.log_level.lower(), quiet=True, override_logging=False)
    worker.execute_from_commandline()
    return 0


def cmd_receiver(args) -> int:
    from hub.logs import setup_logging
    from hub.receiver import serve

    from hub.loop import use_event_loop

    settings = _settings(args)
    setup_logging(settings.log_level)
    use_event_loop(settings.event_loop)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_topics(args) -> int:
    from hub.kafka_admin import ensure_topics

    settings = _settings(args)
    k = settings.kafka
    created = asyncio.run(ensure_topics(k.bootstrap_servers, k.topic_prefix, k.partitions, k.replication_factor))
    for name, parts in created.items():
        print(f"{name}\t{parts} partitions")
    return 0


def cmd_replay(args) -> int:
    from hub.replay import replay

    settings = _settings(args)
    n = asyncio.run(replay(settings, stage=args.stage, limit=args.limit, dry_run=args.dry_run))
    print(f"{'would replay' if args.dry_run else 'replayed'} {n} dead letter(s)")
    return 0


def cmd_link(args) -> int:
    """Link (or unlink) a Zendesk ticket and a Jira issue by producing one message."""
    import orjson
    from aiokafka import AIOKafkaProducer

    from hub.kafka_admin import ensure_topics
    from hub.links import link_message
    from topics import full_name

    settings = _settings(args)
    k = settings.kafka
    topic, key, value = link_message("unlink" if args.unlink else "link", args.ticket, args.issue)

    async def send():
        await ensure_topics(k.bootstrap_servers, k.topic_prefix, k.partitions, k.replication_factor)
        producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(full_name(k.topic_prefix, topic), orjson.dumps(value), key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    print(f"{'unlink' if args.unlink else 'link'} requested: Zendesk #{args.ticket} ↔ {args.issue}")
    return 0


def cmd_poller(args) -> int:
    """Run a catch-up poller until interrupted (or once, with --once)."""
    from hub.logs import setup_logging
    from hub.pollers import open_poller

    settings = _settings(args)
    setup_logging(settings.log_level)

    async def run():
        poller, producer = await open_poller(settings, args.vendor)
        try:
            if args.once:
                n = await poller.run_once()
                print(f"{args.vendor} poller: caught up ({n} item(s))")
            else:
                await poller.run_forever(args.interval)
        finally:
            await producer.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_cdc(args) -> int:
    """Bridge Salesforce Change Data Capture (Streaming API) to inbound.salesforce, resuming from the stored replay ids."""
    from hub.logs import setup_logging
    from hub.pollers import open_cdc_bridge

    settings = _settings(args)
    setup_logging(settings.log_level)

    async def run():
        bridge, _producer, close = await open_cdc_bridge(settings)
        try:
            if args.once:
                n = await bridge.run_once()
                print(f"salesforce cdc: caught up ({n} event(s), {bridge.rereads} record(s) re-read)")
            else:
                await bridge.run_forever()
        finally:
            await close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_backfill(args) -> int:
    """Re-read everything changed since --since through the poller, with a progress bar."""
    from datetime import datetime, timezone

    from tqdm import tqdm

    from hub.pollers import open_poller

    settings = _settings(args)
    try:
        since = datetime.fromisoformat(args.since)
    except ValueError:
        print(f"switchboard: --since {args.since!r} is not a date (use YYYY-MM-DD or an ISO timestamp)", file=sys.stderr)
        return 2
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)

    async def run():
        poller, producer = await open_poller(settings, args.vendor)
        bar = tqdm(desc=f"backfill {args.vendor}", unit="item")

        def progress(*args) -> None:  # (done, total) or (object, done, total), by vendor
            done, total = args[-2], args[-1]
            if total is not None:
                bar.total = total
            bar.n = done
            bar.refresh()

        try:
            return await poller.backfill(since, progress)
        finally:
            bar.close()
            await producer.stop()

    n = asyncio.run(run())
    print(f"backfill {args.vendor}: {n} item(s) since {since.isoformat()} sent to inbound.{args.vendor}")
    return 0


def cmd_broker(args, rest) -> int:
    from hub.broker import main as broker_main

    return broker_main(rest, prog="switchboard broker") or 0


def cmd_sandbox(args, rest) -> int:
    from sandbox.__main__ import main as sandbox_main

    return sandbox_main(rest) or 0


def cmd_bench(args, rest) -> int:
    from hub.bench import main as bench_main

    return bench_main(rest)


def cmd_web(args) -> int:
    from hub.logs import setup_logging
    from hub.web.server import serve

    settings = _settings(args)
    setup_logging(settings.log_level)
    if not settings.web.viewers:
        print("switchboard: configuration error: web.viewers: no viewer can sign in; add one, e.g. "
              "SWITCHBOARD_WEB__VIEWERS__ADMIN__PASSWORD=... and SWITCHBOARD_WEB__VIEWERS__ADMIN__ADMIN=true", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_top(args) -> int:
    import os

    from hub.web.tools import ApiError, fetch_json, format_top, ranked_url

    settings = _settings(args)
    base = args.url or f"http://{settings.web.host}:{settings.web.port}"
    token = os.environ.get("SWITCHBOARD_TOKEN")
    try:
        doc = fetch_json(ranked_url(base, args.by, args.limit, args.currency), token)
    except ApiError as exc:
        print(f"switchboard top: {exc}", file=sys.stderr)
        return 1
    print(format_top(doc))
    return 0


def cmd_trace(args) -> int:
    import json

    from hub.web.tools import format_trace, trace

    settings = _settings(args)
    doc = asyncio.run(trace(settings, args.event_id))
    if doc is None:
        print(f"switchboard trace: no event {args.event_id!r} on the topics", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2) if args.json else format_trace(doc))
    return 0


def cmd_routes(args) -> int:
    from hub.routing.explain import explain_file

    try:
        print(explain_file(args.file, args.event))
    except (OSError, ValueError) as exc:
        print(f"switchboard routes test: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_config_docs(args) -> int:
    from hub.config_docs import render

    print(render(), end="")
    return 0


def cmd_demo(args) -> int:
    from hub.demo import run_demo

    return run_demo(once=args.once)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description="Event-driven integration hub.")
    parser.add_argument("--config", help="YAML settings file (else SWITCHBOARD_CONFIG, then environment only)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the stream processors and delivery pipelines")
    sub.add_parser("receiver", help="run the webhook receiver")
    sub.add_parser("check-config", help="validate settings and the routing file")
    sub.add_parser("topics", help="create the declared topics and list them")
    p = sub.add_parser("replay", help="put dead letters back on their source topic")
    p.add_argument("--stage", help="only dead letters of this stage, e.g. deliver.slack")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("link", help="link a Zendesk ticket and a Jira issue (or --unlink)")
    p.add_argument("ticket", help="Zendesk ticket id")
    p.add_argument("issue", help="Jira issue key (OPS-1) or id (10001)")
    p.add_argument("--unlink", action="store_true")
    p = sub.add_parser("poller", help="run a catch-up poller: jira or zendesk")
    p.add_argument("vendor", choices=["jira", "zendesk", "salesforce"])
    p.add_argument("--once", action="store_true", help="catch up once and exit")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between polls")
    p = sub.add_parser("cdc", help="bridge Change Data Capture events to the hub: salesforce")
    p.add_argument("vendor", choices=["salesforce"])
    p.add_argument("--once", action="store_true", help="emit what is due now and exit")
    p = sub.add_parser("backfill", help="re-read a vendor's changes since a date")
    p.add_argument("vendor", choices=["jira", "zendesk", "salesforce"])
    p.add_argument("--since", required=True, help="YYYY-MM-DD or ISO timestamp (UTC unless given)")
    p = sub.add_parser("demo", help="run broker, hub and fakes with a scripted incident scenario")
    p.add_argument("--once", action="store_true", help="run the scenario, print a summary, exit 0 only if every effect was seen")
    sub.add_parser("web", help="run the operators' view and its JSON API")
    p = sub.add_parser("top", help="issues ranked by revenue at stake, from the web view's API (token: SWITCHBOARD_TOKEN)")
    p.add_argument("--by", choices=["revenue", "tickets"], default="revenue")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--currency", help="rank by this currency's total")
    p.add_argument("--url", help="the web view (default http://<web.host>:<web.port>)")
    p = sub.add_parser("trace", help="the path of one event through the hub, read from the topics")
    p.add_argument("event_id")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("routes", help="routes test FILE EVENT.json: which route an event takes, and why")
    p.add_argument("action", choices=["test"])
    p.add_argument("file", help="a routing file")
    p.add_argument("event", help="a tracker event (events.tracker record) or a raw Jira webhook body, as JSON")
    sub.add_parser("config-docs", help="print the configuration reference generated from the settings models")
    sub.add_parser("broker", help="local Kafka broker: start|stop|status|logs", add_help=False)
    sub.add_parser("sandbox", help="run the fake SaaS servers", add_help=False)
    sub.add_parser("bench", help="benchmark the incident path against raw aiokafka (prints JSON)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "broker":
        return cmd_broker(args, rest)
    if args.command == "sandbox":
        return cmd_sandbox(args, rest)
    if args.command == "bench":
        return cmd_bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    command = {
        "worker": cmd_worker, "receiver": cmd_receiver, "check-config": cmd_check_config,
        "topics": cmd_topics, "replay": cmd_replay, "demo": cmd_demo, "link": cmd_link, "poller": cmd_poller,
        "backfill": cmd_backfill, "cdc": cmd_cdc,
        "web": cmd_web, "top": cmd_top, "trace": cmd_trace, "routes": cmd_routes, "config-docs": cmd_config_docs,
    }[args.command]
    try:
        return command(args)
    except Exception as exc:
        from aiokafka.errors import KafkaConnectionError

        if not isinstance(exc, KafkaConnectionError):
            raise
        print(f"switchboard {args.command}: cannot reach Kafka at {_bootstrap_of(args)}. Start the local broker with "
              "`switchboard broker start` (or run `make demo`), or point SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS "
              "(or KAFKA_BOOTSTRAP_SERVERS) at your cluster.", file=sys.stderr)
        return 3


def _bootstrap_of(args) -> str:
    from hub.settings import ConfigError, load_settings

    try:
        return load_settings(getattr(args, "config", None)).kafka.bootstrap_servers
    except ConfigError:
        return "the configured bootstrap servers"


if __name__ == "__main__":
    sys.exit(main())
