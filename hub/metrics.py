"""Prometheus metrics, one registry per process (no global state: tests start several in one process).

* the receiver counts what it is sent (``switchboard_webhooks_total{connector,result}``) and how long
  answering took (``switchboard_webhook_seconds``): the events in, per connector;
* the web view derives the rest from the topics, so the figures hold for every worker together:
  records per topic (events in on ``inbound.*``, out on ``actions.*``), delivery outcomes, retries and
  dead letters per vendor or stage, delivery and end-to-end latency, and the worker group's lag;
* the worker (``metrics.worker_port``) exposes its processors' own counters.
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter("switchboard_webhooks", "Webhook deliveries by connector and result (accepted, duplicate, bad-signature, …)",
                                ["connector", "result"], registry=self.registry)
        self.latency = Histogram("switchboard_webhook_seconds", "Time to answer a webhook, including Kafka's acknowledgement",
                                 ["connector"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TopicMetrics:
    """What the web view's feed sees on the topics (see the module docstring)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.records = Counter("switchboard_topic_records", "Records seen per topic (inbound.*: events in; actions.*: actions out)",
                               ["topic"], registry=r)
        self.outcomes = Counter("switchboard_delivery_outcomes", "Delivery results by vendor and outcome", ["vendor", "outcome"], registry=r)
        self.retries = Counter("switchboard_delivery_retries", "Actions parked on a retry tier, by vendor", ["vendor"], registry=r)
        self.dead = Counter("switchboard_dead_letters", "Dead letters by stage", ["stage"], registry=r)
        self.delivery_latency = Histogram("switchboard_delivery_seconds", "Action created → delivery result recorded",
                                          ["vendor"], buckets=LATENCY_BUCKETS, registry=r)
        self.e2e_latency = Histogram("switchboard_end_to_end_seconds", "Webhook received → vendor result recorded (first attempt)",
                                     ["vendor"], buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("switchboard_consumer_lag", "Worker consumer group lag (end offset − committed), per topic", ["topic"], registry=r)
        self.stalled = Gauge("switchboard_stalled_partitions", "Partitions whose committed offset has not moved while their lag grew", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StatsCollector:
    """The worker's processor counters (``hub.pipelines``), read at scrape time."""

    def __init__(self, pipelines: Callable[[], dict[str, Any]]) -> None:
        self._pipelines = pipelines

    def collect(self):
        processed = CounterMetricFamily("switchboard_processor_records", "Records handled by each processor, by result", labels=["processor", "result"])
        delivered = CounterMetricFamily("switchboard_worker_delivery_outcomes", "Delivery outcomes counted by this worker", labels=["vendor", "outcome"])
        for name, stats in sorted(self._pipelines().items()):
            counts = getattr(stats, "counts", None)
            if isinstance(counts, dict):
                for outcome, n in sorted(counts.items()):
                    delivered.add_metric([name, outcome], n)
            elif isinstance(stats, dict):
                for result, n in sorted(stats.items()):
                    if isinstance(n, (int, float)):
                        processed.add_metric([name, result], n)
        yield processed
        yield delivered


def worker_registry(pipelines: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_StatsCollector(pipelines))
    return registry
