"""``switchboard bench``: figures for the incident path, against a baseline measured in the same run.

What it runs: the real broker (local, or KAFKA_BOOTSTRAP_SERVERS), the sandbox fakes with their rate
limits off, and the hub's receiver and worker as child processes. What it prints (JSON):

- ``baseline``: raw aiokafka produce → consume of the same payloads on the same broker (acks=all),
  the transport's limit on this machine (after a warm-up pass of the broker);
- ``saturation``: signed Jira incident webhooks sent as fast as a bounded load generator can
  (``--concurrency`` requests in flight): ingest rate (2xx answers/s), processing rate (actions on
  ``actions.pagerduty``/s, read back from the topic), delivery rate (vendor calls received by the
  fakes/s), end-to-end rate (incidents both paged and posted/s) and latency from the webhook request
  to the fake PagerDuty receiving the trigger and to the fake Slack receiving the post;
- ``fixed_rate``: the same at a fixed moderate rate (``--rate``/s), where latency is meaningful;
- ``latency_by_rate``: the latency again at each of ``--latency-rates`` (about 15 s each), so that the
  report shows up to which rate a latency target holds on this machine;
- ``backlog``: ``--backlog`` incidents written to ``inbound.jira`` while the worker is stopped, then
  the time from starting the worker until every one is paged and posted (and the implied 100,000);
  ``backlog_cpu`` says what bounded it: the worker's share of one core and its CPU per event, this
  process's share (the fakes answering the calls), and how busy the whole machine was;
- ``economy``: vendor API calls per 1,000 input events over the whole run, and a burst of
  ``--burst`` updates to one issue within a second: how many Slack writes it cost;
- ``rss_mb`` / ``cpu_ms_per_event``: peak resident memory and CPU time per input event of the
  receiver and the worker (CPU per event does not depend on what else the machine runs);
- ``floor`` (and ``floor_without_calls``, its Kafka side alone): ``--floor`` more incidents handled by ``hub.floor`` in a process of its own — the least
  work any design of the incident path does with this stack (aiokafka, orjson, the hub's pure
  mappings, slack_sdk and aiohttp to the same fakes, five bookkeeping records per incident), without
  faust: its CPU per incident and rate, i.e. how far the worker's design could go on this stack;
- ``ratios``: the hub's rates as a fraction of the baseline, and the worker's backlog CPU per event
  and rate against the floor's (``worker_cpu_vs_floor``, ``backlog_rate_vs_floor``);
- ``mixed``: about ``--mixed`` input events over the whole hub (support and sales on, a hub of its own
  started once the incident phases' hub is stopped, plus the Salesforce CDC bridge): Jira issues filed,
  edited and moved to In Progress and Done (one in eight a Highest incident in OPS), Zendesk tickets
  naming them (key field, tag, subject) and Salesforce deals with feature requests naming them.
  ``input_events`` per source (jira, zendesk, salesforce), ``ingest_s``; ``effects`` expected in the
  fakes (a remote link per linked ticket, the issue's status on each ticket, the revenue at stake
  equal to a recomputation, incidents paged, posted and resolved, internal notes and one Task per
  open deal of a resolved issue), how many are ``missing`` after a generous wait, and the time until
  all were visible (``effects_visible_s``, ``effects_per_s``, per stage in ``stages``); effects made
  twice (``duplicates``); ``calls_per_1000_events`` (by vendor and by method); the mixed hub's
  ``cpu_ms_per_event`` (receiver, worker, cdc), peak ``rss_mb`` and ``rss_mb_at_rest`` (started, before
  any load: the footprint of the stack's libraries and the hub's tables, before what the load adds).

``--setting section.name=value`` runs the hub with a setting changed (recorded under ``setup``): the
way to compare two values of a setting, run after run. Any ``SWITCHBOARD_*`` variable of the calling
shell is ignored, so a report says everything that shaped it.

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


class RunDir:
    """One bench run's files (the broker's data, the workers' table stores, the logs), removed after it.

    A 100,000-incident run leaves about a gigabyte of broker segments and RocksDB files, and every run
    used to add its own: ten runs filled 5.3 GB. Each run now works in ``runs/<id>`` under
    ``BENCH_DIR`` with a ``pid`` file; :meth:`finish` removes it unless asked to keep it, and a new run
    first sweeps the directories of runs whose process is gone (a bench killed half-way) and the
    layout of older versions (``broker/``, ``data/``, ``logs/`` directly under ``BENCH_DIR``). A run
    kept on purpose (``--keep``, or a run that failed: its logs say why) carries a ``kept`` file and
    is never swept.
    """

    LEGACY = ("broker", "data", "logs")

    def __init__(self, root: Path, run_id: str | None = None) -> None:
        self.root = root
        self.path = root / "runs" / (run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")

    def start(self) -> "RunDir":
        swept = self.sweep()
        if swept:
            print(f"==> removed {len(swept)} leftover bench director{'y' if len(swept) == 1 else 'ies'} under {self.root}", flush=True)
        self.path.mkdir(parents=True)
        (self.path / "pid").write_text(str(os.getpid()))
        return self

    def sweep(self) -> list[Path]:
        """Remove what no live bench owns; return what was removed."""
        import shutil

        removed = []
        runs = self.root / "runs"
        live = False
        for run in sorted(runs.iterdir()) if runs.is_dir() else []:
            if run == self.path or (run / "kept").exists():
                continue
            if _pid_alive(run / "pid"):
                live = True
                continue
            stopped = _stop_orphan_hub(run / "procs")
            if stopped:
                print(f"==> stopped {len(stopped)} hub process{'' if len(stopped) == 1 else 'es'} (pid "
                      f"{', '.join(map(str, stopped))}) that a killed bench run left running in {run}", flush=True)
            _stop_orphan_broker(run / "broker")
            shutil.rmtree(run, ignore_errors=True)
            removed.append(run)
        if not live:  # an older version's layout, never shared with a run of this one
            for name in self.LEGACY:
                if (self.root / name).is_dir():
                    if name == "broker":
                        _stop_orphan_broker(self.root / name)
                    shutil.rmtree(self.root / name, ignore_errors=True)
                    removed.append(self.root / name)
        return removed

    def finish(self, *, keep: bool, why: str = "--keep") -> None:
        import shutil

        if keep:
            (self.path / "kept").write_text(why + "\n")
            (self.path / "pid").unlink(missing_ok=True)
            print(f"==> kept this run's broker data, table stores and logs in {self.path} ({why}); remove it when done", flush=True)
            return
        shutil.rmtree(self.path, ignore_errors=True)


def _stop_orphan_broker(data_dir: Path) -> None:
    """A bench killed half-way leaves its broker running on the data it is about to lose: stop it
    first (LocalBroker finds it by its pid file and only signals its own java process)."""
    if (data_dir / "broker.pid").exists():
        from hub.broker import LocalBroker

        LocalBroker(data_dir).stop()


def _stop_orphan_hub(pid_dir: Path, timeout: float = 15.0) -> list[int]:
    """Stop the receiver and workers a killed run left running (they would go on taking CPU from
    every later run). Each wrote ``<name>.pid`` when started (hub/stack.py) and leads its own
    session; only a live process whose command line is a hub process is signalled, so a pid since
    reused by something else is left alone. Returns the pids stopped."""
    import signal

    import psutil

    found = []
    for pid_file in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        try:
            proc = psutil.Process(int(pid_file.read_text().strip()))
            if proc.status() == psutil.STATUS_ZOMBIE or "hub.cli" not in proc.cmdline():
                continue
            os.killpg(proc.pid, signal.SIGTERM)
        except (OSError, ValueError, psutil.Error):
            continue
        found.append(proc)
    _, alive = psutil.wait_procs(found, timeout=timeout)
    for proc in alive:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    psutil.wait_procs(alive, timeout=5)
    return [proc.pid for proc in found]


def _pid_alive(pid_file: Path) -> bool:
    """Is the process named in ``pid_file`` running? A zombie is not (a killed bench whose parent is
    gone can stay one for a while, and still answers signal 0)."""
    import psutil

    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # not ours to look at: count it as alive
        return True


#: seconds of load at each rate of the latency sweep (``--latency-rates``)
LATENCY_SWEEP_S = 15.0


def parse_setting(text: str) -> tuple[str, str]:
    """``kafka.producer_linger_ms=20`` → ``("kafka.producer_linger_ms", "20")``, for ``--setting``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
        raise ValueError(f"--setting wants section.name=value (a key of docs/configuration.md), got {text!r}")
    return key, value


