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
ZD_EMAIL, ZD_TOKEN, ZD_SECRET = "switchboard@example.com", "demo-zendesk-api-token", "demo-zendesk-signing-secret"
SF_CLIENT_ID, SF_SECRET = "switchboard-demo-app", "demo-salesforce-client-secret"


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

    ops1 = "jira/example.atlassian.net/90101"
    legal = "jira/example.atlassian.net/90207"

    say("\n1. OPS-1 'Checkout is down' (Incident, Highest) is created in Jira")
    status, _ = await sender.send(issue_created(90101, "OPS-1", "OPS", "Checkout is down", priority="Highest"), delivery_id="demo-ops1-created")
    say(f"   webhook answered {status}")
    ok = await _eventually(lambda: triggers(ops1) and top("C0INCIDENTS"), 60, "OPS-1 page and Slack message")
    results.append(("OPS-1 paged once and posted in #incidents", ok))

    say("2. Jira retries the same delivery (same X-Atlassian-Webhook-Identifier)")
    status, _ = await sender.send(issue_created(90101, "OPS-1", "OPS", "Checkout is down", priority="Highest"), delivery_id="demo-ops1-created", retry=1)
    say(f"   webhook answered {status} (duplicate)")

    say("3. Someone forges a webhook without the secret")
    status, _ = await bad_sender.send(issue_created(90199, "OPS-99", "OPS", "Forged incident", priority="Highest"))
    say(f"   webhook answered {status}")
    results.append(("forged webhook refused with 401", status == 401))

    say("4. LEGAL-7 (restricted project) becomes an incident")
    await sender.send(issue_created(90207, "LEGAL-7", "LEGAL", "Subpoena deadline missed", priority="Highest"))
    ok = await _eventually(lambda: top("C0LEGAL") and triggers(legal), 60, "LEGAL-7 in #legal-incidents and paged")
    results.append(("LEGAL-7 posted only in #legal-incidents, paged without its summary", ok))

    say("5. OPS-1 moves to In Progress, then Done")
    await sender.send(issue_updated(90101, "OPS-1", "OPS", "Checkout is down", priority="Highest", changes=[("status", "To Do", "In Progress")]))
    await sender.send(issue_updated(90101, "OPS-1", "OPS", "Checkout is down", priority="Highest", changes=[("status", "In Progress", "Done")]))

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


async def support_scenario(jira, zd) -> list[tuple[str, bool]]:
    """Customer tickets arrive in Zendesk, get linked to a Jira bug, the bug moves, the tickets show it."""
    from hub.stack import SANDBOX_ZENDESK_KEY_FIELD as KEY, SANDBOX_ZENDESK_LINKS_FIELD as LINKS, SANDBOX_ZENDESK_STATUS_FIELD as STATUS
    from sandbox.zendesk import DEFAULT_AGENT_ID as AGENT

    results: list[tuple[str, bool]] = []
    say("\n6. Support: SUP-1 'Password reset emails are not sent' is filed in Jira")
    issue = jira.create_issue("SUP", "Password reset emails are not sent", issue_type="Bug", priority="High")
    await jira.deliver()
    say("7. Three customers write in: the key in the Jira field (Acme), in the subject (Globex), as a tag (Acme)")
    t1 = zd.create_ticket(subject="No reset email", comment="I asked three times.", actor_id=AGENT, channel="web",
                          organization_id=1, custom_fields={KEY: issue.key}).ticket.id
    t2 = zd.create_ticket(subject=f"Reset link never arrives ({issue.key})", comment="Urgent.", actor_id=AGENT, channel="web",
                          organization_id=2).ticket.id
    t3 = zd.create_ticket(subject="Cannot reset password", comment="Same here.", actor_id=AGENT, channel="web",
                          organization_id=1, tags=[f"jira_{issue.key.lower()}"]).ticket.id
    await zd.flush_webhooks()
    tickets = (t1, t2, t3)

    def linked():
        prop = jira.find(issue.key).properties.get("switchboard.support") or {}
        return len(jira.find(issue.key).remote_links) == 3 and prop.get("tickets") == 3 and prop.get("organizations") == 2 and \
            all(zd.ticket(t).custom_fields.get(LINKS) == issue.key for t in tickets)

    ok = await _eventually(linked, 60, "three tickets linked, counted on the issue, key on every ticket")
    results.append((f"{issue.key} shows 3 linked tickets from 2 organisations; each ticket shows {issue.key}", ok))
    say(f"8. Engineering moves {issue.key} to In Progress, then Done with fix version 3.1")
    jira.update_issue(issue.id, status="In Progress")
    await jira.deliver()
    jira.update_issue(issue.id, status="Done", fix_versions=["3.1"])
    await jira.deliver()

    def notes(t):
        return [c.body for c in zd.ticket(t).comments if not c.public and "Switchboard [ref" in c.body]

    def resolved():
        return all(len(notes(t)) == 2 and "jira_resolved" in zd.ticket(t).tags and
                   zd.ticket(t).custom_fields.get(STATUS) == f"{issue.key}: Done" for t in tickets)

    ok = await _eventually(resolved, 60, "notes, status and tag on every ticket")
    results.append(("every ticket got one internal note per transition, the status and the jira_resolved tag", ok))
    await asyncio.sleep(2.0)
    results.append(("no note twice", all(len(notes(t)) == 2 for t in tickets)))
    say(f"\nWhat Jira shows on {issue.key}:")
    for link in jira.find(issue.key).remote_links:
        say(f"  remote link: {link['object']['title']}")
    say(f"  property switchboard.support: {jira.find(issue.key).properties.get('switchboard.support')}")
    say("What the Zendesk tickets show:")
    for t in tickets:
        tk = zd.ticket(t)
        say(f"  #{t} {tk.subject!r}: {tk.custom_fields.get(LINKS)} / {tk.custom_fields.get(STATUS)}; tags {sorted(tk.tags)}")
        for n in notes(t):
            say(f"      internal note: {n.splitlines()[0]}")
    return results


