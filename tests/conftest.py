"""Session-wide fixtures: the real Kafka cluster that the integration tests run against.

``KAFKA_BOOTSTRAP_SERVERS`` set: the tests use that cluster (yours; they create uniquely named
topics and delete them). Unset: one local broker (hub/broker.py) is started on free ports for the
whole session, and only if an integration test asks for it. Missing Java or Maven fails the
tests with instructions; integration tests are never skipped silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from hub.broker import BrokerError, LocalBroker, probe_cluster


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``"host:port"`` of a real Kafka cluster, shared by the whole test session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        try:
            probe_cluster(external, timeout=5)
        except OSError as exc:
            pytest.fail(
                f"KAFKA_BOOTSTRAP_SERVERS={external} does not answer ({exc}): start that cluster, "
                "or unset the variable to let the tests run their own broker",
                pytrace=False,
            )
        yield external
        return

    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), log=_terminal_printer(request))
    _start_or_fail(broker)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def _start_or_fail(broker: LocalBroker) -> None:
    """Start ``broker`` or fail the test with the broker's own explanation (missing Java/Maven, log tail)."""
    try:
        broker.start()
        return
    except BrokerError as exc:
        error = str(exc)
    pytest.fail(f"cannot start the local Kafka broker for the integration tests:\n{error}", pytrace=False)


def _terminal_printer(request: pytest.FixtureRequest):
    """A ``log`` callback that reaches the terminal through pytest's output capture (download progress)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        if capture is None:
            print(message)
            return
        with capture.global_and_fixture_disabled():
            print(f"\n[kafka] {message}", flush=True)

    return say
