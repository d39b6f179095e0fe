"""``shmbridge.Bridge``: a producer script in its own process, called over the real signal
socket with version-2 frames encoded by the test helpers, its slots read back with the
native Reader. No transport is mocked."""

from __future__ import annotations

import array
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import shmbridge
from native_helpers import private_dir
from signal_helpers import (
    BAD_REQUEST,
    BUSY,
    HANDLER_ERROR,
    INTERNAL,
    NOT_FOUND,
    OK,
    TIMED_OUT,
    TOO_LARGE,
    SignalClient,
)

pytestmark = pytest.mark.timeout(120)

SLOT_COUNT = 128
CAPACITY = 256 * 1024

PRODUCER = r"""
import asyncio, array, struct, sys, threading
import shmbridge

directory, slot_count, capacity = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bridge = shmbridge.Bridge("bridged", directory, slot_count=slot_count, slot_capacity=capacity,
                          snapshot_slots=2)

@bridge.handler("echo")
def echo(params):
    return {"params": dict(params), "nested": [1, 2.5, None, {"é": True}]}

@bridge.handler("nums")
async def nums(params):
    await asyncio.sleep(0)
    n = int(params.get("n", "8"))
    return shmbridge.Reply(struct.pack(f"<{n}d", *(i * 0.5 for i in range(n))),
                           content_type="application/x-f64le")

@bridge.handler("raw")
def raw(params):
    size = int(params.get("size", "16"))
    data = bytes(i % 251 for i in range(size))
    kind = params.get("kind", "bytes")
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "array":
        return array.array("B", data)  # a buffer that is not bytes
    if kind == "strided":
        return memoryview(data + data)[::2]  # not contiguous
    raise ValueError(f"unknown kind {kind!r}")

@bridge.handler("jsonbuf")
def jsonbuf(params):
    return shmbridge.Reply(b'{"cached":true}', content_type="application/json")

@bridge.handler("text")
def text(params):
    return shmbridge.Reply("héllo".encode(), content_type="text/plain; charset=utf-8")

@bridge.handler("frame", writes=True)
def frame(params, out):
    size = int(params.get("size", "64"))
    view = out.reserve(size)
    for i in range(size):
        view[i] = (i * 7) % 256
    out.content_type = "application/x-frame"
    if params.get("fail") == "1":
        raise RuntimeError("frame failed after reserving")

@bridge.handler("lazy", writes=True)
def lazy(params, out):
    pass

@bridge.handler("fail")
def fail(params):
    kind = params["kind"]
    if kind == "value":
        raise ValueError("bad value")
    if kind == "lookup":
        raise LookupError("nothing here")
    if kind == "key":
        return {}["missing"]
    if kind == "timeout":
        raise TimeoutError("too slow")
    if kind == "large":
        return b"x" * (capacity + 1)
    if kind == "busy":
        raise shmbridge.SlotBusy("busy now")
    if kind == "notjson":
        return {"x": object()}
    raise RuntimeError("boom: " + kind)

@bridge.handler("afail")
async def afail(params):
    raise ZeroDivisionError("async boom")

@bridge.handler("slow")
async def slow(params):
    await asyncio.sleep(float(params["s"]))
    return {"slept": params["s"]}

bridge.serve()
bridge.publish({"snapshot": 1})
print("ready", bridge.uds_path, bridge.channel.path, flush=True)
sys.stdin.read()  # until the test closes our stdin
bridge.close()
print("closed", flush=True)
"""


@dataclass
class Producer:
    proc: subprocess.Popen[str]
    socket: str
    channel: str

    def reader(self) -> shmbridge.Reader:
        return shmbridge.Reader(self.channel)


@pytest.fixture(scope="module")
def producer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Producer]:
    directory = private_dir(tmp_path_factory.mktemp("bridge"))
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(directory), str(SLOT_COUNT), str(CAPACITY)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()  # blocks until the script is serving (or died)
    if not line.startswith("ready "):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"producer did not start: {line!r} {err[-3000:]}")
    _, socket_path, channel_path = line.split()
    try:
        yield Producer(proc, socket_path, channel_path)
    finally:
        out, err = proc.communicate(timeout=30)  # closes our end of its stdin first
        assert proc.returncode == 0, err[-3000:]
        assert "closed" in out
        assert not Path(socket_path).exists() and not Path(channel_path).exists()