class CdcBridge:
    """``switchboard cdc salesforce`` as a child process, like the receiver and the worker."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.proc = env, log_dir, None

    def start(self) -> None:
        import subprocess
        import sys

        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(self.log_dir / "cdc.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "cdc", "salesforce"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


DEMO_ADMIN = ("admin", "demo-admin-token-0001", "demo-admin-password")
DEMO_VIEWER = ("viewer", "demo-viewer-token-0001", "demo-viewer-password")


def web_env(web_port: int, metrics_port: int) -> dict[str, str]:
    """The operators' view with two viewers (an admin who sees every project, a viewer who does not see LEGAL)."""
    env = {"SWITCHBOARD_WEB__PORT": str(web_port), "SWITCHBOARD_METRICS__WORKER_PORT": str(metrics_port)}
    for (name, token, password), admin in ((DEMO_ADMIN, True), (DEMO_VIEWER, False)):
        up = name.upper()
        env |= {f"SWITCHBOARD_WEB__VIEWERS__{up}__TOKEN": token, f"SWITCHBOARD_WEB__VIEWERS__{up}__PASSWORD": password,
                f"SWITCHBOARD_WEB__VIEWERS__{up}__RESTRICTED_PROJECTS": '["*"]' if admin else "[]",
                f"SWITCHBOARD_WEB__VIEWERS__{up}__ADMIN": "true" if admin else "false"}
    return env


def _get(url: str, token: str | None = None):
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
            return resp.status, (json.loads(body) if resp.headers.get("Content-Type", "").startswith("application/json") else body)
    except (urllib.error.URLError, OSError) as exc:
        return getattr(exc, "code", 0), None


