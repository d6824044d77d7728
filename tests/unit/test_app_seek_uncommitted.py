"""The seek patch of hub/app.py: after a rebalance, stream partitions without a committed offset
are read again from the start (faust drops the records it fetched for them during the restore)."""

from __future__ import annotations

import faust
from aiokafka import TopicPartition

from hub.app import _start_uncommitted_partitions_from_the_beginning

STREAM_NEW = TopicPartition("t.events.tracker", 1)  # never committed
STREAM_RESET = TopicPartition("t.actions.slack", 0)  # committed 0 (a replay's reset)
STREAM_GOING = TopicPartition("t.actions.slack", 2)  # committed 7
CHANGELOG = TopicPartition("t.app-incidents-changelog", 1)  # the restore reads these itself


class _Thread:
    """The consumer thread faust delegates to: aiokafka's seek_to_committed, as shipped, moves
    only the partitions with a committed offset above 0."""

    def __init__(self) -> None:
        self.positions = {STREAM_NEW: 1, STREAM_RESET: 1, STREAM_GOING: 9, CHANGELOG: 3}  # past dropped records
        self.committed = {STREAM_NEW: None, STREAM_RESET: 0, STREAM_GOING: 7, CHANGELOG: None}

    async def seek_to_committed(self):
        for tp, offset in self.committed.items():
            if offset and offset > 0:
                self.positions[tp] = offset
        return dict(self.committed)

    def seek(self, tp, offset):
        self.positions[tp] = offset


def _consumer(patched: bool):
    app = faust.App("seek-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    app.tables._changelogs[CHANGELOG.topic] = object()
    consumer = app.consumer
    consumer._thread = _Thread()
    if patched:
        _start_uncommitted_partitions_from_the_beginning(app)
    return consumer


async def test_faust_as_shipped_leaves_uncommitted_partitions_past_the_dropped_records():
    consumer = _consumer(patched=False)
    await consumer.perform_seek()
    assert consumer._thread.positions[STREAM_NEW] == 1
    assert consumer._thread.positions[STREAM_RESET] == 1


async def test_stream_partitions_without_a_committed_offset_start_from_the_beginning():
    consumer = _consumer(patched=True)
    await consumer.perform_seek()
    assert consumer._thread.positions == {STREAM_NEW: 0, STREAM_RESET: 0, STREAM_GOING: 7, CHANGELOG: 3}
    assert consumer._read_offset.get(STREAM_NEW) is None  # nothing counted as read: offset 0 is delivered