def raw_bytes(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def test_sync_handler_writes_json(producer: Producer) -> None:
    with SignalClient(producer.socket) as client:
        answer = client.call(0, 1, "echo", {"city": "Zürich", "n": "3"})
    assert answer.status == OK, answer
    assert answer.message == ""  # the slot's encoding (json) decides
    body = producer.reader().read_bytes(0, 1)
    expected = {"params": {"city": "Zürich", "n": "3"}, "nested": [1, 2.5, None, {"é": True}]}
    assert body == shmbridge.dumps(expected)
    assert answer.length == len(body)


def test_async_handler_reply_with_content_type(producer: Producer) -> None:
    with SignalClient(producer.socket) as client:
        for request_id, n in enumerate([0, 1, 8, 10_000], 10):
            answer = client.call(1, request_id, "nums", {"n": str(n)})
            assert answer.status == OK, answer
            assert answer.message == "application/x-f64le"
            body = producer.reader().read_bytes(1, request_id)
            assert body == struct.pack(f"<{n}d", *(i * 0.5 for i in range(n)))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "array", "strided"])
def test_buffers_are_written_raw(producer: Producer, kind: str) -> None:
    with SignalClient(producer.socket) as client:
        answer = client.call(2, 20, "raw", {"kind": kind, "size": "1000"})
    assert answer.status == OK, answer
    assert answer.message == ""
    reader = producer.reader()
    expected = raw_bytes(1000)
    if kind == "strided":
        expected = (expected + expected)[::2]
    assert reader.read_bytes(2, 20) == expected


def test_a_json_buffer_reply_has_encoding_json(producer: Producer) -> None:
    with SignalClient(producer.socket) as client:
        answer = client.call(3, 30, "jsonbuf")
        assert answer.status == OK and answer.message == "application/json"
        assert producer.reader().read_json(3, 30) == {"cached": True}
        answer = client.call(3, 31, "text")
        assert answer.status == OK and answer.message == "text/plain; charset=utf-8"
        assert producer.reader().read_bytes(3, 31) == "héllo".encode()


def test_in_place_writer(producer: Producer) -> None:
    with SignalClient(producer.socket) as client:
        answer = client.call(4, 40, "frame", {"size": "4096"})
        assert answer.status == OK, answer
        assert answer.message == "application/x-frame"
        assert producer.reader().read_bytes(4, 40) == bytes((i * 7) % 256 for i in range(4096))
        # An exception after reserving abandons the slot: nothing is published.
        answer = client.call(5, 41, "frame", {"size": "16", "fail": "1"})
        assert answer.status == HANDLER_ERROR
        assert answer.message == "RuntimeError: frame failed after reserving"
        with pytest.raises(shmbridge.SlotEmpty):
            producer.reader().read_bytes(5)
        answer = client.call(5, 42, "frame", {"size": str(CAPACITY + 1)})
        assert answer.status == TOO_LARGE, answer
        answer = client.call(5, 43, "lazy")
        assert answer.status == INTERNAL
        assert "returned without calling out.reserve()" in answer.message
        # The slot is free again.
        assert client.call(5, 44, "frame", {"size": "8"}).status == OK


ERRORS = [
    ({"kind": "value"}, BAD_REQUEST, "ValueError: bad value"),
    ({"kind": "lookup"}, NOT_FOUND, "LookupError: nothing here"),
    ({"kind": "key"}, NOT_FOUND, "KeyError: 'missing'"),
    ({}, NOT_FOUND, "KeyError: 'kind'"),
    ({"kind": "timeout"}, TIMED_OUT, "TimeoutError: too slow"),
    ({"kind": "large"}, TOO_LARGE, "PayloadTooLarge"),
    ({"kind": "busy"}, BUSY, "SlotBusy: busy now"),
    ({"kind": "other"}, HANDLER_ERROR, "RuntimeError: boom: other"),
    ({"kind": "notjson"}, INTERNAL, "NotSerializable"),
]


