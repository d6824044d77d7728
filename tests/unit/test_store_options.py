"""hub/processors/common.py store_options: RocksDB memory bounds from the settings, none for memory://."""

from hub.processors.common import store_options
from hub.settings import Settings

MB = 1024 * 1024


def test_rocksdb_partitions_get_bounded_memtables_and_cache():
    opts = store_options(Settings(store_write_buffer_mb=3, store_block_cache_mb=5))
    assert opts == {"write_buffer_size": 3 * MB, "max_write_buffer_number": 2, "block_cache_size": 5 * MB}
    # a new dict each time: faust's store pops keys from the mapping it is given
    assert store_options(Settings()) is not store_options(Settings())


def test_memory_store_takes_no_rocksdb_options():
    assert store_options(Settings(store="memory://")) is None
