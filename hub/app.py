"""The faust app: built by :func:`build_app` from settings, never at import time.

One app object per worker process. It binds the declared topics (``hub/channels.py``), the tables
(incident state, delivery ledgers, inbound dedup), and registers the processors from the explicit
list in ``hub/registry.py``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import faust

from hub.channels import Channels
from hub.settings import Settings

log = logging.getLogger("switchboard.app")


@dataclass
class Hub:
    """Everything a worker runs, for the CLI and the tests to reach."""

    settings: Settings
    app: faust.App
    channels: Channels
    routing: Any
    tables: dict[str, Any] = field(default_factory=dict)
    pipelines: dict[str, Any] = field(default_factory=dict)
    closers: list[Any] = field(default_factory=list)


def _broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip())


def _keep_buffered_records_on_resume(app: faust.App) -> None:
    """Stop faust from dropping records it already counted as read when a rebalance ends.

    mode's ``FlowControlEvent.resume()`` also empties every stream's buffer. faust resumes the
    flow at the very end of a rebalance, after it has resumed the stream partitions and sought
    them to their committed offsets; records fetched in between are already in the buffers and
    already past the consumer's read offset (their re-fetched copies are dropped as duplicates),
    so emptying the buffers there loses them: never processed, never acknowledged, and the
    partition's commit stops at the first of them until the next restart. Found by the
    SIGKILL-mid-stream test (tests/integration/test_incidents_e2e.py), which lost a run of
    actions on one partition in about one restart in three.

    Buffers still are emptied where they must be: faust clears them explicitly when partitions
    are revoked (``flow_control.clear()``), before the seek that re-reads them.
    """
    flow = app.flow_control

    def resume() -> None:
        flow._suspend.clear()
        flow._resume.set()

    flow.resume = resume  # type: ignore[method-assign]


def _start_uncommitted_partitions_from_the_beginning(app: faust.App) -> None:
    """Re-read from the start the stream partitions that have no committed offset after a rebalance.

    While a worker restores its tables after a rebalance, the consumer may already fetch records
    of its new stream partitions; faust drops them (the partitions are not active yet) and relies
    on seeking every partition back to its committed offset once the tables are restored. But
    aiokafka's ``seek_to_committed`` seeks only where the committed offset is above 0: a partition
    that never had an offset committed (its first records, a worker killed before its first
    commit) or whose offset was reset to 0 stays past the dropped records, which are never
    processed. Found by tests/integration/test_worker_restart_state.py: a worker killed before its
    first commit, restarted with tables to restore, never re-read the incident (no Slack post) in
    about one run in six.

    Such partitions are sought to offset 0 here (the broker answers out of range if the log starts
    later, and the consumer then starts at the earliest offset, as ``auto_offset_reset`` says).
    Nothing of theirs was processed since the assignment: the flow resumes only after this seek.
    """
    consumer = app.consumer
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_start() -> Any:
        committed = await seek_to_committed()
        changelogs = app.tables.changelog_topics
        for tp, offset in committed.items():
            if not offset and tp.topic not in changelogs:
                await consumer.seek(tp, 0)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_start  # type: ignore[method-assign]


class LeanMonitor(faust.Monitor):
    """faust's monitor without its per-record bookkeeping.

    faust calls its monitor for every record read, every event a stream handles, every table read
    and write and every record sent, and the stock one keeps per-partition and per-table counters
    and event timings that nothing here reads (the hub's own counters are ``Hub.pipelines``, served
    by hub/metrics.py). Commit, rebalance and assignment hooks — rare — are kept, and so is the time
    each partition's stream last took an event: faust's stall check reads it, and without it logged
    "Stream has not started processing TP(...)" errors for partitions that were being processed.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_table_del(self, table: Any, key: Any) -> None:
        pass

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass


def worker_class(hub: Hub) -> type:
    """faust's ``Worker`` for this hub, closing the outbound clients (``Hub.closers``) at shutdown.

    Not in an app signal: faust's ``on_before_shutdown`` fires before the agents stop, when a
    delivery may still be using a client. ``_shutdown_loop`` runs after ``stop()`` has stopped the
    app and its agents, on the loop that is about to be closed, so it is where the clients go.
    """
    from faust.worker import Worker

    class HubWorker(Worker):
        def _shutdown_loop(self) -> None:
            run_closers(hub, self.loop)
            super()._shutdown_loop()

    return HubWorker


