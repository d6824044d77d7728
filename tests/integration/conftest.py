"""The whole hub on the real broker: sandbox fakes in this process, receiver and worker as the
child processes a user runs (``switchboard receiver`` / ``switchboard worker``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.stack import HubProcesses, free_port, hub_env
from sandbox.jira import JiraWebhookSender
from sandbox.pagerduty import PagerDutyState
from sandbox.server import Sandbox, start_sandbox
from sandbox.slack import SlackState

JIRA_SECRET = "canary-jira-secret-0f9a"
SLACK_TOKEN = "xoxb-canary-slack-token-77"
PD_KEY = "canarypdroutingkey00000000000042"  # 32 characters
CHANNELS = {"C0INCIDENTS": "incidents", "C0LEGAL": "legal-incidents", "C0GENERAL": "general"}


@dataclass
class Stack:
    sandbox: Sandbox
    procs: HubProcesses
    sender: JiraWebhookSender
    prefix: str
    bootstrap: str

    @property
    def slack(self) -> SlackState:
        return self.sandbox.states["slack"]  # type: ignore[return-value]

    @property
    def pagerduty(self) -> PagerDutyState:
        return self.sandbox.states["pagerduty"]  # type: ignore[return-value]

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def start_worker(self) -> None:
        await asyncio.to_thread(self.procs.start_worker)

    async def start_receiver(self) -> None:
        await asyncio.to_thread(self.procs.start_receiver)


async def eventually(check, timeout: float = 45.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``check`` (sync, returns truthy when done) without blocking the sandbox's event loop."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict]]:
    """Every record of ``topic`` up to its end offsets now, as (key, JSON value); tombstones left out."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.kafka_admin import partition_count

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes | None, dict]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(*tps, timeout_ms=1000)).values():
                out.extend((r.key, orjson.loads(r.value)) for r in records if r.value is not None)
        return out
    finally:
        await consumer.stop()


async def reset_group_to_start(bootstrap: str, prefix: str, app_id: str = "switchboard") -> None:
    """Rewind the worker's consumer group to offset 0 on every topic it reads (the worker must be stopped)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.kafka_admin import partition_count

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{prefix}{app_id}", enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(prefix) and "-changelog" not in t]
        tps = [TopicPartition(t, p) for t in topics for p in range(await partition_count(bootstrap, t))]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


@pytest.fixture
async def stack(kafka_bootstrap: str, tmp_path: Path):
    sandbox = await start_sandbox(tls=True, states={
        "slack": SlackState(channels=dict(CHANNELS), tokens=[SLACK_TOKEN]),
        "pagerduty": PagerDutyState(routing_keys=[PD_KEY]),
    })
    prefix = f"t{uuid.uuid4().hex[:8]}."
    port = free_port()
    env = hub_env(
        bootstrap=kafka_bootstrap, prefix=prefix, data_dir=tmp_path / "data", receiver_port=port,
        slack_url=sandbox.urls["slack"], pagerduty_url=sandbox.urls["pagerduty"], jira_secret=JIRA_SECRET,
        slack_token=SLACK_TOKEN, pagerduty_services={"ops": PD_KEY}, ca_file=sandbox.ca_file,
        extra={"SWITCHBOARD_KAFKA__PARTITIONS": "3", "SWITCHBOARD_DELIVERY__BACKOFF_S": "0.2"},
    )
    procs = HubProcesses(env=env, log_dir=tmp_path / "logs", receiver_port=port)
    st = Stack(sandbox=sandbox, procs=procs, sender=JiraWebhookSender(f"{procs.receiver_url}/webhooks/jira", JIRA_SECRET),
               prefix=prefix, bootstrap=kafka_bootstrap)
    try:
        await st.start_receiver()
        await st.start_worker()
        yield st
    finally:
        await asyncio.to_thread(procs.stop_all)
        await sandbox.stop()
