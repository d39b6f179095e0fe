"""Starting and stopping the real ``rust_gateway`` binary for end-to-end tests.

The binary is taken from ``SHMBRIDGE_GATEWAY_BIN`` if set, else the newest of
``target/release/rust_gateway`` and ``target/debug/rust_gateway`` (build it first with
``cargo build -p rust_gateway``). The gateway listens on port 0 and prints its real
address on stdout; logs go to a file in the test's tmp directory.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from helpers import (
    REPO_ROOT,
    SERVICE_LOGS,
    ProducerHandle,
    clean_env,
    start_producer,
    stop_process,
)

from py_producer import native

LISTENING = re.compile(r"rust_gateway listening on (http://\S+)")


def gateway_binary() -> Path | None:
    """The gateway binary to test, or None if none is built."""
    explicit = os.environ.get("SHMBRIDGE_GATEWAY_BIN")
    if explicit:
        # Tests start processes from temporary directories: anchor a relative path.
        return (REPO_ROOT / explicit).resolve()
    built = [
        path
        for path in (
            REPO_ROOT / "target" / "release" / "rust_gateway",
            REPO_ROOT / "target" / "debug" / "rust_gateway",
        )
        if path.is_file()
    ]
    return max(built, key=lambda p: p.stat().st_mtime) if built else None


#: Skip marks for tests that start the real producer and gateway.
NEEDS_SERVICES = [
    pytest.mark.skipif(native.load()[0] is None, reason="native module shmbridge not built"),
    pytest.mark.skipif(
        gateway_binary() is None,
        reason="rust_gateway not built (cargo build -p rust_gateway, or set SHMBRIDGE_GATEWAY_BIN)",
    ),
]


@dataclass
class GatewayHandle:
    """A running gateway; stop() sends SIGTERM and waits."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    returncode: int | None = None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; kill it if it hangs (then raise). Idempotent."""
        if self.returncode is not None:
            return self.returncode
        try:
            self.returncode = stop_process(
                self.proc, "gateway", signal.SIGTERM, timeout, self.log_text
            )
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return self.returncode

    def __enter__(self) -> GatewayHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_gateway(
    binary: Path,
    tmp_path: Path,
    *,
    producer_url: str,
    shm_dir: Path,
    extra_args: Sequence[str] = (),
    timeout: float = 20.0,
) -> GatewayHandle:
    """Start the gateway on a free port and wait for its "listening on" line."""
    args = [
        str(binary),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--producer-url",
        producer_url,
        "--shm-dir",
        str(shm_dir),
        *extra_args,
    ]
    log_path = tmp_path / "gateway.log"
    if log_path not in SERVICE_LOGS:
        SERVICE_LOGS.append(log_path)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=clean_env({"RUST_LOG": ""}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    lines: queue.Queue[bytes] = queue.Queue()

    def read_first_line() -> None:
        assert proc.stdout is not None
        lines.put(proc.stdout.readline())

    threading.Thread(target=read_first_line, daemon=True).start()
    try:
        first = lines.get(timeout=timeout).decode("utf-8", "replace")
    except queue.Empty:
        first = ""
    match = LISTENING.search(first)
    if match is None:
        proc.kill()
        proc.wait(timeout=10)
        log = log_path.read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(
            f"gateway did not start (exit {proc.returncode}, first line {first!r})\n"
            f"log:\n{log[-4000:]}"
        )
    return GatewayHandle(proc, match.group(1), log_path)


def start_services(
    tmp_path: Path, gateway_args: Sequence[str] = (), **producer_settings: Any
) -> tuple[ProducerHandle, GatewayHandle]:
    """A producer (``shm_dir`` ``tmp_path/shm``, made private here) and a gateway
    pointed at it and its channel directory; the producer is stopped again if the
    gateway does not start."""
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir(mode=0o700, exist_ok=True)
    producer = start_producer(tmp_path, shm_dir=shm_dir, timeout=60, **producer_settings)
    binary = gateway_binary()
    assert binary is not None
    try:
        gateway = start_gateway(
            binary, tmp_path, producer_url=producer.url, shm_dir=shm_dir, extra_args=gateway_args
        )
    except BaseException:
        producer.stop()
        raise
    return producer, gateway
