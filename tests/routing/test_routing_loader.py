"""Loader validation: every error names the exact key path that broke."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub.routing import RoutingConfigError, load_routing
from hub.routing.tree import Lifecycle, Route

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "hub" / "config" / "routing.example.yaml"


def _base() -> dict[str, Any]:
    return {
        "restricted_projects": ["LEGAL"],
        "incidents": [{"matchers": ['issue_type="Incident"']}],
        "lifecycle": {
            "acknowledged_statuses": ["In Progress"],
            "resolved_statuses": ["Done"],
            "severity_by_priority": {"Highest": "critical"},
            "default_severity": "warning",
        },
        "channels": {"#incidents": {}, "#legal": {"allow_restricted": ["LEGAL"]}},
        "receivers": [
            {"name": "ops", "slack": [{"channel": "#incidents"}], "pagerduty": [{"service": "ops"}]},
            {"name": "legal", "slack": [{"channel": "#legal"}]},
            {"name": "blackhole"},
        ],
        "route": {
            "receiver": "ops",
            "group_by": ["project"],
            "routes": [
                {"matchers": ['project="LEGAL"'], "receiver": "legal"},
                {"matchers": ['priority="Highest"'], "continue": True, "routes": [{"matchers": ['labels="x"']}]},
            ],
        },
    }


def test_base_config_is_valid() -> None:
    load_routing(_base())


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Mutation that sets ``value`` at a dotted path with [i] indexes (the last part may be new)."""

    def apply(cfg: dict[str, Any]) -> None:
        parts = path.replace("[", ".").replace("]", "").split(".")
        node: Any = cfg
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _delete(path: str, key: str) -> Callable[[dict[str, Any]], None]:
    def apply(cfg: dict[str, Any]) -> None:
        node: Any = cfg
        for part in filter(None, path.replace("[", ".").replace("]", "").split(".")):
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[key]

    return apply


