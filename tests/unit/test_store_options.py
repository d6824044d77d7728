"""hub/processors/common.py store_options: RocksDB memory bounds from the settings, none for memory://."""

import time

from hub.processors.common import store_options
from hub.settings import Settings

MB = 1024 * 1024


def test_rocksdb_partitions_get_bounded_memtables_and_cache():
    opts = store_options(Settings(store_write_buffer_mb=3, store_block_cache_mb=5, store_write_buffers_total_mb=6.5))
    assert opts == {"write_buffer_size": 3 * MB, "max_write_buffer_number": 2, "block_cache_size": 5 * MB,
                    "write_buffer_total_size": int(6.5 * MB)}
    assert store_options(Settings(store_write_buffer_mb=0.25))["write_buffer_size"] == MB // 4
    # a new dict each time: faust's store pops keys from the mapping it is given
    assert store_options(Settings()) is not store_options(Settings())


def test_memory_store_takes_no_rocksdb_options():
    assert store_options(Settings(store="memory://")) is None


def test_every_table_partition_shares_one_block_cache(tmp_path):
    """hub/store.py: the databases faust opens for the worker's table partitions draw on one cache."""
    import rocksdict

    from hub.store import SCHEME, SharedCacheOptions, shared_cache, store_url

    assert store_url("rocksdb://") == f"{SCHEME}://" and store_url("memory://") == "memory://"
    from faust.stores import by_url

    from hub.store import Store
    assert by_url(store_url("rocksdb://")) is Store
    a = SharedCacheOptions(write_buffer_size=MB // 4, max_write_buffer_number=2, block_cache_size=3 * MB, use_rocksdict=True)
    b = SharedCacheOptions(write_buffer_size=MB // 4, max_write_buffer_number=2, block_cache_size=3 * MB, use_rocksdict=True)
    assert shared_cache(3 * MB) is shared_cache(3 * MB)
    dbs = [rocksdict.Rdict(str(tmp_path / name), opts.as_options()) for name, opts in (("a", a), ("b", b))]
    for n, db in enumerate(dbs):
        db[b"k"] = b"v%d" % n
        db.flush()
        assert db[b"k"] == b"v%d" % n  # read through the shared cache
    cache = shared_cache(3 * MB)
    assert cache.get_usage() > 0  # the reads above filled the one cache
    for db in dbs:
        db.close()


def test_every_table_partition_shares_one_memtable_budget(tmp_path):
    """hub/store.py: one write buffer manager counts the memtables of every database opened with the
    same budget, and past it flushes them, although no database filled its own memtable."""
    import rocksdict

    from hub.store import SharedCacheOptions, shared_write_buffers

    def open_all(budget: int | None, where: str) -> list:
        return [rocksdict.Rdict(str(tmp_path / where / f"p{n}"), SharedCacheOptions(
            write_buffer_size=MB // 4, max_write_buffer_number=2, block_cache_size=MB,
            write_buffer_total_size=budget, use_rocksdict=True).as_options()) for n in range(16)]

    def sst_files(where: str, wait_s: float) -> int:
        """Files flushed by RocksDB's background threads, once there are some or after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while not (n := sum(1 for _ in (tmp_path / where).rglob("*.sst"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        return n

    budget = MB // 2
    manager = shared_write_buffers(budget)
    assert shared_write_buffers(budget) is manager and manager.get_buffer_size() == budget
    flushed: dict[str, int] = {}
    for where, limit in (("shared", budget), ("own", None)):
        dbs = open_all(limit, where)
        for i in range(1600):  # 100 KB into each database: under its own 256 KB memtable, 1.6 MB in all
            dbs[i % 16][b"k%d" % i] = b"x" * 1000
        flushed[where] = sst_files(where, wait_s=10 if limit else 1)
        assert all(db[b"k%d" % n] == b"x" * 1000 for n, db in enumerate(dbs))  # flushed, not lost
        for db in dbs:
            db.close()
    assert flushed["shared"] > 0 and flushed["own"] == 0
    assert manager.get_usage() == 0  # what it counted was the closed databases' memtables
