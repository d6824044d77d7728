"""After a SIGKILL, the restarted worker's tables are its changelogs' tables (hub/store.py ``Store``:
unsent rows are rolled back), through the real broker, worker and fakes.

faust writes a table row to the local RocksDB at once and sends its changelog record later. The
worker here runs with a producer linger of 1 s, so the delivery ledger rows written after the page
and the post wait about that long before they leave; it is killed as soon as the page shows. Kept
as it was, the restarted worker would go on from a store holding rows its changelog never got
(and never write them again); any worker rebuilding the table later would get the older rows.

The same run checks the other half of a restart with tables to restore: the incident's partitions
never had an offset committed (the worker was killed before its first commit), and the records the
consumer fetched for them during the restore are read again (hub/app.py
``_start_uncommitted_partitions_from_the_beginning``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as FaustRocksDBStore

from hub.kafka_admin import partition_count
from hub.store import UNSENT
from sandbox.jira import issue_created
from tests.integration.conftest import PD_KEY, eventually

pytestmark = pytest.mark.integration

OFFSET_KEY = FaustRocksDBStore.offset_key  # where faust keeps a partition's persisted changelog offset


def local_rows(tabledir: Path) -> dict[str, dict[bytes, bytes]]:
    """Every row of every table in the worker's RocksDB stores (the worker stopped), by table name."""
    import rocksdict

    rows: dict[str, dict[bytes, bytes]] = {}
    for db_path in sorted(tabledir.glob("*.db")):
        table = db_path.name[: -len(".db")].rsplit("-", 1)[0]
        db = rocksdict.Rdict(str(db_path), options=rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only())
        try:
            rows.setdefault(table, {}).update((k, v) for k, v in db.items() if k != OFFSET_KEY and not k.startswith(UNSENT))
        finally:
            db.close()
    return rows


async def changelog_rows(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """The newest value of each key of a changelog topic (a tombstone removes the key)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    rows: dict[bytes, bytes] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(*tps, timeout_ms=1000)).values():
                for r in records:
                    if r.value is None:
                        rows.pop(r.key, None)
                    else:
                        rows[r.key] = r.value
    finally:
        await consumer.stop()
    return rows


def worker_log(stack) -> str:
    return (stack.procs.log_dir / "worker.log").read_text(errors="replace")


async def test_killed_worker_rebuilds_its_tables_from_the_changelogs(stack):
    data_dir = Path(stack.procs.env["SWITCHBOARD_DATA_DIR"])
    await asyncio.to_thread(stack.procs.stop, "worker")
    await asyncio.to_thread(stack.procs.start_worker, 90.0, extra_env={"SWITCHBOARD_KAFKA__PRODUCER_LINGER_MS": "1000"})
    rolled_before = worker_log(stack).count("store.unsent-rows.rolled-back")

    # killed right after a page: the ledger rows written after it are on disk, not yet in Kafka
    status, _ = await stack.sender.send(issue_created(40001, "OPS-401", "OPS", "Search is down", priority="Highest"))
    assert status == 202
    await eventually(lambda: stack.pagerduty.calls_to("/v2/enqueue"), interval=0.05, what="the page")
    await asyncio.to_thread(stack.procs.kill, "worker")

    await stack.start_worker()
    assert worker_log(stack).count("store.unsent-rows.rolled-back") > rolled_before, "the rows written after the page"
    # the incident is read again and delivered (a partition with no offset committed yet included)
    await eventually(lambda: stack.slack.history("C0INCIDENTS"), what="the post")
    await asyncio.sleep(3.0)  # anything re-delivered after the restart is done
    await asyncio.to_thread(stack.procs.stop, "worker")

    # every table the worker keeps on disk is exactly its changelog
    tabledirs = list(data_dir.glob("v*/tables"))
    assert len(tabledirs) == 1, tabledirs
    local = await asyncio.to_thread(local_rows, tabledirs[0])
    assert local.get("ledger-pagerduty") and local.get("incidents"), sorted(local)
    for table, rows in sorted(local.items()):
        in_kafka = await changelog_rows(stack.bootstrap, f"{stack.prefix}switchboard-{table}-changelog")
        differ = sorted(k for k in set(rows) | set(in_kafka) if rows.get(k) != in_kafka.get(k))
        assert not differ, f"{table}: {len(differ)} rows differ from the changelog, e.g. {differ[0]!r}: " \
                           f"{rows.get(differ[0])!r} on disk, {in_kafka.get(differ[0])!r} in Kafka"
    # one page, one post: the restart re-delivered nothing visible twice
    assert len(stack.pagerduty.opened_per_dedup_key(PD_KEY)) == 1
    assert len(stack.slack.history("C0INCIDENTS")) == 1
