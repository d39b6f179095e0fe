"""Observability against the real processes: both ``/metrics`` pages, the gateway's
``/readyz``, its JSON log lines, one request id in both logs for each way a request
reaches the producer, response compression, and the producer's OpenAPI schema.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_helpers import NEEDS_SERVICES, GatewayHandle, start_services
from helpers import ProducerHandle
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from py_producer.app import create_app
from py_producer.metrics import WRITE_BUCKETS, ProducerMetrics
from py_producer.settings import Settings

pytestmark = [
    pytest.mark.timeout(180),
    *NEEDS_SERVICES,
]

API = "/api/users-via-api"
SHM_HTTP = "/api/users-via-shm-http"
SHM_UDS = "/api/users-via-shm-uds"
#: How long a log line may take to reach its file (both processes write unbuffered).
LOG_WAIT = 10.0


@dataclass
class Stack:
    producer: ProducerHandle
    gateway: GatewayHandle
    client: httpx.Client

    def gateway_get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(f"{self.gateway.url}{path}", **kwargs)

    def producer_get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(f"{self.producer.url}{path}", **kwargs)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    producer, gateway = start_services(
        tmp_path, ["--max-count", "1000", "--log-format", "json"], max_count=1000
    )
    client = httpx.Client(timeout=30)
    try:
        yield Stack(producer, gateway, client)
    finally:
        client.close()
        producer.stop()
        assert gateway.stop() == 0, gateway.log_text()[-4000:]


def wait_for(what: str, found: Callable[[], bool], logs: Callable[[], str]) -> None:
    """Poll ``found`` for up to LOG_WAIT seconds; fail naming ``what``."""
    deadline = time.monotonic() + LOG_WAIT
    while not found():
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} not found within {LOG_WAIT} s; log tail:\n{logs()[-3000:]}")
        time.sleep(0.05)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a --log-format json log, parsed (a line that is not JSON fails)."""
    parsed = []
    for line in text.splitlines():
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"gateway log line is not JSON: {line!r}")
    return parsed