def setting_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment variables that set ``settings`` (dotted keys) in the hub's processes, named
    as hub/settings.py reads them (its prefix and nested delimiter)."""
    from hub.settings import Settings

    prefix, nested = Settings.model_config["env_prefix"], Settings.model_config["env_nested_delimiter"]
    return {prefix + nested.join(part.upper() for part in key.split(".")): value for key, value in settings.items()}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return round(values[k] * 1000, 2)


async def baseline(bootstrap: str, payloads: list[bytes], partitions: int) -> dict[str, Any]:
    """Raw aiokafka: produce every payload (acks=all), then consume them all back.

    Measured twice, on two new topics: the first pass warms the broker up (a JVM started seconds
    ago still runs parts of its request path interpreted) and is reported beside the second pass,
    which is the baseline.
    """
    first = await _produce_consume(bootstrap, payloads, partitions)
    second = await _produce_consume(bootstrap, payloads, partitions)
    return {**second, "warm_up_pass_produce_consume_per_s": first["produce_consume_per_s"]}


async def _produce_consume(bootstrap: str, payloads: list[bytes], partitions: int) -> dict[str, Any]:
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


def speed_probe_ms(rounds: int = 5) -> float:
    """Milliseconds this machine takes, right now, for a fixed piece of single-threaded Python work
    (parse and re-serialize one incident webhook 2,000 times, then a plain loop); the best of
    ``rounds``. Cloud VMs change speed from hour to hour (the same worker code measured 3.6 ms and
    4.9 ms of CPU per event on two evenings), so a report carries this figure to say how fast the
    machine ran: rates of two runs compare only when their probes are close."""
    body = incident_bodies(1, 1)[0][1]
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(2000):
            orjson.dumps(orjson.loads(body))
        x = 0
        for i in range(300_000):
            x += i % 7
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


def _slack_post_key(call) -> str | None:
    """The dedup key of a top-level incident post the fake Slack accepted (None for any other call)."""
    if not call.path.endswith("chat.postMessage") or call.status != 200 or not isinstance(call.body, dict):
        return None
    meta = call.body.get("metadata")
    if isinstance(meta, str):
        try:
            meta = orjson.loads(meta)
        except ValueError:
            return None
    payload = (meta or {}).get("event_payload") or {}
    key = payload.get("message_key") or ""
    if "|" in key and "reply_id" not in payload and not call.body.get("thread_ts"):
        return key.split("|", 1)[1]
    return None


def _pd_trigger_key(call) -> str | None:
    if isinstance(call.body, dict) and call.body.get("event_action") == "trigger" and call.status == 202:
        return call.body.get("dedup_key")
    return None


async def wait_delivered(states, keys: set[str], timeout: float) -> tuple[dict[str, float], dict[str, float]]:
    """Wait until every key was paged and posted; return the first receive time of each, per vendor.

    Reads only the calls recorded since its last look: a rescan of every call each tick cost this
    process more CPU than the worker it measures once the fakes held tens of thousands of calls.
    """
    deadline = time.perf_counter() + timeout
    found: dict[str, dict[str, float]] = {"pagerduty": {}, "slack": {}}
    key_of = {"pagerduty": _pd_trigger_key, "slack": _slack_post_key}
    seen = {vendor: 0 for vendor in found}
    while time.perf_counter() < deadline:
        for vendor, got in found.items():
            calls = states[vendor].calls
            end = len(calls)
            for call in calls[seen[vendor]:end]:
                key = key_of[vendor](call)
                if key in keys:
                    got.setdefault(key, call.time)
            seen[vendor] = end
        if all(len(got) >= len(keys) for got in found.values()):
            break
        await asyncio.sleep(0.1)
    return found["pagerduty"], found["slack"]


def _latency(received: dict[str, float], sent_at: dict[str, float], offset: float) -> dict[str, Any]:
    lat = [received[k] + offset - sent_at[k] for k in received if k in sent_at]
    return {"p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95), "p99": _pct(lat, 0.99), "max": _pct(lat, 1.0)}


async def measure(states, drive_result: dict[str, Any], n: int, timeout: float, processed: "ActionCounter") -> dict[str, Any]:
    """Wait until the fakes received every trigger and post; latency = receive time - send time."""
    sent_at = drive_result["sent_at"]
    paged, posted = await wait_delivered(states, set(sent_at), timeout)
    # the fakes stamp calls with the wall clock; map them onto perf_counter
    offset = time.perf_counter() - time.time()
    t0 = drive_result["t0"]
    both = [max(paged[k], posted[k]) + offset for k in paged if k in posted]
    last = max(both, default=t0)
    e2e_s = last - t0
    calls = [c for st in states.values() for c in st.calls if c.time + offset >= t0 and c.time + offset <= last]
    return {"events": n, "ingest_2xx": drive_result["ok"], "errors": drive_result["errors"],
            "ingest_per_s": round(drive_result["ok"] / drive_result["elapsed_s"]) if drive_result["elapsed_s"] else None,
            "processing_per_s": processed.rate(t0),
            "delivery_calls_per_s": round(len(calls) / e2e_s) if e2e_s > 0 else None,
            "paged": len(paged), "posted": len(posted),
            "end_to_end_per_s": round(len(both) / e2e_s) if e2e_s > 0 else None,
            "latency_ms_pagerduty": _latency(paged, sent_at, offset),
            "latency_ms_slack": _latency(posted, sent_at, offset)}


class ActionCounter:
    """Reads ``actions.pagerduty`` back as the worker writes it: the processors' output rate."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.times: list[float] = []
        self._task: asyncio.Task | None = None
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.bootstrap, auto_offset_reset="latest", enable_auto_commit=False)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.perf_counter()
            self.times.extend(now for records in batch.values() for _ in records)

    def rate(self, since: float) -> int | None:
        times = [t for t in self.times if t >= since]
        return round(len(times) / (times[-1] - since)) if len(times) > 1 and times[-1] > since else None

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer is not None:  # a hub that failed to start never started the counter
            await self._consumer.stop()


async def write_backlog(bootstrap: str, topic: str, n: int, start_id: int) -> set[str]:
    """Write ``n`` incident webhooks straight to ``inbound.jira`` as the receiver would have."""
    from aiokafka import AIOKafkaProducer

    from sandbox.jira import issue_created

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    keys = set()
    try:
        futures = []
        for i in range(n):
            issue_id = start_id + i
            payload = issue_created(issue_id, f"OPS-{issue_id}", "OPS", f"Backlog incident {i}", priority="Highest", description="x" * 600)
            envelope = {"schema": "switchboard.inbound/1", "source": "jira", "delivery_id": uuid.uuid4().hex,
                        "event_type": "jira:issue_created", "received_at_ms": int(time.time() * 1000), "headers": {}, "payload": payload}
            futures.append(await producer.send(topic, orjson.dumps(envelope), key=str(issue_id).encode()))
            keys.add(f"jira/example.atlassian.net/{issue_id}")
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return keys


