"""Infrastructure of the reliability tests (tests_py/test_reliability.py): the services
of one test, waits on what a gateway serves, a proxy that plays a slow producer, damage
to a channel file, and what a process listens on.

Every wait is bounded and polls a condition; none is sized for a fast machine.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from gateway_helpers import GatewayHandle, gateway_binary, start_gateway
from helpers import ProducerHandle, start_producer

from py_producer.users import expected_users_json

MAX_COUNT = 10_000
CHANNEL_FILE = "users.shm"


# --- services --------------------------------------------------------------------------


@dataclass
class Services:
    """Producers and gateways of one test, all stopped at teardown."""

    tmp_path: Path
    shm_dir: Path
    producers: list[ProducerHandle] = field(default_factory=list)
    gateways: list[GatewayHandle] = field(default_factory=list)

    @property
    def channel_path(self) -> Path:
        return self.shm_dir / CHANNEL_FILE

    def producer(self, **settings: Any) -> ProducerHandle:
        settings.setdefault("max_count", MAX_COUNT)
        settings.setdefault("slot_capacity", "8MiB")
        settings.setdefault("log_level", "warning")
        handle = start_producer(self.tmp_path, shm_dir=self.shm_dir, timeout=60, **settings)
        self.producers.append(handle)
        return handle

    def restart_producer(self, old: ProducerHandle, **settings: Any) -> ProducerHandle:
        """A new producer on the port of ``old`` (the gateway's producer URL is fixed)."""
        return self.producer(port=old.port, **settings)

    def gateway(self, producer_url: str, *args: str, max_count: int = MAX_COUNT) -> GatewayHandle:
        """A gateway whose waits are far longer than any request takes on a loaded
        machine (60 s for the producer and for a slot), unless ``args`` set them: these
        tests count errors, and a wait sized for a fast machine would be a timing assert."""
        binary = gateway_binary()
        assert binary is not None
        waits = [
            arg
            for flag in ("--producer-timeout-ms", "--slot-wait-timeout-ms")
            if flag not in args
            for arg in (flag, "60000")
        ]
        handle = start_gateway(
            binary,
            self.tmp_path,
            producer_url=producer_url,
            shm_dir=self.shm_dir,
            extra_args=["--max-count", str(max_count), "--log-level", "warn", *waits, *args],
        )
        self.gateways.append(handle)
        return handle

    def stop_all(self) -> None:
        problems = []
        handles: list[GatewayHandle | ProducerHandle] = [*self.gateways, *self.producers]
        for handle in handles:
            try:
                handle.stop()
            except AssertionError as exc:
                problems.append(str(exc))
        assert not problems, "\n".join(problems)


# --- requests to a running gateway ---------------------------------------------------------


def get(url: str, timeout: float = 60.0) -> httpx.Response:
    return httpx.get(url, timeout=timeout)


def json_error(response: httpx.Response) -> dict[str, str]:
    """The ``{"error", "detail"}`` body of an error response (asserted to be one)."""
    assert response.status_code >= 400, response.text[:300]
    assert response.headers.get("content-type") == "application/json", response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str), body
    return body


def wait_until_served(url: str, count: int, timeout: float = 10.0) -> float:
    """Poll ``url?count=N`` with single requests until it serves the right body.

    Returns the seconds it took; fails after ``timeout`` with the last answer. The
    failed answers on the way are printed (run with ``-s``).
    """
    started = time.monotonic()
    failures: list[str] = []
    while time.monotonic() - started < timeout:
        try:
            response = get(f"{url}?count={count}", timeout=5)
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code == 200 and response.content == expected_users_json(count):
                if failures:
                    print(
                        f"{url}: {len(failures)} failed attempt(s) first, the last: {failures[-1]}"
                    )
                return time.monotonic() - started
            failures.append(f"{response.status_code}: {response.text[:300]}")
        time.sleep(0.01)
    last = failures[-1] if failures else "none"
    raise AssertionError(f"{url}?count={count} not served within {timeout} s; last: {last}")


