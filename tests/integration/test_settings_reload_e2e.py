"""Settings reload without a restart, through the real broker: a worker started with PagerDuty in dry
run records the page it would send; the settings file is edited to go live, and the next incident
pages for real, from the same worker process."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hub.stack import HubProcesses, free_port, hub_env
from sandbox.jira import JiraWebhookSender, issue_created
from sandbox.pagerduty import PagerDutyState
from sandbox.server import start_sandbox
from sandbox.slack import SlackState
from tests.integration.conftest import CHANNELS, JIRA_SECRET, PD_KEY, SLACK_TOKEN, eventually, read_topic

pytestmark = pytest.mark.integration

DEDUP = "jira/example.atlassian.net/{}"


async def results(bootstrap: str, topic: str) -> list[dict]:
    return [value for _, value in await read_topic(bootstrap, topic)]


async def test_pagerduty_leaves_dry_run_when_the_settings_file_says_so_without_a_restart(kafka_bootstrap, tmp_path):
    sandbox = await start_sandbox(tls=True, states={
        "slack": SlackState(channels=dict(CHANNELS), tokens=[SLACK_TOKEN]),
        "pagerduty": PagerDutyState(routing_keys=[PD_KEY]),
    })
    pd = sandbox.states["pagerduty"]
    prefix, port = f"s{uuid.uuid4().hex[:8]}.", free_port()
    config = tmp_path / "switchboard.yaml"
    config.write_text("pagerduty:\n  dry_run: true\n")
    env = hub_env(bootstrap=kafka_bootstrap, prefix=prefix, data_dir=tmp_path / "data", receiver_port=port,
                  slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=JIRA_SECRET,
                  slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file,
                  extra={"SWITCHBOARD_KAFKA__PARTITIONS": "2", "SWITCHBOARD_DELIVERY__BACKOFF_S": "0.2",
                         "SWITCHBOARD_CONFIG": str(config), "SWITCHBOARD_ROUTING_RELOAD_S": "1"})
    procs = HubProcesses(env=env, log_dir=tmp_path / "logs", receiver_port=port)
    sender = JiraWebhookSender(f"{procs.receiver_url}/webhooks/jira", JIRA_SECRET)

    def pages(dedup):
        return [c for c in pd.calls_to("/v2/enqueue") if c.body and c.body.get("dedup_key") == dedup]

    async def outcome(dedup):
        rows = await results(kafka_bootstrap, f"{prefix}actions.results")
        return [r["outcome"] for r in rows if r.get("vendor") == "pagerduty" and r.get("vendor_ref") == dedup]

    try:
        await asyncio.to_thread(procs.start_receiver)
        await asyncio.to_thread(procs.start_worker)
        worker_pid = procs.procs["worker"].pid

        # in dry run: the would-be page is recorded, PagerDuty hears nothing
        status, _ = await sender.send(issue_created(20001, "OPS-21", "OPS", "Search is down", priority="Highest"))
        assert status == 202
        first = DEDUP.format(20001)
        for _ in range(150):
            if "dry_run" in await outcome(first):
                break
            await asyncio.sleep(0.3)
        assert await outcome(first) == ["dry_run"], procs.tail("worker")
        assert pages(first) == []

        # the admin goes live in the file (and changes a key that needs a restart)
        config.write_text("pagerduty:\n  dry_run: false\ndelivery:\n  request_timeout_s: 7\n")
        def applied():
            text = procs.tail("worker", 400)
            return text if "settings.reload.applied" in text else None

        log = await eventually(applied, timeout=30, what="the worker applying the new settings file")
        assert '"keys":["pagerduty.dry_run"]' in log.replace(" ", "")
        assert "settings.reload.restart-needed" in log and "delivery.request_timeout_s" in log

        status, _ = await sender.send(issue_created(20002, "OPS-22", "OPS", "Login is down", priority="Highest"))
        assert status == 202
        second = DEDUP.format(20002)
        await eventually(lambda: [c for c in pages(second) if c.status == 202 and c.body.get("event_action") == "trigger"],
                         timeout=60, what="the second incident paged for real")
        assert procs.procs["worker"].poll() is None and procs.procs["worker"].pid == worker_pid, "no restart"
        assert pages(first) == [], "the dry-run incident is not paged retroactively"
        for _ in range(100):  # the result is recorded after the call the fake saw
            if "sent" in await outcome(second):
                break
            await asyncio.sleep(0.3)
        assert "sent" in await outcome(second)
        worker_log = (tmp_path / "logs" / "worker.log").read_text(errors="replace")
        assert PD_KEY not in worker_log and SLACK_TOKEN not in worker_log and JIRA_SECRET not in worker_log
    finally:
        await asyncio.to_thread(procs.stop_all)
        await sandbox.stop()
