"""Which asyncio event loop the hub's processes run on.

uvloop (libuv under asyncio's interface) when it is installed, the standard loop otherwise or when
``event_loop: asyncio`` asks for it. Measured by ``switchboard bench`` (issue 5): the worker spent
about 10% less CPU per event on uvloop and caught up a backlog about 30% faster. The policy is set
process-wide, so the loop faust starts in its consumer thread is a uvloop loop too.

One difference between the loops matters to aiokafka, and is mended here when uvloop is chosen:
writing to a connection whose transport is already closed raises ``RuntimeError`` on uvloop (the
standard loop ignores the write), and aiokafka's connection turns only ``OSError`` into a
connection error. A broker dying between aiokafka's "still connected?" check and its write then
raised ``RuntimeError`` out of the client's metadata task, which ended it for good; every later
metadata refresh waited forever, and with it the consumer's coordinator lookup, its commits, its
heartbeats and fetches: the worker stopped for good after the broker came back (tests/chaos
``test_broker_down_30s``, long tier, 3 runs in 11).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("switchboard.loop")

CHOICES = ("auto", "uvloop", "asyncio")


def use_event_loop(choice: str = "auto") -> str:
    """Set the process's event loop policy; return the name of the loop in use."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("event_loop is 'uvloop' but uvloop is not installed: pip install uvloop, "
                               "or set SWITCHBOARD_EVENT_LOOP=auto") from None
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    _closed_transport_writes_are_connection_errors()
    return "uvloop"


def _closed_transport_writes_are_connection_errors() -> None:
    """Make aiokafka's ``AIOKafkaConnection.send`` report a write on a closed transport as the broken
    connection it is (closed, ``KafkaConnectionError``), as it does for ``OSError``: its callers
    retry those. Any other ``RuntimeError`` is raised as before. Idempotent."""
    from aiokafka.conn import AIOKafkaConnection, CloseReason
    from aiokafka.errors import KafkaConnectionError

    shipped = AIOKafkaConnection.send
    if getattr(shipped, "switchboard_closed_transport", False):
        return

    def send(self: AIOKafkaConnection, request: object, expect_response: bool = True) -> object:
        writer = self._writer
        try:
            return shipped(self, request, expect_response=expect_response)
        except RuntimeError as exc:
            transport = getattr(writer, "transport", None)
            if transport is None or not transport.is_closing():
                raise
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise KafkaConnectionError(f"Connection at {self._host}:{self._port} broken: {exc}") from exc

    send.switchboard_closed_transport = True  # type: ignore[attr-defined]
    send.__wrapped__ = shipped  # type: ignore[attr-defined]
    AIOKafkaConnection.send = send  # type: ignore[method-assign]
