"""Checks shared by every vendor's pure mapping: each failure names the path that broke."""

from __future__ import annotations

from typing import Any

from connectors.errors import MappingError


def open_envelope(envelope: Any, source: str) -> tuple[dict[str, Any], int]:
    """``(payload, received_at_ms)`` of an ``inbound.v1`` envelope from ``source``."""
    if not isinstance(envelope, dict):
        raise MappingError("envelope is not an object", path="envelope")
    got = envelope.get("source", source)
    if got != source:
        raise MappingError(f"expected source {source!r}, got {got!r}", path="envelope.source")
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        raise MappingError("payload is not a JSON object", path="envelope.payload")
    received_at_ms = envelope.get("received_at_ms")
    if isinstance(received_at_ms, bool) or not isinstance(received_at_ms, int) or received_at_ms < 0:
        raise MappingError(f"expected epoch milliseconds, got {received_at_ms!r}", path="envelope.received_at_ms")
    return payload, received_at_ms


def obj(value: Any, path: str) -> dict[str, Any] | None:
    """An optional JSON object."""
    if value is None or isinstance(value, dict):
        return value
    raise MappingError(f"expected an object, got {type(value).__name__}", path=path)


def text(value: Any, path: str) -> str | None:
    """An optional string (ids may arrive as integers; empty means absent)."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise MappingError(f"expected a string, got {type(value).__name__}", path=path)
