"""Fixtures of the fault-injection suite: a hub whose fakes have their rate limits off (the faults
are injected, not incidental), more than one worker when a scenario asks, and the JSON report.

The report goes to ``reports/chaos.json`` (``SWITCHBOARD_CHAOS_REPORT`` names another path). Each
scenario adds its entry as it finishes, so an interrupted run still leaves what it measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub.stack import HubProcesses, free_port, hub_env
from sandbox.pagerduty import PagerDutyState
from sandbox.server import Sandbox, start_sandbox
from sandbox.slack import SlackState
from tests.chaos.harness import Audit, Workload, audit
from tests.integration.conftest import CHANNELS, JIRA_SECRET, PD_KEY, SLACK_TOKEN

REPORT_PATH = Path(os.environ.get("SWITCHBOARD_CHAOS_REPORT") or Path(__file__).resolve().parents[2] / "reports" / "chaos.json")


@dataclass
class ChaosStack:
    sandbox: Sandbox
    procs: HubProcesses
    prefix: str
    bootstrap: str
    tmp: Path
    workers: list[str] = field(default_factory=list)
    last_fault_end: float = 0.0  # time.monotonic() when the last injected fault ended

    @property
    def slack(self) -> SlackState:
        return self.sandbox.states["slack"]  # type: ignore[return-value]

    @property
    def pagerduty(self) -> PagerDutyState:
        return self.sandbox.states["pagerduty"]  # type: ignore[return-value]

    @property
    def webhook_url(self) -> str:
        return f"{self.procs.receiver_url}/webhooks/jira"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def worker_env(self, name: str) -> dict[str, str]:
        return {"SWITCHBOARD_DATA_DIR": str(self.tmp / f"data-{name}")}

    async def start_worker(self, name: str = "worker") -> None:
        await asyncio.to_thread(self.procs.start_worker, 120.0, name=name, extra_env=self.worker_env(name))
        if name not in self.workers:
            self.workers.append(name)

    async def kill(self, name: str) -> None:
        await asyncio.to_thread(self.procs.kill, name)

    async def start_receiver(self) -> None:
        await asyncio.to_thread(self.procs.start_receiver)

    def secrets_in_logs(self) -> list[str]:
        """Canary secrets found in any hub process log (faults make errors, errors must not carry them)."""
        found = []
        for path in sorted(self.procs.log_dir.glob("*.log")):
            text = path.read_text(errors="replace")
            found += [f"{path.name}: {canary[:6]}…" for canary in (JIRA_SECRET, SLACK_TOKEN, PD_KEY) if canary in text]
        return found

    def audit(self, workload: Workload, **kw: Any) -> Audit:
        return audit(self.slack, self.pagerduty, workload, routing_key=PD_KEY, **kw)

    def hub_command_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        return {**env, **self.procs.env, **self.worker_env("worker")}


async def make_stack(bootstrap: str, tmp: Path, *, partitions: int = 3, extra: dict[str, str] | None = None,
                     workers: tuple[str, ...] = ("worker",)) -> ChaosStack:
    sandbox = await start_sandbox(tls=True, states={
        "slack": SlackState(channels=dict(CHANNELS), tokens=[SLACK_TOKEN], rate_limits=False),
        "pagerduty": PagerDutyState(routing_keys=[PD_KEY], rate_limits=False),
    })
    prefix = f"c{uuid.uuid4().hex[:8]}."
    port = free_port()
    env = hub_env(
        bootstrap=bootstrap, prefix=prefix, data_dir=tmp / "data-worker", receiver_port=port,
        slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=JIRA_SECRET,
        slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file,
        extra={"SWITCHBOARD_KAFKA__PARTITIONS": str(partitions), "SWITCHBOARD_DELIVERY__BACKOFF_S": "0.2",
               "SWITCHBOARD_KAFKA__SESSION_TIMEOUT_S": "6", **(extra or {})},
    )
    procs = HubProcesses(env=env, log_dir=tmp / "logs", receiver_port=port)
    st = ChaosStack(sandbox=sandbox, procs=procs, prefix=prefix, bootstrap=bootstrap, tmp=tmp)
    try:
        await st.start_receiver()
        for name in workers:
            await st.start_worker(name)
    except BaseException:
        await close_stack(st)
        raise
    return st


async def close_stack(st: ChaosStack) -> None:
    await asyncio.to_thread(st.procs.stop_all)
    await st.sandbox.stop()


@pytest.fixture
async def chaos_stack(kafka_bootstrap: str, tmp_path: Path):
    st = await make_stack(kafka_bootstrap, tmp_path)
    try:
        yield st
    finally:
        await close_stack(st)


class Report:
    """Scenario results, merged into the JSON file at ``REPORT_PATH`` as each scenario finishes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, scenario: str, *, audit: Audit, recovery_s: float | None, stack: ChaosStack | None = None,
            **figures: Any) -> dict[str, Any]:
        entry = {
            "scenario": scenario,
            "counts": audit.counts.as_dict(),
            "secrets_in_logs": stack.secrets_in_logs() if stack is not None else [],
            "recovery_s": None if recovery_s is None else round(recovery_s, 2),
            **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in figures.items()},
            "examples": audit.examples,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            doc = {}
        doc["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
        doc.setdefault("scenarios", {})[scenario] = entry
        self.path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        print(f"\n[chaos] {scenario}: {json.dumps({k: v for k, v in entry.items() if k != 'examples'})}")
        return entry


@pytest.fixture(scope="session")
def chaos_report() -> Report:
    return Report(REPORT_PATH)


def assert_clean(result: Audit, scenario: str, entry: dict[str, Any] | None = None) -> None:
    assert result.clean, f"{scenario}: {result.counts.as_dict()}; examples: {json.dumps(result.examples, indent=1)}"
    assert not (entry or {}).get("secrets_in_logs"), f"{scenario}: canary secrets in logs: {entry['secrets_in_logs']}"


async def explain_lost(st: ChaosStack, result: Audit, *, since: float = 0.0, limit: int = 4) -> str:
    """What the stack did with the first ``limit`` lost incidents, for a failure message: the Slack
    calls naming them, their Slack actions' recorded outcomes, the worker's warnings about them and
    the retry tiers' records. CI keeps no temporary files, so a flaky loss must explain itself here."""
    import re
    from collections import Counter

    from tests.integration.conftest import read_topic

    ids = []
    for line in result.examples.get("lost", [])[:limit]:
        m = re.match(r"\w+-(\d+):", line)
        if m:
            ids.append(m.group(1))
    if not ids:
        return ""
    out = [f"--- explain_lost for {ids} (times relative to the scenario's fault, s) ---"]
    calls = [c for c in st.slack.calls if any(i in json.dumps(c.body, default=str) for i in ids)]
    out.append(f"slack calls naming them: {len(calls)} of {len(st.slack.calls)}; statuses of all: "
               f"{dict(sorted(Counter((c.path, c.status) for c in st.slack.calls).items()))}")
    for c in calls[:12]:
        out.append(f"  {c.time - since:+8.2f} {c.path} {c.status}")
    try:
        results = [v for _, v in await read_topic(st.bootstrap, st.topic("actions.results"))
                   if v.get("vendor") == "slack" and any(i in str(v.get("key")) for i in ids)]
        for v in results[:40]:
            out.append(f"  result {v.get('key')} v{v.get('version')} attempt {v.get('attempt')}: {v.get('outcome')} {v.get('detail') or ''} {v.get('error_code') or ''}"[:220])
        for tier in ("actions.retry.5s", "actions.retry.30s", "actions.retry.2m"):
            parked = [v for _, v in await read_topic(st.bootstrap, st.topic(tier)) if any(i in str(v.get("key")) for i in ids)]
            out.append(f"  {tier}: {len(parked)} records for them: "
                       + ", ".join(f"v{p['action'].get('version')}@{p['not_before_ms'] / 1000 - time.time():+.0f}s" for p in parked[:20]))
    except Exception as exc:  # the explanation must not hide the failure
        out.append(f"  (topics unreadable: {type(exc).__name__}: {exc})")
    for path in sorted(st.procs.log_dir.glob("*.log")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines()
                 if any(i in ln for i in ids) or '"level":"error"' in ln or "crash" in ln.lower()]
        out.append(f"  {path.name}: {len(lines)} lines naming them or errors; last:")
        out += [f"    {ln[:260]}" for ln in lines[-25:]]
    return "\n".join(out)
