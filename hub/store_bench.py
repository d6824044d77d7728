"""What the store's unsent-row entries (hub/store.py ``Store``) cost a table write, against faust's own
RocksDB store in the same run: ``python -m hub.store_bench [--writes N] [--rounds R]``.

Each round writes N ledger-sized rows over 500 keys to a fresh database of each store, one partition,
as an agent does (faust's current event set). For this store each write is acknowledged before the
next, so every write pays the entry and its deletion: the worst case (a row written again before its
acknowledgement pays nothing more). Prints one JSON line per round and a summary.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import types
import weakref
from typing import Any

ROW = {"version": 3, "links": {str(i): "0123456789abcdef" for i in range(3)}, "counts": [3, 2, ["Customer 1", "Customer 2"]]}


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = types.SimpleNamespace(partition=partition)


def _store(url: str, datadir: str) -> Any:
    import faust

    app = faust.App("store-bench", broker="kafka://127.0.0.1:1", store=url, datadir=datadir, autodiscover=False)
    table = app.Table("ledger", default=None, partitions=1,
                      schema=faust.Schema(key_type=str, value_type=None, key_serializer="json", value_serializer="json"))
    return table.data


def _writes(store: Any, n: int) -> float:
    """Microseconds per write."""
    from faust.streams import _current_event

    event = _Event(0)
    _current_event.set(weakref.ref(event))
    acknowledged = getattr(store, "changelog_acknowledged", None)
    began = time.perf_counter()
    for i in range(n):
        key = str(i % 500)
        store[key] = ROW
        if acknowledged is not None:
            acknowledged(store._encode_key(key), 0)
    return (time.perf_counter() - began) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    from hub.store import SCHEME, store_url

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=30_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    ours_url = store_url("rocksdb://")
    faust_url = ours_url.replace(SCHEME, "rocksdb", 1)
    ratios = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
            faust_us = _writes(_store(faust_url, f"{tmp}/faust"), args.writes)
            ours_us = _writes(_store(ours_url, f"{tmp}/ours"), args.writes)
        ratios.append(ours_us / faust_us)
        print(json.dumps({"round": r, "writes": args.writes, "faust_store_us_per_write": round(faust_us, 1),
                          "this_store_us_per_write": round(ours_us, 1), "ratio": round(ours_us / faust_us, 2)}), flush=True)
    print(json.dumps({"summary": "this store / faust's store, per write (worst case: every write acknowledged)",
                      "ratio_min": round(min(ratios), 2), "ratio_max": round(max(ratios), 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
