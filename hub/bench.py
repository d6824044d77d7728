"""``switchboard bench``: figures for the incident path, against a baseline measured in the same run.

What it runs: the real broker (local, or KAFKA_BOOTSTRAP_SERVERS), the sandbox fakes with their rate
limits off, and the hub's receiver and worker as child processes. What it prints (JSON):

- ``baseline``: raw aiokafka produce → consume of the same payloads on the same broker (acks=all),
  the transport's limit on this machine;
- ``saturation``: signed Jira incident webhooks sent as fast as a bounded load generator can
  (``--concurrency`` requests in flight): ingest rate (2xx answers/s), end-to-end rate (PagerDuty
  triggers received by the fake/s) and latency from request to the fake receiving the trigger;
- ``fixed_rate``: the same at a fixed moderate rate (``--rate``/s), where latency is meaningful;
- ``rss_mb``: peak resident memory of the receiver and the worker;
- ``ratios``: the hub's rates as a fraction of the baseline.

Figures are measured, never asserted: this is a benchmark, not a test. The load generator, the
broker and the hub share the machine's cores, which the report states.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(".switchboard/bench")
SECRET = "bench-jira-secret"
PD_KEY = "bench0pagerduty0routing0key00001"
SLACK_TOKEN = "xoxb-bench"


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return round(values[k] * 1000, 2)


async def baseline(bootstrap: str, payloads: list[bytes], partitions: int) -> dict[str, Any]:
    """Raw aiokafka: produce every payload (acks=all), then consume them all back."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from hub.kafka_admin import ensure_topics
    from topics import TopicSpec

    prefix = f"bench{uuid.uuid4().hex[:6]}."
    spec = TopicSpec("baseline", "bench", "n", "inbound.v1", partitions, 3_600_000, "delete")
    await ensure_topics(bootstrap, prefix, partitions, specs=(spec,))
    topic = spec.full_name(prefix)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    await producer.start()
    t0 = time.perf_counter()
    futures = [await producer.send(topic, p, key=str(i).encode()) for i, p in enumerate(payloads)]
    await asyncio.gather(*futures)
    produce_s = time.perf_counter() - t0
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got = 0
    t1 = time.perf_counter()
    while got < len(payloads):
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        for records in batch.values():
            for rec in records:
                orjson.loads(rec.value)  # the hub parses every record too
                got += 1
    consume_s = time.perf_counter() - t1
    await consumer.stop()
    n = len(payloads)
    return {"events": n, "produce_per_s": round(n / produce_s), "consume_per_s": round(n / consume_s),
            "produce_consume_per_s": round(n / (produce_s + consume_s))}


