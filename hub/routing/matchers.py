"""Alertmanager-style label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Syntax: a label name from :data:`~hub.routing.labels.LABEL_NAMES`, an operator, and a value in
double quotes. Inside the quotes ``\\"`` is a quote and ``\\\\`` a backslash; any other backslash
is kept as written, so regex escapes such as ``\\d`` or ``\\.`` work unchanged.

Semantics:

* Comparison is exact and case-sensitive. A missing label equals ``""``, so ``assignee=""``
  matches unassigned issues and ``security_level!=""`` matches issues with any security level.
* Regexes use Python's ``re`` syntax and are fully anchored (the whole value must match, as in
  Alertmanager): ``priority=~"High"`` does not match ``Highest``. They are compiled once, when
  the matcher is parsed.
* Multi-valued labels (``labels``): ``=`` and ``=~`` match if ANY value matches; ``!=`` and ``!~``
  match if NO value matches. An issue without labels is treated as having the single value
  ``""``: ``labels=""`` matches it and ``labels!=""`` matches every issue that has a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from hub.routing.labels import LABEL_NAMES, Labels

Operator = Literal["=", "!=", "=~", "!~"]
_OPERATORS = ("=", "!=", "=~", "!~")

# name, operator (two-character operators first), double-quoted value with \" and \\ escapes
_SYNTAX = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*', re.DOTALL)
_UNESCAPE = re.compile(r'\\(["\\])')


class MatcherError(ValueError):
    """A matcher string could not be parsed; the message says why (without the input)."""


@dataclass(frozen=True)
class Matcher:
    """One matcher; its regex is compiled on construction (``MatcherError`` if it is invalid).

    Prefer :func:`parse_matcher`, which also checks the label name. ``str()`` gives the canonical
    text, which parses back to an equal matcher.
    """

    name: str
    op: Operator
    value: str
    _regex: re.Pattern[str] | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise MatcherError(f"unknown operator {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", re.compile(self.value))
            except re.error as exc:
                raise MatcherError(f"invalid regex: {exc}") from None

    def matches(self, labels: Labels) -> bool:
        """Whether ``labels`` satisfy this matcher (missing label = ``""``, see module docs)."""
        raw = labels.get(self.name) or ""
        values = tuple(raw) if isinstance(raw, (tuple, list)) else (raw,)
        if self._regex is None:
            hit = any(v == self.value for v in values)
        else:
            hit = any(self._regex.fullmatch(v) is not None for v in values)
        return hit if self.op in ("=", "=~") else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str, label_names: Iterable[str] = LABEL_NAMES) -> Matcher:
    """Parse one matcher string (see the module docs for the syntax), compiling its regex.

    Raises :class:`MatcherError` if the syntax is wrong, the label name is not in
    ``label_names``, or the regex does not compile.
    """
    parsed = _SYNTAX.fullmatch(text)
    if parsed is None:
        raise MatcherError('expected name="value", name!="value", name=~"regex" or name!~"regex"')
    name, op, quoted = parsed.groups()
    known = tuple(label_names)
    if name not in known:
        raise MatcherError(f"unknown label {name!r} (known labels: {', '.join(known)})")
    return Matcher(name, op, _UNESCAPE.sub(r"\1", quoted))  # type: ignore[arg-type]


def matches_all(matchers: Iterable[Matcher], labels: Labels) -> bool:
    """True when every matcher matches (so an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