async def floor_phase(bootstrap: str, prefix: str, n: int, partitions: int, sandbox: Any, states: dict[str, Any],
                      event_loop: str, *, calls: bool = True) -> dict[str, Any]:
    """Run ``hub.floor`` (the stack's floor for one incident) over ``n`` incidents, in a process of its own.

    The incidents are the backlog's (``write_backlog``), on a topic of their own; the fakes must then
    hold a trigger and a post for every one, as for the hub.
    """
    import sys

    from hub.kafka_admin import ensure_topics
    from topics import TopicSpec

    tag = "floor" if calls else "floor-kafka"
    specs = (TopicSpec(f"{tag}.inbound", "bench", "issue id", "inbound.v1", partitions, 3_600_000, "delete"),
             TopicSpec(f"{tag}.records", "bench", "row key", "inbound.v1", partitions, 3_600_000, "delete"))
    await ensure_topics(bootstrap, prefix, partitions, specs=specs)
    keys = await write_backlog(bootstrap, specs[0].full_name(prefix), n, 3_000_000 if calls else 4_000_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(FLOOR_SLACK_TOKEN=SLACK_TOKEN, FLOOR_PAGERDUTY_KEY=PD_KEY)
    t0, own0 = time.perf_counter(), _own_cpu_s()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.floor", "--bootstrap", bootstrap, "--topic", specs[0].full_name(prefix),
        "--out-topic", specs[1].full_name(prefix), "--n", str(n), "--slack-url", sandbox.urls["slack"].rstrip("/") + "/api/",
        "--pagerduty-url", sandbox.urls["pagerduty"], "--ca-file", str(sandbox.ca_file), "--event-loop", event_loop,
        *(() if calls else ("--no-calls",)), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    span = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"hub.floor exited {proc.returncode}: {err.decode(errors='replace')[-800:]}"}
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["bench_process_core_share"] = round((_own_cpu_s() - own0) / span, 2)  # the fakes answering the calls
    if calls:
        # a call that failed never reaches the fakes: no point waiting for it
        paged, posted = await wait_delivered(states, keys, 5 if result.get("failed_calls") else 60)
        result.update(paged=len(paged), posted=len(posted))
    return result


def burst_bodies(issue_id: int, n: int) -> list[tuple[str, bytes]]:
    """One incident, then ``n`` updates to it (its summary changing each time)."""
    from sandbox.jira import encode, issue_created, issue_updated

    t = int(time.time() * 1000)
    out = [(f"jira/example.atlassian.net/{issue_id}", encode(issue_created(issue_id, f"OPS-{issue_id}", "OPS", "Burst incident",
                                                                           priority="Highest", timestamp_ms=t)))]
    for i in range(1, n + 1):
        body = issue_updated(issue_id, f"OPS-{issue_id}", "OPS", f"Burst incident, update {i}", priority="Highest", status="To Do",
                             changes=(("summary", f"Burst incident, update {i - 1}", f"Burst incident, update {i}"),), timestamp_ms=t + i)
        out.append((f"burst-{issue_id}-{i}", encode(body)))
    return out


# --- the mixed phase: Jira, Zendesk and Salesforce together ---------------------------------------

#: the mixed hub's Zendesk and Salesforce identities (the fakes accept only these; never reported)
ZD_EMAIL, ZD_TOKEN, ZD_SECRET = "switchboard@example.com", "bench-zendesk-api-token", "bench-zendesk-signing-secret"
SF_CLIENT_ID, SF_SECRET = "switchboard-bench-app", "bench-salesforce-client-secret"
#: input events the mixed load makes per issue, on average (Jira ~2.7, Zendesk ~2.9, Salesforce ~2.4): sizes ``--mixed``
MIXED_EVENTS_PER_ISSUE = 8.0
MIXED_ORGS = {i: f"Customer {i:02d}" for i in range(1, 13)}
MIXED_FIX_VERSION = "4.2"


