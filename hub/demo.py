"""``switchboard demo``: a real broker, the hub, the sandbox fakes and a scripted incident scenario.

Everything runs on this machine: Kafka (started from the Maven-fetched jars, or the cluster named by
KAFKA_BOOTSTRAP_SERVERS), the receiver and the worker as child processes, and the fake Slack /
PagerDuty in this process. The scenario is played through the signed Jira webhook, and the summary
shows what each fake received. ``--once`` exits 0 only if every expected effect was observed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from hub.stack import HubProcesses, free_port, hub_env

DEMO_DIR = Path(".switchboard/demo")
SECRET = "demo-jira-webhook-secret"
SLACK_TOKEN = "xoxb-demo-token"
PD_KEY = "demo0pagerduty0routing0key000001"
CHANNELS = {"C0INCIDENTS": "incidents", "C0LEGAL": "legal-incidents", "C0GENERAL": "general"}


def say(msg: str = "") -> None:
    print(msg, flush=True)


async def _eventually(check, timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.25)
    say(f"  !! timed out waiting for: {what}")
    return False


async def scenario(sender, slack, pd, bad_sender) -> list[tuple[str, bool]]:
    from sandbox.jira import issue_created, issue_updated

    results: list[tuple[str, bool]] = []

    def top(cid):
        return slack.history(cid)

    def triggers(dedup):
        return [e for e in pd.calls_to("/v2/enqueue") if e.status == 202 and e.body.get("event_action") == "trigger" and e.body.get("dedup_key") == dedup]

    ops1 = "jira/example.atlassian.net/10001"
    legal = "jira/example.atlassian.net/20007"

    say("\n1. OPS-1 'Checkout is down' (Incident, Highest) is created in Jira")
    status, _ = await sender.send(issue_created(10001, "OPS-1", "OPS", "Checkout is down", priority="Highest"), delivery_id="demo-ops1-created")
    say(f"   webhook answered {status}")
    ok = await _eventually(lambda: triggers(ops1) and top("C0INCIDENTS"), 60, "OPS-1 page and Slack message")
    results.append(("OPS-1 paged once and posted in #incidents", ok))

    say("2. Jira retries the same delivery (same X-Atlassian-Webhook-Identifier)")
    status, _ = await sender.send(issue_created(10001, "OPS-1", "OPS", "Checkout is down", priority="Highest"), delivery_id="demo-ops1-created", retry=1)
    say(f"   webhook answered {status} (duplicate)")

    say("3. Someone forges a webhook without the secret")
    status, _ = await bad_sender.send(issue_created(10099, "OPS-99", "OPS", "Forged incident", priority="Highest"))
    say(f"   webhook answered {status}")
    results.append(("forged webhook refused with 401", status == 401))

    say("4. LEGAL-7 (restricted project) becomes an incident")
    await sender.send(issue_created(20007, "LEGAL-7", "LEGAL", "Subpoena deadline missed", priority="Highest"))
    ok = await _eventually(lambda: top("C0LEGAL") and triggers(legal), 60, "LEGAL-7 in #legal-incidents and paged")
    results.append(("LEGAL-7 posted only in #legal-incidents, paged without its summary", ok))

    say("5. OPS-1 moves to In Progress, then Done")
    await sender.send(issue_updated(10001, "OPS-1", "OPS", "Checkout is down", priority="Highest", changes=[("status", "To Do", "In Progress")]))
    await sender.send(issue_updated(10001, "OPS-1", "OPS", "Checkout is down", priority="Highest", changes=[("status", "In Progress", "Done")]))

    def resolved():
        msgs = top("C0INCIDENTS")
        return msgs and "Resolved" in msgs[0].text and len(slack.thread("C0INCIDENTS", msgs[0].ts)) == 3 and \
            any(e.body.get("event_action") == "resolve" and e.body.get("dedup_key") == ops1 for e in pd.calls_to("/v2/enqueue"))

    ok = await _eventually(resolved, 60, "OPS-1 resolved in PagerDuty and Slack")
    results.append(("OPS-1 acknowledged then resolved; Slack message updated with two thread replies", ok))

    await asyncio.sleep(2.0)  # let any duplicate show itself
    public = " ".join(m.text + repr(m.blocks) for m in top("C0INCIDENTS") + top("C0GENERAL"))
    results.append(("nothing from LEGAL in public channels", "LEGAL" not in public and "Subpoena" not in public))
    results.append(("exactly one PagerDuty incident per incident", pd.opened_per_dedup_key() == {ops1: 1, legal: 1}))
    results.append(("exactly one Slack message per incident and channel", len(top("C0INCIDENTS")) == 1 and len(top("C0LEGAL")) == 1))
    legal_page = triggers(legal)
    results.append(("the LEGAL page carries no summary", bool(legal_page) and "Subpoena" not in repr(legal_page[0].body)))
    return results


def print_received(slack, pd) -> None:
    say("\nWhat the fake PagerDuty received (Events API v2):")
    for c in pd.calls_to("/v2/enqueue"):
        body = c.body or {}
        summary = (body.get("payload") or {}).get("summary", "")
        say(f"  {c.status}  {body.get('event_action'):<11} dedup_key={body.get('dedup_key')}  {summary}")
    say("  incidents: " + ", ".join(f"{i.dedup_key.rsplit('/', 1)[-1]}={i.status}" for i in pd.incidents))
    say("\nWhat the fake Slack received (Web API):")
    for c in slack.calls:
        if not c.path.startswith("/api/"):
            continue
        body = c.body or {}
        text = (body.get("text") or "").replace("\n", " ")[:90]
        where = body.get("channel", "")
        thread = " (thread reply)" if body.get("thread_ts") else ""
        say(f"  {c.status}  {c.path[5:]:<22} {where:<12}{thread} {text}")
    say("\nSlack channels now:")
    for cid, name in CHANNELS.items():
        for m in slack.history(cid):
            say(f"  #{name}: {m.text[:100]}")
            for r in slack.thread(cid, m.ts)[1:]:
                say(f"      ↳ {r.text[:100]}")


async def _run(once: bool) -> int:
    from hub.broker import LocalBroker, ensure_kafka_jars
    from sandbox.jira import JiraWebhookSender
    from sandbox.pagerduty import PagerDutyState
    from sandbox.server import start_sandbox
    from sandbox.slack import SlackState

    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        say(f"==> using your Kafka at {bootstrap}")
    else:
        say("==> starting a local Kafka broker (KRaft, single node)")
        await asyncio.to_thread(ensure_kafka_jars)
        broker = LocalBroker(DEMO_DIR / "broker")
        await asyncio.to_thread(broker.start)
        bootstrap = broker.bootstrap
    say("==> starting the sandbox: fake Slack and PagerDuty")
    sandbox = await start_sandbox(tls=True, states={
        "slack": SlackState(channels=dict(CHANNELS), tokens=[SLACK_TOKEN]),
        "pagerduty": PagerDutyState(routing_keys=[PD_KEY]),
    })
    prefix = f"demo{int(time.time())}."
    port = free_port()
    env = hub_env(bootstrap=bootstrap, prefix=prefix, data_dir=DEMO_DIR / "data" / prefix.rstrip("."), receiver_port=port,
                  slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=SECRET,
                  slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file)
    procs = HubProcesses(env=env, log_dir=DEMO_DIR / "logs", receiver_port=port)
    code = 1
    try:
        say(f"==> starting the hub (receiver on {procs.receiver_url}, worker; logs in {DEMO_DIR / 'logs'})")
        await asyncio.to_thread(procs.start_receiver)
        await asyncio.to_thread(procs.start_worker)
        sender = JiraWebhookSender(f"{procs.receiver_url}/webhooks/jira", SECRET)
        bad = JiraWebhookSender(f"{procs.receiver_url}/webhooks/jira", "wrong-secret")
        say("==> playing the incident scenario through the signed Jira webhook")
        results = await scenario(sender, sandbox.states["slack"], sandbox.states["pagerduty"], bad)
        print_received(sandbox.states["slack"], sandbox.states["pagerduty"])
        say("\nExpected effects:")
        for what, ok in results:
            say(f"  [{'ok' if ok else 'MISSING'}] {what}")
        passed = all(ok for _, ok in results)
        say(f"\n{sum(ok for _, ok in results)} passed, {sum(not ok for _, ok in results)} failed")
        code = 0 if passed else 1
        if not once:
            say("\nSwitchboard keeps running. Try it yourself:")
            say(f"  webhook:        POST {procs.receiver_url}/webhooks/jira (X-Hub-Signature with secret {SECRET!r})")
            say(f"  fake Slack:     {sandbox.urls['slack']}/_sandbox/state   (self-signed TLS: curl -k)")
            say(f"  fake PagerDuty: {sandbox.urls['pagerduty']}/_sandbox/state")
            say(f"  Kafka topics:   {prefix}*  on {bootstrap}")
            say("Press Ctrl-C to stop.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            code = 0
    finally:
        say("==> stopping")
        await asyncio.to_thread(procs.stop_all)
        await sandbox.stop()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
    return code


def run_demo(once: bool = False) -> int:
    return asyncio.run(_run(once))