@pytest.mark.parametrize(("params", "status", "message"), ERRORS)
def test_every_error_mapping(
    producer: Producer, params: dict[str, str], status: int, message: str
) -> None:
    with SignalClient(producer.socket) as client:
        answer = client.call(6, 60, "fail", params)
        assert answer.status == status, answer
        assert answer.message.startswith(message), answer.message
        assert "Traceback" not in answer.message and "File " not in answer.message
        assert (answer.slot, answer.request_id, answer.length) == (6, 60, 0)
        assert client.call(6, 61, "echo").status == OK  # the connection lives on


def test_async_errors_and_the_unknown_handler(producer: Producer) -> None:
    with SignalClient(producer.socket) as client:
        answer = client.call(7, 70, "afail")
        assert (answer.status, answer.message) == (HANDLER_ERROR, "ZeroDivisionError: async boom")
        answer = client.call(7, 71, "nope")
        assert answer.status == NOT_FOUND
        assert answer.message == (
            'LookupError: no handler "nope"; known: afail, echo, fail, frame, jsonbuf, '
            "lazy, nums, raw, slow, text"
        )


def test_an_async_handler_is_bounded_by_the_request_budget(producer: Producer) -> None:
    with SignalClient(producer.socket) as client:
        answer = client.call(8, 80, "slow", {"s": "5"}, timeout_ms=200)
        assert answer.status == TIMED_OUT, answer
        assert "did not finish within the request's budget" in answer.message
        with pytest.raises(shmbridge.SlotEmpty):
            producer.reader().read_bytes(8)
        answer = client.call(8, 81, "slow", {"s": "0.01"}, timeout_ms=10_000)
        assert answer.status == OK
        assert producer.reader().read_json(8, 81) == {"slept": "0.01"}


def test_the_snapshot_is_published(producer: Producer) -> None:
    assert producer.reader().read_snapshot_json()[1] == {"snapshot": 1}


def expected_for(kind: int, i: int) -> tuple[str, dict[str, str], bytes]:
    """(handler, params, the bytes it writes) for mixed request ``kind``."""
    if kind == 0:
        params = {"i": str(i)}
        return (
            "echo",
            params,
            shmbridge.dumps({"params": params, "nested": [1, 2.5, None, {"é": True}]}),
        )
    if kind == 1:
        n = i % 300
        return "nums", {"n": str(n)}, struct.pack(f"<{n}d", *(j * 0.5 for j in range(n)))
    if kind == 2:
        size = (i * 997) % 20_000
        return "raw", {"kind": "array", "size": str(size)}, raw_bytes(size)
    size = (i * 31) % 5000
    return "frame", {"size": str(size)}, bytes((j * 7) % 256 for j in range(size))


def test_concurrency_100_mixed_handlers_no_mismatch(producer: Producer) -> None:
    clients = 100
    per_client = 8
    mismatches: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(clients, timeout=60)

    def run(index: int) -> None:
        slot = index + 10  # each client owns a slot
        reader = producer.reader()
        try:
            with SignalClient(producer.socket, timeout=60) as client:
                start.wait()
                for k in range(per_client):
                    request_id = index * 1000 + k + 1
                    name, params, expected = expected_for((index + k) % 4, request_id)
                    answer = client.call(slot, request_id, name, params, timeout_ms=30_000)
                    if answer.status != OK:
                        mismatches.append(f"{name} {request_id}: {answer}")
                        continue
                    body = reader.read_bytes(slot, request_id)
                    if body != expected or answer.length != len(expected):
                        mismatches.append(f"{name} {request_id}: {len(body)} bytes differ")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert mismatches == []