def gateway_metric(gateway: GatewayHandle, name: str) -> float:
    """One unlabelled sample of the gateway's ``/metrics``; 0 while it is not set yet
    (the slot gauges appear once the channel is first opened)."""
    page = get(f"{gateway.url}/metrics", timeout=10)
    assert page.status_code == 200, page.text[:300]
    for line in page.text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def requests_killed_in_flight(
    gateway: GatewayHandle, producer: ProducerHandle, url: str, n: int
) -> list[httpx.Response]:
    """``n`` concurrent GETs of ``url``, the producer SIGKILLed once they hold ``n``
    slots (all the gateway's pool); their answers."""
    answers: list[httpx.Response] = []
    with httpx.Client(timeout=30) as client:
        threads = [
            threading.Thread(target=lambda: answers.append(client.get(url))) for _ in range(n)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while gateway_metric(gateway, "gateway_slots_in_use") < n:
            assert time.monotonic() < deadline, f"the {n} requests never took the slots"
            time.sleep(0.01)
        producer.proc.kill()
        producer.proc.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=30)
    return answers


# --- a slow producer and late writes ----------------------------------------------------


class LateWriteProxy:
    """An HTTP proxy between the gateway and the producer that plays a slow producer.

    It forwards every request, except a write-to-shm for ``marker`` users: that one it
    holds, never answering (the gateway times out), and after ``hold`` seconds performs
    the write itself, ``replays`` times ``spacing`` apart, into the slot and for the
    request id the gateway chose, without the gateway's deadline. That is what a write
    that started just before the deadline and finished after it looks like to the
    gateway: late writes into a slot it has given up on.
    """

    def __init__(
        self, upstream: str, *, marker: int, hold: float, replays: int, spacing: float
    ) -> None:
        self.upstream = upstream
        self.marker = marker
        self.hold = hold
        self.replays = replays
        self.spacing = spacing
        self.late_statuses: list[int] = []
        self.held = 0
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                proxy.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urlsplit(request.path)
        params = parse_qs(parsed.query)
        if parsed.path == "/api/write-to-shm" and params.get("count") == [str(self.marker)]:
            with self._lock:
                self.held += 1
            request.close_connection = True
            time.sleep(self.hold)
            for _ in range(self.replays):
                late = self._client.get(
                    f"{self.upstream}/api/write-to-shm",
                    params={
                        "count": self.marker,
                        "slot": params["slot"][0],
                        "request_id": params["request_id"][0],
                    },
                )
                with self._lock:
                    self.late_statuses.append(late.status_code)
                time.sleep(self.spacing)
            return  # never answered: the gateway has given up long ago
        answer = self._client.get(f"{self.upstream}{request.path}")
        request.send_response(answer.status_code)
        request.send_header("content-type", answer.headers.get("content-type", "text/plain"))
        request.send_header("content-length", str(len(answer.content)))
        request.end_headers()
        request.wfile.write(answer.content)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


# --- a corrupt channel file --------------------------------------------------------------

SLOT_TABLE = 4096  # the slot headers start after the 4 KiB header page
SLOT_HEADER = 64


def pwrite(path: Path, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


# --- sockets and processes -------------------------------------------------------------------


def listening_address(port: int) -> str | None:
    """The IPv4 address a TCP socket listens on at ``port``, from /proc/net/tcp."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        return None
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            return socket.inet_ntoa(struct.pack("<I", int(address, 16)))
    return None


def first_line(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """The first line ``proc`` prints on stdout (bounded wait)."""
    lines: list[bytes] = []
    reader = threading.Thread(
        target=lambda: lines.append(proc.stdout.readline() if proc.stdout else b""), daemon=True
    )
    reader.start()
    reader.join(timeout)
    return lines[0].decode("utf-8", "replace") if lines else ""
