"""The worker's per-record shortcuts around faust (hub/channels.py, hub/app.py)."""

from __future__ import annotations

import orjson
import pytest

from hub.settings import load_settings


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send(self, topic, key, value, *, partition, timestamp, headers):
        self.sent.append((topic, key, value, partition, timestamp, headers))
        return f"future-{len(self.sent)}"


def _hub(monkeypatch, tmp_path):
    from hub.app import build_app

    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SWITCHBOARD_KAFKA__TOPIC_PREFIX", "t1.")
    return build_app(load_settings())


async def test_send_goes_to_the_producer_with_the_declared_topic_name_and_json_bytes(monkeypatch, tmp_path):
    hub = _hub(monkeypatch, tmp_path)
    producer = _Producer()

    async def started():
        return producer

    monkeypatch.setattr(hub.app, "maybe_start_producer", started)
    fut = await hub.channels.send("actions.slack", "C1|jira-1", {"version": 3, "text": "é"})
    # the future of the record's acknowledgement is handed back, for callers that must wait for it
    assert fut == "future-1"
    topic, key, value, partition, timestamp, headers = producer.sent[0]
    assert topic == "t1.actions.slack" == hub.channels["actions.slack"].get_topic_name()
    assert key == b"C1|jira-1" and orjson.loads(value) == {"version": 3, "text": "é"}
    # no partition chosen here: the producer's partitioner hashes the key, as faust's Topic.send did
    assert partition is None and timestamp is None and headers is None


async def test_send_to_an_undeclared_topic_names_the_declarations_file(monkeypatch, tmp_path):
    hub = _hub(monkeypatch, tmp_path)
    with pytest.raises(KeyError, match="topics/topics.yaml"):
        await hub.channels.send("actions.nowhere", "k", {})


def test_worker_monitor_keeps_no_per_record_bookkeeping(monkeypatch, tmp_path):
    from hub.app import LeanMonitor

    hub = _hub(monkeypatch, tmp_path)
    monitor = hub.app.monitor
    assert isinstance(monitor, LeanMonitor)
    for _ in range(3):
        state = monitor.on_stream_event_in("tp", 1, None, None)
        monitor.on_stream_event_out(None, 1, None, None, state)
        monitor.on_table_set(None, "k", "v")
        monitor.on_send_completed(None, monitor.on_send_initiated(None, "t", None, 1, 1), None)
    assert monitor.events_total == 0 and not monitor.send_latency and not monitor.events_runtime
    # but the time a partition's stream last took an event stays: faust's stall check reads it
    assert set(monitor.stream_inbound_time) == {"tp"}
    monitor.on_tp_commit({"tp": 5})  # the rare hooks still count
    assert monitor.tp_committed_offsets == {"tp": 5}
