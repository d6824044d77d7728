"""hub/store.py UncleanStopGuard: a worker whose last run did not stop cleanly rebuilds its tables
from the changelogs; a clean stop (every changelog write acknowledged) keeps them."""

from __future__ import annotations

import asyncio

import pytest

from hub.processors.common import _track_changelog_writes
from hub.settings import load_settings
from hub.store import RUNNING_MARKER, UncleanStopGuard, changelogs_settled


def _tables_with_a_row(tmp_path):
    tabledir = tmp_path / "app-data" / "v1" / "tables"
    (tabledir / "ledger-jira-0.db").mkdir(parents=True)
    (tabledir / "ledger-jira-0.db" / "000001.log").write_bytes(b"a row written before the kill")
    return tabledir


def test_first_start_keeps_the_tables_and_marks_the_run(tmp_path):
    tabledir = _tables_with_a_row(tmp_path)
    guard = UncleanStopGuard(tmp_path, tabledir)
    assert guard.open() is False
    assert (tabledir / "ledger-jira-0.db" / "000001.log").exists()
    assert (tmp_path / RUNNING_MARKER).exists()


def test_after_a_clean_stop_the_next_start_keeps_the_tables(tmp_path):
    tabledir = _tables_with_a_row(tmp_path)
    UncleanStopGuard(tmp_path, tabledir).open()
    UncleanStopGuard(tmp_path, tabledir).close(clean=True)
    assert not (tmp_path / RUNNING_MARKER).exists()
    assert UncleanStopGuard(tmp_path, tabledir).open() is False
    assert (tabledir / "ledger-jira-0.db" / "000001.log").exists()


@pytest.mark.parametrize("how", ["killed", "stopped with changes not in Kafka"])
def test_after_an_unclean_stop_the_next_start_discards_the_tables(tmp_path, how):
    tabledir = _tables_with_a_row(tmp_path)
    UncleanStopGuard(tmp_path, tabledir).open()
    if how != "killed":  # a killed worker never gets to close()
        UncleanStopGuard(tmp_path, tabledir).close(clean=False)
    assert (tmp_path / RUNNING_MARKER).exists()
    assert UncleanStopGuard(tmp_path, tabledir).open() is True
    assert not tabledir.exists()  # faust recreates it and restores every table from its changelog
    assert (tmp_path / RUNNING_MARKER).exists()  # this run is marked in turn


class _Table:
    """What _track_changelog_writes wraps: faust's send_changelog, returning the record's future."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future] = []

    def send_changelog(self, partition, key, value, *args, **kwargs):
        fut = asyncio.get_running_loop().create_future()
        self.sent.append(fut)
        return fut


async def test_changelogs_settle_only_when_every_write_was_acknowledged():
    table = _Table()
    _track_changelog_writes(table)
    assert changelogs_settled([table])
    table.send_changelog(0, b"k1", b"v1")
    table.send_changelog(1, b"k2", b"v2")
    assert not changelogs_settled([table]), "a write still in the producer"
    table.sent[0].set_result(None)
    await asyncio.sleep(0)
    assert not changelogs_settled([table])
    table.sent[1].set_result(None)
    await asyncio.sleep(0)
    assert changelogs_settled([table])


async def test_a_write_kafka_refused_leaves_the_stop_unclean():
    table, other = _Table(), _Table()
    _track_changelog_writes(table)
    _track_changelog_writes(other)
    table.send_changelog(0, b"k1", b"v1")
    table.sent[0].set_exception(RuntimeError("NotLeaderForPartition, retries exhausted"))
    await asyncio.sleep(0)
    assert table.switchboard_written == {}  # nobody waits for it any more
    assert table.switchboard_failed_writes == 1
    assert not changelogs_settled([other, table])


def test_the_worker_marks_a_clean_stop_only_when_its_tables_are_in_kafka(monkeypatch, tmp_path):
    from hub.app import build_app, worker_class

    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    hub = build_app(load_settings())
    tabledir = hub.app.conf.tabledir
    assert tabledir.is_relative_to(tmp_path)  # the guard discards the directory faust's stores use
    ledger = hub.tables["ledger-jira"]

    def shut_down() -> None:
        loop = asyncio.new_event_loop()
        worker_class(hub)(hub.app, loop=loop, quiet=True, override_logging=False)._shutdown_loop()

    hub.stop_guard = UncleanStopGuard(tmp_path, tabledir)
    hub.stop_guard.open()
    ledger.switchboard_written["10001"] = asyncio.Future(loop=asyncio.new_event_loop())  # never acknowledged
    shut_down()
    assert (tmp_path / RUNNING_MARKER).exists()

    ledger.switchboard_written.clear()
    shut_down()
    assert not (tmp_path / RUNNING_MARKER).exists()
