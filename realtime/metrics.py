"""Prometheus metrics, one registry per server (so tests can run several in one process)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Every metric the server exports; names are stable (see README "Metrics")."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.connections = Gauge(
            "realtime_connections", "Open client connections.", ["transport"], registry=registry)
        self.events_received = Counter(
            "realtime_events_received_total", "Events received by an ingest path.", ["source"],
            registry=registry)
        self.events_routed = Counter(
            "realtime_events_routed_total", "Events routed and published to the bus.", ["type"],
            registry=registry)
        self.events_deduplicated = Counter(
            "realtime_events_deduplicated_total", "Events dropped as duplicates of a seen id.",
            registry=registry)
        self.events_rejected = Counter(
            "realtime_events_rejected_total",
            "Events refused (dead-lettered from Kafka, 400 over HTTP).", ["source", "reason"],
            registry=registry)
        self.deliveries = Counter(
            "realtime_messages_fanned_out_total",
            "Bus messages handed to this instance's gateways.", registry=registry)
        self.fanout_seconds = Histogram(
            "realtime_fanout_seconds",
            "Time to hand one bus batch (a publish, a Kafka fetch, a channel message) to local "
            "recipients.",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=registry)
        self.client_refusals = Counter(
            "realtime_client_refusals_total",
            "Client events refused (rate limit, size, invalid payload, authorization).",
            ["reason"], registry=registry)
        self.auth_failures = Counter(
            "realtime_auth_failures_total", "Refused credentials by code.", ["code"],
            registry=registry)
        self.kafka_consumed = Counter(
            "realtime_kafka_messages_consumed_total", "Kafka records consumed.", ["topic"],
            registry=registry)
        self.kafka_retries = Counter(
            "realtime_kafka_retries_total", "Retries of a failed hand-off to the bus.",
            registry=registry)
        self.kafka_lag = Gauge(
            "realtime_kafka_consumer_lag", "Records behind the partition end.",
            ["topic", "partition"], registry=registry)
        self.dependency_failures = Counter(
            "realtime_dependency_failures_total",
            "HTTP requests answered 503 because a backend (Redis) failed.", ["operation"],
            registry=registry)
        self.bus_publish_failures = Counter(
            "realtime_bus_publish_failures_total", "Publishes to the fan-out bus that failed.",
            registry=registry)

        self.sse_bytes = Counter(
            "realtime_sse_bytes_total", "Bytes written to SSE streams.", registry=registry)
        self.slow_disconnects = Counter(
            "realtime_slow_disconnects_total",
            "Clients cut off because their send buffer limit was reached.", ["transport"],
            registry=registry)
        registry.register(_GcCollector(GC_PAUSES.install()))

    def watch_bus(self, connected: Callable[[], bool], reconnects: Callable[[], int],
                  trims: Callable[[], int]) -> None:
        """Export the bus backend's own counters (read at scrape time)."""
        self.registry.register(_BusCollector(connected, reconnects, trims))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _BusCollector(Collector):
    def __init__(self, connected: Callable[[], bool], reconnects: Callable[[], int],
                 trims: Callable[[], int]) -> None:
        self._connected, self._reconnects, self._trims = connected, reconnects, trims

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("realtime_bus_connected",
                                "1 while the fan-out bus backend (Redis) is reachable.",
                                value=1.0 if self._connected() else 0.0)
        yield CounterMetricFamily("realtime_bus_listener_reconnects",
                                  "Times the Redis listener reconnected after losing Redis.",
                                  value=self._reconnects())
        yield CounterMetricFamily("realtime_history_trims",
                                  "History entries dropped by the length/age bounds.",
                                  value=self._trims())


#: Upper bounds (seconds) of the GC pause histogram; 0.05 is the latency budget's share.
GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcPauses:
    """Every cyclic-GC pause of this process, per generation, from ``gc.callbacks``.

    A full (generation 2) collection stops the event loop for as long as it walks the
    heap: the longest one is the floor of the worst latency, so the server exports it
    (``realtime_gc_longest_pause_seconds``) and the load tests print it per scenario.
    Process-wide (the collector is), installed once however many servers a process runs.
    """

    def __init__(self) -> None:
        self.longest: list[float] = []
        self.total: list[float] = []
        self.buckets: list[list[int]] = []
        self.reset()
        self._started = 0.0
        self._installed = False

    def reset(self) -> None:
        """Forget the pauses so far (the deliberate start-up collection: nobody waited)."""
        self.longest = [0.0, 0.0, 0.0]
        self.total = [0.0, 0.0, 0.0]
        self.buckets = [[0] * (len(GC_BUCKETS) + 1) for _ in range(3)]

    def install(self) -> GcPauses:
        if not self._installed:
            self._installed = True
            gc.callbacks.append(self._callback)
        return self

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info["generation"]
        self.total[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)
        bucket = next((i for i, bound in enumerate(GC_BUCKETS) if pause <= bound),
                      len(GC_BUCKETS))
        self.buckets[generation][bucket] += 1


GC_PAUSES = GcPauses()


class _GcCollector(Collector):
    def __init__(self, pauses: GcPauses) -> None:
        self._pauses = pauses

    def collect(self) -> Iterator[Metric]:
        longest = GaugeMetricFamily(
            "realtime_gc_longest_pause_seconds",
            "Longest cyclic-GC pause since start (generation 2: a full collection).",
            labels=["generation"])
        histogram = HistogramMetricFamily(
            "realtime_gc_pause_seconds", "Cyclic-GC pauses (the event loop stops meanwhile).",
            labels=["generation"])
        for generation in range(3):
            label = [str(generation)]
            longest.add_metric(label, self._pauses.longest[generation])
            counts = self._pauses.buckets[generation]
            cumulative = [sum(counts[:i + 1]) for i in range(len(counts))]
            histogram.add_metric(
                label, [(str(bound), float(n)) for bound, n in zip(GC_BUCKETS, cumulative,
                                                                  strict=False)]
                + [("+Inf", float(cumulative[-1]))], self._pauses.total[generation])
        yield longest
        yield histogram
