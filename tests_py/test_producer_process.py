"""The real ``python -m py_producer`` process: start, serve, stop on a signal, clean up."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from helpers import ProducerHandle, free_port, run_producer

from py_producer import native
from py_producer.users import expected_users_json

pytestmark = pytest.mark.timeout(90)

HAS_NATIVE = native.load()[0] is not None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_and_stop(
    producer_factory: Callable[..., ProducerHandle], tmp_path: Path, sig: int
) -> None:
    producer = producer_factory(max_count=2000)
    response = httpx.get(f"{producer.url}/api/users?count=2", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == expected_users_json(2)

    health = producer.health()
    channel = health["channel"]
    if HAS_NATIVE:
        assert health["status"] == "ok"
        assert Path(channel).exists()
    else:
        assert health["status"] == "degraded"
    assert producer.shm_dir.is_dir()

    assert producer.stop(sig=sig) == 0
    log = producer.log_text()
    assert f"listening on http://127.0.0.1:{producer.port}" in log
    assert "GET /api/users?count=2 200" in log
    assert "Traceback" not in log
    if HAS_NATIVE:
        assert channel in log
        assert not Path(channel).exists(), "the channel file must be removed on shutdown"


@pytest.mark.skipif(not HAS_NATIVE, reason="native module shmbridge not built")
def test_write_to_shm_through_the_process(producer_factory: Callable[..., ProducerHandle]) -> None:
    shmbridge = pytest.importorskip("shmbridge")

    producer = producer_factory(max_count=2000, slot_count=4)
    response = httpx.post(
        f"{producer.url}/api/write-to-shm",
        params={"count": 1000, "slot": 0, "request_id": 4242},
        headers={"X-Request-Id": "e2e-1"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    data = bytes(shmbridge.Reader(answer["path"]).read_bytes(0, 4242))
    assert data == expected_users_json(1000)
    assert producer.stop() == 0
    log = producer.log_text()
    assert "x_request_id=e2e-1 slot=0 request_id=4242" in log
    assert not Path(answer["path"]).exists()


def test_bad_setting_fails_at_start() -> None:
    done = run_producer("--port", "not-a-port")
    assert done.returncode == 2
    assert "--port" in done.stderr
    done = run_producer(env={"SHMBRIDGE_SLOT_COUNT": "zero"})
    assert done.returncode == 2
    assert "SHMBRIDGE_SLOT_COUNT" in done.stderr


def test_unusable_shm_dir_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = run_producer(
        "--port", str(free_port()), "--shm-dir", str(blocker / "shm"), "--max-count", "10"
    )
    assert done.returncode == 1
    assert "cannot create shm directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_mentions_every_env_var() -> None:
    done = run_producer("--help")
    assert done.returncode == 0
    for env in (
        "SHMBRIDGE_PRODUCER_HOST",
        "SHMBRIDGE_PRODUCER_PORT",
        "SHMBRIDGE_SHM_DIR",
        "SHMBRIDGE_CHANNEL",
        "SHMBRIDGE_SLOT_COUNT",
        "SHMBRIDGE_SLOT_CAPACITY",
        "SHMBRIDGE_MAX_COUNT",
        "SHMBRIDGE_LOG_LEVEL",
        "SHMBRIDGE_TEST_WRITE_DELAY_MS",
        "SHMBRIDGE_CACHE_PAYLOAD",
        "SHMBRIDGE_SIGNAL_SOCKET",
        "SHMBRIDGE_SIGNAL_SPIN_US",
        "SHMBRIDGE_SNAPSHOT",
    ):
        assert env in done.stdout