def samples(page: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample line of a Prometheus text page."""
    out = {}
    for line in page.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_request_ids_match_in_both_logs_and_the_gateway_logs_json(stack: Stack) -> None:
    for path in (API, SHM_HTTP, SHM_UDS):
        response = stack.gateway_get(path, params={"count": 2})
        assert response.status_code == 200, response.text
        request_id = int(response.headers["x-request-id"])
        assert request_id > 0

        def gateway_has_it(path: str = path, request_id: int = request_id) -> bool:
            return any(
                line.get("fields", {}).get("message") == "served"
                and line["fields"].get("request_id") == request_id
                and line["fields"].get("path") == path
                and line.get("span", {}).get("request_id") == request_id
                for line in json_lines(stack.gateway.log_text())
            )

        wait_for(
            f"gateway line for {path} request {request_id}", gateway_has_it, stack.gateway.log_text
        )
        if path == SHM_UDS:
            needle = re.compile(rf"UDS write-users\S* ok .*\brequest_id={request_id}\b")
        else:
            needle = re.compile(rf"\bx_request_id={request_id}\b")

        def producer_has_it(needle: re.Pattern[str] = needle) -> bool:
            return needle.search(stack.producer.log_text()) is not None

        wait_for(
            f"producer line for {path} request {request_id}",
            producer_has_it,
            stack.producer.log_text,
        )


def test_both_metrics_pages_count_the_requests(stack: Stack) -> None:
    for path in (API, SHM_HTTP, SHM_UDS):
        assert stack.gateway_get(path, params={"count": 3}).status_code == 200
    assert stack.gateway_get("/api/nope").status_code == 404

    response = stack.gateway_get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    page = response.text
    gateway = samples(page)
    for path in (API, SHM_HTTP, SHM_UDS):
        assert gateway[f'gateway_http_requests_total{{path="{path}",status="200"}}'] == 1
        assert gateway[f'gateway_http_response_bytes_total{{path="{path}"}}'] > 0
        key = f'gateway_http_request_duration_seconds_count{{path="{path}",status="200"}}'
        assert gateway[key] == 1
    assert gateway['gateway_errors_total{kind="not_found"}'] == 1
    assert gateway['gateway_signal_duration_seconds_count{signal="http"}'] == 1
    assert gateway['gateway_signal_duration_seconds_count{signal="uds"}'] == 1
    # The one Unix-socket answer was either polled for or waited for asleep.
    waits = [gateway[f'gateway_signal_answer_waits_total{{wait="{w}"}}'] for w in ("spin", "park")]
    assert sorted(waits) == [0, 1]
    assert gateway["gateway_slots_in_use"] == 0
    assert gateway["gateway_slot_waiters"] == 0
    assert gateway["gateway_slots"] > 0
    assert "# TYPE gateway_http_request_duration_seconds histogram" in page

    # The snapshot gauges appear once the gateway has served a snapshot.
    assert stack.gateway_get("/api/users-via-snapshot", params={"count": 1}).status_code == 200
    gateway = samples(stack.gateway_get("/metrics").text)
    assert gateway["gateway_snapshot_generation"] >= 1
    assert 0 <= gateway["gateway_snapshot_age_seconds"] < 3600

    response = stack.producer_get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    page = response.text
    producer = samples(page)
    for signal in ("http", "uds"):
        assert producer[f'producer_writes_total{{signal="{signal}"}}'] == 1
        assert producer[f'producer_written_bytes_total{{signal="{signal}"}}'] > 0
        assert producer[f'producer_write_seconds_count{{signal="{signal}"}}'] == 1
    assert producer['producer_publishes_total{outcome="ok"}'] >= 1
    assert "# TYPE producer_write_seconds histogram" in page


def test_readyz_follows_the_producer_and_healthz_stays_alive(stack: Stack) -> None:
    response = stack.gateway_get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["producer"] == stack.producer.url
    assert body["epoch"] == stack.producer.health()["epoch"]

    stack.producer.stop()
    response = stack.gateway_get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "not_ready"
    assert "producer:" in body["detail"] and "channel:" in body["detail"], body["detail"]
    assert stack.gateway_get("/healthz").json() == {"status": "ok"}


def test_responses_are_compressed_only_when_asked(stack: Stack) -> None:
    # httpx asks for gzip unless told otherwise (no header at all: the Rust router tests).
    plain = stack.gateway_get(API, params={"count": 100}, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain.content)
    # httpx would decompress on its own: read the raw bytes off the wire instead.
    url = f"{stack.gateway.url}{SHM_HTTP}?count=100"
    with stack.client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join(response.iter_raw())
    assert len(raw) < len(plain.content)
    assert gzip.decompress(raw) == plain.content


def test_the_producer_openapi_schema_matches_its_routes(stack: Stack) -> None:
    response = stack.producer_get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    documented = {
        (path, method.upper()) for path, item in schema["paths"].items() for method in item
    }

    # Every route the app serves (except the schema and docs pages) is documented.
    app = create_app(Settings(max_count=10))
    served = set()
    for route in app.routes:
        if getattr(route, "include_in_schema", False):
            for method in getattr(route, "methods", set()) - {"HEAD"}:
                served.add((route.path, method))  # type: ignore[attr-defined]
    assert served, "no routes found"
    assert served == documented, (
        f"served only: {served - documented}; documented only: {documented - served}"
    )

    # The query parameters the endpoints read by hand are documented.
    def params(path: str, method: str) -> set[str]:
        return {p["name"] for p in schema["paths"][path][method].get("parameters", [])}

    assert {"count", "slot", "request_id", "deadline_ms"} <= params("/api/write-to-shm", "get")
    assert params("/api/write-to-shm", "post") == params("/api/write-to-shm", "get")
    assert params("/api/users", "get") == {"count"}
    assert "400" in schema["paths"]["/api/users"]["get"]["responses"]
    assert "507" in schema["paths"]["/api/write-to-shm"]["get"]["responses"]

    # Every documented path and method answers (an error status is fine: not 404/405).
    for path, method in sorted(documented):
        answer = stack.client.request(method, f"{stack.producer.url}{path}", params={"count": 1})
        assert answer.status_code not in (404, 405), (path, method, answer.text)
        assert str(answer.status_code) in schema["paths"][path][method.lower()]["responses"], (
            path,
            method,
            answer.status_code,
        )


def test_the_write_metrics_page_matches_prometheus_clients_own_counters() -> None:
    """The producer counts its writes itself (one lock per write); its page must be what
    prometheus-client's Counter and Histogram give for the same writes, bucket bounds
    included (a bound is inside its bucket)."""
    writes = [("uds", 0, 0.0), ("http", 5, 20.0), ("uds", 7, 1e-9)]
    writes += [("uds", n, bound) for n, bound in enumerate(WRITE_BUCKETS)]
    writes += [("http", 3, bound * 1.0001) for bound in WRITE_BUCKETS]
    ours = ProducerMetrics()
    registry = CollectorRegistry()
    labels = ["signal"]
    count = Counter("producer_writes", "x", labels, registry=registry)
    size = Counter("producer_written_bytes", "x", labels, registry=registry)
    took = Histogram(
        "producer_write_seconds", "x", labels, buckets=WRITE_BUCKETS, registry=registry
    )
    for signal in ("http", "uds"):
        count.labels(signal), size.labels(signal), took.labels(signal)
    for signal, length, seconds in writes:
        ours.record_write(signal, length, seconds)
        count.labels(signal).inc()
        size.labels(signal).inc(length)
        took.labels(signal).observe(seconds)

    def series(page: bytes) -> list[str]:
        lines = page.decode().splitlines()
        return sorted(line for line in lines if line.startswith("producer_writ"))

    assert series(ours.render()) == series(generate_latest(registry))
    assert 'producer_write_seconds_bucket{le="5e-05",signal="uds"} 3.0' in series(ours.render())
