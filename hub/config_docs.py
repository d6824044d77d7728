"""The configuration reference (``docs/configuration.md``), generated from the settings models.

Every key of :class:`hub.settings.Settings`, nested sections included, with its environment
variable, type, default and the ``#:`` comment written above it in the model (the same comments a
reader of ``hub/settings.py`` sees). ``switchboard config-docs > docs/configuration.md`` regenerates
it; tests/unit/test_config_docs.py fails when the file is out of date.
"""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

_FIELD = re.compile(r"^\s+([a-z_][a-z0-9_]*)\s*:")


def _comments(cls: type) -> dict[str, str]:
    """``#:`` comment lines directly above each field in the class body (and its bases)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass.__module__.startswith("pydantic"):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
                continue
            m = _FIELD.match(line)
            if m and pending:
                found[m.group(1)] = " ".join(pending)
            if stripped and not stripped.startswith("#"):
                pending = []
    return found


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = text.replace("typing.", "").replace("pydantic.types.", "").replace("pathlib.", "").replace("NoneType", "None")
    text = re.sub(r"<class '([^']+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return re.sub(r"\b[a-z_]+\.(?:[a-z_]+\.)*([A-Z]\w*)", r"\1", text)


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(a) for a in typing.get_args(annotation))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _dict_value_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is dict:
        args = typing.get_args(annotation)
        if len(args) == 2:
            return _model_of(args[1])
    return None


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "required"
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path) and value.is_absolute():
        root = Path(__file__).resolve().parent.parent
        value = value.relative_to(root) if value.is_relative_to(root) else value
    return f"`{value!s}`" if not isinstance(value, str) else f"`{value!r}`"


def _rows(model: type[BaseModel], path: list[str], out: list[tuple[str, list[tuple[str, ...]]]]) -> None:
    comments = _comments(model)
    rows: list[tuple[str, ...]] = []
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            nested.append((name, sub, False))
            continue
        key = ".".join(path + [name])
        env = "SWITCHBOARD_" + "__".join(p.upper() for p in path + [name])
        doc = comments.get(name, "")
        value_model = _dict_value_model(field.annotation)
        if value_model is not None:
            nested.append((name, value_model, True))
            doc = (doc + " " if doc else "") + f"(a map: see `{key}.<name>` below)"
        elif typing.get_origin(field.annotation) is dict:
            key, env = f"{key}.<name>", f"{env}__<NAME>"
        secret = " **secret**" if _is_secret(field.annotation) else ""
        rows.append((f"`{key}`", f"`{env}`", _type_name(field.annotation).replace("|", "\\|") + secret, _default(field), doc.replace("|", "\\|")))
    title = ".".join(path) or "(top level)"
    doc = inspect.getdoc(model) if model.__doc__ and model.__module__ != "pydantic.main" else ""
    if rows:
        out.append((title + (f" — {doc.splitlines()[0]}" if doc and path else ""), rows))
    for name, sub, is_map in nested:
        _rows(sub, path + ([name, "<name>"] if is_map else [name]), out)


def render() -> str:
    from hub.reload import HOT_SETTINGS
    from hub.settings import Settings

    sections: list[tuple[str, list[tuple[str, ...]]]] = []
    _rows(Settings, [], sections)
    live = {f"`{key}`" for key in HOT_SETTINGS}
    sections = [(title, [r[:4] + ((r[4] + " " if r[4] else "") + "*Reloaded live.*",) if r[0] in live else r for r in rows])
                for title, rows in sections]
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings models (`hub/settings.py` and `connectors/*/settings.py`) by",
        "`switchboard config-docs > docs/configuration.md`; a test fails when this file is out of date.",
        "",
        "Every key can be set in the YAML file named by `SWITCHBOARD_CONFIG` (nested as in the key) or as an",
        "environment variable (which wins). `KAFKA_BOOTSTRAP_SERVERS` is accepted for `kafka.bootstrap_servers`.",
        "Secrets are never logged, put on a topic or echoed in an error. `<name>` stands for a name you choose",
        "(a PagerDuty service, a viewer of the web view).",
        "",
        "**Reloading without a restart.** The worker re-reads this YAML file when it changes (checked every",
        "`routing_reload_s` seconds, with the routing file) and validates it whole, as at start-up and with",
        "`check-config`'s rules; environment variables still win. A file that does not validate is refused",
        "(`settings.reload.refused`, naming the bad key) and the running settings stay. These keys are applied",
        "at once (`settings.reload.applied`): " + ", ".join(f"`{key}`" for key in HOT_SETTINGS) + ".",
        "A change to any other key is logged once (`settings.reload.restart-needed`, key names only) and takes",
        "effect at the next start. Leaving dry run live needs the connector's credentials set at start.",
        "`routing_reload_s: 0` turns both reloads off; the receiver and the view read their settings at start.",
        "",
    ]
    for title, rows in sections:
        lines += [f"## {title}", "", "| key | environment variable | type | default | what it does |", "| --- | --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)
