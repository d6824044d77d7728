"""hub/store.py: a table row whose changelog record Kafka never acknowledged is rolled back when its
RocksDB is opened again, and the partition's persisted offset moves back so that faust's restore
re-reads what did reach Kafka (a SIGKILLed worker keeps no row its changelog lacks)."""

from __future__ import annotations

import types
import weakref

import faust
import pytest
from faust.streams import _current_event

from hub.store import UNSENT, roll_back_unsent, store_url, unsent_entry

pytest.importorskip("rocksdict")


def _table(tmp_path, name="ledger-jira"):
    app = faust.App("unsent-test", broker="kafka://127.0.0.1:1", store=store_url("rocksdb://"), datadir=str(tmp_path),
                    autodiscover=False)
    table = app.Table(name, default=None, partitions=3,
                      schema=faust.Schema(key_type=str, value_type=None, key_serializer="json", value_serializer="json"))
    return table.data  # hub.store.Store


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = types.SimpleNamespace(partition=partition)


def _in_partition(partition: int):
    """faust's current event, as while an agent handles a record of ``partition``."""
    event = _Event(partition)
    _current_event.set(weakref.ref(event))
    return event


def _rows(store, partition):
    db = store._db_for_partition(partition)
    return {k: v for k, v in store._visible_items(db)}


def test_rows_not_acknowledged_before_a_kill_are_rolled_back_and_the_restore_starts_before_them(tmp_path):
    store = _table(tmp_path)
    event = _in_partition(1)  # noqa: F841 - kept alive: faust holds it by weak reference
    store["10032"] = {"version": 1}
    store.changelog_acknowledged(store._encode_key("10032"), 1)
    store.set_persisted_offset(types.SimpleNamespace(partition=1), 61)
    # v3 on disk, its record still in the producer; a new row too; then the worker is killed
    store["10032"] = {"version": 2}
    store["10032"] = {"version": 3}
    store["10101"] = {"version": 1}
    assert store["10032"] == {"version": 3}
    assert sorted(_rows(store, 1)) == [b'"10032"', b'"10101"']  # the entries are not rows
    store._dbs.clear()  # the kill: nothing closed, nothing flushed by faust

    again = _table(tmp_path)
    assert again["10032"] == {"version": 1}  # as in the changelog up to offset 61
    assert "10101" not in again
    assert again.persisted_offset(types.SimpleNamespace(partition=1)) == 61  # faust re-reads from 62
    assert not [k for k in again._db_for_partition(1).keys() if k.startswith(UNSENT)]


def test_acknowledged_rows_stay_and_leave_no_entry(tmp_path):
    store = _table(tmp_path)
    event = _in_partition(2)  # noqa: F841
    store["7"] = {"state": "triggered"}
    store["7"] = {"state": "resolved"}
    store.changelog_acknowledged(store._encode_key("7"), 2)
    store.set_persisted_offset(types.SimpleNamespace(partition=2), 4)
    store._dbs.clear()

    again = _table(tmp_path)
    assert again["7"] == {"state": "resolved"}
    assert again.persisted_offset(types.SimpleNamespace(partition=2)) == 4


def test_a_row_changed_before_any_offset_was_persisted_restores_the_partition_from_the_start(tmp_path):
    store = _table(tmp_path)
    event = _in_partition(0)  # noqa: F841
    store["1"] = {"n": 1}
    store._dbs.clear()

    again = _table(tmp_path)
    assert "1" not in again
    assert again.persisted_offset(types.SimpleNamespace(partition=0)) is None


class _DB(dict):
    """The rocksdict calls roll_back_unsent makes, over a dict (sorted like RocksDB's keys)."""

    def items(self, from_key=b""):  # type: ignore[override]
        return [(k, v) for k, v in sorted(super().items()) if k >= from_key]

    def put(self, k, v):
        self[k] = v

    def delete(self, k):
        self.pop(k, None)


def test_roll_back_keeps_the_lowest_offset_and_can_be_repeated():
    offset_key = b"__faust\0offset__"
    db = _DB({offset_key: b"90", b'"a"': b"a3", b'"b"': b"b2",
              UNSENT + b'"a"': unsent_entry(b"70", b"a1"), UNSENT + b'"b"': unsent_entry(b"85", None)})
    assert roll_back_unsent(db, offset_key) == 2
    assert db == {offset_key: b"70", b'"a"': b"a1"}
    assert roll_back_unsent(db, offset_key) == 0
    assert db == {offset_key: b"70", b'"a"': b"a1"}
    # an offset already lower (a roll back cut short) is never raised
    db.update({UNSENT + b'"a"': unsent_entry(b"80", b"a0")})
    roll_back_unsent(db, offset_key)
    assert db[offset_key] == b"70" and db[b'"a"'] == b"a0"
