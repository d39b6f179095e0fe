"""A tiny client of the signal socket's frame protocol, version 2 (src/wire.rs; the frame
tables: docs/design.md). The frames are encoded here, in Python, from the documented
layout, so the tests check the native listener against the documentation, not against
the Rust encoder.

Request, little-endian: a 32-byte head (magic ``SBRQ``, version u16 = 2, op u16 (1 =
call a handler), slot u32, timeout_ms u32, request_id u64, name_len u16, param_count
u16, params_len u32), then the name, then ``param_count`` pairs (key_len u16,
value_len u16, key, value).

Response: a 52-byte head (magic ``SBRS``, status u16, version u16 = 2, epoch u64, slot
u32, reserved u32, request_id u64, sequence u64, length u64, message_len u32), then the
UTF-8 message: the reply's content type when ok, else why it failed.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

REQUEST_HEAD = struct.Struct("<4sHHIIQHHI")
PAIR_HEAD = struct.Struct("<HH")
RESPONSE_HEAD = struct.Struct("<4sHHQIIQQQI")
V1_REQUEST = struct.Struct("<4sHHIIQQ")
assert REQUEST_HEAD.size == 32 and RESPONSE_HEAD.size == 52 and V1_REQUEST.size == 32

VERSION = 2
OK, BAD_REQUEST, TOO_LARGE, BUSY, TIMED_OUT, INTERNAL, NOT_FOUND, HANDLER_ERROR = range(8)

#: A parameter list: a mapping, or pairs (which may repeat a key, for hostile frames).
Params = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]


def _raw(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


def params_block(params: Params) -> tuple[int, bytes]:
    """(pair count, the encoded block) of ``params``, whatever they hold."""
    pairs = params.items() if isinstance(params, Mapping) else params
    count, block = 0, bytearray()
    for key, value in pairs:
        k, v = _raw(key), _raw(value)
        block += PAIR_HEAD.pack(len(k), len(v)) + k + v
        count += 1
    return count, bytes(block)


def request_frame(
    slot: int,
    request_id: int,
    name: str | bytes = "users",
    params: Params = (),
    *,
    timeout_ms: int = 10_000,
    magic: bytes = b"SBRQ",
    version: int = VERSION,
    op: int = 1,
    param_count: int | None = None,
    params_len: int | None = None,
) -> bytes:
    """A version-2 request frame; ``param_count`` and ``params_len`` override the head's
    fields (to announce what the block does not hold)."""
    raw_name = _raw(name)
    count, block = params_block(params)
    head = REQUEST_HEAD.pack(
        magic,
        version,
        op,
        slot,
        timeout_ms,
        request_id,
        len(raw_name),
        count if param_count is None else param_count,
        len(block) if params_len is None else params_len,
    )
    return head + raw_name + block


def v1_request_frame(slot: int, request_id: int, count: int) -> bytes:
    """A version-1 request (a fixed 32 bytes: write ``count`` users), which a version-2
    listener refuses by its version field."""
    return V1_REQUEST.pack(b"SBRQ", 1, 1, slot, 10_000, request_id, count)


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
    magic, status, version, epoch, slot, reserved, request_id, sequence, length, mlen = (
        RESPONSE_HEAD.unpack(head)
    )
    assert magic == b"SBRS" and version == VERSION and reserved == 0, head
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

    def call(
        self,
        slot: int,
        request_id: int,
        name: str | bytes,
        params: Params = (),
        *,
        timeout_ms: int = 10_000,
    ) -> Answer:
        """Calls handler ``name`` with ``params`` into ``slot``; returns the answer."""
        self.sock.sendall(request_frame(slot, request_id, name, params, timeout_ms=timeout_ms))
        return read_answer(self.sock)

    def write_users(
        self, slot: int, request_id: int, count: int, *, timeout_ms: int = 10_000
    ) -> Answer:
        """Calls handler ``users`` with ``count``."""
        return self.call(slot, request_id, "users", {"count": str(count)}, timeout_ms=timeout_ms)

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