class MixedLoad:
    """What people do in Jira, Zendesk and Salesforce around a set of issues, made in the fakes, and
    the bookkeeping every expected effect is recomputed from.

    The Zendesk fake sends the trigger-style webhook each ticket change causes (one at a time, as a
    trigger fires) and the Salesforce fake publishes the change events the CDC bridge reads. The
    Jira fake keeps the issues (the hub reads and writes them over REST) and builds each change's
    webhook, but the bench sends them itself, with :func:`drive`: the fake's own ``deliver()``
    sends one at a time on a new connection each, which would make the load generator, not the hub,
    set the Jira ingest rate; ``drive`` is the bounded concurrent signed sender of the other phases.
    Each wave holds at most one change per issue, so an issue's webhooks still arrive in order.
    """

    def __init__(self, jira: Any, zd: Any, sf: Any, jira_url: str, n: int, *, concurrency: int = 32, seed: int = 7) -> None:
        import random

        self.jira, self.zd, self.sf, self.jira_url, self.concurrency = jira, zd, sf, jira_url, concurrency
        self.rng = random.Random(seed)
        self.n_issues = max(4, round(n / MIXED_EVENTS_PER_ISSUE))
        self.issues: list[Any] = []                 # JiraIssue, in creation order
        self.incidents: list[Any] = []
        self.incident_ids: set[str] = set()
        self.tickets: dict[int, str] = {}           # linked ticket id -> the issue id it names
        self.stray: list[int] = []                  # tickets that name no issue (yet)
        self.deals: dict[str, set[str]] = {}        # opportunity id -> issue ids its feature requests name
        self.in_progress: set[str] = set()
        self.done: set[str] = set()
        self.inputs = {"jira": 0, "zendesk": 0, "salesforce": 0}
        self.jira_errors = 0
        self.last_replay: dict[str, int] = {}       # CDC channel -> replay id of the load's newest change event
        self.accounts: list[str] = []
        self.waves = 0

    # --- the vendors' side ---------------------------------------------------------------------------

    async def _send_jira(self) -> None:
        """Send the webhooks the Jira fake queued since the last wave (at most one per issue)."""
        from sandbox.jira import encode

        payloads, self.jira.outbox = list(self.jira.outbox), []
        ids = [p["issue"]["id"] for p in payloads]
        assert len(ids) == len(set(ids)), "a wave must hold one change per issue"
        self.waves += 1
        bodies = [(f"{iid}#{self.waves}", encode(p)) for iid, p in zip(ids, payloads)]
        got = await drive(self.jira_url, bodies, concurrency=self.concurrency, rate=None)
        self.inputs["jira"] += len(bodies)
        self.jira_errors += got["errors"]

    def _ticket(self, subject: str, *, org: int, key_field: str | None = None, tags: tuple[str, ...] = ()) -> int:
        from hub.stack import SANDBOX_ZENDESK_KEY_FIELD
        from sandbox.zendesk import DEFAULT_AGENT_ID

        update = self.zd.create_ticket(subject=subject, comment="It has been failing for our team since this morning.",
                                       actor_id=DEFAULT_AGENT_ID, channel="web", organization_id=org, tags=tags,
                                       custom_fields={SANDBOX_ZENDESK_KEY_FIELD: key_field} if key_field else None)
        self.inputs["zendesk"] += 1  # one trigger-style webhook per change
        return update.ticket.id

    def _update_ticket(self, tid: int, **kw: Any) -> None:
        from sandbox.zendesk import DEFAULT_AGENT_ID

        self.zd.update_ticket(tid, actor_id=DEFAULT_AGENT_ID, channel="web", **kw)
        self.inputs["zendesk"] += 1

    def _sf(self, op: str, *args: Any, **kw: Any) -> Any:
        """A Salesforce change by a sales rep; counts the change events it published on the bridge's channels."""
        from connectors.salesforce.events import cdc_channel
        from sandbox.salesforce import DEFAULT_PERSON_USER_ID

        before = len(self.sf.cdc_events)
        result = getattr(self.sf, op)(*args, user_id=DEFAULT_PERSON_USER_ID, **kw)
        bridged = (cdc_channel("Opportunity"), cdc_channel("Feature_Request__c"))
        for event in self.sf.cdc_events[before:]:
            if event["channel"] in bridged:
                self.inputs["salesforce"] += 1
                self.last_replay[event["channel"]] = event["data"]["event"]["replayId"]
        return result

    def setup(self) -> None:
        """The sales org's accounts: there before the load (their change events are not bridged)."""
        from sandbox.salesforce import DEFAULT_PERSON_USER_ID

        self.accounts = [self.sf.create("Account", {"Name": name}, user_id=DEFAULT_PERSON_USER_ID).id for name in MIXED_ORGS.values()]

    async def open_stage(self) -> None:
        """Issues are filed, customers write in, deals wait on them, the issues move to In Progress."""
        from sandbox.salesforce import STAGES

        rng = self.rng
        open_stages = [s for s, (_, closed, _) in STAGES.items() if not closed]
        # 1. issues filed in Jira: most are bugs and stories; one in eight is a Highest incident in OPS
        for i in range(self.n_issues):
            if i % 8 == 0:
                issue = self.jira.create_issue("OPS", f"Checkout degraded in region {i % 7}", issue_type="Bug", priority="Highest",
                                               description="Error rate above 5% since the last deploy.")
                self.incidents.append(issue)
                self.incident_ids.add(issue.id)
            else:
                issue = self.jira.create_issue(rng.choice(("SUP", "SUP", "OPS")), f"{rng.choice(('Export', 'Search', 'Login', 'Billing'))} "
                                               f"problem {i}", issue_type=rng.choice(("Bug", "Story", "Task")),
                                               priority=rng.choice(("Medium", "Medium", "High")), description="Reported by customers.")
            self.issues.append(issue)
        await self._send_jira()
        # 2. customers write in, naming the issue in the key field, a tag or the subject; some name none
        for issue in self.issues:
            for _ in range(rng.choice((1, 2, 3)) if issue.id in self.incident_ids else rng.choice((0, 1, 1, 2, 2, 3))):
                org, route = rng.choice(list(MIXED_ORGS)), rng.choice(("field", "field", "tag", "subject"))
                if route == "field":
                    tid = self._ticket("It does not work", org=org, key_field=issue.key)
                elif route == "tag":
                    tid = self._ticket("Still broken for us", org=org, tags=(f"jira_{issue.key.lower()}",))
                else:
                    tid = self._ticket(f"Problem again, support said {issue.key}", org=org)
                self.tickets[tid] = issue.id
            if rng.random() < 0.3:
                self.stray.append(self._ticket("Question about our invoice", org=rng.choice(list(MIXED_ORGS))))
        #    ... and sales reps record the deals that wait on the issues (not on incidents)
        candidates = [i for i in self.issues if i.id not in self.incident_ids]
        for issue in candidates:
            if rng.random() >= 0.75:
                continue
            for _ in range(rng.choice((1, 1, 2))):
                opp = self._sf("create", "Opportunity", {"Name": f"Deal for {issue.summary}", "Amount": rng.randrange(1000, 90000),
                                                        "StageName": rng.choice(open_stages), "CloseDate": "2027-06-30",
                                                        "AccountId": rng.choice(self.accounts),
                                                        "CurrencyIsoCode": rng.choice(("USD", "USD", "EUR"))}).id
                named = {issue.id: issue}
                if rng.random() < 0.15:  # one deal waiting on two issues
                    other = rng.choice(candidates)
                    named.setdefault(other.id, other)
                for target in named.values():
                    if rng.random() < 0.8:
                        self._sf("create", "Feature_Request__c", {"Name": "Customer request", "Opportunity__c": opp, "Jira_Key__c": target.key})
                    else:  # named in the text only: the hub finds the key and writes the field itself
                        self._sf("create", "Feature_Request__c", {"Name": f"Customers ask for {target.key}", "Opportunity__c": opp})
                    self.deals.setdefault(opp, set()).add(target.id)
        # 3. the day goes on: issue edits, customer replies, status changes, deals moving
        for issue in self.issues:
            if rng.random() < 0.3:
                self.jira.update_issue(issue.id, summary=issue.summary + " (customers affected)")
            elif issue.id not in self.incident_ids and rng.random() < 0.15:
                self.jira.update_issue(issue.id, priority="High" if issue.priority == "Medium" else "Medium")
        await self._send_jira()
        for tid in list(self.tickets):
            roll = rng.random()
            if roll < 0.4:
                self._update_ticket(tid, comment="Any news on this? Our users keep asking.")
            elif roll < 0.55:
                self._update_ticket(tid, status=rng.choice(("open", "pending")))
        for tid in self.stray:  # an agent recognises an issue and tags the ticket (linked by an update)
            if rng.random() < 0.5:
                issue = rng.choice(self.issues)
                self._update_ticket(tid, add_tags=[f"jira_{issue.key.lower()}"])
                self.tickets[tid] = issue.id
        for opp in list(self.deals):
            roll = rng.random()
            if roll < 0.3:
                self._sf("update", "Opportunity", [opp], {"StageName": rng.choice(list(STAGES))})
            elif roll < 0.5:
                self._sf("update", "Opportunity", [opp], {"Amount": rng.randrange(500, 120000)})
            elif roll < 0.55:
                self._sf("delete", "Opportunity", opp)
        # 4. engineering starts on most issues
        for issue in self.issues:
            if issue.id in self.incident_ids or rng.random() < 0.7:
                self.jira.update_issue(issue.id, status="In Progress")
                self.in_progress.add(issue.id)
        await self._send_jira()

    async def resolve_stage(self) -> None:
        """About half the issues in progress are resolved with a fix version."""
        for issue in self.issues:
            if issue.id in self.in_progress and self.rng.random() < 0.6:
                self.jira.update_issue(issue.id, status="Done", fix_versions=[MIXED_FIX_VERSION])
                self.done.add(issue.id)
        await self._send_jira()

    async def ingested(self, timeout: float) -> None:
        """Wait until every Zendesk webhook was answered and the CDC bridge took every change event."""
        await self.zd.flush_webhooks()
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline and not all(
                max((c.cursors.get(channel, 0) for c in self.sf.cometd_clients.values()), default=0) >= replay
                for channel, replay in self.last_replay.items()):
            await asyncio.sleep(0.05)

    # --- what the hub must show ----------------------------------------------------------------------

    def recompute_revenue(self, issue_id: str) -> dict[str, Any]:
        """Revenue at stake straight from the fake's records: the open, undeleted opportunities whose
        feature requests name the issue (the links the load made), one total per currency."""
        return self.sf.revenue_at_stake(opp for opp, issues in self.deals.items() if issue_id in issues)

    def effects(self, vendor_calls: VendorCalls, *, final: bool) -> dict[tuple, Any]:
        """Every effect the load must have, by identity ``(kind, subject, wanted)``, with its check.

        ``final=False``: what the open stage must show (issues at To Do or In Progress); ``True``:
        the end state, after the resolutions.
        """
        from connectors.pagerduty.mapping import dedup_key
        from hub.stack import SANDBOX_ZENDESK_STATUS_FIELD

        jira, zd, sf = self.jira, self.zd, self.sf
        by_id = {i.id: i for i in self.issues}
        out: dict[tuple, Any] = {}

        def status_of(iid: str) -> str:
            return "Done" if final and iid in self.done else "In Progress" if iid in self.in_progress else "To Do"

        def notes(tid: int) -> int:
            return sum(1 for c in zd.ticket(tid).comments if not c.public and "Switchboard [ref" in c.body)

        for tid, iid in self.tickets.items():
            key = by_id[iid].key
            out[("remote_link", tid)] = lambda tid=tid, iid=iid: any(
                link["object"]["url"].endswith(f"/{tid}") for link in jira.issues[iid].remote_links)
            wanted = f"{key}: {status_of(iid)}"
            out[("ticket_status", tid, wanted)] = lambda tid=tid, wanted=wanted: \
                zd.ticket(tid).custom_fields.get(SANDBOX_ZENDESK_STATUS_FIELD) == wanted
            n_notes = (1 if iid in self.in_progress else 0) + (1 if final and iid in self.done else 0)
            if n_notes:
                resolved = final and iid in self.done
                out[("internal_notes", tid, n_notes)] = lambda tid=tid, n=n_notes, resolved=resolved: \
                    notes(tid) >= n and (not resolved or "jira_resolved" in zd.ticket(tid).tags)
        for iid in sorted({i for issues in self.deals.values() for i in issues}):
            wanted = self.recompute_revenue(iid)
            out[("revenue", iid, json.dumps(wanted, sort_keys=True))] = lambda iid=iid, wanted=wanted: \
                ((jira.issues[iid].properties.get("switchboard.revenue") or {}).get("totals") or {}) == wanted
        for issue in self.incidents:
            dedup = dedup_key(jira.site, issue.id)
            out[("incident_paged", issue.id)] = lambda dedup=dedup: dedup in vendor_calls.paged
            out[("incident_posted", issue.id)] = lambda dedup=dedup: dedup in vendor_calls.posted
            if final and issue.id in self.done:
                out[("incident_resolved", issue.id)] = lambda dedup=dedup: dedup in vendor_calls.resolved
        if final:
            for opp, issues in self.deals.items():
                rec = sf.records["Opportunity"][opp]
                if rec.deleted_at_ms is not None or rec.values.get("IsClosed"):
                    continue  # closed or deleted when the issue was resolved: no Task
                for iid in sorted(issues & self.done):
                    prefix = f"{by_id[iid].key} is resolved"
                    out[("task", opp, iid)] = lambda opp=opp, prefix=prefix: any(
                        t.values.get("WhatId") == opp and (t.values.get("Subject") or "").startswith(prefix)
                        for t in sf.records["Task"].values())
        return out

    def describe(self, ident: tuple) -> str:
        """What the fakes show for a missing effect, to start looking from (the ticket's notes and
        fields, the issue's status and remote links); the identity alone for other kinds."""
        from hub.stack import SANDBOX_ZENDESK_STATUS_FIELD

        kind, subject = ident[0], ident[1]
        if kind in ("internal_notes", "ticket_status", "remote_link") and subject in self.tickets:
            iid = self.tickets[subject]
            ticket, issue = self.zd.ticket(subject), self.jira.issues[iid]
            refs = [c.body.rsplit("[ref ", 1)[-1].rstrip("]") for c in ticket.comments if not c.public and "Switchboard [ref" in c.body]
            return (f"{kind} {ident[1:]}: ticket {subject} ({'stray, tagged later' if subject in self.stray else 'named at creation'}) "
                    f"-> {issue.key} (status {issue.status!r}); notes {refs}; tags {sorted(ticket.tags)}; "
                    f"status field {ticket.custom_fields.get(SANDBOX_ZENDESK_STATUS_FIELD)!r}; "
                    f"{len(issue.remote_links)} remote link(s) on the issue")
        return f"{kind} {ident[1:]}"

    def duplicates(self) -> dict[str, int]:
        """Effects made more than once by the end: internal notes beyond one per transition, Tasks
        beyond one per (opportunity, resolved issue)."""
        by_id = {i.id: i for i in self.issues}
        extra_notes = 0
        for tid, iid in self.tickets.items():
            wanted = (1 if iid in self.in_progress else 0) + (1 if iid in self.done else 0)
            got = sum(1 for c in self.zd.ticket(tid).comments if not c.public and "Switchboard [ref" in c.body)
            extra_notes += max(0, got - wanted)
        seen: dict[tuple[str, str], int] = {}
        for t in self.sf.records["Task"].values():
            subject = t.values.get("Subject") or ""
            for iid in self.done:
                if subject.startswith(f"{by_id[iid].key} is resolved"):
                    seen[(t.values.get("WhatId"), iid)] = seen.get((t.values.get("WhatId"), iid), 0) + 1
        return {"internal_notes": extra_notes, "tasks": sum(c - 1 for c in seen.values() if c > 1)}


