"""Reload without a restart: the worker re-reads the routing file and the settings file when they change.

**Routing.** The file is checked every ``routing_reload_s`` seconds (its modification time and
content). A new version is applied only when it loads and every PagerDuty service it names has a
routing key (or PagerDuty is in dry run); otherwise the running routing stays and the reason is
logged (``routing.reload-refused``). What reloads: incident rules, lifecycle, channels, receivers,
the tree and the restricted projects *for incidents*. The support path's restricted-project list
(what a ticket may learn of an issue) is read at start.

**Settings.** On the same cadence the worker re-reads the YAML file named by ``SWITCHBOARD_CONFIG``
(``--config``) and validates the whole new :class:`~hub.settings.Settings` as at start-up
(environment variables still win over the file) and with ``check-config``'s rules. A file that
does not validate is refused (``settings.reload.refused``, naming the bad key, never a value) and
the running settings stay. Otherwise the keys in :data:`HOT_SETTINGS` are applied at once
(``settings.reload.applied``) and every other changed key is logged once as
``settings.reload.restart-needed`` (key names only: values may be secrets).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

log = logging.getLogger("switchboard.routing")
settings_log = logging.getLogger("switchboard.settings")

#: settings a running worker applies when the settings file changes; a change to any other key is
#: logged (``settings.reload.restart-needed``) and takes effect at the next start
HOT_SETTINGS: tuple[str, ...] = (
    "slack.dry_run",
    "pagerduty.dry_run",
    "support.dry_run",
    "sales.dry_run",
    "delivery.inplace_attempts",
    "delivery.max_inplace_wait_s",
    "delivery.backoff_s",
    "routing_file",
    "log_level",
)

#: the delivery pipelines (hub/registry.py) each dry-run switch governs
DRY_RUN_PIPELINES: dict[str, tuple[str, ...]] = {
    "slack.dry_run": ("slack",),
    "pagerduty.dry_run": ("pagerduty",),
    "support.dry_run": ("jira", "zendesk"),
    "sales.dry_run": ("salesforce",),
}

#: the retry policy's fields (hub/delivery/retry.py) fed by the delivery settings
_POLICY_FIELDS: dict[str, str] = {
    "delivery.inplace_attempts": "inplace_attempts",
    "delivery.max_inplace_wait_s": "max_inplace_wait_s",
    "delivery.backoff_s": "backoff_s",
}


def file_digest(path: Path) -> str | None:
    """sha256 of the file's bytes, or None while it cannot be read (a reload waits for a readable file)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class RoutingWatcher:
    def __init__(self, path: Path, apply: Callable[[Any], None], *, settings: Any | None = None) -> None:
        self.path = Path(path)
        self.apply = apply
        self.settings = settings
        self._digest = file_digest(self.path)
        self.reloads = 0

    def problems(self, cfg: Any) -> list[str]:
        s = self.settings
        if s is None or s.pagerduty.dry_run:
            return []
        return [f"pagerduty.services.{svc}: no routing key for a service the new file pages"
                for svc in sorted(cfg.pagerduty_services - set(s.pagerduty.services))]

    def repoint(self, path: Path) -> bool:
        """Load and apply the routing file at a new ``path``; on refusal keep watching the old one."""
        old_path, old_digest = self.path, self._digest
        self.path, self._digest = Path(path), None
        if file_digest(self.path) is None:
            log.error("routing.reload-refused", extra={"file": str(self.path), "reason": "no such file"})
        elif self.check():
            return True
        self.path, self._digest = old_path, old_digest
        return False

    def check(self) -> bool:
        """Reload if the file changed; return whether a new routing was applied."""
        from hub.routing import RoutingConfigError, load_routing

        digest = file_digest(self.path)
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


# -- settings ------------------------------------------------------------------------------------


