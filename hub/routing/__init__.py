"""Incident classification and routing as data, evaluated by pure functions.

Modelled on Prometheus Alertmanager's routing tree. Typical use by the incidents processor::

    cfg = load_routing(settings.routing_file)          # once, at start-up (check-config too)
    labels = event_labels(tracker_event)               # the issue's merged, known state
    if is_incident(cfg, labels):
        result = route(cfg, labels)                    # deliveries + dropped channel targets
        # log each of result.dropped under the key routing.restricted-dropped
        state = lifecycle_state(cfg, issue["status"], issue["status_category"])
        sev = severity(cfg, issue["priority"])
        # result.restricted: strip the summary before paging

The YAML format is described in :mod:`hub.routing.loader` and ``hub/config/routing.example.yaml``;
matcher syntax and semantics in :mod:`hub.routing.matchers`; routing semantics and the fail-closed
rule in :mod:`hub.routing.tree`.
"""

from hub.routing.labels import LABEL_NAMES, Labels, event_labels
from hub.routing.loader import RoutingConfigError, load_routing
from hub.routing.matchers import Matcher, MatcherError, parse_matcher
from hub.routing.tree import (
    REASON_MISSING_PROJECT,
    REASON_RESTRICTED_PROJECT,
    REASON_SECURITY_LEVEL,
    Delivery,
    Dropped,
    RouteResult,
    RoutingConfig,
    is_incident,
    is_restricted,
    lifecycle_state,
    restriction_reason,
    route,
    severity,
)

__all__ = [
    "LABEL_NAMES",
    "REASON_MISSING_PROJECT",
    "REASON_RESTRICTED_PROJECT",
    "REASON_SECURITY_LEVEL",
    "Delivery",
    "Dropped",
    "Labels",
    "Matcher",
    "MatcherError",
    "RouteResult",
    "RoutingConfig",
    "RoutingConfigError",
    "event_labels",
    "is_incident",
    "is_restricted",
    "lifecycle_state",
    "load_routing",
    "parse_matcher",
    "restriction_reason",
    "route",
    "severity",
]
