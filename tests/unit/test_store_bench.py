"""hub/store_bench.py prints a figure per round and a summary (the figures themselves are not asserted)."""

from __future__ import annotations

import json

import pytest

from hub.store_bench import main

pytest.importorskip("rocksdict")


def test_prints_each_round_and_a_ratio_summary(capsys):
    assert main(["--writes", "200", "--rounds", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("round") for line in lines[:2]] == [0, 1]
    assert all(line["this_store_us_per_write"] > 0 and line["faust_store_us_per_write"] > 0 for line in lines[:2])
    assert lines[2]["ratio_min"] <= lines[2]["ratio_max"]
