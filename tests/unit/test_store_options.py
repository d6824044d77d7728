"""hub/processors/common.py store_options: RocksDB memory bounds from the settings, none for memory://."""

from hub.processors.common import store_options
from hub.settings import Settings

MB = 1024 * 1024


def test_rocksdb_partitions_get_bounded_memtables_and_cache():
    opts = store_options(Settings(store_write_buffer_mb=3, store_block_cache_mb=5))
    assert opts == {"write_buffer_size": 3 * MB, "max_write_buffer_number": 2, "block_cache_size": 5 * MB}
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
