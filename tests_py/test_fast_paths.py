"""End to end: the fast paths (the Unix-socket signal and snapshot mode) against the
real producer process and the real gateway binary.

Every users endpoint serves the same bytes for the same count; a POST that adds users
is visible on the snapshot path as soon as it returns; a killed producer gives JSON
5xx answers (the snapshot path refuses to serve the dead producer's last snapshot:
502 ``channel_error``), and a restarted one is followed without a gateway restart.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from gateway_helpers import NEEDS_SERVICES, GatewayHandle, start_services
from helpers import ProducerHandle, assert_error, start_producer

from py_producer.users import build_users, expected_users_json

pytestmark = [
    pytest.mark.timeout(300),
    *NEEDS_SERVICES,
]

API = "/api/users-via-api"
SHM = "/api/users-via-shm"
SHM_HTTP = "/api/users-via-shm-http"
SHM_UDS = "/api/users-via-shm-uds"
SNAPSHOT = "/api/users-via-snapshot"
#: The benchmark's baseline: the snapshot the gateway holds, served with no look at the channel.
MEMORY = "/api/users-via-memory"
PATHS = (API, SHM, SHM_HTTP, SHM_UDS, SNAPSHOT, MEMORY)
MAX_COUNT = 100_000
#: The gateway accepts counts past the producer's users, so the snapshot's own limit shows.
GATEWAY_MAX_COUNT = MAX_COUNT + 1000


@dataclass
class Stack:
    producer: ProducerHandle
    gateway: GatewayHandle
    client: httpx.Client
    tmp_path: Path
    producer_settings: dict[str, Any]

    def get(self, path: str, query: str) -> httpx.Response:
        return self.client.get(f"{self.gateway.url}{path}?{query}")

    def restart_producer(self) -> None:
        self.producer = start_producer(
            self.tmp_path,
            port=self.producer.port,
            shm_dir=self.producer.shm_dir,
            timeout=60,
            **self.producer_settings,
        )


def start_stack(
    tmp_path: Path, gateway_args: tuple[str, ...] = (), **producer_settings: Any
) -> Stack:
    producer, gateway = start_services(
        tmp_path, ["--max-count", str(GATEWAY_MAX_COUNT), *gateway_args], **producer_settings
    )
    # identity: these tests check the bytes and headers as served (httpx asks for gzip).
    client = httpx.Client(timeout=120, headers={"Accept-Encoding": "identity"})
    return Stack(producer, gateway, client, tmp_path, producer_settings)


def stop_stack(stack: Stack) -> None:
    stack.client.close()
    stack.producer.stop()
    assert stack.gateway.stop() == 0, stack.gateway.log_text()[-4000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the tests that change nothing."""
    box = start_stack(tmp_path_factory.mktemp("fast"), max_count=MAX_COUNT)
    try:
        yield box
    finally:
        stop_stack(box)


@pytest.fixture
def small_stack(tmp_path: Path) -> Iterator[Stack]:
    box = start_stack(tmp_path, max_count=2000)
    try:
        yield box
    finally:
        stop_stack(box)


def test_every_path_serves_the_same_expected_bytes(stack: Stack) -> None:
    for count in (0, 2, 1000, MAX_COUNT):
        expected = expected_users_json(count)
        for path in PATHS:
            response = stack.get(path, f"count={count}")
            assert response.status_code == 200, (path, count, response.text[:500])
            assert response.headers["content-type"] == "application/json"
            assert response.headers["content-length"] == str(len(expected))
            assert response.content == expected, (path, count)
    log = stack.gateway.log_text()
    # The default signal is auto, and the producer serves its socket: uds.
    assert 'path="/api/users-via-shm" count=2 signal="uds"' in log
    assert 'path="/api/users-via-shm-http" count=2 signal="http"' in log
    # The snapshot was indexed once, and every snapshot request used it.
    assert log.count("snapshot indexed") == 1, log[-3000:]


def test_no_count_serves_the_original_services_100_users(stack: Stack) -> None:
    """The original's curl lines and load test ask without a count: 100 users."""
    for path in PATHS:
        for url in (f"{stack.gateway.url}{path}", f"{stack.gateway.url}{path}?"):
            response = stack.client.get(url)
            assert response.status_code == 200, (url, response.text[:300])
            assert response.content == expected_users_json(100), url


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("count=-1", "without a sign"),
        ("count=abc", "got 'abc'"),
        (f"count={GATEWAY_MAX_COUNT + 1}", f"limit of {GATEWAY_MAX_COUNT}"),
        ("count=1&page=2", "'page'"),
    ],
)
def test_bad_counts_are_refused_alike(stack: Stack, query: str, needle: str) -> None:
    bodies = set()
    for path in PATHS:
        response = stack.get(path, query)
        assert needle in assert_error(response, 400, "invalid_query")
        bodies.add(response.content)
    assert len(bodies) == 1


