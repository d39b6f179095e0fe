"""The producer and the gateway that the measuring scripts start (scripts/bench.py,
scripts/request_cost.py import this from their own directory): on free ports, with the
flags of a benchmark mode, stopped on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from binaries import REPO

PY = REPO / ".venv" / "bin" / "python"

MODES = {
    "fresh": {"producer": ["--no-cache-payload"], "gateway": ["--validation", "full"]},
    "transport": {"producer": ["--cache-payload"], "gateway": ["--validation", "none"]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited during start-up (code {proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not answer {url} within {timeout:.0f} s")


class Services:
    """A producer and a gateway for one mode, stopped on exit (SIGTERM: both shut down
    cleanly). ``wrap`` puts a command before one service's (``{"gateway": ["valgrind",
    ...]}``); ``start_timeout`` and ``stop_timeout`` are each service's, in seconds."""

    def __init__(
        self,
        gateway: Path,
        mode: str,
        shm_dir: Path,
        max_count: int,
        spin_us: int | None,
        gateway_args: list[str],
        *,
        wrap: dict[str, list[str]] | None = None,
        start_timeout: float = 60,
        stop_timeout: float = 20,
    ) -> None:
        wrap = wrap or {}
        self.stop_timeout = stop_timeout
        self.pport, self.gport = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHMBRIDGE_")}
        common = ["--shm-dir", str(shm_dir)]
        if spin_us is not None:
            common += ["--signal-spin-us", str(spin_us)]
        self.producer = subprocess.Popen(
            [
                *wrap.get("producer", []),
                str(PY),
                "-m",
                "py_producer",
                "--port",
                str(self.pport),
                "--log-level",
                "warning",
                "--max-count",
                str(max_count),
                *common,
                *MODES[mode]["producer"],
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,  # its "listening" line, as the gateway's
        )
        producer_url = f"http://127.0.0.1:{self.pport}/healthz"
        wait_http(producer_url, self.producer, "producer", start_timeout)
        self.gateway = subprocess.Popen(
            [
                *wrap.get("gateway", []),
                str(gateway),
                "--port",
                str(self.gport),
                "--producer-url",
                f"http://127.0.0.1:{self.pport}",
                "--log-level",
                "warn",
                "--max-count",
                str(max_count),
                *common,
                *MODES[mode]["gateway"],
                *gateway_args,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        gateway_url = f"http://127.0.0.1:{self.gport}/healthz"
        wait_http(gateway_url, self.gateway, "gateway", start_timeout)

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in (self.gateway, self.producer):
            proc.send_signal(signal.SIGTERM)
        for proc in (self.gateway, self.producer):
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
