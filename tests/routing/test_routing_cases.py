"""Runs every routing case in tests/routing/cases/*.yaml (one test per case).

A case file names a config (``config: example`` for hub/config/routing.example.yaml, or an inline
mapping) and a list of cases. Each case gives the event as ``labels`` (missing labels are "") or
as a canonical tracker ``event``, and at least one expectation:

* ``incident: true|false``    - is_incident
* ``restricted: true|false``  - is_restricted (and RouteResult.restricted when routing is checked)
* ``receivers: [a, b]``       - the receivers of route(), in order
* ``deliveries: [...]``       - route() deliveries, exactly: receiver, slack (default []),
  pagerduty (default []), and optionally route_path and group_key; with ``deliveries`` the
  ``dropped`` list (channel, reason, receiver) is compared too, and defaults to [].
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.routing import event_labels, is_incident, is_restricted, load_routing, route
from hub.routing.tree import Delivery, RoutingConfig

CASES_DIR = Path(__file__).parent / "cases"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "hub" / "config" / "routing.example.yaml"

_CASE_KEYS = {"name", "labels", "event", "incident", "restricted", "receivers", "deliveries", "dropped"}
_DELIVERY_KEYS = {"receiver", "slack", "pagerduty", "route_path", "group_key"}
_DROPPED_KEYS = {"channel", "reason", "receiver"}


@cache
def _case_file(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def _config(path: Path) -> RoutingConfig:
    spec = _case_file(path)["config"]
    return load_routing(EXAMPLE_CONFIG if spec == "example" else spec)


def _params() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for index, case in enumerate(_case_file(path)["cases"]):
            params.append(pytest.param(path, index, id=f"{path.stem}:{case.get('name', index)}"))
    return params


def _labels(case: dict[str, Any]) -> dict[str, Any]:
    if ("labels" in case) == ("event" in case):
        raise AssertionError("a case needs exactly one of 'labels' and 'event'")
    if "event" in case:
        return event_labels(case["event"])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in case["labels"].items()}


def _check_keys(what: str, item: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(item) - allowed
    if unknown:
        raise AssertionError(f"{what}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")


def check_case(cfg: RoutingConfig, case: dict[str, Any]) -> None:
    """Assert one case against ``cfg``; raises AssertionError on any mismatch or malformed case."""
    _check_keys("case", case, _CASE_KEYS)
    if not {"incident", "restricted", "receivers", "deliveries"} & set(case):
        raise AssertionError("a case must expect at least one of incident, restricted, receivers, deliveries")
    if "dropped" in case and "deliveries" not in case:
        raise AssertionError("'dropped' is only checked together with 'deliveries'")
    labels = _labels(case)

    if "incident" in case:
        assert is_incident(cfg, labels) is case["incident"], "is_incident"
    if "restricted" in case:
        assert is_restricted(cfg, labels) is case["restricted"], "is_restricted"

    result = route(cfg, labels)
    if "restricted" in case:
        assert result.restricted is case["restricted"], "RouteResult.restricted"
    if "receivers" in case:
        assert [d.receiver for d in result.deliveries] == case["receivers"], "receivers"
    if "deliveries" in case:
        for want in case["deliveries"]:
            _check_keys("delivery", want, _DELIVERY_KEYS)
        assert len(result.deliveries) == len(case["deliveries"]), f"deliveries: got {result.deliveries}"
        expected = [{"slack": [], "pagerduty": [], **want} for want in case["deliveries"]]
        actual = [_delivery(got, want) for got, want in zip(result.deliveries, case["deliveries"])]
        assert actual == expected, "deliveries"
        for want in case.get("dropped", []):
            _check_keys("dropped", want, _DROPPED_KEYS)
        got_dropped = [{"channel": d.channel, "reason": d.reason, "receiver": d.receiver} for d in result.dropped]
        assert got_dropped == case.get("dropped", []), "dropped"


def _delivery(got: Delivery, want: dict[str, Any]) -> dict[str, Any]:
    """``got`` as a case dict; route_path and group_key only when the case names them."""
    as_dict = {"receiver": got.receiver, "slack": list(got.slack_channels), "pagerduty": list(got.pagerduty_services)}
    for key in ("route_path", "group_key"):
        if key in want:
            as_dict[key] = getattr(got, key)
    return as_dict


@pytest.mark.parametrize(("path", "index"), _params())
def test_case(path: Path, index: int) -> None:
    check_case(_config(path), _case_file(path)["cases"][index])


def test_every_case_file_has_cases() -> None:
    files = sorted(CASES_DIR.glob("*.yaml"))
    assert files, "no case files found"
    for path in files:
        assert _case_file(path)["cases"], f"{path.name} has no cases"


# The runner itself must be able to fail: wrong expectations and malformed cases are caught.
_OPS = {"labels": {"project": "OPS", "priority": "Highest", "issue_type": "Incident"}}
_OPS_PAGE = {"receiver": "ops-page", "slack": ["#incidents"], "pagerduty": ["ops"]}


@pytest.mark.parametrize(
    "case",
    [
        {**_OPS, "incident": False},
        {**_OPS, "restricted": True},
        {**_OPS, "receivers": ["ops-chat"]},
        {**_OPS, "deliveries": [{"receiver": "ops-page", "slack": ["#incidents"]}]},  # pagerduty missing
        {**_OPS, "deliveries": [{**_OPS_PAGE, "route_path": "root/3"}]},
        {**_OPS, "deliveries": [{**_OPS_PAGE, "group_key": "x"}]},
        {**_OPS, "deliveries": []},
        {
            **_OPS,
            "deliveries": [_OPS_PAGE],
            "dropped": [{"channel": "#incidents", "reason": "restricted-project", "receiver": "ops-page"}],
        },
        {**_OPS, "incidnet": True},  # typo in a case key
        {**_OPS},  # no expectation
        {"incident": True},  # no event
    ],
)
def test_runner_rejects_wrong_or_malformed_cases(case: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        check_case(load_routing(EXAMPLE_CONFIG), case)


def test_runner_accepts_the_right_expectation() -> None:
    check_case(
        load_routing(EXAMPLE_CONFIG),
        {
            **_OPS,
            "incident": True,
            "restricted": False,
            "receivers": ["ops-page"],
            "deliveries": [
                {
                    "receiver": "ops-page",
                    "slack": ["#incidents"],
                    "pagerduty": ["ops"],
                    "route_path": "root/3/0",
                    "group_key": 'root/3/0:{priority="Highest",project="OPS"}',
                }
            ],
        },
    )
