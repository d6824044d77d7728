"""The fault-injection suite over the support and sales paths (issue 5: "run it again over the
support and sales paths once they exist"): the mixed workload of tests/chaos/mixed.py — Jira issues,
Zendesk tickets naming them, Salesforce deals asking for them, some of them incidents — played on
all five fakes while the worker is SIGKILLed at random intervals, then the worker replays every
topic from offset 0 with an empty local store. Counted from what the fakes show: lost effects,
duplicates (remote links, internal notes, Tasks, pages, posts), ticket status written backwards,
restricted summaries reaching Zendesk, Salesforce or a public Slack channel. Every count must be 0.

The replay must have no effect: nothing made again (a message, a page, a note, a Task), no write
that sets a value other than the one shown before it (checked call by call, so a value changed and
changed back within milliseconds counts), nothing people see different at any poll during it. A
write that sets the same values again is no effect, and is reported (``replay_writes_same_values``).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
import uuid
from pathlib import Path

import pytest

from hub.demo import CdcBridge
from hub.stack import (SANDBOX_ZENDESK_KEY_FIELD, SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD, HubProcesses,
                       free_port, hub_env, sandbox_env)
from tests.chaos.conftest import assert_clean
from tests.chaos.harness import settle
from tests.chaos.mixed import MixedWorkload, audit_mixed, changed, play, shown_values, visible_state, write_changes
from tests.integration.conftest import CHANNELS, JIRA_SECRET, PD_KEY, SLACK_TOKEN, eventually, reset_group_to_start

pytestmark = pytest.mark.integration

ZD_EMAIL, ZD_TOKEN, ZD_SECRET = "hub@example.com", "canary-zendesk-token-chaos", "canary-zendesk-secret-chaos"
SF_CLIENT, SF_SECRET = "switchboard-app", "canary-salesforce-secret-chaos"
CANARIES = (JIRA_SECRET, SLACK_TOKEN, PD_KEY, ZD_TOKEN, ZD_SECRET, SF_SECRET)


class MixedStack:
    """All five fakes (rate limits off: the faults are injected), the receiver, one worker with the
    support and sales paths on, and the Salesforce CDC bridge, each a child process."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        self.bootstrap, self.tmp = bootstrap, tmp
        self.sandbox = None
        self.procs: HubProcesses | None = None
        self.bridge: CdcBridge | None = None

    async def start(self) -> "MixedStack":
        from sandbox import salesforce as sf_fake
        from sandbox import zendesk as zendesk_fake
        from sandbox.jira import JiraState
        from sandbox.pagerduty import PagerDutyState
        from sandbox.salesforce import SalesforceState
        from sandbox.server import start_sandbox
        from sandbox.slack import SlackState
        from sandbox.zendesk import ZendeskState

        port = free_port()
        receiver = f"http://127.0.0.1:{port}"
        self.sandbox = await start_sandbox(tls=True, states={
            "slack": SlackState(channels=dict(CHANNELS), tokens=[SLACK_TOKEN], rate_limits=False),
            "pagerduty": PagerDutyState(routing_keys=[PD_KEY], rate_limits=False),
            "jira": JiraState(webhook_target=f"{receiver}/webhooks/jira", webhook_secret=JIRA_SECRET, webhooks_enabled=True),
            "zendesk": ZendeskState(credentials={ZD_EMAIL: ZD_TOKEN}, organizations={i: f"Customer {i}" for i in range(1, 6)},
                                    custom_field_ids=[SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD], webhooks_enabled=True,
                                    webhook_target=f"{receiver}/webhooks/zendesk", webhook_secret=ZD_SECRET, webhook_style="trigger",
                                    jira_key_field_id=SANDBOX_ZENDESK_KEY_FIELD),
            "salesforce": SalesforceState(clients={SF_CLIENT: SF_SECRET}),
        })
        for state in self.sandbox.states.values():
            if hasattr(state, "rate_limits"):
                state.rate_limits = False
        urls = self.sandbox.urls
        self.sandbox.states["jira"].site = urls["jira"]
        env = hub_env(
            bootstrap=self.bootstrap, prefix=f"m{uuid.uuid4().hex[:8]}.", data_dir=self.tmp / "data-worker", receiver_port=port,
            slack_url=urls["slack"], pagerduty_url=urls["pagerduty"], jira_secret=JIRA_SECRET, slack_token=SLACK_TOKEN,
            pagerduty_services={"ops": PD_KEY}, ca_file=self.sandbox.ca_file,
            extra={"SWITCHBOARD_KAFKA__PARTITIONS": "3", "SWITCHBOARD_DELIVERY__BACKOFF_S": "0.2",
                   "SWITCHBOARD_KAFKA__SESSION_TIMEOUT_S": "6",
                   **sandbox_env(urls, jira_email="switchboard@example.com", jira_token="sandbox-jira-api-token", zendesk_email=ZD_EMAIL,
                                 zendesk_token=ZD_TOKEN, zendesk_secret=ZD_SECRET, zendesk_hub_user_id=zendesk_fake.DEFAULT_API_USER_ID),
                   "SWITCHBOARD_SALES__ENABLED": "true", "SWITCHBOARD_SALES__RATES": '{"EUR": 1.1}',
                   "SWITCHBOARD_SALES__PROJECT_KEYS": '["OPS", "LEGAL"]',
                   "SWITCHBOARD_SALESFORCE__INSTANCE_URL": urls["salesforce"], "SWITCHBOARD_SALESFORCE__CLIENT_ID": SF_CLIENT,
                   "SWITCHBOARD_SALESFORCE__CLIENT_SECRET": SF_SECRET, "SWITCHBOARD_SALESFORCE__HUB_USER_ID": sf_fake.DEFAULT_API_USER_ID,
                   "SWITCHBOARD_SALESFORCE__MULTI_CURRENCY": "true"},
        )
        self.procs = HubProcesses(env=env, log_dir=self.tmp / "logs", receiver_port=port)
        self.bridge = CdcBridge(env, self.tmp / "logs")
        await asyncio.to_thread(self.procs.start_receiver)
        await asyncio.to_thread(self.procs.start_worker, 120.0)
        await asyncio.to_thread(self.bridge.start)
        sf = self.sandbox.states["salesforce"]
        await eventually(lambda: any(len(c.cursors) >= 2 for c in sf.cometd_clients.values()), timeout=60,
                         what="the CDC bridge subscribed to the Opportunity and feature request channels")
        return self

    async def close(self) -> None:
        if self.bridge is not None:
            await asyncio.to_thread(self.bridge.stop)
        if self.procs is not None:
            await asyncio.to_thread(self.procs.stop_all)
        if self.sandbox is not None:
            await self.sandbox.states["zendesk"].close()
            await self.sandbox.stop()

    def state(self, name: str):
        return self.sandbox.states[name]

    def audit(self, work: MixedWorkload):
        s = self.sandbox.states
        return audit_mixed(work, jira=s["jira"], zd=s["zendesk"], sf=s["salesforce"], slack=s["slack"], pagerduty=s["pagerduty"])

    def visible(self, work: MixedWorkload) -> dict:
        s = self.sandbox.states
        return visible_state(work, jira=s["jira"], zd=s["zendesk"], sf=s["salesforce"], slack=s["slack"], pagerduty=s["pagerduty"])

    def secrets_in_logs(self) -> list[str]:
        found = []
        for path in sorted(self.procs.log_dir.glob("*.log")):
            text = path.read_text(errors="replace")
            found += [f"{path.name}: {canary[:6]}…" for canary in CANARIES if canary in text]
        return found

    async def vendors_quiet(self, *, quiet_s: float, timeout: float) -> float:
        """Wait until no vendor was written to for ``quiet_s`` (or ``timeout``); return the seconds waited."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            last = max((c.time for name, state in self.sandbox.states.items() for c in state.calls if is_write(name, c)), default=0.0)
            if time.time() - last >= quiet_s:
                break
            await asyncio.sleep(1.0)
        return time.monotonic() - began

    def vendor_calls(self) -> dict[str, int]:
        return {name: len(state.calls) for name, state in self.sandbox.states.items()}


def is_write(vendor: str, call) -> bool:
    """A call that changes what a person sees in the vendor's tool (reads, tokens and the CDC
    long poll are not)."""
    if vendor == "slack":  # every Slack Web API method is a POST
        return call.path.endswith(("chat.postMessage", "chat.update", "chat.delete"))
    if vendor == "pagerduty":
        return call.path.startswith("/v2/enqueue")
    return call.method in ("POST", "PUT", "PATCH", "DELETE") and not any(
        part in call.path for part in ("/_sandbox", "oauth2", "/cometd", "/query"))


def is_create(vendor: str, call) -> bool:
    """A call that makes something new whatever its content (a message, a page, a note, a Task): a
    replay must make none. Other writes set values, and are checked by what people see."""
    body = call.body if isinstance(call.body, dict) else {}
    if vendor == "slack":
        return call.path.endswith("chat.postMessage")
    if vendor == "pagerduty":
        return call.path.startswith("/v2/enqueue") and body.get("event_action") == "trigger"
    if vendor == "zendesk":
        return bool((body.get("ticket") or {}).get("comment"))
    if vendor == "salesforce":
        return call.method == "POST" and call.path.rstrip("/").endswith(("/sobjects/Task", "/feed-elements"))
    return False


@pytest.fixture
async def mixed_stack(kafka_bootstrap: str, tmp_path: Path):
    st = MixedStack(kafka_bootstrap, tmp_path)
    try:
        yield await st.start()
    finally:
        await st.close()


def tier(ci, long):
    return pytest.mark.parametrize("size", [pytest.param(ci, id="ci"), pytest.param(long, id="long", marks=pytest.mark.chaos)])


@tier(16, 200)
async def test_support_and_sales_under_worker_sigkill_then_replay(mixed_stack, chaos_report, size):
    """``size`` Jira issues (each with 3 tickets and 2 deals); the worker SIGKILLed every 3-10 s
    (CI: up to 4 times, long: up to 20) until everything shows, then a replay from offset 0 with an
    empty local store must have no effect (see the module docstring)."""
    st = mixed_stack
    s = st.sandbox.states
    work = MixedWorkload(size)
    rng = random.Random(size)
    began = time.monotonic()
    playing = asyncio.create_task(play(work, s["jira"], s["zendesk"], s["salesforce"]))
    kills, restarts = 0, []
    fault_end = time.monotonic()
    max_kills = 4 if size < 100 else 20
    while kills < max_kills:
        await asyncio.sleep(rng.uniform(3.0, 10.0))
        if playing.done() and st.audit(work).counts.lost == 0:
            break
        await asyncio.to_thread(st.procs.kill, "worker")
        kills += 1
        t = time.monotonic()
        await asyncio.to_thread(st.procs.start_worker, 120.0)
        restarts.append(time.monotonic() - t)
        fault_end = time.monotonic()
    await playing
    result, converged = await settle(lambda: st.audit(work), timeout=240 + size * 2, since=fault_end)
    # the hub may still be finishing late work (an action parked on a retry tier while the worker
    # was killed): wait until no vendor has been written to for a while before the replay starts
    idle_s = await st.vendors_quiet(quiet_s=5.0 if size < 100 else 40.0, timeout=120.0)
    calls_before = st.vendor_calls()

    # then the worker replays everything from offset 0 with an empty local store: no new effect
    await asyncio.to_thread(st.procs.stop, "worker")
    await reset_group_to_start(st.bootstrap, st.procs.env["SWITCHBOARD_KAFKA__TOPIC_PREFIX"])
    shutil.rmtree(st.procs.env["SWITCHBOARD_DATA_DIR"], ignore_errors=True)
    before = st.visible(work)
    shown = shown_values(jira=s["jira"], zd=s["zendesk"], sf=s["salesforce"])
    moved: list[str] = []

    async def watch() -> None:  # nothing a person sees may change during the replay, even for a moment
        while True:
            moved.extend(c for c in changed(before, st.visible(work)) if c not in moved)
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    replay_began = time.time()
    t = time.monotonic()
    try:
        await asyncio.to_thread(st.procs.start_worker, 120.0)
        await asyncio.sleep(15 if size < 100 else 60)
    finally:
        watcher.cancel()
    moved.extend(c for c in changed(before, st.visible(work)) if c not in moved)
    replayed = st.audit(work)
    writes_after = {name: [c for c in state.calls[calls_before[name]:] if is_write(name, c)] for name, state in s.items()}
    new_writes = {name: len(calls) for name, calls in writes_after.items() if calls}
    creates = [f"{name} {c.method} {c.path}" for name, calls in writes_after.items() for c in calls if is_create(name, c)]
    # a write that sets other values than those shown, even for a moment, is a change people see
    creates += [f"{name}: {what}" for name, calls in writes_after.items() for c in calls
                if not is_create(name, c) and (what := write_changes(name, c, shown))]
    entry = chaos_report.add(
        f"support_sales_worker_sigkill[{size}]", audit=result, recovery_s=converged, issues=size,
        inputs=dict(work.inputs), events=sum(work.inputs.values()), kills=kills, worker_restart_s=[round(r, 1) for r in restarts],
        wall_s=time.monotonic() - began, lost_by_kind=result.lost_by_kind, replay_counts=replayed.counts.as_dict(),
        idle_before_replay_s=idle_s, replay_writes_same_values=new_writes, replay_changed=moved[:10], replay_creates=creates[:10], replay_write_examples=[f"{name} {c.method} {c.path} {str(c.body)[:200]}" for name, calls in writes_after.items() for c in calls[:4]],
        replay_wait_s=time.monotonic() - t, secrets_in_logs=st.secrets_in_logs(),
        vendor_calls=st.vendor_calls())
    assert kills >= 1
    assert_clean(result, "support_sales_worker_sigkill", entry)
    assert replayed.clean, f"after the replay: {replayed.counts.as_dict()} {replayed.examples}"
    assert not moved, f"the replay changed what people see: {moved[:10]}"
    if creates:  # say which actions made them and why, from the results topic (CI keeps no files)
        from tests.integration.conftest import read_topic

        since_ms = int(replay_began * 1000)
        results = [v for _, v in await read_topic(st.bootstrap, st.procs.env["SWITCHBOARD_KAFKA__TOPIC_PREFIX"] + "actions.results")
                   if v.get("at_ms", 0) >= since_ms and v.get("vendor") in new_writes]
        detail = "; ".join(f"{v['vendor']} {v['key']} v{v.get('version')} {v['outcome']} {v.get('detail') or ''}" for v in results[:30])
        raise AssertionError(f"the replay made or changed something again: {creates[:10]}\nresults recorded during the replay: {detail}")
