"""Which asyncio event loop the hub's processes run on.

uvloop (libuv under asyncio's interface) when it is installed, the standard loop otherwise or when
``event_loop: asyncio`` asks for it. Measured by ``switchboard bench`` (issue 5): the worker spent
about 10% less CPU per event on uvloop and caught up a backlog about 30% faster; nothing in the hub
depends on which loop runs. The policy is set process-wide, so the loop faust starts in its
consumer thread is a uvloop loop too.
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
    return "uvloop"