class VendorCalls:
    """The incident calls the fakes received, read incrementally (as :func:`wait_delivered` does)."""

    def __init__(self, pagerduty: Any, slack: Any) -> None:
        self.pagerduty, self.slack = pagerduty, slack
        self.paged: set[str] = set()
        self.posted: set[str] = set()
        self.resolved: set[str] = set()
        self._seen = {"pagerduty": 0, "slack": 0}

    def refresh(self) -> None:
        calls = self.pagerduty.calls
        for call in calls[self._seen["pagerduty"]:]:
            if (key := _pd_trigger_key(call)) is not None:
                self.paged.add(key)
            elif isinstance(call.body, dict) and call.body.get("event_action") == "resolve" and call.status == 202:
                self.resolved.add(call.body.get("dedup_key"))
        self._seen["pagerduty"] = len(calls)
        calls = self.slack.calls
        for call in calls[self._seen["slack"]:]:
            if (key := _slack_post_key(call)) is not None:
                self.posted.add(key)
        self._seen["slack"] = len(calls)


async def wait_effects(checks: dict[tuple, Any], vendor_calls: VendorCalls, timeout: float) -> dict[tuple, Any]:
    """Poll until every check holds; returns those that never did within ``timeout``."""
    pending = dict(checks)
    deadline = time.perf_counter() + timeout
    while True:
        vendor_calls.refresh()
        for ident, check in list(pending.items()):
            if check():
                del pending[ident]
        if not pending or time.perf_counter() >= deadline:
            return pending
        await asyncio.sleep(0.2)


def _call_name(vendor: str, call: Any) -> str:
    """``vendor.method`` for the call tables: Slack's method, PagerDuty's event action, else the HTTP
    method and the path with its record ids and API version replaced."""
    import re

    if vendor == "slack":
        return f"slack.{call.path.rsplit('/', 1)[-1]}"
    if vendor == "pagerduty":
        return f"pagerduty.{call.body.get('event_action') if isinstance(call.body, dict) else call.path}"
    parts = []
    for seg in call.path.strip("/").split("/"):
        if re.fullmatch(r"v?[0-9]+\.[0-9]+", seg):
            seg = "{version}"
        elif (re.fullmatch(r"[0-9]+(\.json)?", seg) and parts[-1:] != ["api"]) or \
                (re.fullmatch(r"[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?", seg) and any(ch.isdigit() for ch in seg)):
            seg = "{id}" + (".json" if seg.endswith(".json") else "")  # a record id, not Jira's API version
        parts.append(seg)
    return f"{vendor}.{call.method} /{'/'.join(parts)}"


def _stop_bridge(bridge: Any) -> None:
    """Stop the CDC bridge; one that does not exit within its grace period is killed."""
    import signal
    import subprocess

    try:
        bridge.stop()
    except subprocess.TimeoutExpired:
        os.killpg(bridge.proc.pid, signal.SIGKILL)
        bridge.proc.wait(timeout=10)


