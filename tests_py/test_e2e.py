"""End to end: the real producer process and the real gateway binary, both paths.

Checks that both gateway paths serve byte-identical bodies equal to what the producer's
users module says they must be, refuse bad counts alike, answer 502 while the producer
is down, and recover when it comes back on the same port, without a gateway restart.
The profiles (the second dataset) through the gateway's REST route, too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gateway_helpers import NEEDS_SERVICES, GatewayHandle, start_services
from helpers import ProducerHandle, assert_error, start_producer

from py_producer.params import DEFAULT_COUNT
from py_producer.profiles import MAX_PROFILES, expected_profiles_json
from py_producer.users import expected_users_json

pytestmark = [
    pytest.mark.timeout(300),
    *NEEDS_SERVICES,
]

PATHS = ("/api/users-via-api", "/api/users-via-shm")
MAX_COUNT = 100_000


@dataclass
class Stack:
    producer: ProducerHandle
    gateway: GatewayHandle
    client: httpx.Client
    tmp_path: Path

    def get(self, path: str, query: str) -> httpx.Response:
        return self.client.get(f"{self.gateway.url}{path}?{query}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    producer, gateway = start_services(
        tmp_path, ["--max-count", str(MAX_COUNT)], max_count=MAX_COUNT
    )
    client = httpx.Client(timeout=120)
    box = Stack(producer, gateway, client, tmp_path)
    try:
        yield box
    finally:
        client.close()
        # box.producer may have been replaced by a restart.
        box.producer.stop()
        assert gateway.stop() == 0, gateway.log_text()[-4000:]


def test_both_paths_serve_identical_expected_bodies(stack: Stack) -> None:
    for count in (0, 2, 1000, MAX_COUNT):
        expected = expected_users_json(count)
        for path in PATHS:
            response = stack.get(path, f"count={count}")
            assert response.status_code == 200, (path, count, response.text[:500])
            assert response.headers["content-type"] == "application/json"
            assert response.content == expected, (path, count)


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("count=-1", "without a sign"),
        ("count=abc", "got 'abc'"),
        (f"count={MAX_COUNT + 1}", f"limit of {MAX_COUNT}"),
        ("count=", "is empty"),
        ("count=1&count=2", "given 2 times"),
        ("count=1&page=2", "'page'"),
    ],
)
def test_bad_counts_are_refused_alike(stack: Stack, query: str, needle: str) -> None:
    bodies = []
    for path in PATHS:
        response = stack.get(path, query)
        assert needle in assert_error(response, 400, "invalid_query")
        bodies.append(response.content)
    assert bodies[0] == bodies[1]


def test_a_stopped_producer_gives_502_and_a_restarted_one_is_followed(stack: Stack) -> None:
    for path in PATHS:
        assert stack.get(path, "count=2").content == expected_users_json(2)
    channel_file = Path(stack.producer.health()["channel"])
    assert channel_file.exists()

    assert stack.producer.stop() == 0
    assert not channel_file.exists(), "the producer removes its channel file when it stops"
    kinds = {
        "/api/users-via-api": {"producer_unavailable"},
        # The shm path finds the channel file gone before it calls the producer.
        "/api/users-via-shm": {"channel_error", "producer_unavailable"},
    }
    for path in PATHS:
        response = stack.get(path, "count=2")
        assert response.status_code == 502, response.text
        assert response.json()["error"] in kinds[path]
        assert_error(response, 502, response.json()["error"])

    # Same port and directory: the gateway's producer URL is fixed.
    stack.producer = start_producer(
        stack.tmp_path,
        port=stack.producer.port,
        shm_dir=stack.producer.shm_dir,
        max_count=MAX_COUNT,
        timeout=60,
    )
    for count in (2, 1000):
        for path in PATHS:
            response = stack.get(path, f"count={count}")
            assert response.status_code == 200, (path, response.text[:500])
            assert response.content == expected_users_json(count)
    assert stack.gateway.proc.poll() is None, "the gateway was never restarted"


# --- the second dataset over REST through the gateway --------------------------------------

PROFILES = "/api/profiles-via-api"


def test_profiles_via_api_serves_the_producers_profiles(stack: Stack) -> None:
    for count in (0, 3, MAX_PROFILES):
        response = stack.get(PROFILES, f"count={count}")
        assert response.status_code == 200, (count, response.text[:500])
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"].isdigit()
        assert response.content == expected_profiles_json(count), count
        # The same bytes as the bridge route's call of the handler `profiles`.
        assert stack.get("/api/bridge/profiles", f"count={count}").content == response.content
    # No count: the documented default, as on the users routes.
    default = stack.client.get(f"{stack.gateway.url}{PROFILES}")
    assert default.status_code == 200, default.text[:500]
    assert default.content == expected_profiles_json(DEFAULT_COUNT)
    metrics = stack.client.get(f"{stack.gateway.url}/metrics").text
    assert f'path="{PROFILES}",status="200"' in metrics, metrics[:2000]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("count=-1", "without a sign"),
        ("count=abc", "got 'abc'"),
        (f"count={MAX_COUNT + 1}", f"limit of {MAX_COUNT}"),
        ("count=1&page=2", "'page'"),
    ],
)
def test_profiles_via_api_refuses_bad_counts_as_the_users_route(
    stack: Stack, query: str, needle: str
) -> None:
    profiles = stack.get(PROFILES, query)
    assert needle in assert_error(profiles, 400, "invalid_query")
    assert profiles.content == stack.get("/api/users-via-api", query).content


def test_profiles_via_api_passes_on_the_producers_refusal_and_absence(stack: Stack) -> None:
    # Within --max-count but more than the producer serves: its 400, quoted in a 502.
    detail = assert_error(stack.get(PROFILES, f"count={MAX_PROFILES + 1}"), 502, "producer_error")
    assert "400" in detail and f"0..{MAX_PROFILES}" in detail, detail
    assert stack.producer.stop() == 0
    assert_error(stack.get(PROFILES, "count=2"), 502, "producer_unavailable")
