"""The producer app in-process (REST side): needs no native module.

The app runs with its lifespan (TestClient as a context manager), so the shm directory
is created; if the native module is missing the shm endpoints answer 503.
"""

from __future__ import annotations

import logging
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette now prefers the httpx2 package for its TestClient; httpx still works.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

from helpers import assert_error

import py_producer.app as app_module
from py_producer import native
from py_producer.app import ProducerState, create_app
from py_producer.settings import Settings
from py_producer.users import expected_users_json

MAX_COUNT = 2000


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = Settings(
        **{"shm_dir": str(tmp_path / "shm"), "max_count": MAX_COUNT, **overrides},
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as test_client:
        yield test_client


def state_of(client: TestClient) -> ProducerState:
    state: ProducerState = client.app.state.producer  # type: ignore[attr-defined]
    return state


@pytest.mark.parametrize("count", [0, 1, 2, 1000, MAX_COUNT])
def test_users(client: TestClient, count: int) -> None:
    response = client.get("/api/users", params={"count": count})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == expected_users_json(count)


def test_zero_users_is_empty_list(client: TestClient) -> None:
    assert client.get("/api/users?count=0").content == b"[]"


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("count=-1", "invalid_parameter"),
        ("count=abc", "invalid_parameter"),
        ("count=", "invalid_parameter"),
        ("count=1.5", "invalid_parameter"),
        ("count=1_000", "invalid_parameter"),
        ("count=%201", "invalid_parameter"),
        (f"count={MAX_COUNT + 1}", "invalid_parameter"),
        ("count=99999999999999999999999", "invalid_parameter"),
    ],
)
def test_bad_counts(client: TestClient, query: str, kind: str) -> None:
    response = client.get(f"/api/users?{query}")
    assert_error(response, 400, kind, "count")


@pytest.mark.parametrize("query", ["", "?"])
def test_no_count_is_the_original_services_100_users(client: TestClient, query: str) -> None:
    response = client.get(f"/api/users{query}")
    assert response.status_code == 200, response.text
    assert response.content == expected_users_json(100)


def test_no_count_is_all_the_users_when_there_are_fewer_than_100(tmp_path: Path) -> None:
    with make_client(tmp_path, max_count=7) as client:
        assert client.get("/api/users").content == expected_users_json(7)


def test_too_large_names_the_limit(client: TestClient) -> None:
    response = client.get(f"/api/users?count={MAX_COUNT + 1}")
    assert_error(response, 400, "invalid_parameter", str(MAX_COUNT), str(MAX_COUNT + 1))


def test_unknown_path_is_json_404(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found", "/nope")


def test_wrong_method_is_json_405(client: TestClient) -> None:
    assert_error(client.delete("/api/users"), 405, "method_not_allowed", "DELETE")


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert {"status", "epoch", "channel"} <= set(body)
    if native.load()[0] is None:
        assert body["status"] == "degraded"
        assert body["channel"] is None
    else:
        assert body["status"] == "ok"
        assert Path(body["channel"]).exists()


def test_shm_dir_created_private(tmp_path: Path) -> None:
    shm_dir = tmp_path / "shm"
    assert not shm_dir.exists()
    with make_client(tmp_path) as test_client:
        assert test_client.get("/healthz").status_code == 200
        assert stat.S_IMODE(shm_dir.stat().st_mode) == 0o700


def test_unusable_shm_dir_fails_startup(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    client = make_client(tmp_path, shm_dir=str(blocker / "shm"))
    with pytest.raises(Exception, match="shm directory"), client:
        pass


def test_write_to_shm_without_native_is_503(client: TestClient) -> None:
    if native.load()[0] is not None:
        pytest.skip("the native module is installed: covered by test_producer_shm.py")
    assert_error(client.get("/api/write-to-shm?count=2"), 503, "shm_unavailable", "shmbridge")


def test_post_users_appends(client: TestClient) -> None:
    response = client.post("/api/users", json={"count": 5})
    assert response.status_code == 200
    assert response.json() == {"total": MAX_COUNT + 5, "added": 5, "data_version": 2}
    # the largest accepted count follows the number of users held
    new_total = MAX_COUNT + 5
    got = client.get(f"/api/users?count={new_total}")
    assert got.content == expected_users_json(new_total)
    assert_error(client.get(f"/api/users?count={new_total + 1}"), 400, "invalid_parameter")
    assert client.get("/healthz").json()["users"] == new_total


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b"{}", b'{"count": 0}', b'{"count": 1001}', b'{"count": "3"}'],
)
def test_post_users_bad_body(client: TestClient, body: bytes) -> None:
    response = client.post("/api/users", content=body)
    assert_error(response, 400, "invalid_body", "count")
    assert state_of(client).data_version == 1


def test_post_users_bool_is_not_a_count(client: TestClient) -> None:
    assert_error(client.post("/api/users", json={"count": True}), 400, "invalid_body")


def test_post_users_hard_cap(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "USER_HARD_CAP", MAX_COUNT + 3)
    assert_error(client.post("/api/users", json={"count": 4}), 409, "user_cap_reached")
    assert client.post("/api/users", json={"count": 3}).json()["total"] == MAX_COUNT + 3


def test_data_change_hook_called(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(
        app_module, "on_data_changed", lambda state: seen.append(state.data_version)
    )
    client.post("/api/users", json={"count": 1})
    assert seen == [2]


def test_cached_payload(tmp_path: Path) -> None:
    with make_client(tmp_path, cache_payload=True) as test_client:
        state = state_of(test_client)
        assert state.cache is not None
        for _ in range(2):
            assert test_client.get("/api/users?count=1000").content == expected_users_json(1000)
        assert test_client.get("/api/users?count=2").content == expected_users_json(2)
        assert len(state.cache) == 2
        assert test_client.post("/api/users", json={"count": 10}).status_code == 200
        assert len(state.cache) == 0
        body = test_client.get(f"/api/users?count={MAX_COUNT + 10}").content
        assert body == expected_users_json(MAX_COUNT + 10)


def test_cache_is_bounded() -> None:
    cache = app_module.PayloadCache(max_entries=2, max_bytes=10)
    cache.put(1, b"aaaa")
    cache.put(2, b"bbbb")
    assert cache.get(1) == b"aaaa"  # 1 is now the most recent
    cache.put(3, b"cc")
    assert cache.get(2) is None and cache.get(1) == b"aaaa" and cache.get(3) == b"cc"
    cache.put(4, b"dddddd")  # over the byte limit: evicts the oldest until it fits
    assert cache.get(1) is None and cache.get(3) == b"cc" and cache.get(4) == b"dddddd"
    assert len(cache) == 2
    cache.put(5, b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get(5) is None


def test_access_log_line(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="py_producer.access"):
        client.get("/api/users?count=2", headers={"X-Request-Id": "req-42"})
        client.get("/api/users?count=x")
    lines = [r.getMessage() for r in caplog.records if r.name == "py_producer.access"]
    assert len(lines) == 2
    method, target, status, duration, request_id = lines[0].split()
    assert (method, target, status) == ("GET", "/api/users?count=2", "200")
    assert duration.endswith("ms") and float(duration[:-2]) >= 0
    assert request_id == "x_request_id=req-42"
    assert lines[1].split()[:3] == ["GET", "/api/users?count=x", "400"]
