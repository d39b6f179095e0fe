"""The example pair end to end: ``examples/orders_producer.py`` (a ``shmbridge.Bridge``)
and ``examples/orders_service`` (an axum service on ``shmbridge::client``).

Nothing is built here: ``make build`` builds ``target/release/orders_service``
(``SHMBRIDGE_ORDERS_SERVICE_BIN`` overrides the path). The producer runs on the repo's
``.venv`` interpreter. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import REPO_ROOT, SERVICE_LOGS, assert_error, clean_env, free_port, wait_for_http

PRODUCER_SCRIPT = REPO_ROOT / "examples" / "orders_producer.py"
READY_TIMEOUT = 30.0
RECOVERY_TIMEOUT = 30.0


def service_binary() -> Path | None:
    explicit = os.environ.get("SHMBRIDGE_ORDERS_SERVICE_BIN")
    if explicit:
        return (REPO_ROOT / explicit).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    built = target / "release" / "orders_service"
    return built if built.is_file() else None


def venv_python() -> str:
    python = REPO_ROOT / ".venv" / "bin" / "python"
    return str(python) if python.is_file() else sys.executable


pytestmark = pytest.mark.skipif(
    service_binary() is None,
    reason="orders_service not built (make build, or set SHMBRIDGE_ORDERS_SERVICE_BIN)",
)


class Producer:
    """``examples/orders_producer.py``, started and waited for until it prints ``ready``."""

    def __init__(self, shm_dir: Path, log: Path) -> None:
        self.log = log
        SERVICE_LOGS.append(log)
        self.log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [venv_python(), str(PRODUCER_SCRIPT)],
            cwd=REPO_ROOT,
            env=clean_env({"SHMBRIDGE_DIR": str(shm_dir)}),
            stdout=subprocess.PIPE,
            stderr=self.log_file,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._wait_ready()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").strip())
        self.lines.put(None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(
                    f"the producer exited ({self.proc.wait()}) before 'ready': {seen}"
                )
            seen.append(line)
            if line == "ready":
                return
        raise AssertionError(f"the producer did not print 'ready' within {READY_TIMEOUT} s: {seen}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()


@contextmanager
def orders_service(shm_dir: Path, log: Path) -> Iterator[str]:
    binary = service_binary()
    assert binary is not None
    port = free_port()
    SERVICE_LOGS.append(log)
    with log.open("ab") as log_file:
        proc = subprocess.Popen(
            [str(binary), "--port", str(port)],
            cwd=REPO_ROOT,
            env=clean_env({"SHMBRIDGE_DIR": str(shm_dir)}),
            stdout=log_file,
            stderr=log_file,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(f"{url}/orders?limit=1", proc=proc, timeout=READY_TIMEOUT)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def check_orders(url: str) -> None:
    response = httpx.get(f"{url}/orders", params={"limit": 3}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    orders = response.json()
    assert isinstance(orders, list) and len(orders) == 3, orders
    for order in orders:
        assert isinstance(order["id"], int)
        assert isinstance(order["customer"]["name"], str)
        assert isinstance(order["customer"]["city"], str)
        assert order["lines"], order
        for line in order["lines"]:
            assert isinstance(line["sku"], str)
            assert isinstance(line["qty"], int)
            assert isinstance(line["price"], float)
        assert isinstance(order["placed"], str)


def prices_ok(url: str) -> bool:
    response = httpx.get(f"{url}/prices", params={"n": 1000}, timeout=10)
    if response.status_code != 200:
        return False
    body: dict[str, Any] = response.json()
    return body == {"count": 1000, "sum": 0.5 * sum(range(1000))}


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def test_the_example_pair_serves_orders_and_prices_and_survives_a_producer_kill(
    tmp_path: Path,
) -> None:
    assert PRODUCER_SCRIPT.is_file(), f"{PRODUCER_SCRIPT} is missing"
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    producer = Producer(shm_dir, tmp_path / "producer.log")
    try:
        with orders_service(shm_dir, tmp_path / "service.log") as url:
            check_orders(url)
            assert prices_ok(url)
            assert_error(
                httpx.get(f"{url}/orders", params={"limt": 3}), 400, "invalid_query", "limt"
            )

            producer.kill()
            producer.stop()
            # The service answers errors while no producer runs, never a wrong body.
            response = httpx.get(f"{url}/prices", params={"n": 1000}, timeout=10)
            assert response.status_code != 200 or prices_ok(url)

            producer = Producer(shm_dir, tmp_path / "producer-2.log")
            poll(
                lambda: prices_ok(url),
                RECOVERY_TIMEOUT,
                "the service answering again after the restart",
            )
            check_orders(url)
    finally:
        producer.stop()
