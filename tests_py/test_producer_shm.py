"""The producer's shared-memory side, in-process, against the real native module.

Skipped as a whole when ``shmbridge`` is not built (run ``maturin develop`` first).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from signal_helpers import BAD_REQUEST, NOT_FOUND, OK, TOO_LARGE, SignalClient

from py_producer.app import create_app
from py_producer.profiles import MAX_PROFILES, expected_profiles_json
from py_producer.settings import Settings
from py_producer.users import expected_users_json

shmbridge = pytest.importorskip(
    "shmbridge", reason="native module shmbridge not built (run `maturin develop`)"
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # Starlette prefers httpx2 for TestClient
    from starlette.testclient import TestClient

MAX_COUNT = 2000
SLOT_COUNT = 4


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = Settings(
        **{
            "shm_dir": str(tmp_path / "shm"),
            "max_count": MAX_COUNT,
            "slot_count": SLOT_COUNT,
            "slot_capacity": 1024 * 1024,
            **overrides,
        }
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as test_client:
        yield test_client


def read_slot(path: str, slot: int, request_id: int) -> bytes:
    return bytes(shmbridge.Reader(path).read_bytes(slot, request_id))


@pytest.mark.parametrize("count", [0, 2, 1000])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_write_round_trip(client: TestClient, count: int, method: str) -> None:
    request_id = 1000 + count
    response = client.request(
        method, "/api/write-to-shm", params={"count": count, "slot": 1, "request_id": request_id}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = expected_users_json(count)
    assert answer["slot"] == 1
    assert answer["request_id"] == request_id
    assert answer["length"] == len(expected)
    assert answer["encoding"] == "json"
    assert isinstance(answer["sequence"], int)
    assert isinstance(answer["epoch"], int)
    assert "note" not in answer
    assert answer["path"] == client.get("/healthz").json()["channel"]
    assert read_slot(answer["path"], 1, request_id) == expected


def test_sequence_moves(client: TestClient) -> None:
    first = client.get("/api/write-to-shm?count=2&slot=0&request_id=1").json()
    second = client.get("/api/write-to-shm?count=2&slot=0&request_id=2").json()
    assert second["sequence"] > first["sequence"]
    assert read_slot(second["path"], 0, 2) == expected_users_json(2)


def test_wrong_request_id_is_refused(client: TestClient) -> None:
    answer = client.get("/api/write-to-shm?count=2&slot=0&request_id=7").json()
    with pytest.raises(shmbridge.ShmError):
        read_slot(answer["path"], 0, 8)


def test_manual_write_uses_reserved_slot(client: TestClient) -> None:
    response = client.get("/api/write-to-shm?count=2")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["slot"] == SLOT_COUNT - 1
    assert 1 <= answer["request_id"] <= 2**63 - 1
    assert answer["note"] == f"manual write: slot {SLOT_COUNT - 1} is reserved for hand calls"
    assert read_slot(answer["path"], answer["slot"], answer["request_id"]) == (
        expected_users_json(2)
    )


def test_a_write_without_count_is_the_original_services_100_users(client: TestClient) -> None:
    response = client.get("/api/write-to-shm?slot=0&request_id=1")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert read_slot(answer["path"], 0, 1) == expected_users_json(100)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("count=2&slot=-1", "slot"),
        (f"count=2&slot={SLOT_COUNT}", "slot"),
        ("count=2&slot=x", "slot"),
        ("count=2&request_id=0", "request_id"),
        (f"count=2&request_id={2**63}", "request_id"),
        ("count=2&request_id=-5", "request_id"),
        (f"count={MAX_COUNT + 1}", "count"),
        ("count=abc", "count"),
    ],
)
def test_bad_write_parameters(client: TestClient, query: str, name: str) -> None:
    response = client.get(f"/api/write-to-shm?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert name in body["detail"]


def test_payload_too_large_is_507(tmp_path: Path) -> None:
    with make_client(tmp_path, slot_capacity=64 * 1024) as test_client:
        response = test_client.get("/api/write-to-shm?count=1000&slot=0&request_id=3")
        assert response.status_code == 507, response.text
        body = response.json()
        assert body["error"] == "payload_too_large"
        assert "SHMBRIDGE_SLOT_CAPACITY" in body["detail"]
        assert "--slot-capacity" in body["detail"]
        # a payload that fits still goes through on the same channel
        ok = test_client.get("/api/write-to-shm?count=2&slot=0&request_id=4")
        assert ok.status_code == 200, ok.text


def test_cached_payload_round_trip(tmp_path: Path) -> None:
    with make_client(tmp_path, cache_payload=True) as test_client:
        for request_id in (11, 12):
            answer = test_client.get(
                f"/api/write-to-shm?count=1000&slot=2&request_id={request_id}"
            ).json()
            assert read_slot(answer["path"], 2, request_id) == expected_users_json(1000)


def test_write_after_users_added(client: TestClient) -> None:
    total = client.post("/api/users", json={"count": 7}).json()["total"]
    answer = client.get(f"/api/write-to-shm?count={total}&slot=0&request_id=99").json()
    assert read_slot(answer["path"], 0, 99) == expected_users_json(total)


def test_write_delay(tmp_path: Path) -> None:
    with make_client(tmp_path, write_delay_ms=200) as test_client:
        start = time.monotonic()
        response = test_client.get("/api/write-to-shm?count=2&slot=0&request_id=5")
        assert response.status_code == 200
        assert time.monotonic() - start >= 0.19


def test_a_write_reached_after_its_deadline_is_refused(tmp_path: Path) -> None:
    """The gateway sends when it stops waiting; a write reached later is not done."""
    with make_client(tmp_path, write_delay_ms=100) as test_client:
        path = test_client.get("/healthz").json()["channel"]
        now_ms = time.time_ns() // 1_000_000
        late = test_client.get(
            f"/api/write-to-shm?count=2&slot=0&request_id=5&deadline_ms={now_ms + 50}"
        )
        assert late.status_code == 504, late.text
        assert late.json()["error"] == "deadline_passed"
        assert "nothing was written to slot 0" in late.json()["detail"]
        with pytest.raises(shmbridge.SlotEmpty):
            shmbridge.Reader(path).read_bytes(0)
        on_time = test_client.get(
            f"/api/write-to-shm?count=2&slot=0&request_id=6&deadline_ms={now_ms + 60_000}"
        )
        assert on_time.status_code == 200, on_time.text
        assert read_slot(path, 0, 6) == expected_users_json(2)
        bad = test_client.get("/api/write-to-shm?count=2&slot=0&request_id=7&deadline_ms=soon")
        assert bad.status_code == 400
        assert "deadline_ms" in bad.json()["detail"]


def test_channel_life_cycle(tmp_path: Path) -> None:
    with make_client(tmp_path) as test_client:
        health = test_client.get("/healthz").json()
        assert health["status"] == "ok"
        path = Path(health["channel"])
        assert path.exists()
        assert path.parent == (tmp_path / "shm").resolve() or path.parent == tmp_path / "shm"
    assert not path.exists(), "closing the app must remove the channel file"


# --- the signal socket and snapshots -----------------------------------------------------


def test_signal_socket_writes_like_the_http_endpoint(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    health = client.get("/healthz").json()
    path = health["signal_socket"]
    assert path == str(Path(health["channel"]).with_suffix(".sock"))
    with caplog.at_level(logging.INFO, logger="py_producer.access"), SignalClient(path) as sc:
        answer = sc.write_users(1, 4242, 1000)
        assert answer.status == OK, answer.message
        assert answer.epoch == health["epoch"]
        assert answer.length == len(expected_users_json(1000))
        assert read_slot(health["channel"], 1, 4242) == expected_users_json(1000)
        refused = sc.write_users(1, 4243, MAX_COUNT + 1)
        assert refused.status == BAD_REQUEST
        assert f"must be in 0..{MAX_COUNT}" in refused.message
    lines = [r.getMessage() for r in caplog.records if r.name == "py_producer.access"]
    assert any(
        line.startswith("UDS write-users?count=1000&slot=1&request_id=4242 ok ")
        and "length=" in line
        for line in lines
    ), lines
    assert any("request_id=4243 ValueError" in line for line in lines), lines


def test_signal_socket_too_large_and_delay(tmp_path: Path) -> None:
    with make_client(tmp_path, slot_capacity=64 * 1024, write_delay_ms=200) as test_client:
        path = test_client.get("/healthz").json()["signal_socket"]
        with SignalClient(path) as sc:
            start = time.monotonic()
            assert sc.write_users(0, 1, 2).status == OK
            assert time.monotonic() - start >= 0.19
            answer = sc.write_users(0, 2, 1000)
            assert answer.status == TOO_LARGE
            assert "SHMBRIDGE_SLOT_CAPACITY" in answer.message


def test_signal_socket_is_removed_on_shutdown_and_can_be_off(tmp_path: Path) -> None:
    with make_client(tmp_path) as test_client:
        path = Path(test_client.get("/healthz").json()["signal_socket"])
        assert path.exists()
    assert not path.exists()
    with make_client(tmp_path, signal_socket=False) as test_client:
        assert test_client.get("/healthz").json()["signal_socket"] is None
        assert not path.exists()


def test_snapshot_is_published_at_start_and_on_change(client: TestClient) -> None:
    health = client.get("/healthz").json()
    reader = shmbridge.Reader(health["channel"])
    generation, body = reader.read_snapshot()
    assert generation == health["snapshot_generation"] == 1
    assert body == expected_users_json(MAX_COUNT)
    total = client.post("/api/users", json={"count": 7}).json()["total"]
    generation, body = reader.read_snapshot()
    assert generation == 2 == client.get("/healthz").json()["snapshot_generation"]
    assert body == expected_users_json(total)


def test_snapshot_off(tmp_path: Path) -> None:
    with make_client(tmp_path, snapshot=False) as test_client:
        health = test_client.get("/healthz").json()
        assert health["snapshot_generation"] == 0
        with pytest.raises(shmbridge.SlotEmpty):
            shmbridge.Reader(health["channel"]).read_snapshot()
        test_client.post("/api/users", json={"count": 1})
        with pytest.raises(shmbridge.SlotEmpty):
            shmbridge.Reader(health["channel"]).read_snapshot()


def test_a_snapshot_too_large_publishes_a_marker(tmp_path: Path) -> None:
    with make_client(tmp_path, slot_capacity=64 * 1024) as test_client:
        health = test_client.get("/healthz").json()
        _, marker = shmbridge.Reader(health["channel"]).read_snapshot()
        body = json.loads(marker)
        assert body["error"] == "payload_too_large"
        assert f"{MAX_COUNT} users" in body["detail"]
        assert "SHMBRIDGE_SLOT_CAPACITY" in body["detail"]


# --- the Bridge handlers: users and profiles ---------------------------------------------


@pytest.mark.parametrize("cache", [False, True])
def test_the_users_handler_serves_todays_bytes(tmp_path: Path, cache: bool) -> None:
    with make_client(tmp_path, cache_payload=cache) as test_client:
        health = test_client.get("/healthz").json()
        with SignalClient(health["signal_socket"]) as sc:
            for request_id, params in enumerate([{"count": "7"}, {}, {"count": "0"}], 1):
                answer = sc.call(0, request_id, "users", params)
                assert answer.status == OK, answer
                count = int(params.get("count", "100"))  # absent: DEFAULT_COUNT
                # The cached payload goes out as a JSON buffer reply.
                assert answer.message == ("application/json" if cache else "")
                assert read_slot(health["channel"], 0, request_id) == expected_users_json(count)
                # The same bytes as the REST path.
                assert test_client.get("/api/users", params=params).content == read_slot(
                    health["channel"], 0, request_id
                )
            metrics = test_client.get("/metrics").text
            assert 'signal="uds"' in metrics


def test_the_profiles_handler_and_endpoint(client: TestClient) -> None:
    health = client.get("/healthz").json()
    with SignalClient(health["signal_socket"]) as sc:
        for request_id, count in enumerate([0, 1, 50], 1):
            answer = sc.call(1, request_id, "profiles", {"count": str(count)})
            assert answer.status == OK, answer
            body = read_slot(health["channel"], 1, request_id)
            assert body == expected_profiles_json(count)
            assert client.get(f"/api/profiles?count={count}").content == body
        answer = sc.call(1, 9, "profiles")
        assert answer.status == OK
        assert read_slot(health["channel"], 1, 9) == expected_profiles_json(100)
        bad = sc.call(1, 10, "profiles", {"count": str(MAX_PROFILES + 1)})
        assert bad.status == BAD_REQUEST and f"0..{MAX_PROFILES}" in bad.message
        unknown = sc.call(1, 11, "orders")
        assert unknown.status == NOT_FOUND
        assert unknown.message == 'LookupError: no handler "orders"; known: profiles, users'
    profiles = client.get("/api/profiles?count=3").json()
    assert [p["id"] for p in profiles] == [1, 2, 3]
    first = profiles[0]
    assert isinstance(first["address"]["geo"]["lat"], float)
    assert isinstance(first["work_history"], list) and isinstance(first["education"], list)
    assert 1500 < len(expected_profiles_json(1)) < 4000  # a few KB each
    assert len(client.get("/api/profiles").json()) == 100
    for query in ("count=-1", f"count={MAX_PROFILES + 1}", "count=x"):
        response = client.get(f"/api/profiles?{query}")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_parameter"


def test_profiles_are_deterministic() -> None:
    from py_producer.profiles import build_profile

    assert build_profile(42) == build_profile(42)
    assert build_profile(42) != build_profile(43)
