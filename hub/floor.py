"""The stack's floor for one incident: the least work any design of the incident path does with this
stack, measured in a process of its own so that its CPU per incident compares with the worker's.

``switchboard bench`` runs it over incidents written to a topic of their own, against the same broker
and the same fakes as the hub, and reports the worker's CPU per incident as a multiple of it. The
question it answers: how much of the worker's cost is the design (faust, the tables, the hops between
agents), and how much any design on aiokafka, orjson, slack_sdk and aiohttp pays.

Per incident, in batches read with aiokafka's ``getmany``:

1. read its inbound record and parse it (orjson);
2. map and decide with the hub's own pure functions (the Jira connector's mapping,
   ``hub.processors.incidents.decide`` and ``build_actions``, with the routing file);
3. post to Slack (``SlackClient``, over slack_sdk) and trigger PagerDuty (``PagerDutyEvents``, over
   aiohttp), both concurrent, ``concurrency`` incidents in flight;
4. write what the hub keeps about it: the incident's state, the Slack and PagerDuty ledger rows and
   the two results (five records, acks=all), then commit the batch's offsets.

With ``--no-calls`` step 3 is skipped: the Kafka side alone, so that the report can say what the
vendor calls (their HTTPS clients) cost on their own.

Left out on purpose: what makes the hub safe across crashes, rebalances and vendor failures beyond
that — faust's table store and its changelog bookkeeping, the marker made durable before each Slack
post, the per-target ordering lanes, rate-limit gates, retry tiers and dead letters, the canonical
events topic between the normalizer and the processors, and reading an incident's stored state (every
incident here is new). So it is a lower bound, not a design to ship.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

import orjson


async def run_floor(*, bootstrap: str, topic: str, out_topic: str, n: int, slack_url: str, slack_token: str, pagerduty_url: str,
                    pagerduty_key: str, ca_file: str | None, routing_file: str | None = None, concurrency: int = 64,
                    calls: bool = True, timeout_s: float = 600.0) -> dict[str, Any]:
    import ssl

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from connectors.jira.mapping import to_tracker_event
    from connectors.pagerduty.client import PagerDutyEvents
    from connectors.pagerduty.mapping import send_event_kwargs
    from connectors.slack.actions import MESSAGE_EVENT
    from connectors.slack.client import SlackClient
    from hub.processors.incidents import build_actions, decide
    from hub.routing import load_routing
    from hub.settings import DEFAULT_ROUTING_FILE

    ssl_context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    slack = SlackClient(slack_token, base_url=slack_url, ssl_context=ssl_context)
    pagerduty = PagerDutyEvents({"ops": pagerduty_key}, base_url=pagerduty_url, ssl_context=ssl_context)
    cfg = load_routing(routing_file or DEFAULT_ROUTING_FILE)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"floor-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=512 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    slots = asyncio.Semaphore(concurrency)
    failures: dict[str, int] = {}

    async def deliver(topic_name: str, action: dict[str, Any]) -> dict[str, Any]:
        if not calls:  # the Kafka side alone: the rows the calls would have given
            return {"version": action["version"], "ref": action["key"]}
        if topic_name == "actions.pagerduty":
            ref = await pagerduty.send(action["service"], "trigger", send_event_kwargs("trigger", action["dedup_key"], action["event"]))
            return {"lifecycle": action["lifecycle"], "state": "triggered", "version": action["version"], "ref": ref}
        channel_id = await slack.channel_id(action["channel"])
        message = action["message"]
        resp = await slack.post_message(channel_id, message["text"], blocks=message.get("blocks"),
                                        metadata={"event_type": MESSAGE_EVENT, "event_payload": {"message_key": action["key"]}})
        return {"channel_id": channel_id, "ts": resp.get("ts"), "version": action["version"], "replies": {}, "pending": None}

    async def one(raw: bytes) -> None:
        envelope = orjson.loads(raw)
        event = to_tracker_event(envelope)
        state, _ = decide(cfg, None, event)
        if state is None:
            return
        actions = build_actions(cfg, state, cause_event_id=event["event_id"], now_ms=int(time.time() * 1000))
        async with slots:
            rows = await asyncio.gather(*(deliver(t, a) for t, _, a in actions), return_exceptions=True)
        records = [(state["issue_id"], state)]
        for (_, _, action), row in zip(actions, rows):
            if isinstance(row, BaseException):
                failures[type(row).__name__] = failures.get(type(row).__name__, 0) + 1
                continue
            records.append((action["key"], row))
            records.append((action["action_id"], {"action_id": action["action_id"], "outcome": "sent", "at_ms": int(time.time() * 1000)}))
        acks = [await producer.send(out_topic, orjson.dumps(value), key=key.encode()) for key, value in records]
        await asyncio.gather(*acks)

    await producer.start()
    await consumer.start()
    done = 0
    try:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        deadline = wall0 + timeout_s
        while done < n and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            records = [rec for recs in batch.values() for rec in recs]
            if not records:
                continue
            await asyncio.gather(*(one(rec.value) for rec in records))
            await consumer.commit()
            done += len(records)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        await consumer.stop()
        await producer.stop()
        await slack.close()
        await pagerduty.close()
    return {"incidents": done, "seconds": round(wall, 2), "per_s": round(done / wall) if wall else None,
            "cpu_ms_per_incident": round(cpu * 1000 / done, 3) if done else None, "core_share": round(cpu / wall, 2) if wall else None,
            "failed_calls": failures, "vendor_calls": calls}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hub.floor", description="The stack's floor for one incident (run by switchboard bench).")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True, help="topic holding the inbound incident records")
    p.add_argument("--out-topic", required=True, help="topic for the state, ledger and result records")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--slack-url", required=True)
    p.add_argument("--pagerduty-url", required=True)
    p.add_argument("--ca-file")
    p.add_argument("--routing-file")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--event-loop", default="auto", choices=("auto", "uvloop", "asyncio"))
    p.add_argument("--no-calls", action="store_true", help="skip the vendor calls: the Kafka side of the floor alone")
    args = p.parse_args(argv)
    from hub.loop import use_event_loop

    loop = use_event_loop(args.event_loop)
    # secrets come from the environment, never the command line (which ps shows)
    try:
        slack_token, pagerduty_key = os.environ["FLOOR_SLACK_TOKEN"], os.environ["FLOOR_PAGERDUTY_KEY"]
    except KeyError as missing:
        print(f"hub.floor: set {missing.args[0]} in the environment", file=sys.stderr)
        return 2
    result = asyncio.run(run_floor(bootstrap=args.bootstrap, topic=args.topic, out_topic=args.out_topic, n=args.n, slack_url=args.slack_url,
                                   slack_token=slack_token, pagerduty_url=args.pagerduty_url, pagerduty_key=pagerduty_key,
                                   ca_file=args.ca_file, routing_file=args.routing_file, concurrency=args.concurrency,
                                   calls=not args.no_calls))
    print(json.dumps({**result, "event_loop": loop}))
    return 0 if result["incidents"] >= args.n else 1


if __name__ == "__main__":
    raise SystemExit(main())