async def mixed_phase(bootstrap: str, n: int, run_dir: Path, event_loop: str = "auto", *, partitions: int = 4,
                      settings: dict[str, str] | None = None, concurrency: int = 32, timeout: float | None = None) -> dict[str, Any]:
    """The whole hub (incidents, support and sales) under a mixed load of about ``n`` input events.

    Its own hub: receiver, worker and the Salesforce CDC bridge (``switchboard cdc salesforce``) as
    child processes, with their own topic prefix and table stores, against all five fakes (TLS, rate
    limits off). The load (:class:`MixedLoad`) runs in two stages: *open* (issues filed and edited,
    tickets and deals naming them, issues to In Progress) and, once everything the open stage must
    show is visible (so each stage's time to visible is measured on its own),
    *resolve* (about half the issues in progress to Done). Effects are checked in the fakes against
    a recomputation from the load's own bookkeeping; what never shows within ``timeout`` (per stage)
    is counted as missing, never raised.
    """
    import psutil

    from connectors.salesforce.events import cdc_channel
    from hub.demo import CdcBridge
    from hub.stack import (SANDBOX_ZENDESK_KEY_FIELD, SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD, HubProcesses,
                           free_port, hub_env, sandbox_env)
    from sandbox.jira import DEFAULT_API_TOKEN as JIRA_TOKEN, DEFAULT_EMAIL as JIRA_EMAIL, JiraState
    from sandbox.pagerduty import PagerDutyState
    from sandbox.salesforce import DEFAULT_API_USER_ID as SF_HUB_USER, SalesforceState
    from sandbox.server import start_sandbox
    from sandbox.slack import SlackState
    from sandbox.zendesk import DEFAULT_API_USER_ID as ZD_HUB_USER, ZendeskState

    timeout = timeout if timeout is not None else max(180.0, n * 0.15)
    port = free_port()
    receiver = f"http://127.0.0.1:{port}"
    sandbox = await start_sandbox(tls=True, states={
        "slack": SlackState(tokens=[SLACK_TOKEN], channels={"C0INCIDENTS": "incidents"}),
        "pagerduty": PagerDutyState(routing_keys=[PD_KEY]),
        "jira": JiraState(webhook_target=f"{receiver}/webhooks/jira", webhook_secret=SECRET, webhooks_enabled=True),
        "zendesk": ZendeskState(credentials={ZD_EMAIL: ZD_TOKEN}, organizations=MIXED_ORGS, webhooks_enabled=True,
                                custom_field_ids=[SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD],
                                webhook_target=f"{receiver}/webhooks/zendesk", webhook_secret=ZD_SECRET, webhook_style="trigger",
                                jira_key_field_id=SANDBOX_ZENDESK_KEY_FIELD),
        "salesforce": SalesforceState(clients={SF_CLIENT_ID: SF_SECRET}),
    })
    for state in sandbox.states.values():
        state.rate_limits = False  # the phase measures the hub's work, not the vendors' pace
    jira, zd, sf = sandbox.states["jira"], sandbox.states["zendesk"], sandbox.states["salesforce"]
    jira.site = sandbox.urls["jira"]
    env = hub_env(bootstrap=bootstrap, prefix=f"mixed{int(time.time())}{uuid.uuid4().hex[:4]}.", data_dir=run_dir / "data-mixed",
                  receiver_port=port, slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=SECRET,
                  slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file,
                  extra=sandbox_env(sandbox.urls, jira_email=JIRA_EMAIL, jira_token=JIRA_TOKEN, zendesk_email=ZD_EMAIL,
                                    zendesk_token=ZD_TOKEN, zendesk_secret=ZD_SECRET, zendesk_hub_user_id=ZD_HUB_USER)
                  | {"SWITCHBOARD_KAFKA__PARTITIONS": str(partitions), "SWITCHBOARD_LOG_LEVEL": "WARNING",
                     "SWITCHBOARD_EVENT_LOOP": event_loop, "SWITCHBOARD_SUPPORT__ENABLED": "true",
                     "SWITCHBOARD_SALES__ENABLED": "true", "SWITCHBOARD_SALES__PROJECT_KEYS": '["OPS", "SUP"]',
                     "SWITCHBOARD_SALESFORCE__INSTANCE_URL": sandbox.urls["salesforce"], "SWITCHBOARD_SALESFORCE__CLIENT_ID": SF_CLIENT_ID,
                     "SWITCHBOARD_SALESFORCE__CLIENT_SECRET": SF_SECRET, "SWITCHBOARD_SALESFORCE__HUB_USER_ID": SF_HUB_USER,
                     "SWITCHBOARD_SALESFORCE__MULTI_CURRENCY": "true"})
    env.update(setting_env(settings or {}))
    log_dir, pid_dir = run_dir / "logs" / "mixed", run_dir / "procs"
    procs = HubProcesses(env=env, log_dir=log_dir, receiver_port=port, pid_dir=pid_dir)
    bridge = CdcBridge(env, log_dir)
    load = MixedLoad(jira, zd, sf, f"{receiver}/webhooks/jira", n, concurrency=concurrency)
    vendor_calls = VendorCalls(sandbox.states["pagerduty"], sandbox.states["slack"])
    peak: dict[str, float] = {}
    stop = asyncio.Event()

    def processes() -> dict[str, Any]:
        return {**procs.procs, **({"cdc": bridge.proc} if bridge.proc is not None else {})}

    async def sample_rss() -> None:
        while not stop.is_set():
            for role, proc in processes().items():
                try:
                    peak[role] = max(peak.get(role, 0.0), psutil.Process(proc.pid).memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_rss())
    out: dict[str, Any] = {}
    at_rest: dict[str, float] = {}
    try:
        await asyncio.to_thread(procs.start_receiver)
        await asyncio.to_thread(procs.start_worker)
        await asyncio.to_thread(bridge.start)
        pid_dir.mkdir(parents=True, exist_ok=True)
        (pid_dir / "cdc.pid").write_text(str(bridge.proc.pid))  # for the sweep of a killed run
        channels = {cdc_channel("Opportunity"), cdc_channel("Feature_Request__c")}
        deadline = time.perf_counter() + 60
        while not any(channels <= set(c.cursors) for c in sf.cometd_clients.values()):
            if time.perf_counter() > deadline or bridge.proc.poll() is not None:
                raise RuntimeError(f"the CDC bridge did not subscribe; see {log_dir / 'cdc.log'}")
            await asyncio.sleep(0.1)
        # every process started and subscribed, no load yet: the stack's own footprint
        for role, proc in processes().items():
            try:
                at_rest[role] = round(psutil.Process(proc.pid).memory_info().rss / 2**20, 1)
            except psutil.Error:
                pass
        load.setup()
        stages: dict[str, dict[str, Any]] = {}
        union: set[tuple] = set()
        t0 = time.perf_counter()
        cpu0 = _cpu_s(processes())
        pending: dict[tuple, Any] = {}
        for name, act in (("open", load.open_stage), ("resolve", load.resolve_stage)):
            print(f"==> mixed: {name} stage", flush=True)
            inputs0 = sum(load.inputs.values())
            t_stage = time.perf_counter()
            await act()
            await load.ingested(timeout)
            ingest_s = time.perf_counter() - t_stage
            checks = load.effects(vendor_calls, final=name == "resolve")
            union |= set(checks)
            pending = await wait_effects(checks, vendor_calls, timeout)
            span = time.perf_counter() - t_stage
            stages[name] = {"input_events": sum(load.inputs.values()) - inputs0, "ingest_s": round(ingest_s, 2),
                            "effects": len(checks), "missing": len(pending),
                            "effects_visible_s": round(span, 2) if not pending else None}
            print(f"==> mixed: {name} stage: {stages[name]['input_events']} input events in {ingest_s:.1f} s, "
                  f"{len(checks) - len(pending)}/{len(checks)} effects visible after {span:.1f} s", flush=True)
        elapsed = time.perf_counter() - t0
        cpu1 = _cpu_s(processes())
        inputs = sum(load.inputs.values())
        by_method: dict[str, int] = {}
        for vendor, state in sandbox.states.items():
            for call in state.calls:
                name = _call_name(vendor, call)
                by_method[name] = by_method.get(name, 0) + 1
        by_vendor: dict[str, int] = {}
        for name, count in by_method.items():
            by_vendor[name.split(".", 1)[0]] = by_vendor.get(name.split(".", 1)[0], 0) + count
        missing_by_kind: dict[str, int] = {}
        for ident in pending:
            missing_by_kind[ident[0]] = missing_by_kind.get(ident[0], 0) + 1
        expected_by_kind: dict[str, int] = {}
        for ident in union:
            expected_by_kind[ident[0]] = expected_by_kind.get(ident[0], 0) + 1
        per_k = 1000 / inputs if inputs else 0.0
        out = {
            "input_events": {**load.inputs, "total": inputs},
            "load": {"issues": len(load.issues), "incidents": len(load.incidents), "linked_tickets": len(load.tickets),
                     "tickets": len(zd.tickets), "opportunities": len(load.deals), "in_progress": len(load.in_progress),
                     "resolved": len(load.done), "partitions": partitions},
            "webhook_errors": {"jira": load.jira_errors,
                               "zendesk": sum(1 for s in (zd.sender.sent if zd.sender else []) if not (s.status and 200 <= s.status < 300))},
            "ingest_s": round(sum(s["ingest_s"] for s in stages.values()), 2),
            "ingest_per_s": round(inputs / sum(s["ingest_s"] for s in stages.values())) if inputs else None,
            "effects": len(union), "effects_by_kind": dict(sorted(expected_by_kind.items())),
            "missing": len(pending), "missing_by_kind": dict(sorted(missing_by_kind.items())),
            "missing_examples": [load.describe(ident) for ident in list(pending)[:10]],
            "effects_visible_s": round(elapsed, 2) if not pending else None,
            "effects_per_s": round(len(union) / elapsed, 1) if not pending else None,
            "duplicates": load.duplicates(),
            "stages": stages,
            "vendor_calls": sum(by_vendor.values()),
            "calls_per_1000_events": round(sum(by_vendor.values()) * per_k, 1),
            "calls_per_1000_by_vendor": {v: round(c * per_k, 1) for v, c in sorted(by_vendor.items())},
            "calls_per_1000_by_method": {m: round(c * per_k, 1) for m, c in sorted(by_method.items(), key=lambda kv: -kv[1])},
            "cpu_ms_per_event": {role: round((cpu1[role] - cpu0.get(role, 0.0)) * 1000 / inputs, 2) for role in cpu1} if inputs else {},
        }
    finally:
        stop.set()
        await sampler
        await asyncio.to_thread(_stop_bridge, bridge)
        (pid_dir / "cdc.pid").unlink(missing_ok=True)
        await asyncio.to_thread(procs.stop_all)
        await zd.close()
        # the fake holds the bridge's last long poll open for up to 110 s (as Salesforce does), and
        # the server's shutdown would wait a minute for it: forgetting the client ends it now
        sf.cometd_clients.clear()
        await sandbox.stop()
    out["rss_mb"] = {k: round(v, 1) for k, v in peak.items()}
    out["rss_mb_at_rest"] = at_rest
    return out