async def operators_scenario(procs, web_url: str, worker_metrics_url: str) -> list[tuple[str, bool]]:
    """What the admins see: the issue pages' data, the redaction, /metrics, and one event traced end to end."""
    import json
    import subprocess
    import sys

    results: list[tuple[str, bool]] = []
    say(f"\n15. The operators' view ({web_url}) shows what happened")
    admin, viewer = DEMO_ADMIN[1], DEMO_VIEWER[1]

    def issue(ref, token=admin):
        status, doc = _get(f"{web_url}/api/v1/issues/{ref}", token)
        return doc if status == 200 and isinstance(doc, dict) else None

    def incident_shown():
        doc = issue("OPS-1")
        inc = (doc or {}).get("incident") or {}
        return any(r.get("vendor_ref") for r in inc.get("pagerduty") or []) and any(r.get("outcome") for r in inc.get("slack") or [])

    ok = await _eventually(incident_shown, 60, "OPS-1's incident with its PagerDuty and Slack results in the view")
    results.append(("the view shows OPS-1's incident with its PagerDuty and Slack results", ok))
    ok = await _eventually(lambda: ((issue("SUP-1") or {}).get("ticket_count") or 0) >= 2, 60, "SUP-1's tickets in the view")
    results.append(("the view shows SUP-1's customer tickets and their organisations", ok))
    ok = await _eventually(lambda: bool((issue("SUP-2") or {}).get("revenue")), 60, "SUP-2's revenue at stake in the view")
    results.append(("the view shows SUP-2's revenue at stake", ok))
    legal = issue("LEGAL-7", viewer)
    results.append(("a viewer without LEGAL access sees LEGAL-7 without its summary",
                    bool(legal) and legal.get("summary") is None and "Subpoena" not in json.dumps(legal)))
    status, ranked = _get(f"{web_url}/api/v1/ranked?by=revenue", admin)
    results.append(("the ranked list puts SUP-2 first by revenue at stake",
                    status == 200 and bool(ranked.get("items")) and ranked["items"][0].get("key") == "SUP-2"))

    def metrics_shown():
        web = _get(f"{web_url}/metrics")[1] or ""
        receiver = _get(f"{procs.receiver_url}/metrics")[1] or ""
        worker = _get(worker_metrics_url)[1] or ""
        return ('switchboard_delivery_outcomes_total{outcome="sent",vendor="pagerduty"}' in web
                and 'switchboard_webhooks_total{connector="jira",result="accepted"}' in receiver
                and "switchboard_processor_records_total" in worker)

    ok = await _eventually(metrics_shown, 30, "the counters on /metrics")
    results.append(("/metrics of the receiver, worker and view expose their counters", ok))
    created = next((e for e in (issue("OPS-1") or {}).get("timeline", []) if e.get("kind") == "issue_created" and e.get("event_id")), None)
    traced = False
    if created:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}, **procs.env}
        out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "hub.cli", "trace", created["event_id"]],
                                      env=env, capture_output=True, text=True, timeout=120)
        traced = out.returncode == 0 and "inbound.jira" in out.stdout and "pagerduty" in out.stdout and "slack" in out.stdout
        say(f"  switchboard trace {created['event_id']}:")
        for line in out.stdout.splitlines()[:14]:
            say(f"  {line}")
    results.append(("switchboard trace follows OPS-1's webhook to the PagerDuty and Slack responses", traced))
    return results


