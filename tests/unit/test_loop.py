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


async def _connection_with_a_closed_transport():
    """An aiokafka connection whose socket the loop has already closed, before aiokafka noticed:
    what a broker dying just before a request leaves."""
    from aiokafka.conn import AIOKafkaConnection

    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = AIOKafkaConnection("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.close()
    await asyncio.sleep(0.05)  # the loop finishes closing the transport
    conn._reader, conn._writer = reader, writer
    conn._read_task = asyncio.get_running_loop().create_future()
    conn._versions = {}
    server.close()
    return conn


def _on_uvloop(coro_fn):
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed on this platform")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro_fn())


def test_aiokafka_as_shipped_lets_uvloop_runtime_error_out_of_a_write_on_a_closed_transport():
    """Pins the reason for the patch: if aiokafka starts catching this itself, the patch can go."""
    from aiokafka.conn import AIOKafkaConnection
    from aiokafka.protocol.metadata import MetadataRequest

    use_event_loop("auto")
    shipped = getattr(AIOKafkaConnection.send, "__wrapped__", AIOKafkaConnection.send)

    async def run():
        conn = await _connection_with_a_closed_transport()
        with pytest.raises(RuntimeError):
            shipped(conn, MetadataRequest([]))

    _on_uvloop(run)


def test_a_write_on_a_closed_transport_is_a_connection_error_that_closes_the_connection():
    from aiokafka.conn import AIOKafkaConnection
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.protocol.metadata import MetadataRequest

    use_event_loop("auto")

    async def run():
        conn = await _connection_with_a_closed_transport()
        with pytest.raises(KafkaConnectionError, match="broken"):
            AIOKafkaConnection.send(conn, MetadataRequest([]))
        assert not conn.connected() and conn._writer is None

    _on_uvloop(run)
