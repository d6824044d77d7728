"""hub/loop.py: the event loop choice."""

import asyncio

import pytest

from hub.loop import use_event_loop
from hub.settings import Settings


@pytest.fixture(autouse=True)
def _restore_policy():
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


def test_asyncio_leaves_the_standard_loop():
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    assert use_event_loop("asyncio") == "asyncio"
    loop = asyncio.new_event_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_auto_picks_uvloop_when_installed():
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed on this platform")
    assert use_event_loop("auto") == "uvloop"
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_unknown_choice_is_a_settings_error():
    with pytest.raises(ValueError, match="auto"):
        Settings(event_loop="tokio")