def _own_cpu_s() -> float:
    """CPU seconds of this process: the load generator and the fakes (vendor calls are answered here)."""
    t = os.times()
    return t.user + t.system


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, all processes) since boot."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _cpu_s(procs: dict[str, Any]) -> dict[str, float]:
    """CPU seconds so far of each process, by role."""
    import psutil

    out = {}
    for role, proc in procs.items():
        try:
            t = psutil.Process(proc.pid).cpu_times()
            out[role] = t.user + t.system
        except psutil.Error:
            pass
    return out


async def run(events: int, rate: float, concurrency: int, rate_events: int, backlog: int, burst: int, workers: int = 1,
              event_loop: str = "auto", *, run_dir: Path, floor: int = 0, latency_rates: tuple[float, ...] = (),
              settings: dict[str, str] | None = None, mixed: int = 0) -> dict[str, Any]:
    from hub.broker import LocalBroker, ensure_kafka_jars

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not bootstrap:
        await asyncio.to_thread(ensure_kafka_jars)
        broker = LocalBroker(run_dir / "broker")
        await asyncio.to_thread(broker.start)
        bootstrap = broker.bootstrap
    try:
        report = await _incident_phases(bootstrap, events, rate, concurrency, rate_events, backlog, burst, workers, event_loop,
                                        run_dir=run_dir, floor=floor, latency_rates=latency_rates, settings=settings)
        report["setup"]["mixed"] = mixed
        if mixed:
            # after the incident phases, whose hub is stopped by now: the two hubs never share the cores
            print(f"==> mixed: about {mixed} input events over Jira, Zendesk and Salesforce, with a hub of its own", flush=True)
            report["mixed"] = await mixed_phase(bootstrap, mixed, run_dir, event_loop, partitions=report["setup"]["partitions"],
                                                settings=settings, concurrency=concurrency)
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)
    return report


async def _incident_phases(bootstrap: str, events: int, rate: float, concurrency: int, rate_events: int, backlog: int, burst: int,
                           workers: int, event_loop: str, *, run_dir: Path, floor: int, latency_rates: tuple[float, ...],
                           settings: dict[str, str] | None) -> dict[str, Any]:
    """Every phase but the mixed one, on one hub (Jira incidents only); its processes and fakes are
    stopped when it returns or fails."""
    import psutil

    from hub.stack import HubProcesses, free_port, hub_env
    from sandbox.pagerduty import PagerDutyState
    from sandbox.server import start_sandbox
    from sandbox.slack import SlackState

    partitions = 4
    load = os.getloadavg()
    report: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                                          "load_average_at_start": [round(x, 2) for x in load],
                                          "note": "broker, hub, fakes and load generator share these cores",
                                          "speed_probe_ms": speed_probe_ms()}}
    print(f"==> baseline: raw aiokafka produce/consume of {events} payloads", flush=True)
    bodies = incident_bodies(events, 100000)
    report["baseline"] = await baseline(bootstrap, [b for _, b in bodies], partitions)
    sandbox = await start_sandbox(tls=True, states={"slack": SlackState(tokens=[SLACK_TOKEN], channels={"C0INCIDENTS": "incidents"}),
                                                    "pagerduty": PagerDutyState(routing_keys=[PD_KEY])})
    for state in sandbox.states.values():
        state.rate_limits = False
    port = free_port()
    prefix = f"bench{int(time.time())}."
    data_dir = run_dir / "data"
    env = hub_env(bootstrap=bootstrap, prefix=prefix, data_dir=data_dir,
                  receiver_port=port, slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=SECRET,
                  slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file,
                  extra={"SWITCHBOARD_KAFKA__PARTITIONS": str(partitions), "SWITCHBOARD_LOG_LEVEL": "WARNING",
                         "SWITCHBOARD_SUPPORT__ENABLED": "false", "SWITCHBOARD_EVENT_LOOP": event_loop})
    env.update(setting_env(settings or {}))
    report["setup"] = {"workers": workers, "partitions": partitions, "event_loop": event_loop, "settings": dict(settings or {})}
    procs = HubProcesses(env=env, log_dir=run_dir / "logs", receiver_port=port, pid_dir=run_dir / "procs")
    # more workers join one consumer group, each with its own local table store
    worker_names = ["worker"] + [f"worker{i}" for i in range(2, workers + 1)]

    def start_workers() -> None:
        for name in worker_names:
            extra = None if name == "worker" else {"SWITCHBOARD_DATA_DIR": str(data_dir / name)}
            procs.start_worker(name=name, extra_env=extra)

    def worker_cpu(cpu: dict[str, float]) -> float:
        return sum(v for k, v in cpu.items() if k in worker_names)
    peak: dict[str, float] = {}
    stop = asyncio.Event()
    states = {"pagerduty": sandbox.states["pagerduty"], "slack": sandbox.states["slack"]}
    processed = ActionCounter(bootstrap, f"{prefix}actions.pagerduty")

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
    inputs = 0
    try:
        await asyncio.to_thread(procs.start_receiver)
        await asyncio.to_thread(start_workers)
        await processed.start()
        url = f"{procs.receiver_url}/webhooks/jira"
        print(f"==> warm-up, then saturation: {events} signed webhooks, {concurrency} in flight", flush=True)
        warm = incident_bodies(50, 900000)
        await measure(states, await drive(url, warm, concurrency=8, rate=None), 50, 60, processed)
        calls_before = sum(len(st.calls) for st in states.values())
        cpu0 = _cpu_s(procs.procs)
        sat = await drive(url, bodies, concurrency=concurrency, rate=None)
        report["saturation"] = await measure(states, sat, events, 600, processed)
        cpu1 = _cpu_s(procs.procs)
        report["cpu_ms_per_event"] = {role: round((cpu1[role] - cpu0.get(role, 0.0)) * 1000 / events, 2) for role in cpu1}
        if workers > 1:
            report["cpu_ms_per_event"]["workers"] = round((worker_cpu(cpu1) - worker_cpu(cpu0)) * 1000 / events, 2)
        inputs += events
        print(f"==> fixed rate: {rate_events} webhooks at {rate}/s", flush=True)
        fixed_bodies = incident_bodies(rate_events, 500000)
        fixed = await drive(url, fixed_bodies, concurrency=concurrency, rate=rate)
        report["fixed_rate"] = {"rate_per_s": rate, **await measure(states, fixed, rate_events, 300, processed)}
        inputs += rate_events
        if latency_rates:
            # where the latency target holds: each rate for about ``LATENCY_SWEEP_S`` seconds
            print(f"==> latency by rate: {', '.join(f'{r:g}/s' for r in latency_rates)}, about {LATENCY_SWEEP_S:g} s each", flush=True)
            report["latency_by_rate"] = []
            for i, r in enumerate(latency_rates):
                n_r = max(50, int(r * LATENCY_SWEEP_S))
                run_r = await drive(url, incident_bodies(n_r, 1_000_000 + i * 100_000), concurrency=concurrency, rate=r)
                got = await measure(states, run_r, n_r, 120, processed)
                inputs += n_r
                report["latency_by_rate"].append({"rate_per_s": r, "events": n_r, "end_to_end_per_s": got["end_to_end_per_s"],
                                                  "latency_ms_pagerduty": got["latency_ms_pagerduty"], "latency_ms_slack": got["latency_ms_slack"]})
        if burst:
            print(f"==> burst: one incident and {burst} updates to it within a second, the fake Slack's rate limits on", flush=True)
            states["slack"].rate_limits = True  # about one message a second per channel, as Slack answers
            slack_before = len(states["slack"].calls)
            burst_id = 700000
            bursting = burst_bodies(burst_id, burst)
            await drive(url, bursting[:1], concurrency=1, rate=None)
            t_burst = time.time()
            await drive(url, bursting[1:], concurrency=concurrency, rate=float(burst))
            inputs += len(bursting)
            final = f"Burst incident, update {burst}"

            def newest_shown() -> Any:
                return next((c for c in states["slack"].calls[slack_before:] if c.path.endswith("chat.update")
                             and c.status == 200 and final in orjson.dumps(c.body).decode()), None)
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline and newest_shown() is None:
                await asyncio.sleep(0.2)
            shown = newest_shown()
            calls = states["slack"].calls[slack_before:]
            writes = [c for c in calls if c.path.endswith(("chat.postMessage", "chat.update"))]
            report["burst"] = {"updates": burst, "slack_write_attempts": len(writes),
                               "slack_writes_accepted": sum(1 for c in writes if c.status == 200),
                               "slack_429": sum(1 for c in writes if c.status == 429),
                               # None: the newest update never showed within 300 s
                               "newest_shown_after_s": round(shown.time - t_burst, 1) if shown else None,
                               "writes_per_update": round(len(writes) / burst, 3)}
            states["slack"].rate_limits = False
        if backlog:
            print(f"==> backlog: {backlog} incidents written to inbound.jira while the worker is stopped", flush=True)
            for name in worker_names:
                await asyncio.to_thread(procs.stop, name)
            keys = await write_backlog(bootstrap, f"{prefix}inbound.jira", backlog, 2_000_000)
            inputs += backlog
            t0 = time.perf_counter()
            wall0 = time.time()
            busy0, own0 = _machine_busy_s(), _own_cpu_s()
            await asyncio.to_thread(start_workers)
            ready_s = time.perf_counter() - t0
            cpu0 = _cpu_s(procs.procs)
            paged, posted = await wait_delivered(states, keys, max(120.0, backlog / 20))
            done = [max(paged[k], posted[k]) for k in paged if k in posted]
            caught_up_s = (max(done) - wall0) if len(done) == backlog else None
            # what bounded the catch-up: a worker near 100% of a core is CPU-bound; a machine near
            # 100% of its cores means the worker was competing with the broker, the fakes and others
            span = time.perf_counter() - t0
            cpu1 = _cpu_s(procs.procs)
            report["backlog_cpu"] = {
                "worker_core_share": round((worker_cpu(cpu1) - worker_cpu(cpu0)) / max(span - ready_s, 1e-9), 2),
                "worker_cpu_ms_per_event": round((worker_cpu(cpu1) - worker_cpu(cpu0)) * 1000 / backlog, 2),
                "bench_process_core_share": round((_own_cpu_s() - own0) / span, 2),
                "machine_busy_share": round((_machine_busy_s() - busy0) / span / (os.cpu_count() or 1), 2),
            }
            report["backlog"] = {"events": backlog, "worker_ready_s": round(ready_s, 1), "paged": len(paged), "posted": len(posted),
                                 "caught_up_s": round(caught_up_s, 1) if caught_up_s else None,
                                 "events_per_s": round(backlog / caught_up_s) if caught_up_s else None,
                                 "projected_100k_s": round(100_000 * (caught_up_s - ready_s) / backlog + ready_s) if caught_up_s else None}
        total_calls = sum(len(st.calls) for st in states.values()) - calls_before
        report["economy"] = {"input_events": inputs, "vendor_calls": total_calls,
                             "calls_per_1000_events": round(total_calls * 1000 / inputs, 1) if inputs else None,
                             "by_method": _by_method(states)}
        if floor:
            print(f"==> floor: the stack's least work for {floor} incidents (hub.floor, no faust), same broker and fakes", flush=True)
            report["floor"] = await floor_phase(bootstrap, prefix, floor, partitions, sandbox, states, event_loop)
            # and its Kafka side alone: what the two vendor calls per incident cost is the difference
            report["floor_without_calls"] = await floor_phase(bootstrap, prefix, floor, partitions, sandbox, states, event_loop, calls=False)
    finally:
        stop.set()
        await sampler
        await processed.stop()
        await asyncio.to_thread(procs.stop_all)
        await sandbox.stop()
    report["rss_mb"] = {k: round(v, 1) for k, v in peak.items()}
    base = report["baseline"]["produce_consume_per_s"]
    sat = report["saturation"]
    report["ratios"] = {
        "ingest_vs_baseline": round((sat["ingest_per_s"] or 0) / base, 3),
        "processing_vs_baseline": round((sat["processing_per_s"] or 0) / base, 3),
        "end_to_end_vs_baseline": round((sat["end_to_end_per_s"] or 0) / base, 3),
    }
    if report.get("backlog", {}).get("events_per_s"):
        report["ratios"]["backlog_vs_baseline"] = round(report["backlog"]["events_per_s"] / base, 3)
    fl = report.get("floor") or {}
    if fl.get("cpu_ms_per_incident") and report.get("backlog_cpu"):
        # the same incidents, the same fakes: what the worker's design costs over the stack's floor
        report["ratios"]["worker_cpu_vs_floor"] = round(report["backlog_cpu"]["worker_cpu_ms_per_event"] / fl["cpu_ms_per_incident"], 2)
        if report.get("backlog", {}).get("events_per_s") and fl.get("per_s"):
            report["ratios"]["backlog_rate_vs_floor"] = round(report["backlog"]["events_per_s"] / fl["per_s"], 3)
    return report


