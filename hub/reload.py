"""Routing reload without a restart: the worker re-reads the routing file when it changes.

The file is checked every ``routing_reload_s`` seconds (its modification time and content). A new
version is applied only when it loads and every PagerDuty service it names has a routing key (or
PagerDuty is in dry run); otherwise the running routing stays and the reason is logged
(``routing.reload-refused``). What reloads: incident rules, lifecycle, channels, receivers, the
tree and the restricted projects *for incidents*. The support path's restricted-project list (what
a ticket may learn of an issue) and every other setting are read at start: restart for those.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("switchboard.routing")


class RoutingWatcher:
    def __init__(self, path: Path, apply: Callable[[Any], None], *, settings: Any | None = None) -> None:
        self.path = Path(path)
        self.apply = apply
        self.settings = settings
        self._digest = self._read_digest()
        self.reloads = 0

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def problems(self, cfg: Any) -> list[str]:
        s = self.settings
        if s is None or s.pagerduty.dry_run:
            return []
        return [f"pagerduty.services.{svc}: no routing key for a service the new file pages"
                for svc in sorted(cfg.pagerduty_services - set(s.pagerduty.services))]

    def check(self) -> bool:
        """Reload if the file changed; return whether a new routing was applied."""
        from hub.routing import RoutingConfigError, load_routing

        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest  # a refused version is not retried until the file changes again
        try:
            cfg = load_routing(self.path)
        except (RoutingConfigError, OSError) as exc:
            log.error("routing.reload-refused", extra={"file": str(self.path), "reason": str(exc)[:300]})
            return False
        problems = self.problems(cfg)
        if problems:
            log.error("routing.reload-refused", extra={"file": str(self.path), "reason": "; ".join(problems)[:300]})
            return False
        self.apply(cfg)
        self.reloads += 1
        log.info("routing.reloaded", extra={"file": str(self.path), "sha256": digest[:12]})
        return True
