"""The faust flow-control patch of hub/app.py: resuming the flow keeps what the streams buffered."""

from __future__ import annotations

import asyncio

import faust
from mode.utils.queues import FlowControlQueue

from hub.app import _keep_buffered_records_on_resume


def _app_and_queue():
    app = faust.App("flow-control-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    queue = FlowControlQueue(maxsize=10, flow_control=app.flow_control, clear_on_resume=True)
    return app, queue


async def test_faust_as_shipped_empties_stream_buffers_on_resume():
    # the behaviour the patch exists for: if this starts failing, faust/mode changed and the
    # patch in hub/app.py may no longer be needed
    app, queue = _app_and_queue()
    app.flow_control.resume()
    queue.put_nowait("record at offset 2")
    app.flow_control.resume()
    assert queue.qsize() == 0


async def test_resume_keeps_buffered_records_and_reopens_the_flow():
    app, queue = _app_and_queue()
    _keep_buffered_records_on_resume(app)
    app.flow_control.suspend()
    assert not app.flow_control.is_active()
    app.flow_control.resume()
    assert app.flow_control.is_active()
    queue.put_nowait("record at offset 2")
    app.flow_control.resume()
    assert queue.qsize() == 1 and await asyncio.wait_for(queue.get(), 1) == "record at offset 2"


async def test_revocation_still_empties_the_buffers():
    app, queue = _app_and_queue()
    _keep_buffered_records_on_resume(app)
    app.flow_control.resume()
    queue.put_nowait("record of a revoked partition")
    app.flow_control.suspend()
    app.flow_control.clear()  # what faust calls on partitions revoked, before the seek that re-reads
    assert queue.qsize() == 0