# --- in this process: registration and replies ------------------------------------------


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[shmbridge.Bridge]:
    with shmbridge.Bridge("local", private_dir(tmp_path), slot_count=2, slot_capacity=4096) as b:
        yield b


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "../x", "a/b", "Users", "_x", ".x", "-x", "a b", "é", "a\0"]
)
def test_bad_handler_names_are_refused_at_registration(bridge: shmbridge.Bridge, name: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        bridge.handler(name)


def test_registration(bridge: shmbridge.Bridge) -> None:
    @bridge.handler("x" * 64)
    def long_name(params: object) -> object:
        return None

    @bridge.handler("a.b_c-1")
    async def other(params: object) -> object:
        return None

    assert bridge.handlers == ["a.b_c-1", "x" * 64]
    with pytest.raises(ValueError, match="already registered"):
        bridge.handler("a.b_c-1")(long_name)
    with pytest.raises(TypeError, match="plain function"):
        bridge.handler("w", writes=True)(other)
    with pytest.raises(LookupError, match=r'no handler "zz"; known: a\.b_c-1, x{64}'):
        bridge.dispatch(0, 1, "zz", {})


def test_reply_checks_its_content_type() -> None:
    assert shmbridge.Reply(b"", content_type="text/csv").content_type == "text/csv"
    assert shmbridge.Reply([1]).content_type is None
    for bad in ["", "text/plain\r\nX: 1", "é/x", "x" * 256, " x"]:
        with pytest.raises(ValueError, match="content type"):
            shmbridge.Reply(b"", content_type=bad)


def test_dispatch_in_process(bridge: shmbridge.Bridge) -> None:
    @bridge.handler("arr")
    def arr(params: object) -> object:
        return array.array("d", [1.0, 2.0])

    @bridge.handler("cached")
    def cached(params: object) -> object:
        return shmbridge.Reply(memoryview(b'{"a":1}'), content_type="application/problem+json")

    @bridge.handler("obj")
    def obj(params: object) -> object:
        return shmbridge.Reply({"a": 1}, content_type="application/json")

    receipt, content_type = bridge.dispatch(1, 5, "arr", {})
    assert (receipt.encoding, content_type, receipt.length) == ("raw", "", 16)
    reader = shmbridge.Reader(bridge.channel.path)
    assert reader.read_bytes(1, 5) == array.array("d", [1.0, 2.0]).tobytes()
    receipt, content_type = bridge.dispatch(0, 6, "cached", {})
    assert (receipt.encoding, content_type) == ("json", "application/problem+json")
    receipt, content_type = bridge.dispatch(0, 7, "obj", {})
    assert (receipt.encoding, content_type) == ("json", "application/json")
    assert reader.read_bytes(0, 7) == b'{"a":1}'


def test_a_plain_script_is_a_complete_producer(tmp_path: Path) -> None:
    """examples/orders_producer.py: serves, publishes, answers, and stops on SIGTERM."""
    import os
    import signal

    directory = private_dir(tmp_path)
    script = Path(__file__).resolve().parent.parent / "examples" / "orders_producer.py"
    env = {**os.environ, "SHMBRIDGE_DIR": str(directory)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        reader = shmbridge.Reader(directory / "orders.shm")
        snapshot = reader.read_snapshot_json()[1]
        assert [o["id"] for o in snapshot] == [1000, 999, 998, 997, 996]
        with SignalClient(str(directory / "orders.sock")) as client:
            answer = client.call(0, 1, "recent", {"limit": "3"})
            assert answer.status == OK and answer.message == ""
            orders = reader.read_json(0, 1)
            assert [o["id"] for o in orders] == [1000, 999, 998]
            first = orders[0]
            assert set(first) == {"id", "customer", "lines", "placed"}
            assert set(first["customer"]) == {"name", "city"}
            assert isinstance(first["lines"][0]["price"], float)
            assert first["placed"].endswith("+00:00")
            assert client.call(0, 2, "recent").status == OK  # no limit: 10
            assert len(reader.read_json(0, 2)) == 10
            answer = client.call(1, 3, "prices", {"n": "5"})
            assert answer.status == OK and answer.message == "application/x-f64le"
            assert reader.read_bytes(1, 3) == struct.pack("<5d", 0.0, 0.5, 1.0, 1.5, 2.0)
            assert client.call(1, 4, "prices").length == 8 * 8
            for params in ({"limit": "1001"}, {"limit": "-1"}, {"limit": "x"}):
                assert client.call(0, 5, "recent", params).status == BAD_REQUEST
            assert client.call(0, 6, "prices", {"n": "100001"}).status == BAD_REQUEST
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not (directory / "orders.shm").exists()
        assert not (directory / "orders.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_docs_example_shape() -> None:
    """Everything the issue names is importable from shmbridge."""
    for name in ("Bridge", "Reply", "Out", "PayloadTooLarge"):
        assert name in shmbridge.__all__ and hasattr(shmbridge, name)