def run_closers(hub: Hub, loop: Any, timeout_s: float = 5.0) -> None:
    """Run every closer, each bounded by ``timeout_s``; one that fails is logged and the rest still run."""
    import asyncio

    for close in list(hub.closers):
        try:
            loop.run_until_complete(asyncio.wait_for(close(), timeout_s))
        except Exception as exc:  # noqa: BLE001 - shutting down: report and go on
            log.warning("worker.close-failed", extra={"closer": getattr(close, "__qualname__", repr(close)), "error": type(exc).__name__})


def _drain_producer_buffer_before_commit(app: faust.App) -> None:
    """Make the producer's flush before an offset commit wait for the table changes it covers.

    Before committing offsets faust flushes the producer, so that every table change (a changelog
    record, put in faust's own buffer by ``table[key] = value``) is in Kafka before the input records
    that made it are marked done. But the buffer's ``flush()`` gives up as soon as one record takes
    longer than 0.1 s to leave (``ProducerBuffer.flush_atmost``), which it does when the worker is
    busy (the "producer buffer full" warnings); the commit then goes ahead with changelog records
    still unsent. A worker killed right after loses them: its local store still has the change, but
    a worker that takes the partition over rebuilds the table from the changelog, without it, and
    the input record that made the change is never read again.

    This flush returns once every record that was in the buffer when it began is with the Kafka
    client (whose own flush follows): those are the changes of the records the commit marks done
    (a table changes before its input record is acknowledged). Records put while it waits belong
    to later offsets, so a busy worker's flush still ends. Once the producer is stopping it does
    what faust's does: raise if records are left in the buffer, else return.
    """
    if app.conf.producer_threaded:
        return  # that buffer hands records to a thread's queue, not through the methods below
    buffer = app.producer.buffer
    put, send_pending = buffer.put, buffer._send_pending
    counts = {"put": 0, "handed": 0}
    handed = asyncio.Event()

    def counting_put(fut: Any) -> None:
        put(fut)
        counts["put"] += 1

    async def send(fut: Any) -> None:
        try:
            await send_pending(fut)
        finally:
            counts["handed"] += 1
            handed.set()

    async def flush() -> None:
        target = counts["put"]
        while counts["handed"] < target:
            if buffer.state != "running":  # stopping: as faust's flush does
                if buffer.size:
                    raise RuntimeError("Cannot flush: Producer not Running")
                return
            handed.clear()
            try:
                await asyncio.wait_for(handed.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass

    buffer.put = counting_put  # type: ignore[method-assign]
    buffer._send_pending = send  # type: ignore[method-assign]  # before the buffer starts: its task binds it
    buffer.flush = flush  # type: ignore[method-assign]


def build_app(settings: Settings, routing: Any | None = None) -> Hub:
    from hub.registry import register_all
    from hub.routing import load_routing
    from hub.store import store_url

    if routing is None:
        routing = load_routing(settings.routing_file)
    k = settings.kafka
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{k.topic_prefix}{settings.app_id}",
        broker=_broker_url(k.bootstrap_servers),
        store=store_url(settings.store),
        datadir=str(settings.data_dir),
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        producer_acks=-1,
        producer_linger=k.producer_linger_ms / 1000.0,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=bool(settings.worker_web_port),
        web_port=settings.worker_web_port or 6066,
        web_host="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        stream_buffer_maxsize=k.stream_buffer_records,
        consumer_max_fetch_size=k.consumer_fetch_kb * 1024,
        broker_commit_interval=1.0,
        broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=max(1.0, k.session_timeout_s / 5),
        broker_rebalance_timeout=max(k.session_timeout_s, 20.0),
        table_standby_replicas=0,
        autodiscover=False,
        Monitor=LeanMonitor,
    )
    _keep_buffered_records_on_resume(app)
    _drain_producer_buffer_before_commit(app)
    _start_uncommitted_partitions_from_the_beginning(app)
    hub = Hub(settings=settings, app=app, channels=Channels(app, settings), routing=routing)
    register_all(hub)
    return hub
