"""The real Kafka broker: round trips through it, and the local broker's lifecycle (hub/broker.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownTopicOrPartitionError

from hub.broker import BrokerError, LocalBroker, probe_cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


def _records(count: int) -> list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]]:
    """(partition, key, value, headers), with values that catch any re-encoding: empty, non-UTF-8, large."""
    special = [b"", b"\x00\xff\xfe binary \x80", "ünïcødé ✓".encode(), bytes(range(256)) * 400]
    out = []
    for i in range(count):
        value = special[i % len(special)] + f"#{i}".encode()
        out.append((i % PARTITIONS, f"key-{i}".encode(), value, [("trace", i.to_bytes(4, "big"))]))
    return out


async def _create_topic(bootstrap: str) -> str:
    topic = f"switchboard-test-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        assert [error for _, error, *_ in response.topic_errors] == [0]
        (described,) = await admin.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition"] for p in described["partitions"]) == list(range(PARTITIONS))
    finally:
        await admin.close()
    return topic


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, records) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key, partition=p, headers=h) for p, key, value, h in records]
        return [((meta := await fut).partition, meta.offset) for fut in sent]
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, group: str, want: int, commit: bool = False) -> list:
    """Read ``want`` records as ``group`` (from its committed offsets, else the beginning).

    ``commit``: commit after reading exactly ``want`` and leave the rest; otherwise also check
    that nothing beyond ``want`` arrives.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list = []
    try:
        async with asyncio.timeout(60):
            while len(got) < want:
                batches = await consumer.getmany(timeout_ms=1000, max_records=min(50, want - len(got)))
                for tp, messages in batches.items():
                    for m in messages:
                        got.append((tp.partition, m.offset, m.key, m.value, list(m.headers)))
        if commit:
            await consumer.commit()
        else:
            assert not await consumer.getmany(timeout_ms=500), "more records than were produced"
    finally:
        await consumer.stop()
    return sorted(got, key=lambda r: (r[0], r[1]))


def _expected(records, positions) -> list:
    return sorted((p, off, key, value, h) for (p, key, value, h), (_, off) in zip(records, positions, strict=True))


async def test_three_partition_round_trip_keeps_bytes_and_order(kafka_bootstrap: str) -> None:
    topic = await _create_topic(kafka_bootstrap)
    try:
        records = _records(60)
        positions = await _produce(kafka_bootstrap, topic, records)
        # acks=all + idempotence: every partition got exactly 0..n-1, no gaps and no duplicates
        for partition in range(PARTITIONS):
            assert sorted(off for p, off in positions if p == partition) == list(range(60 // PARTITIONS))
        got = await _consume(kafka_bootstrap, topic, f"{topic}-reader", want=60)
        assert got == _expected(records, positions)
    finally:
        await _delete_topic(kafka_bootstrap, topic)


# ---------------------------------------------------------------- the local broker itself


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this module's own, since the tests below crash and restart it."""
    broker = LocalBroker(tmp_path_factory.mktemp("own-kafka"), heap="384m")
    try:
        broker.start()
        error = None
    except BrokerError as exc:
        error = str(exc)
    if error:
        pytest.fail(f"cannot start a local Kafka broker:\n{error}", pytrace=False)
    yield broker
    broker.stop()
    assert not broker.is_running()


def test_generated_config_is_single_node_kraft(own_broker: LocalBroker) -> None:
    info = probe_cluster(own_broker.bootstrap)
    assert info.brokers == ((own_broker.node_id, "127.0.0.1", own_broker.port),)
    assert info.controller_id == own_broker.node_id
    props = (own_broker.data_dir / "server.properties").read_text()
    assert f"controller.quorum.voters=1@127.0.0.1:{own_broker.controller_port}\n" in props
    assert "auto.create.topics.enable=false\n" in props
    assert (own_broker.log_dir / "meta.properties").exists()


async def test_topics_are_never_created_implicitly(own_broker: LocalBroker) -> None:
    topic = f"switchboard-undeclared-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap, request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send_and_wait(topic, b"lost")
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


async def test_committed_data_and_offsets_survive_kill_and_restart(own_broker: LocalBroker) -> None:
    bootstrap, pid = own_broker.bootstrap, own_broker.pid
    topic = await _create_topic(bootstrap)
    records = _records(90)
    positions = await _produce(bootstrap, topic, records)
    group = f"{topic}-worker"
    first = await _consume(bootstrap, topic, group, want=30, commit=True)

    # SIGKILL is a process crash: acknowledged writes are in the OS page cache and survive it
    # (a power cut would need replication, which is what the 3-node setup is for).
    own_broker.kill()
    assert not own_broker.is_running()
    with pytest.raises(OSError):
        probe_cluster(bootstrap, timeout=1)

    own_broker.restart()
    assert own_broker.bootstrap == bootstrap and own_broker.pid not in (None, pid)

    rest = await _consume(bootstrap, topic, group, want=60)  # resumes after the committed offsets
    assert sorted(first + rest) == _expected(records, positions)
    assert await _consume(bootstrap, topic, f"{topic}-fresh", want=90) == _expected(records, positions)
    more = await _produce(bootstrap, topic, records[:3])  # offsets continue after recovery
    assert more == [(p, 90 // PARTITIONS) for p in range(PARTITIONS)]


def test_start_failure_reports_the_broker_error(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, extra_props={"num.partitions": "lots"}, log=lambda _: None)
    with pytest.raises(BrokerError, match="Invalid value lots for configuration num.partitions"):
        broker.start(timeout=30)
    assert not broker.is_running()


def test_broker_dying_while_starting_raises_with_its_log(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, log=lambda _: None)
    # 192.0.2.1 (TEST-NET-1) is never a local address: formatting passes, binding fails
    listeners = f"PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://192.0.2.1:{broker.controller_port}"
    broker.extra_props["listeners"] = listeners
    with pytest.raises(BrokerError, match=r"(?s)exited with code 1 while starting.*server\.log.*for CONTROLLER"):
        broker.start(timeout=30)
    assert not broker.is_running()


def test_command_line_runs_a_detached_broker(tmp_path: Path) -> None:
    data = tmp_path / "broker"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env_free = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        return subprocess.run(
            [sys.executable, "-m", "hub.broker", *args, "--data-dir", str(data)],
            cwd=ROOT, env=env_free, capture_output=True, text=True, timeout=120,
        )

    assert cli("status").stdout.strip() == "not running"
    port = LocalBroker(tmp_path / "unused").port  # a free port
    started = cli("start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    try:
        assert f"127.0.0.1:{port}" in started.stdout
        pid = int((data / "broker.pid").read_text())
        assert probe_cluster(f"127.0.0.1:{port}").brokers[0][2] == port  # outlived the CLI process
        again = cli("start")
        assert "already running" in again.stdout and int((data / "broker.pid").read_text()) == pid
        assert cli("status").stdout.startswith(f"running: bootstrap 127.0.0.1:{port} pid {pid}")
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    assert cli("status").returncode == 3
    with pytest.raises(OSError):
        probe_cluster(f"127.0.0.1:{port}", timeout=1)
