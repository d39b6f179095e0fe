"""A tiny client of the signal socket's frame protocol (the frame tables: docs/design.md).

Request, 32 bytes little-endian: magic ``SBRQ``, version u16 = 1, op u16 (1 = write
users), slot u32, timeout_ms u32, request_id u64, count u64.

Response: magic ``SBRS``, status u16, reserved u16, epoch u64, slot u32, reserved u32,
request_id u64, sequence u64, length u64, message_len u32, then the UTF-8 message.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from types import TracebackType

REQUEST = struct.Struct("<4sHHIIQQ")
RESPONSE_HEAD = struct.Struct("<4sHHQIIQQQI")
assert REQUEST.size == 32 and RESPONSE_HEAD.size == 52

OK, BAD_REQUEST, TOO_LARGE, BUSY, TIMED_OUT, INTERNAL = range(6)


def request_frame(
    slot: int,
    request_id: int,
    count: int,
    *,
    timeout_ms: int = 10_000,
    magic: bytes = b"SBRQ",
    version: int = 1,
    op: int = 1,
) -> bytes:
    return REQUEST.pack(magic, version, op, slot, timeout_ms, request_id, count)


@dataclass(frozen=True)
class Answer:
    status: int
    epoch: int
    slot: int
    request_id: int
    sequence: int
    length: int
    message: str


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_answer(sock: socket.socket) -> Answer:
    head = recv_exact(sock, RESPONSE_HEAD.size)
    magic, status, reserved, epoch, slot, reserved2, request_id, sequence, length, mlen = (
        RESPONSE_HEAD.unpack(head)
    )
    assert magic == b"SBRS" and reserved == 0 and reserved2 == 0, head
    assert mlen <= 4096
    message = recv_exact(sock, mlen).decode("utf-8")
    return Answer(status, epoch, slot, request_id, sequence, length, message)


class SignalClient:
    """One persistent connection to a signal socket."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def send_raw(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def write_users(
        self, slot: int, request_id: int, count: int, *, timeout_ms: int = 10_000
    ) -> Answer:
        self.sock.sendall(request_frame(slot, request_id, count, timeout_ms=timeout_ms))
        return read_answer(self.sock)

    def read_answer(self) -> Answer:
        return read_answer(self.sock)

    def at_eof(self) -> bool:
        """Whether the server closed the connection (waits up to the socket timeout)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SignalClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