async def drive(sender_url: str, bodies: list[tuple[str, bytes]], *, concurrency: int, rate: float | None) -> dict[str, Any]:
    """Send signed webhooks; return per-dedup-key send times and the 2xx count."""
    import aiohttp

    from sandbox.jira import sign

    sent_at: dict[str, float] = {}
    ok = 0
    errors = 0
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(dedup: str, body: bytes) -> None:
            nonlocal ok, errors
            async with sem:
                headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, body),
                           "X-Atlassian-Webhook-Identifier": uuid.uuid4().hex}
                sent_at[dedup] = time.perf_counter()
                try:
                    async with session.post(sender_url, data=body, headers=headers) as resp:
                        await resp.read()
                        if 200 <= resp.status < 300:
                            ok += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        t0 = time.perf_counter()
        tasks = []
        for i, (dedup, body) in enumerate(bodies):
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(dedup, body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return {"sent_at": sent_at, "ok": ok, "errors": errors, "elapsed_s": elapsed, "t0": t0}


def incident_bodies(n: int, start_id: int) -> list[tuple[str, bytes]]:
    from sandbox.jira import encode, issue_created

    out = []
    for i in range(n):
        issue_id = start_id + i
        payload = issue_created(issue_id, f"OPS-{issue_id}", "OPS", f"Checkout degraded in region {i % 7}", priority="Highest",
                                description="x" * 600)
        out.append((f"jira/example.atlassian.net/{issue_id}", encode(payload)))
    return out


async def measure(pd_state, drive_result: dict[str, Any], n: int, timeout: float) -> dict[str, Any]:
    """Wait until the fake received every trigger; latency = receive time - send time."""
    deadline = time.perf_counter() + timeout
    sent_at = drive_result["sent_at"]
    received: dict[str, float] = {}
    while time.perf_counter() < deadline:
        for call in pd_state.calls:
            body = call.body if isinstance(call.body, dict) else {}
            key = body.get("dedup_key")
            if key in sent_at and key not in received and body.get("event_action") == "trigger" and call.status == 202:
                received[key] = call.time
        if len(received) >= n:
            break
        await asyncio.sleep(0.05)
    # the fake stamps calls with the wall clock; map them onto perf_counter
    offset = time.perf_counter() - time.time()
    lat = [received[k] + offset - sent_at[k] for k in received]
    last = max((received[k] + offset for k in received), default=drive_result["t0"])
    e2e_s = last - drive_result["t0"]
    return {"events": n, "ingest_2xx": drive_result["ok"], "errors": drive_result["errors"],
            "ingest_per_s": round(drive_result["ok"] / drive_result["elapsed_s"]) if drive_result["elapsed_s"] else None,
            "delivered": len(received), "end_to_end_per_s": round(len(received) / e2e_s) if e2e_s > 0 else None,
            "latency_ms": {"p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95), "p99": _pct(lat, 0.99), "max": _pct(lat, 1.0)}}


async def run(events: int, rate: float, concurrency: int, rate_events: int) -> dict[str, Any]:
    import psutil

    from hub.broker import LocalBroker, ensure_kafka_jars
    from hub.stack import HubProcesses, free_port, hub_env
    from sandbox.pagerduty import PagerDutyState
    from sandbox.server import start_sandbox
    from sandbox.slack import SlackState

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not bootstrap:
        await asyncio.to_thread(ensure_kafka_jars)
        broker = LocalBroker(BENCH_DIR / "broker")
        await asyncio.to_thread(broker.start)
        bootstrap = broker.bootstrap
    partitions = 4
    report: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                                          "note": "broker, hub, fakes and load generator share these cores"}}
    print(f"==> baseline: raw aiokafka produce/consume of {events} payloads", flush=True)
    bodies = incident_bodies(events, 100000)
    report["baseline"] = await baseline(bootstrap, [b for _, b in bodies], partitions)
    sandbox = await start_sandbox(tls=True, states={"slack": SlackState(tokens=[SLACK_TOKEN], channels={"C0INCIDENTS": "incidents"}),
                                                    "pagerduty": PagerDutyState(routing_keys=[PD_KEY])})
    for state in sandbox.states.values():
        state.rate_limits = False
    port = free_port()
    env = hub_env(bootstrap=bootstrap, prefix=f"bench{int(time.time())}.", data_dir=BENCH_DIR / "data" / uuid.uuid4().hex[:6],
                  receiver_port=port, slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=SECRET,
                  slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file,
                  extra={"SWITCHBOARD_KAFKA__PARTITIONS": str(partitions), "SWITCHBOARD_LOG_LEVEL": "WARNING",
                         "SWITCHBOARD_SUPPORT__ENABLED": "false"})
    procs = HubProcesses(env=env, log_dir=BENCH_DIR / "logs", receiver_port=port)
    peak: dict[str, float] = {}
    stop = asyncio.Event()

    async def sample_rss() -> None:
        while not stop.is_set():
            for role, proc in procs.procs.items():
                try:
                    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                    peak[role] = max(peak.get(role, 0.0), rss)
                except psutil.Error:
                    pass
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_rss())
    try:
        await asyncio.to_thread(procs.start_receiver)
        await asyncio.to_thread(procs.start_worker)
        url = f"{procs.receiver_url}/webhooks/jira"
        print(f"==> warm-up, then saturation: {events} signed webhooks, {concurrency} in flight", flush=True)
        warm = incident_bodies(50, 900000)
        await measure(sandbox.states["pagerduty"], await drive(url, warm, concurrency=8, rate=None), 50, 60)
        sat = await drive(url, bodies, concurrency=concurrency, rate=None)
        report["saturation"] = await measure(sandbox.states["pagerduty"], sat, events, 300)
        print(f"==> fixed rate: {rate_events} webhooks at {rate}/s", flush=True)
        fixed_bodies = incident_bodies(rate_events, 500000)
        fixed = await drive(url, fixed_bodies, concurrency=concurrency, rate=rate)
        report["fixed_rate"] = {"rate_per_s": rate, **await measure(sandbox.states["pagerduty"], fixed, rate_events, 120)}
    finally:
        stop.set()
        await sampler
        await asyncio.to_thread(procs.stop_all)
        await sandbox.stop()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
    report["rss_mb"] = {k: round(v, 1) for k, v in peak.items()}
    base = report["baseline"]["produce_consume_per_s"]
    report["ratios"] = {
        "ingest_vs_baseline": round((report["saturation"]["ingest_per_s"] or 0) / base, 3),
        "end_to_end_vs_baseline": round((report["saturation"]["end_to_end_per_s"] or 0) / base, 3),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="switchboard bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=3000, help="webhooks in the saturation run (and payloads in the baseline)")
    p.add_argument("--rate", type=float, default=200.0, help="webhooks per second in the fixed-rate run")
    p.add_argument("--rate-events", type=int, default=2000, help="webhooks in the fixed-rate run")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--out", default=None, help="also write the JSON report to this file")
    args = p.parse_args(argv)
    report = asyncio.run(run(args.events, args.rate, args.concurrency, args.rate_events))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