# (mutation, exact key path, text the message must also contain)
ERRORS = {
    "bad matcher syntax": (
        _set("route.routes[1].matchers[0]", 'project=="X"'),
        "route.routes[1].matchers[0]",
        "bad matcher 'project==\"X\"'",
    ),
    "unquoted matcher value": (
        _set("incidents[0].matchers[0]", "issue_type=Incident"),
        "incidents[0].matchers[0]",
        "bad matcher",
    ),
    "bad regex": (_set("route.routes[0].matchers[0]", 'project=~"("'), "route.routes[0].matchers[0]", "invalid regex"),
    "unknown label in matcher": (
        _set("route.routes[0].matchers[0]", 'projet="LEGAL"'),
        "route.routes[0].matchers[0]",
        "unknown label 'projet'",
    ),
    "matcher not a string": (
        _set("route.routes[0].matchers", [{"project": "LEGAL"}]),
        "route.routes[0].matchers[0]",
        "expected a string",
    ),
    "matchers not a list": (
        _set("route.routes[0].matchers", 'project="LEGAL"'),
        "route.routes[0].matchers",
        "expected a list",
    ),
    "nested route error": (
        _set("route.routes[1].routes[0].matchers[0]", 'labels~"x"'),
        "route.routes[1].routes[0].matchers[0]",
        "bad matcher",
    ),
    "undeclared channel": (
        _set("receivers[0].slack[0].channel", "#ops"),
        "receivers[0].slack[0].channel",
        "'#ops' is not declared under channels",
    ),
    "channel listed twice": (
        _set("receivers[0].slack", [{"channel": "#incidents"}, {"channel": "#incidents"}]),
        "receivers[0].slack[1].channel",
        "listed twice",
    ),
    "slack target typo": (
        _set("receivers[0].slack[0]", {"chanel": "#incidents"}),
        "receivers[0].slack[0].chanel",
        "did you mean 'channel'",
    ),
    "slack target as plain string": (
        _set("receivers[0].slack[0]", "#incidents"),
        "receivers[0].slack[0]",
        "expected a mapping",
    ),
    "pagerduty target missing service": (
        _set("receivers[0].pagerduty[0]", {}),
        "receivers[0].pagerduty[0].service",
        "required",
    ),
    "pagerduty routing key in the file": (
        _set("receivers[0].pagerduty[0]", {"service": "0123456789abcdef0123456789abcdef"}),
        "receivers[0].pagerduty[0].service",
        "looks like a PagerDuty routing key",
    ),
    "routing_key key in the file": (
        _set("receivers[0].pagerduty[0].routing_key", "0123456789abcdef0123456789abcdef"),
        "receivers[0].pagerduty[0].routing_key",
        "unknown key",
    ),
    "duplicate receiver": (_set("receivers[2].name", "ops"), "receivers[2].name", "duplicate receiver name 'ops'"),
    "receiver without name": (_set("receivers[2]", {"slack": []}), "receivers[2].name", "required"),
    "receiver typo key": (_set("receivers[1].slak", []), "receivers[1].slak", "did you mean 'slack'"),
    "no receivers": (_set("receivers", []), "receivers", "at least one receiver"),
    "receivers not a list": (_set("receivers", {"ops": {}}), "receivers", "expected a list"),
    "unknown receiver in route": (
        _set("route.routes[0].receiver", "legl"),
        "route.routes[0].receiver",
        "unknown receiver 'legl' (did you mean 'legal'?)",
    ),
    "unknown receiver on root": (_set("route.receiver", "nobody"), "route.receiver", "unknown receiver 'nobody'"),
    "route key typo": (_set("route.routes[0].recevier", "ops"), "route.routes[0].recevier", "did you mean 'receiver'"),
    "top-level key typo": (
        _set("restricted_project", ["HR"]),
        "restricted_project",
        "did you mean 'restricted_projects'",
    ),
    "root with matchers": (
        _set("route.matchers", ['project="OPS"']),
        "route.matchers",
        "not allowed on the root route",
    ),
    "root with continue": (_set("route.continue", True), "route.continue", "not allowed on the root route"),
    "root without receiver": (_delete("route", "receiver"), "route.receiver", "required on the root route"),
    "continue not a boolean": (
        _set("route.routes[1].continue", "yes"),
        "route.routes[1].continue",
        "expected true or false",
    ),
    "unreachable sibling": (
        _set("route.routes", [{"receiver": "legal"}, {"matchers": ['project="OPS"']}]),
        "route.routes[1]",
        "unreachable",
    ),
    "unknown label in group_by": (
        _set("route.group_by", ["projects"]),
        "route.group_by[0]",
        "unknown label 'projects' (did you mean 'project'?)",
    ),
    "duplicate label in group_by": (
        _set("route.routes[0].group_by", ["project", "project"]),
        "route.routes[0].group_by[1]",
        "listed twice",
    ),
    "project key read as a boolean": (
        _set("restricted_projects", [False]),
        "restricted_projects[0]",
        "quote the value",
    ),
    "lower-case restricted project": (
        _set("restricted_projects", ["LEGAL", "hr"]),
        "restricted_projects[1]",
        "not a Jira project key",
    ),
    "lower-case allow_restricted": (
        _set("channels.#legal.allow_restricted", ["legal"]),
        'channels["#legal"].allow_restricted[0]',
        "not a Jira project key",
    ),
    "channel option typo": (_set("channels.#legal", {"allow": ["LEGAL"]}), 'channels["#legal"].allow', "unknown key"),
    "channel name with a space": (_set("channels.#in cidents", {}), 'channels["#in cidents"]', "without spaces"),
    "missing incidents": (_delete("", "incidents"), "incidents", "required"),
    "incident rule without matchers": (
        _set("incidents[0]", {"matchers": []}),
        "incidents[0].matchers",
        "at least one matcher",
    ),
    "incident rule typo": (
        _set("incidents[0]", {"matcher": ['issue_type="Incident"']}),
        "incidents[0].matcher",
        "unknown key",
    ),
    "bad severity": (
        _set("lifecycle.severity_by_priority.Highest", "page"),
        'lifecycle.severity_by_priority["Highest"]',
        "not a severity",
    ),
    "priority not a string": (
        _set("lifecycle.severity_by_priority", {1: "info"}),
        'lifecycle.severity_by_priority["1"]',
        "must be strings",
    ),
    "bad default severity": (
        _set("lifecycle.default_severity", "CRITICAL"),
        "lifecycle.default_severity",
        "not a severity",
    ),
    "status both acknowledged and resolved": (
        _set("lifecycle.acknowledged_statuses", ["In Progress", "Done"]),
        "lifecycle.acknowledged_statuses[1]",
        "also listed in resolved_statuses",
    ),
    "lifecycle typo": (
        _set("lifecycle.resolved_status", ["Done"]),
        "lifecycle.resolved_status",
        "did you mean 'resolved_statuses'",
    ),
    "empty status": (_set("lifecycle.resolved_statuses", [""]), "lifecycle.resolved_statuses[0]", "must not be empty"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_error_names_the_key_path(name: str) -> None:
    mutate, key_path, text = ERRORS[name]
    cfg = copy.deepcopy(_base())
    mutate(cfg)
    with pytest.raises(RoutingConfigError) as info:
        load_routing(cfg)
    assert info.value.key_path == key_path
    assert str(info.value).startswith(f"{key_path}: ")
    assert text in str(info.value)


def test_routing_key_is_not_echoed() -> None:
    cfg = _base()
    cfg["receivers"][0]["pagerduty"][0]["service"] = "0123456789abcdef0123456789abcdef"
    with pytest.raises(RoutingConfigError) as info:
        load_routing(cfg)
    assert "0123456789abcdef" not in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(RoutingConfigError, match="expected a mapping, got null"):
        load_routing(path)


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text().replace(
        '  "#incidents": {}', '  "#incidents": {}\n  "#incidents": {allow_restricted: [LEGAL]}'
    )
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    with pytest.raises(RoutingConfigError, match=rf"^{path}:\d+:3: invalid YAML: duplicate key '#incidents'$"):
        load_routing(path)


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "incidents: [{matchers: ['issue_type=\"Incident\"']}]\n"
        "receivers: [{name: ops}]\n"
        "x-route: &base {receiver: ops}\n"
    )
    with pytest.raises(RoutingConfigError, match="^x-route: unknown key"):
        load_routing(path)
    path.write_text(
        "incidents: [{matchers: ['issue_type=\"Incident\"']}]\n"
        "receivers: [{name: ops}]\n"
        "route: {<<: {receiver: ops}, group_by: [project]}\n"
    )
    assert load_routing(path).route.receiver == "ops"


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("route: [unclosed\n")
    with pytest.raises(RoutingConfigError, match=rf"^{path}:2:1: invalid YAML: "):
        load_routing(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(RoutingConfigError, match=f"{path}: cannot read"):
        load_routing(str(path))


def test_unquoted_channel_name_fails_instead_of_vanishing(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "incidents: [{matchers: ['issue_type=\"Incident\"']}]\n"
        "receivers:\n"
        "  - name: ops\n"
        "    slack:\n"
        "      - channel: #incidents\n"
        "route: {receiver: ops}\n"
    )
    with pytest.raises(RoutingConfigError) as info:
        load_routing(path)
    assert str(info.value) == "receivers[0].slack[0].channel: expected a string, got null"


# --- what a valid config turns into ---------------------------------------------------------------


def test_example_loads_from_str_and_path() -> None:
    assert load_routing(str(EXAMPLE_CONFIG)) == load_routing(EXAMPLE_CONFIG)


def test_example_contents() -> None:
    cfg = load_routing(EXAMPLE_CONFIG)
    assert cfg.restricted_projects == {"LEGAL", "HR"}
    assert set(cfg.channels) == {"#incidents", "#legal-incidents"}
    assert cfg.channels["#legal-incidents"].allow_restricted == {"LEGAL"}
    assert cfg.channels["#incidents"].allow_restricted == frozenset()
    assert cfg.pagerduty_services == {"ops"}
    assert cfg.receivers["blackhole"].slack_channels == () and cfg.receivers["blackhole"].pagerduty_services == ()


def test_inheritance_is_resolved_at_load() -> None:
    cfg = load_routing(_base())
    nested = cfg.route_at("root/1/0")
    assert (nested.receiver, nested.group_by, nested.path) == ("ops", ("project",), "root/1/0")
    assert cfg.route_at("root/1").continue_ is True
    assert cfg.route_at("root/0").receiver == "legal"
    assert str(cfg.route_at("root/0").matchers[0]) == 'project="LEGAL"'


@pytest.mark.parametrize("path", ["", "root/9", "root/x", "top/0", "root/0/0"])
def test_route_at_rejects_unknown_paths(path: str) -> None:
    with pytest.raises(KeyError):
        load_routing(_base()).route_at(path)


def test_optional_sections_default() -> None:
    cfg = load_routing(
        {"incidents": [{"matchers": ['labels="incident"']}], "receivers": [{"name": "r"}], "route": {"receiver": "r"}}
    )
    assert cfg.restricted_projects == frozenset()
    assert dict(cfg.channels) == {}
    assert cfg.lifecycle == Lifecycle()
    assert cfg.route == Route(path="root", receiver="r")


def test_null_channel_options_mean_none() -> None:
    cfg = _base()
    cfg["channels"]["#incidents"] = None
    assert load_routing(cfg).channels["#incidents"].allow_restricted == frozenset()


def test_config_is_immutable() -> None:
    cfg = load_routing(_base())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.route = cfg.route  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.receivers["new"] = cfg.receivers["ops"]  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.lifecycle.severity_by_priority["Low"] = "info"  # type: ignore[index]


def test_loading_does_not_mutate_the_source() -> None:
    source = _base()
    before = copy.deepcopy(source)
    load_routing(source)
    assert source == before
