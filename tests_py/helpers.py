"""Shared test helpers: free ports, waiting for HTTP, starting and stopping the producer.

End-to-end tests (gateway + producer) reuse these::

    from helpers import start_producer

    with start_producer(tmp_path, max_count=2000) as producer:
        httpx.get(f"{producer.url}/api/users?count=2")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def assert_error(response: httpx.Response, status: int, kind: str | set[str], *words: str) -> str:
    """Checks an error answer of either service: ``status``, a JSON body of exactly
    ``{"error", "detail"}``, ``error`` among ``kind``, a non-empty ``detail`` holding every
    one of ``words``. Returns the detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    kinds = {kind} if isinstance(kind, str) else kind
    assert body["error"] in kinds, body
    detail = body["detail"]
    assert isinstance(detail, str) and detail, body
    for word in words:
        assert word in detail, (word, detail)
    return detail


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(
    url: str,
    *,
    timeout: float = 20.0,
    proc: subprocess.Popen[Any] | None = None,
    status: int = 200,
) -> httpx.Response:
    """Poll ``url`` until it answers ``status``; fail early if ``proc`` exits.

    Raises TimeoutError after ``timeout`` seconds, RuntimeError if the process died.
    """
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError as exc:
            last_problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == status:
                return response
            last_problem = f"status {response.status_code}: {response.text[:200]}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer {status} within {timeout} s ({last_problem})")
        time.sleep(0.05)


def _producer_args(settings: Mapping[str, Any]) -> list[str]:
    """Settings as flags: ``max_count=5`` -> ``--max-count 5``; True/False -> --x/--no-x."""
    args: list[str] = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + name.replace("_", "-"))
        elif value is not None:
            args.extend([flag, str(value)])
    return args


#: Log files of the services the running test started; conftest.py shows their ends
#: when the test fails, so a failure explains itself.
SERVICE_LOGS: list[Path] = []


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without SHMBRIDGE_* variables (so the caller's shell cannot leak in)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHMBRIDGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    if overrides:
        env.update(overrides)
    return env


def stop_process(
    proc: subprocess.Popen[bytes], name: str, sig: int, timeout: float, log_text: Callable[[], str]
) -> int:
    """Send `sig` and wait up to `timeout`; if the process hangs, kill it and raise
    AssertionError with the end of its log. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError(
                f"{name} did not stop within {timeout} s of signal {sig}; killed.\n"
                f"log:\n{log_text()[-4000:]}"
            ) from None
    return proc.returncode


@dataclass
class ProducerHandle:
    """A running ``python -m py_producer``; stop() sends SIGTERM and waits."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    shm_dir: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    returncode: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=5.0).json()
        return data

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int:
        """Ask the producer to stop (SIGTERM by default) and wait; kill it if it hangs.

        Returns the exit code; idempotent. Raises AssertionError if it had to be killed.
        """
        if self.returncode is not None:
            return self.returncode
        self.returncode = stop_process(self.proc, "producer", sig, timeout, self.log_text)
        return self.returncode

    def __enter__(self) -> ProducerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_producer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m py_producer *args`` run to its end (for start-up refusals and --help),
    its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "py_producer", *args],
        cwd=REPO_ROOT,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_producer(
    tmp_path: Path,
    *,
    timeout: float = 20.0,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    **settings: Any,
) -> ProducerHandle:
    """Start ``python -m py_producer`` from the repo root and wait for /healthz.

    ``settings`` are producer settings by field name (``max_count=2000``,
    ``cache_payload=True``, ``write_delay_ms=100`` ...). The port defaults to a free one and
    the shm directory to ``tmp_path / "shm"``. Output goes to ``tmp_path/producer-N.log``.
    """
    host = str(settings.pop("host", "127.0.0.1"))
    fixed_port = settings.pop("port", None)
    shm_dir = Path(settings.pop("shm_dir", tmp_path / "shm"))
    attempts = 1 if fixed_port is not None else 3
    for attempt in range(attempts):
        port = int(fixed_port) if fixed_port is not None else free_port(host)
        args = [
            sys.executable,
            "-m",
            "py_producer",
            "--host",
            host,
            "--port",
            str(port),
            "--shm-dir",
            str(shm_dir),
            *_producer_args(settings),
            *extra_args,
        ]
        log_path = tmp_path / f"producer-{port}-{attempt}.log"
        SERVICE_LOGS.append(log_path)
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env=clean_env(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        handle = ProducerHandle(proc, host, port, shm_dir, log_path, args)
        try:
            wait_for_http(f"{handle.url}/healthz", timeout=timeout, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            with contextlib.suppress(AssertionError):
                handle.stop(timeout=5)
            log = handle.log_text()
            if "address already in use" in log.lower() and attempt + 1 < attempts:
                continue  # lost the race for the free port: try another one
            raise RuntimeError(f"producer did not start: {exc}\nlog:\n{log[-4000:]}") from None
        return handle
    raise AssertionError("unreachable")