def flatten(settings: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every leaf setting by dotted key (``pagerduty.dry_run``, ``pagerduty.services.ops``)."""
    out: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{key}.{name}" if key else name)
        elif isinstance(value, dict):  # a map's entries are keys of their own (an empty map has none)
            for name, item in value.items():
                walk(item, f"{key}.{name}")
        else:
            out[key] = value

    walk(settings, prefix)
    return out


def changed_keys(old: BaseModel, new: BaseModel) -> list[str]:
    """Dotted keys whose value differs (added and removed map entries included), sorted."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return sorted(k for k in a.keys() | b.keys() if a.get(k, missing) != b.get(k, missing))


def split_changes(keys: list[str], hot: tuple[str, ...] = HOT_SETTINGS) -> tuple[list[str], list[str]]:
    """``(applied live, restart needed)``."""
    return [k for k in keys if k in hot], [k for k in keys if k not in hot]


def with_values(base: BaseModel, source: BaseModel, keys: list[str]) -> Any:
    """A copy of ``base`` where each dotted key (a model field path) takes its value from ``source``."""
    for key in keys:
        base = _set(base, key.split("."), _get(source, key.split(".")))
    return base


def _get(model: BaseModel, path: list[str]) -> Any:
    for name in path:
        model = getattr(model, name)
    return model


def _set(model: BaseModel, path: list[str], value: Any) -> Any:
    head, rest = path[0], path[1:]
    return model.model_copy(update={head: _set(getattr(model, head), rest, value) if rest else value})


#: an applier gets the settings about to run and returns None when applied, else why not (no values)
Applier = Callable[[Any], "str | None"]


class SettingsWatcher:
    """Re-read the settings file when it changes; apply the hot keys, name the rest.

    ``load(path)`` returns validated settings or raises :class:`hub.settings.ConfigError`;
    ``validate(settings)`` returns problems worded as ``check-config``'s (``key: what to do``);
    ``appliers`` has one entry per hot key. ``running`` is what the process runs with: the start-up
    settings, with applied hot keys replaced (restart-needed keys keep their start-up values); it is
    handed to ``on_applied`` after each version that applied something.
    """

    def __init__(self, path: Path, running: Any, *, appliers: dict[str, Applier],
                 load: Callable[[Path], Any] | None = None, validate: Callable[[Any], list[str]] | None = None,
                 on_applied: Callable[[Any], None] | None = None) -> None:
        from hub.settings import load_settings

        self.path = Path(path)
        self.running = running
        self.appliers = appliers
        self.load = load or load_settings
        self.validate = validate or (lambda s: [])
        self.on_applied = on_applied
        self._loaded = running  # the last valid version read: restart-needed keys are named once
        self._digest = file_digest(self.path)
        self.reloads = 0

    def _refuse(self, reason: str) -> None:
        settings_log.error("settings.reload.refused", extra={"file": str(self.path), "reason": reason[:500]})

    def check(self) -> list[str]:
        """Reload if the file changed; return the keys applied (empty when nothing was)."""
        from hub.settings import ConfigError

        digest = file_digest(self.path)
        if digest == self._digest:
            return []
        self._digest = digest  # a refused version is not retried until the file changes again
        if digest is None:
            self._refuse("SWITCHBOARD_CONFIG: the file cannot be read; the running settings stay")
            return []
        try:
            new = self.load(self.path)
        except ConfigError as exc:  # names the key, never the value
            self._refuse(str(exc))
            return []
        except Exception as exc:  # not YAML, or not a mapping: say where, never quote the file (secrets)
            self._refuse(_unreadable(exc))
            return []
        hot, restart = split_changes(changed_keys(self.running, new), tuple(self.appliers))
        candidate = with_values(self.running, new, hot)
        problems = self.validate(new)
        if not problems:  # the new file is fine, but would the worker be with only the hot keys applied?
            problems = self.validate(candidate)
            if problems and restart:
                problems.append("the running worker keeps " + ", ".join(restart) + " from its start: restart to apply them")
        if problems:
            self._refuse("; ".join(problems))
            return []
        applied, failed = [], {}
        for key in hot:
            why = self.appliers[key](candidate)
            if why is None:
                applied.append(key)
            else:
                failed[key] = why
        self.running = with_values(self.running, new, applied)
        since_last = set(changed_keys(self._loaded, new))
        newly = [k for k in restart if k in since_last]
        self._loaded = new
        self.reloads += 1
        if applied:
            if self.on_applied is not None:
                self.on_applied(self.running)
            settings_log.info("settings.reload.applied", extra={"file": str(self.path), "keys": applied})
        for key, why in failed.items():
            settings_log.error("settings.reload.not-applied", extra={"file": str(self.path), "key": key, "reason": why})
        if newly:
            settings_log.warning("settings.reload.restart-needed", extra={"file": str(self.path), "keys": newly})
        return applied


def _unreadable(exc: Exception) -> str:
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"SWITCHBOARD_CONFIG: not valid YAML ({exc.problem}, line {mark.line + 1}, column {mark.column + 1})"
    return f"SWITCHBOARD_CONFIG: not a YAML mapping of settings ({type(exc).__name__})"


def worker_appliers(hub: Any, routing_watcher: RoutingWatcher | None) -> dict[str, Applier]:
    """How a running worker applies each key of :data:`HOT_SETTINGS` (the keys are checked against it)."""
    from hub.logs import is_level, set_level

    def dry_run(key: str) -> Applier:
        def apply(s: Any) -> str | None:
            on = _get(s, key.split("."))
            convergers = [hub.pipelines[v].converger for v in DRY_RUN_PIPELINES[key] if v in hub.pipelines]
            # a converger holds its vendor client as .client (PagerDuty's as .events); none: no credentials at start
            if not on and any(getattr(c, "client", None) is None and getattr(c, "events", None) is None for c in convergers):
                return "no vendor client: its credentials were not set when the worker started; restart to go live"
            for c in convergers:
                c.dry_run = on
            return None
        return apply

    def policy(s: Any) -> None:
        changes = {field: _get(s, key.split(".")) for key, field in _POLICY_FIELDS.items()}
        for pipeline in hub.pipelines.values():  # the pipeline reads .policy at every decision
            pipeline.policy = dataclasses.replace(pipeline.policy, **changes)
        return None

    def routing_file(s: Any) -> str | None:
        if routing_watcher is None:
            return "routing reload is off (routing_reload_s: 0)"
        routing_watcher.settings = s
        return None if routing_watcher.repoint(s.routing_file) else "the new routing file was refused (see routing.reload-refused)"

    def log_level(s: Any) -> str | None:
        if not is_level(s.log_level):
            return "not a level name (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        set_level(s.log_level)
        return None

    appliers: dict[str, Applier] = {key: dry_run(key) for key in DRY_RUN_PIPELINES}
    appliers.update({key: policy for key in _POLICY_FIELDS})
    appliers["routing_file"] = routing_file
    appliers["log_level"] = log_level
    assert set(appliers) == set(HOT_SETTINGS), "HOT_SETTINGS and the worker's appliers disagree"
    return appliers


def worker_settings_watcher(hub: Any, routing_watcher: RoutingWatcher | None, config_file: str | Path | None,
                            validate: Callable[[Any], list[str]] | None = None) -> SettingsWatcher | None:
    """The worker's settings watcher; None without a settings file (environment variables need a restart).

    Each version that applied something becomes ``hub.settings`` and the routing watcher's settings.
    """
    if not config_file:
        return None

    def publish(running: Any) -> None:
        hub.settings = running
        if routing_watcher is not None:
            routing_watcher.settings = running

    return SettingsWatcher(Path(config_file), hub.settings, appliers=worker_appliers(hub, routing_watcher),
                           validate=validate, on_applied=publish)
