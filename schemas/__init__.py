"""JSON Schemas (draft 2020-12) of the records on topics, loaded by name.

Every ``schemas/<name>.json`` is addressable by its stem, e.g. ``"tracker_event.v1"``; a breaking
change is a new file (``.v2``), never an edit. ``validator(name)`` compiles a schema once (with
fastjsonschema) and returns a function that raises SchemaError on the first violation; callers on
a hot path should keep that function rather than call ``validate`` per record.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema

_DIR = Path(__file__).resolve().parent


class SchemaError(Exception):
    """A record does not match its schema. ``path`` is dotted from the record root ("" = root)."""

    def __init__(self, schema: str, path: str, message: str) -> None:
        super().__init__(f"{schema}: {message}")
        self.schema = schema
        self.path = path
        self.message = message


def names() -> list[str]:
    """The names of every schema shipped in this package."""
    return sorted(path.stem for path in _DIR.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    """The schema document called ``name`` (a fresh copy: mutate it freely). KeyError if unknown."""
    return copy.deepcopy(_load(name))


def validator(name: str) -> Callable[[Any], None]:
    """A compiled check for schema ``name``: returns None, or raises SchemaError. Cached."""
    return _validator(name)


def validate(name: str, record: Any) -> None:
    """Check ``record`` against schema ``name``; raise SchemaError on the first violation."""
    _validator(name)(record)


@functools.cache
def _load(name: str) -> dict[str, Any]:
    if name not in names():
        raise KeyError(f"no schema named {name!r}")
    return json.loads((_DIR / f"{name}.json").read_text(encoding="utf-8"))


@functools.cache
def _validator(name: str) -> Callable[[Any], None]:
    compiled = fastjsonschema.compile(load(name))

    def check(record: Any) -> None:
        try:
            compiled(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            path = exc.name.removeprefix("data").removeprefix(".")
            message = exc.message.replace(exc.name, path or "record", 1)
            raise SchemaError(name, path, message) from None

    return check
