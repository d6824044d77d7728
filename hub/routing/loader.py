"""Load and validate the routing configuration (YAML); the only I/O in ``hub.routing``.

Format (``hub/config/routing.example.yaml`` is the commented reference)::

    restricted_projects: [LEGAL, HR]      # optional; Jira project keys
    incidents:                            # required; any rule whose matchers all match
      - matchers: ['issue_type="Incident"']
    lifecycle:                            # optional; every key optional
      acknowledged_statuses: ["In Progress"]
      resolved_statuses: ["Done"]         # status_category "done" also counts as resolved
      severity_by_priority: {Highest: critical}
      default_severity: warning           # critical | error | warning | info
    channels:                             # every Slack channel a receiver uses
      "#incidents": {}                    # or an empty value
      "#legal-incidents": {allow_restricted: [LEGAL]}
    receivers:                            # required; unique names
      - name: ops
        slack: [{channel: "#incidents"}]
        pagerduty: [{service: ops}]       # a service name; the routing key lives in settings
    route:                                # required; the root matches everything
      receiver: ops                       # required on the root
      group_by: [project]
      routes:
        - matchers: ['project="LEGAL"']
          receiver: legal                 # optional: inherited
          group_by: [project, priority]   # optional: inherited ([] sets "no grouping")
          continue: false
          routes: []

Validation is strict, because a silent mistake here sends an incident to the wrong place:
unknown keys, duplicate YAML keys, wrong types (including YAML's ``yes``/``no`` booleans where a
string is expected), unknown label names, bad matchers and regexes, undeclared channels, unknown
or duplicate receivers, statuses listed as both acknowledged and resolved, lower-case project keys
and routes made unreachable by an earlier catch-all sibling are all errors. Each error is a
:class:`RoutingConfigError` whose message starts with the key path that broke, e.g.
``route.routes[1].matchers[0]: bad matcher 'project=="X"': ...``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from hub.routing.labels import LABEL_NAMES
from hub.routing.matchers import Matcher, MatcherError, parse_matcher
from hub.routing.tree import (
    SEVERITIES,
    Channel,
    IncidentRule,
    Lifecycle,
    Receiver,
    Route,
    RoutingConfig,
)

_TOP_KEYS = ("restricted_projects", "incidents", "lifecycle", "channels", "receivers", "route")
_LIFECYCLE_KEYS = ("acknowledged_statuses", "resolved_statuses", "severity_by_priority", "default_severity")
_ROUTE_KEYS = ("receiver", "group_by", "matchers", "continue", "routes")
_RECEIVER_KEYS = ("name", "slack", "pagerduty")
# Jira project keys: an upper-case letter, then upper-case letters, digits or underscores.
# Enforced because a lower-case key in restricted_projects would never match and so fail open.
_PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
# A PagerDuty Events v2 routing key: 32 hex characters. It is a secret and belongs in settings.
_ROUTING_KEY_LIKE = re.compile(r"[0-9a-fA-F]{32}")


class RoutingConfigError(ValueError):
    """The routing configuration is invalid. ``key_path`` names the offending key ("" for the file).

    Messages never echo values that look like secrets.
    """

    def __init__(self, key_path: str, problem: str) -> None:
        super().__init__(f"{key_path}: {problem}" if key_path else problem)
        self.key_path = key_path
        self.problem = problem


def load_routing(source: str | Path | Mapping[str, Any]) -> RoutingConfig:
    """Load, validate and freeze a routing configuration.

    ``source`` is the path of a YAML file (``str`` or ``Path``) or an already-parsed mapping.
    Returns an immutable :class:`RoutingConfig` whose regexes are compiled and whose routes have
    ``receiver``/``group_by`` inheritance resolved. Raises :class:`RoutingConfigError` on any
    problem, including an unreadable file or invalid YAML; nothing is logged.
    """
    data = source if isinstance(source, Mapping) else _read_yaml(Path(source))
    top = _mapping(data, "", _TOP_KEYS, required=("incidents", "receivers", "route"))
    channels = _channels(top.get("channels", {}), "channels")
    receivers = _receivers(top["receivers"], "receivers", channels)
    return RoutingConfig(
        restricted_projects=frozenset(_project_keys(top.get("restricted_projects", []), "restricted_projects")),
        incidents=tuple(
            _incident_rule(raw, f"incidents[{i}]") for i, raw in enumerate(_list(top["incidents"], "incidents"))
        ),
        lifecycle=_lifecycle(top.get("lifecycle", {}), "lifecycle"),
        channels=MappingProxyType(channels),
        receivers=MappingProxyType(receivers),
        route=_route(top["route"], "route", "root", receivers, inherited=None),
    )


# --- sections -----------------------------------------------------------------------------------


def _channels(raw: Any, path: str) -> dict[str, Channel]:
    channels = {}
    for name, options in _mapping(raw, path).items():
        key = f'{path}["{name}"]'
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise RoutingConfigError(key, "a channel name must be a non-empty string without spaces")
        opts = _mapping({} if options is None else options, key, ("allow_restricted",))
        allowed = _project_keys(opts.get("allow_restricted", []), f"{key}.allow_restricted")
        channels[name] = Channel(name, frozenset(allowed))
    return channels


def _receivers(raw: Any, path: str, channels: Mapping[str, Channel]) -> dict[str, Receiver]:
    receivers: dict[str, Receiver] = {}
    for i, item in enumerate(_list(raw, path)):
        at = f"{path}[{i}]"
        rec = _mapping(item, at, _RECEIVER_KEYS, required=("name",))
        name = _str(rec["name"], f"{at}.name")
        if name in receivers:
            raise RoutingConfigError(f"{at}.name", f"duplicate receiver name {name!r}")
        slack = []
        for j, target in enumerate(_list(rec.get("slack", []), f"{at}.slack")):
            tpath = f"{at}.slack[{j}]"
            channel = _str(_mapping(target, tpath, ("channel",), required=("channel",))["channel"], f"{tpath}.channel")
            if channel not in channels:
                raise RoutingConfigError(f"{tpath}.channel", f"{channel!r} is not declared under channels")
            if channel in slack:
                raise RoutingConfigError(f"{tpath}.channel", f"{channel!r} is listed twice")
            slack.append(channel)
        services = []
        for j, target in enumerate(_list(rec.get("pagerduty", []), f"{at}.pagerduty")):
            tpath = f"{at}.pagerduty[{j}]"
            service = _str(_mapping(target, tpath, ("service",), required=("service",))["service"], f"{tpath}.service")
            if _ROUTING_KEY_LIKE.fullmatch(service):
                raise RoutingConfigError(
                    f"{tpath}.service",
                    "looks like a PagerDuty routing key; name the service here and put its key in the settings",
                )
            if service in services:
                raise RoutingConfigError(f"{tpath}.service", f"{service!r} is listed twice")
            services.append(service)
        receivers[name] = Receiver(name, tuple(slack), tuple(services))
    if not receivers:
        raise RoutingConfigError(path, "at least one receiver is required")
    return receivers


def _route(raw: Any, path: str, route_path: str, receivers: Mapping[str, Receiver], inherited: Route | None) -> Route:
    spec = _mapping(raw, path, _ROUTE_KEYS)
    if inherited is None:
        for key in ("matchers", "continue"):
            if key in spec:
                raise RoutingConfigError(f"{path}.{key}", "not allowed on the root route (it matches every event)")
        if "receiver" not in spec:
            raise RoutingConfigError(f"{path}.receiver", "required on the root route")
    if "receiver" in spec:
        receiver = _str(spec["receiver"], f"{path}.receiver")
        if receiver not in receivers:
            raise RoutingConfigError(
                f"{path}.receiver", f"unknown receiver {receiver!r}{_did_you_mean(receiver, receivers)}"
            )
    else:
        assert inherited is not None
        receiver = inherited.receiver
    if "group_by" in spec:
        group_by = tuple(_label_names(spec["group_by"], f"{path}.group_by"))
    else:
        group_by = inherited.group_by if inherited else ()
    node = Route(
        path=route_path,
        receiver=receiver,
        group_by=group_by,
        matchers=_matchers(spec.get("matchers", []), f"{path}.matchers"),
        continue_=_bool(spec.get("continue", False), f"{path}.continue"),
    )
    children = []
    for i, child_raw in enumerate(_list(spec.get("routes", []), f"{path}.routes")):
        child_path = f"{path}.routes[{i}]"
        if children and not children[-1].matchers and not children[-1].continue_:
            raise RoutingConfigError(
                child_path,
                f"unreachable: {path}.routes[{i - 1}] has no matchers and no continue, so it takes every event",
            )
        children.append(_route(child_raw, child_path, f"{route_path}/{i}", receivers, inherited=node))
    return replace(node, routes=tuple(children))


def _incident_rule(raw: Any, path: str) -> IncidentRule:
    rule = _mapping(raw, path, ("matchers",), required=("matchers",))
    matchers = _matchers(rule["matchers"], f"{path}.matchers")
    if not matchers:
        raise RoutingConfigError(
            f"{path}.matchers", "needs at least one matcher (an empty rule would match every event)"
        )
    return IncidentRule(matchers)


def _lifecycle(raw: Any, path: str) -> Lifecycle:
    spec = _mapping(raw, path, _LIFECYCLE_KEYS)
    acked = _str_list(spec.get("acknowledged_statuses", []), f"{path}.acknowledged_statuses")
    resolved = _str_list(spec.get("resolved_statuses", []), f"{path}.resolved_statuses")
    for i, status in enumerate(acked):
        if status in resolved:
            raise RoutingConfigError(
                f"{path}.acknowledged_statuses[{i}]", f"{status!r} is also listed in resolved_statuses"
            )
    by_priority = {}
    for priority, sev in _mapping(spec.get("severity_by_priority", {}), f"{path}.severity_by_priority").items():
        key = f'{path}.severity_by_priority["{priority}"]'
        if not isinstance(priority, str):
            raise RoutingConfigError(key, f"priority names must be strings, got {_type_name(priority)} (quote it)")
        by_priority[priority] = _severity(sev, key)
    return Lifecycle(
        acknowledged_statuses=frozenset(acked),
        resolved_statuses=frozenset(resolved),
        severity_by_priority=MappingProxyType(by_priority),
        default_severity=_severity(spec.get("default_severity", "warning"), f"{path}.default_severity"),
    )


# --- typed readers: each raises RoutingConfigError naming the path --------------------------------


def _matchers(raw: Any, path: str) -> tuple[Matcher, ...]:
    parsed = []
    for i, item in enumerate(_list(raw, path)):
        text = _str(item, f"{path}[{i}]")
        try:
            parsed.append(parse_matcher(text))
        except MatcherError as exc:
            raise RoutingConfigError(f"{path}[{i}]", f"bad matcher {text!r}: {exc}") from None
    return tuple(parsed)


def _label_names(raw: Any, path: str) -> list[str]:
    names = _str_list(raw, path)
    for i, name in enumerate(names):
        if name not in LABEL_NAMES:
            raise RoutingConfigError(f"{path}[{i}]", f"unknown label {name!r}{_did_you_mean(name, LABEL_NAMES)}")
        if name in names[:i]:
            raise RoutingConfigError(f"{path}[{i}]", f"{name!r} is listed twice")
    return names


def _project_keys(raw: Any, path: str) -> list[str]:
    keys = _str_list(raw, path)
    for i, key in enumerate(keys):
        if not _PROJECT_KEY.fullmatch(key):
            raise RoutingConfigError(f"{path}[{i}]", f"{key!r} is not a Jira project key (upper case, e.g. 'LEGAL')")
    return keys


def _severity(raw: Any, path: str) -> str:
    value = _str(raw, path)
    if value not in SEVERITIES:
        raise RoutingConfigError(path, f"{value!r} is not a severity (expected one of: {', '.join(SEVERITIES)})")
    return value


def _mapping(raw: Any, path: str, allowed: Iterable[str] | None = None, required: Iterable[str] = ()) -> dict:
    if not isinstance(raw, Mapping):
        raise RoutingConfigError(path, f"expected a mapping, got {_type_name(raw)}")
    if allowed is not None:
        allowed = tuple(allowed)
        for key in raw:
            if key not in allowed:
                raise RoutingConfigError(
                    _join(path, str(key)),
                    f"unknown key{_did_you_mean(str(key), allowed)} (allowed: {', '.join(allowed)})",
                )
    for key in required:
        if key not in raw:
            raise RoutingConfigError(_join(path, key), "required")
    return dict(raw)


def _list(raw: Any, path: str) -> list:
    if not isinstance(raw, list):
        raise RoutingConfigError(path, f"expected a list, got {_type_name(raw)}")
    return raw


def _str(raw: Any, path: str) -> str:
    if not isinstance(raw, str):
        hint = " (YAML reads yes/no/on/off/true/false as booleans: quote the value)" if isinstance(raw, bool) else ""
        raise RoutingConfigError(path, f"expected a string, got {_type_name(raw)}{hint}")
    if not raw:
        raise RoutingConfigError(path, "must not be empty")
    return raw


def _str_list(raw: Any, path: str) -> list[str]:
    return [_str(item, f"{path}[{i}]") for i, item in enumerate(_list(raw, path))]


def _bool(raw: Any, path: str) -> bool:
    if not isinstance(raw, bool):
        raise RoutingConfigError(path, f"expected true or false, got {_type_name(raw)}")
    return raw


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- YAML -------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: let construct_mapping report it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutingConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RoutingConfigError("", f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise RoutingConfigError("", f"{path}: invalid YAML: {exc}") from None
