"""The producer's Prometheus metrics, served at ``GET /metrics`` (prometheus-client).

Each app gets its own registry, so several apps in one process (tests) never clash.
The UDS signal's writes run on native listener threads. Their three write metrics are
kept by :class:`WriteStats` (one lock per write, read when scraped): prometheus-client's
own counters and histogram take a lock each, which a small signal request notices.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# No `*_created` series: they double the page and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Seconds, 50 µs to 10 s: from the smallest write to the largest a slot holds, with room
#: above for a loaded machine.
WRITE_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: The classic text format: what every Prometheus version scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class WriteStats(Collector):
    """Writes into the channel per signal (``http``, ``uds``): ``producer_writes_total``,
    ``producer_written_bytes_total`` and the histogram ``producer_write_seconds``, the
    series prometheus-client's Counter and Histogram would give, counted under one lock."""

    SIGNALS = ("http", "uds")
    #: Each bucket's ``le``, as prometheus-client writes it, then +Inf.
    BOUNDS = (*map(floatToGoString, WRITE_BUCKETS), "+Inf")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = {signal: _SignalWrites() for signal in self.SIGNALS}

    def record(self, signal: str, length: int, seconds: float) -> None:
        bucket = bisect.bisect_left(WRITE_BUCKETS, seconds)  # le is inclusive
        with self._lock:
            stats = self._stats[signal]
            stats.writes += 1
            stats.bytes += length
            stats.seconds += seconds
            stats.buckets[bucket] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            stats = {signal: values.copy() for signal, values in self._stats.items()}
        writes = CounterMetricFamily(
            "producer_writes",
            "Writes into a channel slot, by the signal that asked for them",
            labels=["signal"],
        )
        written = CounterMetricFamily(
            "producer_written_bytes",
            "Payload bytes written into channel slots, by signal",
            labels=["signal"],
        )
        seconds = HistogramMetricFamily(
            "producer_write_seconds",
            "Time to serialize and write one payload into its slot, by signal",
            labels=["signal"],
        )
        for signal, values in stats.items():
            writes.add_metric([signal], values.writes)
            written.add_metric([signal], values.bytes)
            cumulative = list(itertools.accumulate(values.buckets))
            buckets = list(zip(self.BOUNDS, cumulative, strict=True))
            seconds.add_metric([signal], buckets, values.seconds)
        yield writes
        yield written
        yield seconds


class _SignalWrites:
    """One signal's writes: count, bytes, seconds summed, and the count per bucket
    (``WRITE_BUCKETS``, then +Inf)."""

    __slots__ = ("buckets", "bytes", "seconds", "writes")

    def __init__(self) -> None:
        self.writes = 0
        self.bytes = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(WRITE_BUCKETS) + 1)

    def copy(self) -> _SignalWrites:
        other = _SignalWrites()
        other.writes, other.bytes, other.seconds = self.writes, self.bytes, self.seconds
        other.buckets = list(self.buckets)
        return other


class ProducerMetrics:
    """Writes into the channel (per signal: ``http`` or ``uds``) and snapshot publishes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.writes = WriteStats()
        self.registry.register(self.writes)
        self.publishes = Counter(
            "producer_publishes",
            "Snapshots published (outcome: ok, or marker when a failure marker replaced it)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("ok", "marker"):
            self.publishes.labels(outcome)

    def record_write(self, signal: str, length: int, seconds: float) -> None:
        self.writes.record(signal, length, seconds)

    def record_publish(self, outcome: str) -> None:
        self.publishes.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