def test_more_users_than_the_snapshot_holds_is_400(stack: Stack) -> None:
    detail = assert_error(stack.get(SNAPSHOT, f"count={MAX_COUNT + 1}"), 400, "invalid_query")
    assert detail == (
        f"the query parameter 'count' is {MAX_COUNT + 1}, more than the limit of {MAX_COUNT} "
        "(the users in the producer's newest snapshot)"
    )


def test_added_users_reach_the_snapshot_as_soon_as_the_post_returns(small_stack: Stack) -> None:
    stack = small_stack
    assert stack.get(SNAPSHOT, "count=2000").content == expected_users_json(2000)
    total = 2000
    for added in (1, 25, 400):
        response = httpx.post(f"{stack.producer.url}/api/users", json={"count": added})
        assert response.status_code == 200, response.text
        total += added
        assert response.json()["total"] == total
        # The very next request, no waiting: the publish happened before the POST returned.
        expected = orjson.dumps(build_users(total))
        for path in PATHS:
            got = stack.get(path, f"count={total}")
            assert got.status_code == 200, (path, got.text[:300])
            assert got.content == expected, path
        assert stack.get(SNAPSHOT, "count=2").content == expected_users_json(2)
    assert_error(stack.get(SNAPSHOT, f"count={total + 1}"), 400, "invalid_query")


def test_a_killed_producer_gives_json_5xx_and_a_restarted_one_is_followed(
    small_stack: Stack,
) -> None:
    stack = small_stack
    for path in PATHS:
        assert stack.get(path, "count=2").content == expected_users_json(2), path
    health = stack.producer.health()
    socket_path, channel_path = Path(health["signal_socket"]), Path(health["channel"])

    stack.producer.stop(sig=signal.SIGKILL)
    # Killed: nothing was cleaned up, and the file's lock is free.
    assert socket_path.exists() and channel_path.exists()
    assert_error(stack.get(API, "count=2"), 502, "producer_unavailable")
    detail = assert_error(stack.get(SHM_UDS, "count=2"), 502, "producer_unavailable")
    assert str(socket_path) in detail
    assert_error(stack.get(SHM, "count=2"), 502, {"producer_unavailable", "channel_error"})
    detail = assert_error(stack.get(SNAPSHOT, "count=2"), 502, "channel_error")
    assert "no longer running" in detail
    # Twice: the second request finds the dead producer's file on reopening.
    assert_error(stack.get(SNAPSHOT, "count=2"), 502, "channel_error")

    stack.restart_producer()  # replaces the stale channel file and the stale socket
    for count in (2, 1000):
        for path in PATHS:
            response = stack.get(path, f"count={count}")
            assert response.status_code == 200, (path, response.text[:500])
            assert response.content == expected_users_json(count), path
    assert stack.gateway.proc.poll() is None, "the gateway was never restarted"

    # A graceful stop removes both files: every shared-memory path finds the channel gone.
    assert stack.producer.stop() == 0
    assert not socket_path.exists() and not channel_path.exists()
    for path in (SHM, SHM_HTTP, SHM_UDS, SNAPSHOT):
        detail = assert_error(stack.get(path, "count=2"), 502, "channel_error")
        assert "does not exist" in detail


def test_without_socket_and_snapshot_auto_falls_back_to_http(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, max_count=100, signal_socket=False, snapshot=False)
    try:
        assert stack.producer.health()["signal_socket"] is None
        assert stack.get(SHM, "count=2").content == expected_users_json(2)
        assert 'path="/api/users-via-shm" count=2 signal="http"' in stack.gateway.log_text()
        detail = assert_error(stack.get(SHM_UDS, "count=2"), 502, "producer_unavailable")
        assert "users.sock" in detail
        detail = assert_error(stack.get(SNAPSHOT, "count=2"), 502, "channel_error")
        assert "no snapshot" in detail and "--snapshot" in detail
    finally:
        stop_stack(stack)


def test_a_slow_producer_on_the_socket_is_504_naming_the_timeout(tmp_path: Path) -> None:
    stack = start_stack(
        tmp_path, ("--producer-timeout-ms", "300"), max_count=100, write_delay_ms=1000
    )
    try:
        detail = assert_error(stack.get(SHM_UDS, "count=2"), 504, "producer_timeout")
        assert "300 ms" in detail and "--producer-timeout-ms" in detail
        # The producer reached the write after the budget and refused to start it.
        deadline = time.monotonic() + 10
        while "TimeoutError" not in stack.producer.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "request_id=" in stack.producer.log_text()
        assert "TimeoutError" in stack.producer.log_text()
        assert "Traceback" not in stack.producer.log_text()
        # The snapshot path never waits for the producer.
        assert stack.get(SNAPSHOT, "count=2").content == expected_users_json(2)
    finally:
        stop_stack(stack)
