"""hub/app.py worker_class: the outbound clients are closed once the worker has stopped."""

from __future__ import annotations

import asyncio
import logging

from hub.settings import load_settings


def test_closers_run_at_shutdown_after_stop_each_bounded_and_a_failure_does_not_stop_the_rest(monkeypatch, tmp_path, caplog):
    from faust.worker import Worker

    from hub.app import build_app, worker_class

    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SWITCHBOARD_SLACK__BOT_TOKEN", "xoxb-unit")
    monkeypatch.setenv("SWITCHBOARD_PAGERDUTY__SERVICES", '{"ops": "unit0routing0key0000000000000000"}')
    hub = build_app(load_settings())
    # the Slack and PagerDuty clients are registered for closing
    assert {c.__qualname__ for c in hub.closers} >= {"SlackClient.close", "PagerDutyEvents.close"}
    # the hook this relies on: if mode renames it, this fails rather than the clients staying open
    assert callable(getattr(Worker, "_shutdown_loop", None))

    closed = []

    async def first():
        closed.append("first")

    async def broken():
        raise RuntimeError("session already gone")

    async def hangs():
        await asyncio.sleep(3600)

    async def last():
        closed.append("last")

    hub.closers[:] = [first, broken, hangs, last]
    loop = asyncio.new_event_loop()
    worker = worker_class(hub)(hub.app, loop=loop, quiet=True, override_logging=False)
    monkeypatch.setattr("hub.app.run_closers.__defaults__", (0.2,))
    with caplog.at_level(logging.WARNING, logger="switchboard.app"):
        worker._shutdown_loop()
    assert closed == ["first", "last"]
    failures = [r for r in caplog.records if r.getMessage() == "worker.close-failed"]
    assert [r.error for r in failures] == ["RuntimeError", "TimeoutError"]
    assert loop.is_closed()
