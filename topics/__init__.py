"""Topic declarations as data (``topics/topics.yaml``), loaded into frozen specs.

Promise: every topic the hub reads or writes is declared exactly once in ``topics.yaml``; code
refers to topics by their declared short name (``"actions.slack"``) and gets the full name from
:func:`full_name`. ``hub.kafka_admin.ensure_topics`` creates missing topics from these specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

_FILE = Path(__file__).with_name("topics.yaml")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    key: str
    value_schema: str
    partitions: int | None  # None: the settings' default partition count
    retention_ms: int
    cleanup_policy: str
    #: for retry tiers: how long an action waits in this topic before its next attempt
    retry_delay_s: float | None = None

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    def partition_count(self, default: int) -> int:
        return self.partitions if self.partitions is not None else default

    def config(self) -> dict[str, str]:
        """Kafka topic configs for creation and for comparison with an existing topic."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


@lru_cache(maxsize=None)
def load_topics() -> tuple[TopicSpec, ...]:
    raw = yaml.safe_load(_FILE.read_text())
    specs = []
    seen = set()
    for i, entry in enumerate(raw):
        where = f"topics.yaml[{i}]"
        try:
            partitions = entry["partitions"]
            spec = TopicSpec(
                name=entry["name"],
                description=entry["description"],
                key=entry["key"],
                value_schema=entry["value_schema"],
                partitions=None if partitions == "default" else int(partitions),
                retention_ms=int(entry["retention_ms"]),
                cleanup_policy=entry["cleanup_policy"],
                retry_delay_s=float(entry["retry_delay_s"]) if "retry_delay_s" in entry else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: bad topic declaration ({exc!r})") from exc
        if spec.name in seen:
            raise ValueError(f"{where}: topic {spec.name!r} declared twice")
        if spec.cleanup_policy not in ("delete", "compact", "compact,delete"):
            raise ValueError(f"{where}.cleanup_policy: {spec.cleanup_policy!r} is not a Kafka cleanup policy")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def topic(name: str) -> TopicSpec:
    for spec in load_topics():
        if spec.name == name:
            return spec
    raise KeyError(f"no topic {name!r} is declared in topics/topics.yaml")


def full_name(prefix: str, name: str) -> str:
    return topic(name).full_name(prefix)


def retry_tiers() -> tuple[TopicSpec, ...]:
    """The retry topics, shortest delay first."""
    return tuple(sorted((s for s in load_topics() if s.retry_delay_s is not None), key=lambda s: s.retry_delay_s))