def _by_method(states) -> dict[str, int]:
    out: dict[str, int] = {}
    for vendor, st in states.items():
        for c in st.calls:
            name = c.path.rsplit("/", 1)[-1] if vendor == "slack" else (c.body.get("event_action") if isinstance(c.body, dict) else c.path)
            out[f"{vendor}.{name}"] = out.get(f"{vendor}.{name}", 0) + 1
    return out


def write_report(path: Path, text: str) -> None:
    """Write the report, making its directory (``make bench`` writes reports/bench.json, which a fresh
    clone does not have: the first default run printed its report and then failed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="switchboard bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=3000, help="webhooks in the saturation run (and payloads in the baseline)")
    p.add_argument("--rate", type=float, default=200.0, help="webhooks per second in the fixed-rate run")
    p.add_argument("--rate-events", type=int, default=2000, help="webhooks in the fixed-rate run")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="worker processes in the consumer group (4 partitions)")
    p.add_argument("--event-loop", default="auto", choices=("auto", "uvloop", "asyncio"), help="the hub processes' event loop")
    p.add_argument("--backlog", type=int, default=100_000, help="incidents left in inbound.jira while the worker is stopped (0: skip)")
    p.add_argument("--burst", type=int, default=120,
                   help="updates to one issue within a second, for the coalescing figure (Slack allows about 50 chat.update a minute)")
    p.add_argument("--floor", type=int, default=20_000,
                   help="incidents for the stack's floor (hub.floor: the least work per incident with this stack, no faust; 0: skip)")
    p.add_argument("--mixed", type=int, default=2000,
                   help="input events of the mixed phase: Jira issues, Zendesk tickets and Salesforce deals naming them, "
                        "on a hub with support and sales on (0: skip)")
    p.add_argument("--latency-rates", default="10,50,100",
                   help="comma-separated webhooks/s for the latency sweep, about 15 s each (empty: skip)")
    p.add_argument("--setting", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="a hub setting for this run (repeatable; see docs/configuration.md), recorded in the report, "
                        "e.g. --setting kafka.producer_linger_ms=20; the bench otherwise ignores SWITCHBOARD_* variables")
    p.add_argument("--out", default=None, help="also write the JSON report to this file")
    p.add_argument("--keep", action="store_true",
                   help=f"keep this run's broker data, table stores and logs (under {BENCH_DIR}/runs/); by default they are removed")
    args = p.parse_args(argv)
    try:
        settings = dict(parse_setting(t) for t in args.setting)
        latency_rates = tuple(float(r) for r in args.latency_rates.split(",") if r.strip())
    except ValueError as exc:
        p.error(str(exc))
    if any(r <= 0 for r in latency_rates):
        p.error("--latency-rates must be positive")
    if args.mixed < 0:
        p.error("--mixed must be 0 (skip) or more")
    run_dir = RunDir(BENCH_DIR).start()
    try:
        report = asyncio.run(run(args.events, args.rate, args.concurrency, args.rate_events, args.backlog, args.burst, args.workers,
                                 args.event_loop, run_dir=run_dir.path, floor=args.floor,
                                 latency_rates=latency_rates, settings=settings, mixed=args.mixed))
    except BaseException as exc:
        run_dir.finish(keep=True, why=f"the run failed: {type(exc).__name__}; its logs are in logs/")
        raise
    run_dir.finish(keep=args.keep)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        write_report(Path(args.out), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
