"""Issue 3's acceptance through the real broker: Zendesk tickets linked to Jira issues, visible on
both sides. The fakes act as people do in the vendors' UIs (and send the signed webhooks those
changes cause); the hub runs as its child processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from hub.stack import (SANDBOX_JIRA_TICKET_FIELD, SANDBOX_ZENDESK_KEY_FIELD, SANDBOX_ZENDESK_LINKS_FIELD,
                       SANDBOX_ZENDESK_STATUS_FIELD, HubProcesses, free_port, hub_env, sandbox_env)
from sandbox import zendesk as zendesk_fake
from sandbox.jira import JiraState
from sandbox.server import start_sandbox
from sandbox.zendesk import ZendeskState
from tests.integration.conftest import eventually, reset_group_to_start

pytestmark = pytest.mark.integration

ZD_EMAIL, ZD_TOKEN, ZD_SECRET = "hub@example.com", "canary-zendesk-token-31", "canary-zendesk-signing-secret"
JIRA_SECRET = "canary-jira-secret-support"
KEY_FIELD, LINKS_FIELD, STATUS_FIELD = SANDBOX_ZENDESK_KEY_FIELD, SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD
TICKET_FIELD = SANDBOX_JIRA_TICKET_FIELD  # a Jira text field holding Zendesk ticket ids
ORGS = {i: f"Customer {i:02d}" for i in range(1, 11)}
AGENT = zendesk_fake.DEFAULT_AGENT_ID


class Support:
    def __init__(self, sandbox, procs, prefix, bootstrap, api_token):
        self.sandbox, self.procs, self.prefix, self.bootstrap, self.api_token = sandbox, procs, prefix, bootstrap, api_token

    @property
    def jira(self) -> JiraState:
        return self.sandbox.states["jira"]

    @property
    def zd(self) -> ZendeskState:
        return self.sandbox.states["zendesk"]

    async def settle(self):
        await self.jira.deliver()
        await self.zd.flush_webhooks()

    def ticket(self, subject="Cannot sign in", *, org=None, key=None, tags=(), comment="It fails since this morning."):
        update = self.zd.create_ticket(subject=subject, comment=comment, actor_id=AGENT, channel="web", organization_id=org,
                                       tags=tags, custom_fields={KEY_FIELD: key} if key else None)
        return update.ticket.id

    def update_ticket(self, tid, **kw):
        return self.zd.update_ticket(tid, actor_id=AGENT, channel="web", **kw)

    def links_on(self, issue_key):
        issue = self.jira.find(issue_key)
        return sorted(int(l["object"]["url"].rsplit("/", 1)[1]) for l in issue.remote_links)

    def counts_on(self, issue_key):
        return (self.jira.find(issue_key).properties.get("switchboard.support") or {})

    def field(self, tid, field_id):
        return self.zd.ticket(tid).custom_fields.get(field_id)

    def notes(self, tid):
        return [c.body for c in self.zd.ticket(tid).comments if not c.public and "Switchboard [ref" in c.body]

    async def link_api(self, ticket_id, issue):
        async with aiohttp.ClientSession() as s, s.post(f"{self.procs.receiver_url}/api/links", json={"ticket_id": str(ticket_id), "issue": issue},
                                                        headers={"Authorization": f"Bearer {self.api_token}"}) as r:
            return r.status

    def cli(self, *args, timeout=120):
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}, **self.procs.env}
        return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
async def support(kafka_bootstrap, tmp_path):
    port = free_port()
    receiver = f"http://127.0.0.1:{port}"
    sandbox = await start_sandbox(tls=True, states={
        "jira": JiraState(webhook_target=f"{receiver}/webhooks/jira", webhook_secret=JIRA_SECRET, webhooks_enabled=True),
        "zendesk": ZendeskState(credentials={ZD_EMAIL: ZD_TOKEN}, organizations=ORGS, custom_field_ids=[LINKS_FIELD, STATUS_FIELD],
                                webhooks_enabled=True, webhook_target=f"{receiver}/webhooks/zendesk", webhook_secret=ZD_SECRET,
                                webhook_style="trigger", jira_key_field_id=KEY_FIELD),
    })
    sandbox.states["jira"].site = sandbox.urls["jira"]
    prefix = f"s{uuid.uuid4().hex[:8]}."
    api_token = "canary-api-token-for-links"
    env = hub_env(bootstrap=kafka_bootstrap, prefix=prefix, data_dir=tmp_path / "data", receiver_port=port, jira_secret=JIRA_SECRET,
                  slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], ca_file=sandbox.ca_file, extra={
        "SWITCHBOARD_KAFKA__PARTITIONS": "3", "SWITCHBOARD_SLACK__DRY_RUN": "true", "SWITCHBOARD_PAGERDUTY__DRY_RUN": "true",
        "SWITCHBOARD_DELIVERY__BACKOFF_S": "0.2",
        **sandbox_env(sandbox.urls, jira_email="switchboard@example.com", jira_token="sandbox-jira-api-token", zendesk_email=ZD_EMAIL,
                      zendesk_token=ZD_TOKEN, zendesk_secret=ZD_SECRET, zendesk_hub_user_id=zendesk_fake.DEFAULT_API_USER_ID,
                      api_token=api_token),
    })
    procs = HubProcesses(env=env, log_dir=tmp_path / "logs", receiver_port=port)
    st = Support(sandbox, procs, prefix, kafka_bootstrap, api_token)
    try:
        await asyncio.to_thread(procs.start_receiver)
        await asyncio.to_thread(procs.start_worker)
        yield st
    finally:
        await asyncio.to_thread(procs.stop_all)
        await sandbox.states["zendesk"].close()
        await sandbox.stop()


async def test_tickets_link_by_each_route_and_both_sides_show_it(support):
    s = support
    issue = s.jira.create_issue("OPS", "Login fails for SSO users", issue_type="Bug", priority="High")
    await s.settle()
    t_field = s.ticket("SSO login broken", org=1, key=issue.key)
    t_tag = s.ticket("Cannot log in", org=2, tags=[f"jira_{issue.key.lower()}"])
    t_text = s.ticket(f"Login error, engineering says {issue.key}", org=3)
    t_jira = s.ticket("Login page spins", org=4)
    t_explicit = s.ticket("Locked out", org=5)
    await s.settle()
    s.jira.update_issue(issue.id, custom_fields={TICKET_FIELD: f"#{t_jira}"})
    await s.settle()
    assert await s.link_api(t_explicit, issue.key) == 202
    expected = sorted([t_field, t_tag, t_text, t_jira, t_explicit])
    await eventually(lambda: s.links_on(issue.key) == expected, timeout=60, what="five remote links on the issue")
    await eventually(lambda: s.counts_on(issue.key).get("tickets") == 5 and s.counts_on(issue.key).get("organizations") == 5,
                     what="counts on the issue")
    for tid in expected:
        await eventually(lambda tid=tid: s.field(tid, LINKS_FIELD) == issue.key and "jira_linked" in s.zd.ticket(tid).tags,
                         what=f"Jira key and tag on ticket {tid}")
    # the remote link says what support sees
    titles = [l["object"]["title"] for l in s.jira.find(issue.key).remote_links]
    assert any(t.startswith(f"Zendesk #{t_field}: SSO login broken — Customer 01") for t in titles)


async def test_fifty_tickets_counts_follow_unlink_merge_and_move(support):
    s = support
    issue = s.jira.create_issue("OPS", "Checkout timeouts", issue_type="Bug")
    await s.settle()
    tickets = [s.ticket(f"Checkout slow #{i}", org=(i % 10) + 1, key=issue.key) for i in range(50)]
    await s.settle()
    await eventually(lambda: s.counts_on(issue.key).get("tickets") == 50, timeout=90, what="50 linked tickets")
    assert s.counts_on(issue.key)["organizations"] == 10
    # unlink: agents clear the key on two tickets
    for tid in tickets[:2]:
        s.update_ticket(tid, custom_fields={KEY_FIELD: None})
    # merge: one linked ticket merged into another
    s.zd.merge(tickets[3], [tickets[2]], actor_id=AGENT, channel="web")
    # move: the issue goes to project SUP (new key, same id)
    s.jira.update_issue(issue.id, project="SUP")
    await s.settle()
    new_key = s.jira.find(issue.id).key
    assert new_key.startswith("SUP-")

    def expected():  # a straightforward recomputation from the fakes' final state
        live = [t for t in tickets if "closed_by_merge" not in s.zd.ticket(t).tags and s.field(t, KEY_FIELD)]
        return len(live), len({s.zd.ticket(t).organization_id for t in live})

    await eventually(lambda: (s.counts_on(new_key).get("tickets"), s.counts_on(new_key).get("organizations")) == expected(),
                     timeout=120, what="counts equal to the recomputation")
    assert expected() == (47, 10)
    assert s.links_on(new_key) == sorted(t for t in tickets[4:] + [tickets[3]])
    await eventually(lambda: all(s.field(t, LINKS_FIELD) == new_key for t in tickets[3:]), timeout=60, what="new key on every ticket")
    await eventually(lambda: s.field(tickets[0], LINKS_FIELD) is None and "jira_linked" not in s.zd.ticket(tickets[0]).tags,
                     what="the unlinked ticket cleared")


async def test_resolve_notes_every_linked_ticket_once_across_restart_and_replay(support, tmp_path):
    s = support
    issue = s.jira.create_issue("OPS", "Exports fail", issue_type="Bug")
    await s.settle()
    tickets = [s.ticket(f"Export broken {i}", org=i + 1, key=issue.key) for i in range(3)]
    await s.settle()
    await eventually(lambda: s.counts_on(issue.key).get("tickets") == 3, what="three linked tickets")
    s.jira.update_issue(issue.id, status="In Progress")
    await s.settle()
    s.jira.update_issue(issue.id, status="Done", fix_versions=["2.4.1"])
    await s.settle()
    await eventually(lambda: all(len(s.notes(t)) == 2 and "jira_resolved" in s.zd.ticket(t).tags for t in tickets), timeout=60,
                     what="two internal notes and the tag on every ticket")
    assert "fix version 2.4.1" in s.notes(tickets[0])[1]

    # restart after SIGKILL, then replay every topic from the start with an empty local store
    await asyncio.to_thread(s.procs.kill, "worker")
    await asyncio.to_thread(s.procs.start_worker)
    await asyncio.sleep(3)
    await asyncio.to_thread(s.procs.stop, "worker")
    await reset_group_to_start(s.bootstrap, s.prefix)
    shutil.rmtree(s.procs.env["SWITCHBOARD_DATA_DIR"], ignore_errors=True)
    await asyncio.to_thread(s.procs.start_worker)
    await asyncio.sleep(8)
    for t in tickets:
        assert len(s.notes(t)) == 2, f"ticket {t} got {len(s.notes(t))} notes"
        assert s.zd.ticket(t).tags.count("jira_resolved") == 1


async def test_no_echo_when_the_hub_writes_back(support):
    s = support
    issue = s.jira.create_issue("OPS", "Search slow", issue_type="Bug")
    await s.settle()
    tid = s.ticket("Search is slow", org=1, key=issue.key)
    await s.settle()
    await eventually(lambda: s.field(tid, LINKS_FIELD) == issue.key, what="write-back")
    await asyncio.sleep(4)
    await s.settle()
    puts_before = len([c for c in s.zd.calls if c.method == "PUT"])
    await asyncio.sleep(6)
    await s.settle()
    puts_after = len([c for c in s.zd.calls if c.method == "PUT"])
    assert puts_before == puts_after, "the hub's own write came back and caused another write"
    assert puts_before <= 2


async def test_poller_alone_reaches_the_same_state(support, monkeypatch):
    s = support
    monkeypatch.setattr(zendesk_fake, "EXPORT_EXCLUDES_LAST_S", 0)  # the export's one-minute holdback, shortened
    s.jira.webhooks_enabled = False
    await s.zd.flush_webhooks()
    s.zd.configure_webhooks({"enabled": False})
    issue = s.jira.create_issue("OPS", "Invoices missing", issue_type="Bug")
    tickets = [s.ticket(f"Where is my invoice {i}", org=i + 1, key=issue.key) for i in range(4)]
    s.update_ticket(tickets[0], custom_fields={KEY_FIELD: None})
    s.jira.update_issue(issue.id, status="In Progress")
    since = (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()
    out_j = await asyncio.to_thread(s.cli, "backfill", "jira", "--since", since)
    assert out_j.returncode == 0, out_j.stderr[-2000:]
    out_z = await asyncio.to_thread(s.cli, "backfill", "zendesk", "--since", since)
    assert out_z.returncode == 0, out_z.stderr[-2000:]
    assert "item(s)" in out_z.stdout
    await eventually(lambda: s.counts_on(issue.key).get("tickets") == 3, timeout=60, what="three linked tickets from the pollers alone")
    await eventually(lambda: all(s.field(t, LINKS_FIELD) == issue.key for t in tickets[1:]), what="write-back from polled state")
    await eventually(lambda: all(s.field(t, STATUS_FIELD) == f"{issue.key}: In Progress" for t in tickets[1:]), what="status on tickets")
    assert s.field(tickets[0], LINKS_FIELD) is None
