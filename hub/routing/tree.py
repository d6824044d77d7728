"""The routing model and the pure functions that evaluate it.

Nothing here does I/O, reads settings or keeps state: each function takes a loaded
:class:`RoutingConfig` (see :func:`hub.routing.loader.load_routing`) and the event's labels
(:func:`hub.routing.labels.event_labels`) and returns plain frozen data.

Routing semantics (Alertmanager's, adapted):

* The root route matches every event. A route matches when all its matchers match.
* A matching route hands the event to its children in order: the event descends into the FIRST
  matching child and stops there, unless that child has ``continue: true``, in which case the
  next siblings are tried as well.
* A matching route none of whose children matched delivers to its own receiver (so a route whose
  only matching child has ``continue: true`` does NOT also deliver itself).
* ``receiver`` and ``group_by`` are inherited from the parent when not set.
* Deliveries are de-duplicated per receiver; the first route (in tree order) that reaches a
  receiver gives the delivery its ``route_path`` and ``group_key``.

Fail closed: an event is *restricted* when its project is missing or listed under
``restricted_projects``, or when its ``security_level`` is set. A restricted event reaches a Slack
channel only if that channel lists its project under ``allow_restricted``; every other channel
target is removed from the delivery and reported in :attr:`RouteResult.dropped`. PagerDuty targets
are kept: the caller must check :attr:`RouteResult.restricted` (or :func:`is_restricted`) and
strip the summary before paging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from hub.routing.labels import Labels
from hub.routing.matchers import Matcher, matches_all

LifecycleState = Literal["triggered", "acknowledged", "resolved"]
Severity = Literal["critical", "error", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("critical", "error", "warning", "info")

#: Why a restricted event was kept out of a channel (the first that applies, in this order).
#: Stable values: the caller logs them under ``routing.restricted-dropped``.
REASON_MISSING_PROJECT = "missing-project"
REASON_RESTRICTED_PROJECT = "restricted-project"
REASON_SECURITY_LEVEL = "security-level"


# --- configuration (built and validated by the loader) -------------------------------------------


@dataclass(frozen=True)
class Channel:
    """A declared Slack channel; ``allow_restricted`` lists the projects whose restricted events it may show."""

    name: str
    allow_restricted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Receiver:
    """A named set of targets: Slack channels and PagerDuty service names (never routing keys)."""

    name: str
    slack_channels: tuple[str, ...] = ()
    pagerduty_services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """One node of the routing tree, with ``receiver`` and ``group_by`` already inherited.

    ``path`` is the node's position: ``root``, ``root/1``, ``root/1/0`` (child indexes).
    """

    path: str
    receiver: str
    group_by: tuple[str, ...] = ()
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class IncidentRule:
    """An event is an incident when all matchers of at least one rule match."""

    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Lifecycle:
    """How Jira statuses and priorities map to incident state and PagerDuty severity."""

    acknowledged_statuses: frozenset[str] = frozenset()
    resolved_statuses: frozenset[str] = frozenset()
    severity_by_priority: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    default_severity: str = "warning"


@dataclass(frozen=True)
class RoutingConfig:
    """A loaded, validated routing configuration. Every receiver and channel a route can reach exists."""

    restricted_projects: frozenset[str]
    incidents: tuple[IncidentRule, ...]
    lifecycle: Lifecycle
    channels: Mapping[str, Channel]
    receivers: Mapping[str, Receiver]
    route: Route

    @property
    def pagerduty_services(self) -> frozenset[str]:
        """Every PagerDuty service named by a receiver: ``check-config`` must find a routing key for each."""
        return frozenset(s for r in self.receivers.values() for s in r.pagerduty_services)

    def route_at(self, path: str) -> Route:
        """The route at ``path`` (as in :attr:`Delivery.route_path`); ``KeyError`` if there is none."""
        head, *indexes = path.split("/")
        node = self.route
        try:
            if head != "root":
                raise IndexError
            for index in indexes:
                node = node.routes[int(index)]
        except (IndexError, ValueError):
            raise KeyError(path) from None
        return node


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """Where one receiver should be notified.

    ``slack_channels`` are only the channels the event may reach (restricted ones removed).
    ``group_key`` is ``<route_path>:{<label>="<value>",...}`` over the route's ``group_by`` labels,
    sorted by name (a multi-valued label renders as its sorted values joined by ``,``), e.g.
    ``root/3:{project="OPS"}``; events with the same key belong to the same group.
    """

    receiver: str
    slack_channels: tuple[str, ...]
    pagerduty_services: tuple[str, ...]
    group_key: str
    route_path: str


@dataclass(frozen=True)
class Dropped:
    """A Slack channel target removed by the fail-closed filter; ``reason`` is a ``REASON_*`` value."""

    channel: str
    reason: str
    receiver: str


@dataclass(frozen=True)
class RouteResult:
    """Outcome of :func:`route`. ``restricted`` is :func:`is_restricted` for the same labels."""

    deliveries: tuple[Delivery, ...]
    dropped: tuple[Dropped, ...]
    restricted: bool


# --- evaluation -------------------------------------------------------------------------------


def is_incident(cfg: RoutingConfig, labels: Labels) -> bool:
    """Whether the event is an incident: some ``incidents`` rule has all its matchers matching."""
    return any(matches_all(rule.matchers, labels) for rule in cfg.incidents)


def restriction_reason(cfg: RoutingConfig, labels: Labels) -> str | None:
    """Why the event is restricted (a ``REASON_*`` value), or ``None`` if it is public."""
    project = _single(labels, "project")
    if not project:
        return REASON_MISSING_PROJECT
    if project in cfg.restricted_projects:
        return REASON_RESTRICTED_PROJECT
    if _single(labels, "security_level"):
        return REASON_SECURITY_LEVEL
    return None


def is_restricted(cfg: RoutingConfig, labels: Labels) -> bool:
    """Whether the event must be kept out of public places.

    True when the project is missing or restricted, or a security level is set. The caller must
    then strip the summary (and anything else taken from the issue) from PagerDuty alerts.
    """
    return restriction_reason(cfg, labels) is not None


def route(cfg: RoutingConfig, labels: Labels) -> RouteResult:
    """Walk the routing tree for ``labels`` and apply the fail-closed channel filter.

    Deliveries come in tree order, one per receiver. A receiver with no targets (or whose channels
    were all dropped) still yields a delivery, so the caller can report where the event went. The
    caller should log every :class:`Dropped` entry (``routing.restricted-dropped``).
    """
    reason = restriction_reason(cfg, labels)
    project = _single(labels, "project")
    deliveries: list[Delivery] = []
    dropped: list[Dropped] = []
    seen: set[str] = set()
    for node in _matching_leaves(cfg.route, labels):
        if node.receiver in seen:
            continue
        seen.add(node.receiver)
        receiver = cfg.receivers[node.receiver]
        channels = []
        for channel in receiver.slack_channels:
            if reason is not None and project not in cfg.channels[channel].allow_restricted:
                dropped.append(Dropped(channel, reason, receiver.name))
            else:
                channels.append(channel)
        deliveries.append(
            Delivery(
                receiver=receiver.name,
                slack_channels=tuple(channels),
                pagerduty_services=receiver.pagerduty_services,
                group_key=_group_key(node, labels),
                route_path=node.path,
            )
        )
    return RouteResult(tuple(deliveries), tuple(dropped), reason is not None)


def lifecycle_state(cfg: RoutingConfig, status: str | None, status_category: str | None) -> LifecycleState:
    """Incident state for a Jira status: resolved wins over acknowledged; anything else is triggered.

    Resolved: ``status`` is in ``resolved_statuses`` or ``status_category`` is ``"done"``.
    Acknowledged: ``status`` is in ``acknowledged_statuses``. Status names compare exactly.
    """
    lc = cfg.lifecycle
    if status_category == "done" or status in lc.resolved_statuses:
        return "resolved"
    if status in lc.acknowledged_statuses:
        return "acknowledged"
    return "triggered"


def severity(cfg: RoutingConfig, priority: str | None) -> str:
    """PagerDuty severity (critical, error, warning, info) for a Jira priority, else the default."""
    if priority is None:
        return cfg.lifecycle.default_severity
    return cfg.lifecycle.severity_by_priority.get(priority, cfg.lifecycle.default_severity)


def _matching_leaves(node: Route, labels: Labels) -> list[Route]:
    """Routes that deliver, in tree order ([] if ``node`` itself does not match)."""
    if not matches_all(node.matchers, labels):
        return []
    found: list[Route] = []
    for child in node.routes:
        hits = _matching_leaves(child, labels)
        found.extend(hits)
        if hits and not child.continue_:
            break
    return found or [node]


def _single(labels: Labels, name: str) -> str:
    value = labels.get(name)
    return value if isinstance(value, str) else ""  # anything else counts as missing: fail closed


def _group_key(node: Route, labels: Labels) -> str:
    parts = []
    for name in sorted(node.group_by):
        raw = labels.get(name) or ""
        value = ",".join(sorted(set(raw))) if isinstance(raw, (tuple, list)) else raw
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'{name}="{escaped}"')
    return f"{node.path}:{{{','.join(parts)}}}"
