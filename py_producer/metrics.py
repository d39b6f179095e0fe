"""The producer's Prometheus metrics, served at ``GET /metrics`` (prometheus-client).

Each app gets its own registry, so several apps in one process (tests) never clash.
The UDS signal's writes run on native listener threads: prometheus-client's metrics
are thread-safe.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

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


class ProducerMetrics:
    """Writes into the channel (per signal: ``http`` or ``uds``) and snapshot publishes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.writes = Counter(
            "producer_writes",
            "Writes into a channel slot, by the signal that asked for them",
            ["signal"],
            registry=self.registry,
        )
        self.written_bytes = Counter(
            "producer_written_bytes",
            "Payload bytes written into channel slots, by signal",
            ["signal"],
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "producer_write_seconds",
            "Time to serialize and write one payload into its slot, by signal",
            ["signal"],
            buckets=WRITE_BUCKETS,
            registry=self.registry,
        )
        self.publishes = Counter(
            "producer_publishes",
            "Snapshots published (outcome: ok, or marker when a failure marker replaced it)",
            ["outcome"],
            registry=self.registry,
        )
        # Each signal's children, bound once: ``labels()`` takes a lock and builds a key
        # per call, which the signal socket's per-request budget notices.
        self._write_children = {
            signal: (
                self.writes.labels(signal),
                self.written_bytes.labels(signal),
                self.write_seconds.labels(signal),
            )
            for signal in ("http", "uds")
        }
        for outcome in ("ok", "marker"):
            self.publishes.labels(outcome)

    def record_write(self, signal: str, length: int, seconds: float) -> None:
        writes, written_bytes, write_seconds = self._write_children[signal]
        writes.inc()
        written_bytes.inc(length)
        write_seconds.observe(seconds)

    def record_publish(self, outcome: str) -> None:
        self.publishes.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