async def sales_scenario(jira, sf) -> list[tuple[str, bool]]:
    """Opportunities move through their stages in the fake Salesforce; the issue's revenue at stake moves with them."""
    from sandbox.salesforce import DEFAULT_PERSON_USER_ID as REP

    results: list[tuple[str, bool]] = []
    issue = jira.create_issue("SUP", "Bulk export to CSV", issue_type="Story")
    say(f"\n9. Sales: {issue.key} 'Bulk export to CSV' is filed in Jira; three deals wait on it in Salesforce")
    await jira.deliver()
    acme = sf.create("Account", {"Name": "Acme Corp"}, user_id=REP).id
    globex = sf.create("Account", {"Name": "Globex"}, user_id=REP).id
    deals = {}
    for name, account, amount, currency, stage in (("Acme renewal", acme, 50000, "USD", "Prospecting"),
                                                   ("Globex expansion", globex, 30000, "USD", "Qualification"),
                                                   ("Globex EU", globex, 20000, "EUR", "Value Proposition")):
        deals[name] = sf.create("Opportunity", {"Name": name, "Amount": amount, "CurrencyIsoCode": currency, "StageName": stage,
                                                "CloseDate": "2027-06-30", "AccountId": account}, user_id=REP).id
        say(f"   {name}: {currency} {amount:,} at {stage}; its feature request names {issue.key}")
        sf.create("Feature_Request__c", {"Name": f"{name}: bulk export", "Opportunity__c": deals[name], "Jira_Key__c": issue.key},
                  user_id=REP)

    def view():
        return jira.find(issue.key).properties.get("switchboard.revenue") or {}

    def totals():
        return {c: (t["count"], t["amount"], t["weighted"]) for c, t in (view().get("totals") or {}).items()}

    async def expect(what: str, wanted: dict) -> None:
        ok = await _eventually(lambda: totals() == wanted, 60, what)
        say(f"   Jira shows on {issue.key}: " + (", ".join(f"{c} {a:,.0f} open in {n} deal(s), {w:,.0f} weighted"
                                                          for c, (n, a, w) in sorted(totals().items())) or "nothing at stake"))
        results.append((what, ok))

    await expect(f"{issue.key} shows USD 80,000 (2 deals) and EUR 20,000 at stake, probability-weighted",
                 {"USD": (2, 80000.0, 8000.0), "EUR": (1, 20000.0, 10000.0)})
    say("10. Acme moves to Negotiation/Review (90%)")
    sf.update("Opportunity", [deals["Acme renewal"]], {"StageName": "Negotiation/Review"}, user_id=REP)
    await expect("the weighted total follows Acme's stage", {"USD": (2, 80000.0, 48000.0), "EUR": (1, 20000.0, 10000.0)})
    say("11. Globex expansion is Closed Lost")
    sf.update("Opportunity", [deals["Globex expansion"]], {"StageName": "Closed Lost"}, user_id=REP)
    await expect("a closed-lost deal leaves the total", {"USD": (1, 50000.0, 45000.0), "EUR": (1, 20000.0, 10000.0)})
    say("12. ... and is reopened at Prospecting with a bigger amount")
    sf.update("Opportunity", [deals["Globex expansion"]], {"StageName": "Prospecting", "Amount": 45000}, user_id=REP)
    await expect("a reopened deal comes back with its new amount", {"USD": (2, 95000.0, 49500.0), "EUR": (1, 20000.0, 10000.0)})
    say("13. Globex EU is deleted")
    sf.delete("Opportunity", deals["Globex EU"], user_id=REP)
    await expect("a deleted deal leaves the total", {"USD": (2, 95000.0, 49500.0)})
    say(f"14. Engineering resolves {issue.key} with fix version 2.0")
    jira.update_issue(issue.id, status="Done", fix_versions=["2.0"])
    await jira.deliver()
    open_deals = {deals["Acme renewal"], deals["Globex expansion"]}

    def tasks():
        return [t for t in sf.records["Task"].values() if issue.key in (t.values.get("Subject") or "")]

    def written_back():
        frs = [fr for fr in sf.records["Feature_Request__c"].values() if fr.values.get("Opportunity__c") in deals.values()]
        return all(fr.values.get("Jira_Status__c") == "Done" and fr.values.get("Jira_Fix_Version__c") == "2.0" for fr in frs)

    ok = await _eventually(lambda: {t.values["WhatId"] for t in tasks()} == open_deals, 60, "one Task per open deal's owner")
    results.append(("each open deal's owner got one Task; the deleted deal none", ok))
    ok = await _eventually(written_back, 60, "key, status and fix version on every feature request")
    results.append((f"every feature request shows {issue.key}, Done and fix version 2.0", ok))
    await asyncio.sleep(2.0)
    results.append(("no Task twice", len(tasks()) == len(open_deals)))
    say("What Salesforce shows:")
    for fr in sf.records["Feature_Request__c"].values():
        v = fr.values
        say(f"  feature request {v['Name']!r}: {v.get('Jira_Key__c')} / {v.get('Jira_Status__c')} / {v.get('Jira_Fix_Version__c')}")
    for t in tasks():
        say(f"  Task for {t.values.get('OwnerId')}: {t.values.get('Subject')}")
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
    from hub.stack import SANDBOX_ZENDESK_KEY_FIELD, SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD, sandbox_env
    from sandbox.jira import DEFAULT_API_TOKEN as JIRA_TOKEN, DEFAULT_EMAIL as JIRA_EMAIL, JiraState, JiraWebhookSender
    from sandbox.pagerduty import PagerDutyState
    from sandbox.salesforce import DEFAULT_API_USER_ID as SF_HUB_USER, SalesforceState
    from sandbox.zendesk import DEFAULT_API_USER_ID, ZendeskState
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
    port = free_port()
    receiver_url = f"http://127.0.0.1:{port}"
    sandbox = await start_sandbox(tls=True, states={
        "slack": SlackState(channels=dict(CHANNELS), tokens=[SLACK_TOKEN]),
        "pagerduty": PagerDutyState(routing_keys=[PD_KEY]),
        "jira": JiraState(webhook_target=f"{receiver_url}/webhooks/jira", webhook_secret=SECRET, webhooks_enabled=True),
        "zendesk": ZendeskState(credentials={ZD_EMAIL: ZD_TOKEN}, organizations={1: "Acme Corp", 2: "Globex"},
                                custom_field_ids=[SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD], webhooks_enabled=True,
                                webhook_target=f"{receiver_url}/webhooks/zendesk", webhook_secret=ZD_SECRET, webhook_style="trigger",
                                jira_key_field_id=SANDBOX_ZENDESK_KEY_FIELD),
        "salesforce": SalesforceState(clients={SF_CLIENT_ID: SF_SECRET}),
    })
    sandbox.states["jira"].site = sandbox.urls["jira"]
    prefix = f"demo{int(time.time())}."
    env = hub_env(bootstrap=bootstrap, prefix=prefix, data_dir=DEMO_DIR / "data" / prefix.rstrip("."), receiver_port=port,
                  slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=SECRET,
                  slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file,
                  extra=sandbox_env(sandbox.urls, jira_email=JIRA_EMAIL, jira_token=JIRA_TOKEN, zendesk_email=ZD_EMAIL,
                                    zendesk_token=ZD_TOKEN, zendesk_secret=ZD_SECRET, zendesk_hub_user_id=DEFAULT_API_USER_ID)
                  | {"SWITCHBOARD_SALES__ENABLED": "true", "SWITCHBOARD_SALES__PROJECT_KEYS": '["SUP"]',
                     "SWITCHBOARD_SALESFORCE__INSTANCE_URL": sandbox.urls["salesforce"], "SWITCHBOARD_SALESFORCE__CLIENT_ID": SF_CLIENT_ID,
                     "SWITCHBOARD_SALESFORCE__CLIENT_SECRET": SF_SECRET, "SWITCHBOARD_SALESFORCE__HUB_USER_ID": SF_HUB_USER,
                     "SWITCHBOARD_SALESFORCE__MULTI_CURRENCY": "true"})
    web_port, metrics_port = free_port(), free_port()
    env |= web_env(web_port, metrics_port)
    procs = HubProcesses(env=env, log_dir=DEMO_DIR / "logs", receiver_port=port)
    bridge = CdcBridge(env, DEMO_DIR / "logs")
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
        results += await support_scenario(sandbox.states["jira"], sandbox.states["zendesk"])
        say("==> starting the Salesforce Change Data Capture bridge (switchboard cdc salesforce)")
        await asyncio.to_thread(bridge.start)
        results += await sales_scenario(sandbox.states["jira"], sandbox.states["salesforce"])
        say("==> starting the operators' view (switchboard web)")
        await asyncio.to_thread(procs.start_web, web_port)
        results += await operators_scenario(procs, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{metrics_port}/metrics")
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
            say(f"  fake Jira:      {sandbox.urls['jira']}/_sandbox/state   (create issues: POST /_sandbox/issues)")
            say(f"  fake Zendesk:   {sandbox.urls['zendesk']}/_sandbox/state   (create tickets: POST /_sandbox/tickets)")
            say(f"  fake Salesforce: {sandbox.urls['salesforce']}/_sandbox/state   (change records: POST /_sandbox/records/Opportunity/<id>)")
            say(f"  Kafka topics:   {prefix}*  on {bootstrap}")
            say(f"  operators' view: http://127.0.0.1:{web_port}/  (user {DEMO_ADMIN[0]!r}, password {DEMO_ADMIN[2]!r}; "
                f"or {DEMO_VIEWER[0]!r}/{DEMO_VIEWER[2]!r}, who may not see LEGAL)")
            say(f"  ranked list:    SWITCHBOARD_TOKEN={DEMO_ADMIN[1]} switchboard top --url http://127.0.0.1:{web_port}")
            say(f"  metrics:        {procs.receiver_url}/metrics, http://127.0.0.1:{web_port}/metrics, http://127.0.0.1:{metrics_port}/metrics")
            say("Press Ctrl-C to stop.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            code = 0
    finally:
        say("==> stopping")
        await asyncio.to_thread(bridge.stop)
        await asyncio.to_thread(procs.stop_all)
        await sandbox.states["zendesk"].close()
        await sandbox.stop()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
    return code


def run_demo(once: bool = False) -> int:
    return asyncio.run(_run(once))
