import pytest

from connectors.pagerduty.actions import plan

NEW = {"lifecycle": 0, "state": None, "version": 0}


def a(lifecycle, state, version):
    return {"lifecycle": lifecycle, "state": state, "version": version}


@pytest.mark.parametrize(
    "row, action, steps",
    [
        (NEW, a(1, "triggered", 1), ["trigger"]),
        (NEW, a(1, "acknowledged", 2), ["trigger", "acknowledge"]),
        (NEW, a(1, "resolved", 3), ["trigger", "resolve"]),
        ({"lifecycle": 1, "state": "triggered", "version": 1}, a(1, "acknowledged", 2), ["acknowledge"]),
        ({"lifecycle": 1, "state": "acknowledged", "version": 2}, a(1, "resolved", 3), ["resolve"]),
        ({"lifecycle": 1, "state": "triggered", "version": 1}, a(1, "resolved", 2), ["resolve"]),
        # reopened: a new lifecycle pages again (PagerDuty opens a new incident after resolve)
        ({"lifecycle": 1, "state": "resolved", "version": 3}, a(2, "triggered", 4), ["trigger"]),
        # duplicates, stale snapshots and replays from offset 0 send nothing
        ({"lifecycle": 1, "state": "triggered", "version": 1}, a(1, "triggered", 1), []),
        ({"lifecycle": 1, "state": "resolved", "version": 3}, a(1, "triggered", 1), []),
        ({"lifecycle": 2, "state": "triggered", "version": 4}, a(1, "resolved", 3), []),
        # a newer snapshot that changes nothing PagerDuty knows about (summary edit): no call
        ({"lifecycle": 1, "state": "triggered", "version": 1}, a(1, "triggered", 2), []),
        ({"lifecycle": 1, "state": "acknowledged", "version": 2}, a(1, "triggered", 5), []),
    ],
)
def test_plan(row, action, steps):
    assert plan(row, action) == steps
