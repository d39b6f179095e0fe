"""``Channel.serve_uds``: the native signal listener, driven by a tiny socket client."""

from __future__ import annotations

import ctypes
import gc
import os
import socket
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import shmbridge
from native_helpers import make_channel, private_dir
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
    request_frame,
    v1_request_frame,
)

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[int, int, str, dict[str, str]], object]


@pytest.fixture
def shm_dir(tmp_path: Path) -> Path:
    return private_dir(tmp_path)


@pytest.fixture
def channel(shm_dir: Path) -> Iterator[shmbridge.Channel]:
    with make_channel(shm_dir) as ch:
        yield ch


def writer(channel: shmbridge.Channel) -> Handler:
    """Handler ``users``: writes ``count`` rows."""

    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        assert name == "users", name
        count = int(params["count"])
        return channel.write_json(slot, request_id, [{"id": i + 1} for i in range(count)])

    return handle


def count_of(params: dict[str, str]) -> int:
    return int(params["count"])


def expected(count: int) -> bytes:
    return shmbridge.dumps([{"id": i + 1} for i in range(count)])


@pytest.mark.parametrize("spin_us", [0, 1000])
def test_round_trip_on_one_connection(
    channel: shmbridge.Channel, shm_dir: Path, spin_us: int
) -> None:
    path = channel.serve_uds(writer(channel), spin_us=spin_us)
    assert path == str(shm_dir / "test.sock")
    assert channel.uds_path == path
    reader = shmbridge.Reader(channel.path)
    with SignalClient(path) as client:
        for request_id, (slot, count) in enumerate([(0, 2), (1, 0), (2, 1000), (0, 3)], 1):
            answer = client.write_users(slot, request_id, count)
            assert answer.status == OK, answer.message
            assert (answer.slot, answer.request_id) == (slot, request_id)
            assert answer.epoch == channel.epoch
            assert answer.message == ""
            assert answer.length == len(expected(count))
            assert answer.sequence > 0 and answer.sequence % 2 == 0
            assert reader.read_bytes(slot, request_id) == expected(count)


def test_connections_are_served_concurrently(channel: shmbridge.Channel) -> None:
    gate = threading.Barrier(2, timeout=10)

    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        gate.wait()  # both requests must be inside the handler at once
        return writer(channel)(slot, request_id, name, params)

    path = channel.serve_uds(handle)
    answers = {}

    def ask(slot: int) -> None:
        with SignalClient(path) as client:
            answers[slot] = client.write_users(slot, 10 + slot, 5)

    threads = [threading.Thread(target=ask, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert {slot: a.status for slot, a in answers.items()} == {0: OK, 1: OK}


def test_handler_exceptions_become_statuses(channel: shmbridge.Channel) -> None:
    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        count = count_of(params)
        if count == 1:
            raise ValueError("count 1 is not served")
        if count == 2:
            raise shmbridge.SlotBusy("slot is busy")
        if count == 3:
            raise TimeoutError("too late")
        if count == 4:
            raise RuntimeError("boom")
        if count == 5:
            return "not a receipt"
        if count == 6:
            raise KeyError("no such thing")
        if count == 7:
            raise shmbridge.ChannelClosed("closed under us")
        if count == 8:
            return (channel.write_json(slot, request_id, []), 42)
        if count == 9:
            return (channel.write_json(slot, request_id, []), "text/plain\r\nX-Evil: 1")
        if count == 10:
            raise IndexError("list index out of range")
        return channel.write_json(slot, request_id, ["x" * 1000] * count)

    path = channel.serve_uds(handle)
    with SignalClient(path) as client:
        cases = [
            (1, BAD_REQUEST, "ValueError: count 1 is not served"),
            (2, BUSY, "SlotBusy: slot is busy"),
            (3, TIMED_OUT, "TimeoutError: too late"),
            (4, HANDLER_ERROR, "RuntimeError: boom"),
            (5, INTERNAL, "the handler returned a str, not a Receipt"),
            (6, NOT_FOUND, "KeyError: 'no such thing'"),
            (7, INTERNAL, "ChannelClosed: closed under us"),
            (8, INTERNAL, "content type is a int, not a str"),
            (9, INTERNAL, "printable ASCII"),
            (10, NOT_FOUND, "IndexError: list index out of range"),
            (1000, TOO_LARGE, "PayloadTooLarge"),
        ]
        for count, status, needle in cases:
            answer = client.write_users(0, 100 + count, count)
            assert answer.status == status, (count, answer)
            assert needle in answer.message, (count, answer.message)
            assert (answer.slot, answer.request_id) == (0, 100 + count)
            assert (answer.sequence, answer.length) == (0, 0)
            assert "Traceback" not in answer.message
        # The native layer's own refusals (bad slot, request id 0) are ValueErrors.
        answer = client.write_users(99, 7, 0)
        assert answer.status == BAD_REQUEST and "slot 99 does not exist" in answer.message
        answer = client.write_users(0, 0, 0)
        assert answer.status == BAD_REQUEST and "request id 0" in answer.message
        # Still serving on the same connection.
        assert client.write_users(1, 8, 0).status == OK


def send_holding_the_gil(fd: int, data: bytes) -> int:
    """``send(2)`` through ctypes' ``PyDLL``, which does not release the GIL."""
    libc = ctypes.PyDLL(None)
    libc.send.restype = ctypes.c_ssize_t
    libc.send.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    return int(libc.send(fd, data, len(data), 0))


def test_an_expired_budget_skips_the_handler(channel: shmbridge.Channel) -> None:
    calls: list[int] = []

    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        calls.append(request_id)
        return writer(channel)(slot, request_id, name, params)

    path = channel.serve_uds(handle)
    with SignalClient(path) as client:
        frame = request_frame(0, 77, "users", {"count": "2"}, timeout_ms=50)
        old = sys.getswitchinterval()
        sys.setswitchinterval(10.0)
        try:
            # Sent without releasing the GIL (a PyDLL call keeps it; socket.send lets
            # it go, and the listener could take it and start the handler in time),
            # then the GIL held well past the budget: the handler cannot start.
            assert send_holding_the_gil(client.sock.fileno(), frame) == len(frame)
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:
                pass
        finally:
            sys.setswitchinterval(old)
        answer = client.read_answer()
        assert answer.status == TIMED_OUT, answer
        assert "budget of 50 ms" in answer.message
        assert calls == []
        assert client.write_users(0, 78, 2, timeout_ms=0).status == OK  # 0: no deadline
    assert calls == [78]


def test_a_write_after_the_budget_never_starts(channel: shmbridge.Channel) -> None:
    def slow(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        time.sleep(0.2)
        return writer(channel)(slot, request_id, name, params)

    path = channel.serve_uds(slow)
    with SignalClient(path) as client:
        answer = client.write_users(0, 5, 2, timeout_ms=50)
        assert answer.status == TIMED_OUT, answer
        assert "TimeoutError" in answer.message and "budget of 50 ms" in answer.message
        with pytest.raises(shmbridge.SlotEmpty):
            shmbridge.Reader(channel.path).read_bytes(0)
        assert client.write_users(0, 6, 2, timeout_ms=5000).status == OK
    # Outside a listener thread there is no budget.
    assert channel.write_json(1, 7, []).length == 2


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (request_frame(0, 1, magic=b"XXXX"), "bad magic"),
        (request_frame(0, 1, version=3), "protocol version 3"),
        (request_frame(0, 1, op=9), "unknown op 9"),
        (b"SBRQ\x02\x00", "cut short: 6 of 32 bytes"),
        (request_frame(0, 1)[:-2], "cut short: 3 of the 5 bytes"),
    ],
)
def test_malformed_frames_are_answered_then_closed(
    channel: shmbridge.Channel, frame: bytes, needle: str
) -> None:
    path = channel.serve_uds(writer(channel))
    with SignalClient(path) as client:
        client.send_raw(frame)
        if "cut short" in needle:  # the rest never comes
            client.sock.shutdown(socket.SHUT_WR)
        answer = client.read_answer()
        assert answer.status == BAD_REQUEST
        assert needle in answer.message
        assert answer.request_id == (1 if "of the 5 bytes" in needle else 0)
        assert client.at_eof()
    with SignalClient(path) as client:  # the listener lives on
        assert client.write_users(0, 5, 1).status == OK


def test_a_version_1_frame_gets_the_version_error_and_the_connection_closes(
    channel: shmbridge.Channel,
) -> None:
    calls: list[int] = []

    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        calls.append(request_id)
        return writer(channel)(slot, request_id, name, params)

    path = channel.serve_uds(handle)
    with SignalClient(path) as client:
        client.send_raw(v1_request_frame(0, 5, 3))  # no shutdown: the listener closes
        answer = client.read_answer()
        assert answer.status == BAD_REQUEST, answer
        assert "protocol version 1" in answer.message and "version 2" in answer.message
        assert client.at_eof()
    assert calls == []
    with pytest.raises(shmbridge.SlotEmpty):
        shmbridge.Reader(channel.path).read_bytes(0)


HOSTILE: list[tuple[str, bytes, str]] = [
    ("name too long", request_frame(0, 3, "x" * 65), "handler name is 65 bytes"),
    ("empty name", request_frame(0, 3, b""), "handler name is empty"),
    ("name traversal", request_frame(0, 3, "../x"), "outside [a-z0-9_.-]"),
    ("name with a slash", request_frame(0, 3, "users/x"), "outside [a-z0-9_.-]"),
    ("name with NUL", request_frame(0, 3, b"users\0"), "outside [a-z0-9_.-]"),
    ("name not UTF-8", request_frame(0, 3, b"us\xffrs"), "outside [a-z0-9_.-]"),
    ("name upper case", request_frame(0, 3, "Users"), "outside [a-z0-9_.-]"),
    ("key not UTF-8", request_frame(0, 3, "users", [(b"c\xff", "1")]), "not UTF-8"),
    ("value not UTF-8", request_frame(0, 3, "users", [("count", b"\xc3")]), "not UTF-8"),
    ("NUL in a value", request_frame(0, 3, "users", [("count", "1\0")]), "NUL"),
    ("NUL in a key", request_frame(0, 3, "users", [("co\0unt", "1")]), "NUL"),
    ("empty key", request_frame(0, 3, "users", [("", "1")]), "empty name"),
    ("a key twice", request_frame(0, 3, "users", [("a", "1"), ("a", "2")]), "given twice"),
    (
        "65 pairs",
        request_frame(0, 3, "users", [(f"k{i}", "v") for i in range(65)]),
        "65 parameters",
    ),
    (
        "params over 8 KiB",
        request_frame(0, 3, "users", {"count": "1", "pad": "x" * 8200}),
        "at most 8192",
    ),
    (
        "a block larger than announced",
        request_frame(0, 3, "users", {"a": "1", "b": "2"}, param_count=1),
        "does not match its announced pairs",
    ),
    (
        "an announced block over 8 KiB",
        request_frame(0, 3, "users", {"a": "1"}, params_len=8193),
        "at most 8192",
    ),
]


@pytest.mark.parametrize(
    ("frame", "needle"), [(f, n) for _, f, n in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_names_and_params_are_refused_before_the_handler(
    channel: shmbridge.Channel, frame: bytes, needle: str
) -> None:
    calls: list[int] = []

    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        calls.append(request_id)
        return writer(channel)(slot, request_id, name, params)

    path = channel.serve_uds(handle)
    with SignalClient(path) as client:
        client.send_raw(frame)
        # A head that announces more than it may is refused before its body is read.
        client.sock.shutdown(socket.SHUT_WR)
        answer = client.read_answer()
        assert answer.status == BAD_REQUEST, answer
        assert needle in answer.message, answer.message
        assert (answer.sequence, answer.length) == (0, 0)
        assert client.at_eof()
    assert calls == []
    with pytest.raises(shmbridge.SlotEmpty):
        shmbridge.Reader(channel.path).read_bytes(0)
    with SignalClient(path) as client:  # the listener lives on
        assert client.write_users(0, 4, 1).status == OK
    assert calls == [4]


def test_names_and_params_reach_the_handler_as_sent(channel: shmbridge.Channel) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        seen.append((name, params))
        return channel.write_json(slot, request_id, params), "application/x-test"

    path = channel.serve_uds(handle)
    params = {"city": "Zürich", "empty": "", "k" * 60: "v" * 7000, "?&=": "a b"}
    name = "a" + "b.c_d-9" * 9  # 64 bytes
    with SignalClient(path) as client:
        answer = client.call(1, 11, name, params)
        assert answer.status == OK, answer
        assert answer.message == "application/x-test"
        answer = client.call(0, 12, "x", {})
        assert answer.status == OK and answer.message == "application/x-test"
    assert seen == [(name, params), ("x", {})]
    assert shmbridge.Reader(channel.path).read_json(1, 11) == params


def test_socket_is_private_and_removed_on_close(shm_dir: Path) -> None:
    channel = make_channel(shm_dir)
    path = Path(channel.serve_uds(writer(channel)))
    mode = path.lstat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    idle = SignalClient(str(path))  # an idle connection must not hold close() up
    try:
        start = time.monotonic()
        channel.close()
        # A hang detector, not a timing: close() waits on no idle connection.
        assert time.monotonic() - start < 60
        assert not path.exists()
        assert channel.uds_path is None
        assert idle.at_eof()
    finally:
        idle.close()
    with pytest.raises(shmbridge.ChannelClosed):
        channel.serve_uds(writer(channel))


def test_stop_and_serve_again(channel: shmbridge.Channel, shm_dir: Path) -> None:
    path = channel.serve_uds(writer(channel))
    with pytest.raises(shmbridge.ShmError, match="already serves"):
        channel.serve_uds(writer(channel))
    channel.stop_uds()
    channel.stop_uds()  # idempotent
    assert not os.path.exists(path)
    with pytest.raises(OSError):
        SignalClient(path)
    assert channel.serve_uds(writer(channel)) == path
    with SignalClient(path) as client:
        assert client.write_users(0, 1, 1).status == OK


def test_a_channel_dropped_while_serving_releases_its_handler(shm_dir: Path) -> None:
    # Dropped without stop_uds or close, with a connection thread still holding the
    # listener's state: the handler is released with the channel (attached), not left
    # to the thread that ends last (unattached: pyo3 is built without its reference
    # pool, so the handler would leak).
    class Handle:
        # Holds nothing of the channel (a cycle through it would keep both alive).
        def __call__(self, slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
            raise ValueError("no rows here")

    channel = make_channel(shm_dir)
    handle = Handle()
    released = weakref.ref(handle)
    path = channel.serve_uds(handle)
    with SignalClient(path) as client:
        assert client.write_users(0, 1, 2).message == "ValueError: no rows here"
        del handle, channel
        gc.collect()
        deadline = time.monotonic() + 10
        while released() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert released() is None, "the handler outlived its channel"


def test_stop_waits_for_a_running_handler(channel: shmbridge.Channel) -> None:
    entered = threading.Event()
    finished: list[int] = []

    def handle(slot: int, request_id: int, name: str, params: dict[str, str]) -> object:
        entered.set()
        time.sleep(0.3)
        receipt = writer(channel)(slot, request_id, name, params)
        finished.append(request_id)
        return receipt

    path = channel.serve_uds(handle)
    with SignalClient(path) as client:
        client.send_raw(request_frame(0, 9, "users", {"count": "1"}))
        assert entered.wait(10)
        channel.stop_uds()
        assert finished == [9], "stop_uds returns after the running handler"
        assert client.at_eof() or client.read_answer().status == OK


def test_a_stale_socket_is_replaced(shm_dir: Path) -> None:
    stale = shm_dir / "test.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()  # the file stays; nobody listens
    assert stat.S_ISSOCK(stale.lstat().st_mode)
    with make_channel(shm_dir) as channel:
        path = channel.serve_uds(writer(channel))
        assert path == str(stale)
        with SignalClient(path) as client:
            assert client.write_users(0, 1, 2).status == OK
    assert not stale.exists()


def test_a_live_socket_is_not_taken_over(shm_dir: Path) -> None:
    live = shm_dir / "test.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(live))
    other.listen(1)
    try:
        with (
            make_channel(shm_dir) as channel,
            pytest.raises(shmbridge.ChannelInUse, match="listening"),
        ):
            channel.serve_uds(writer(channel))
        assert stat.S_ISSOCK(live.lstat().st_mode)
    finally:
        other.close()


def test_a_symlink_or_a_file_at_the_path_is_refused(shm_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.sock"
    target = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    target.bind(str(elsewhere))  # a stale socket, but reached through a link
    target.close()
    link = shm_dir / "test.sock"
    link.symlink_to(elsewhere)
    with make_channel(shm_dir) as channel:
        with pytest.raises(shmbridge.ShmError, match="symbolic link"):
            channel.serve_uds(writer(channel))
        assert link.is_symlink() and elsewhere.exists()

        dangling = shm_dir / "dangling.sock"
        dangling.symlink_to(tmp_path / "nowhere")
        with pytest.raises(shmbridge.ShmError, match="symbolic link"):
            channel.serve_uds(writer(channel), str(dangling))
        assert not (tmp_path / "nowhere").exists()

        regular = shm_dir / "file.sock"
        regular.write_bytes(b"keep me")
        with pytest.raises(shmbridge.ShmError, match="not a Unix socket"):
            channel.serve_uds(writer(channel), regular)
        assert regular.read_bytes() == b"keep me"
        assert channel.uds_path is None


def test_a_custom_path_must_be_in_a_private_directory(
    channel: shmbridge.Channel, tmp_path: Path
) -> None:
    mine = private_dir(tmp_path, "mine")
    path = channel.serve_uds(writer(channel), mine / "x.sock")
    assert path == str(mine / "x.sock")
    channel.stop_uds()
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(shmbridge.ShmError, match="world-writable"):
        channel.serve_uds(writer(channel), open_dir / "x.sock")


def test_the_spin_must_be_0_to_1000_microseconds(channel: shmbridge.Channel) -> None:
    for bad in (-1, 1001, 10**30):
        with pytest.raises((ValueError, OverflowError), match=r"spin_us|too large"):
            channel.serve_uds(writer(channel), spin_us=bad)
    assert channel.uds_path is None


def test_stop_ends_a_connection_polling_for_its_next_request(channel: shmbridge.Channel) -> None:
    path = channel.serve_uds(writer(channel), spin_us=1000)
    with SignalClient(path) as client:
        for request_id in (1, 2, 3):  # each answer is followed by a poll
            assert client.write_users(0, request_id, 1).status == OK
        channel.stop_uds()
        assert client.at_eof()


def test_the_handler_must_be_callable(channel: shmbridge.Channel) -> None:
    with pytest.raises(TypeError, match="callable"):
        channel.serve_uds(42)  # type: ignore[arg-type]  # the point of the test
    assert channel.uds_path is None


EXIT_WHILE_HANDLING = """
import socket, sys, threading, time
import shmbridge
sys.path.insert(0, sys.argv[2])
from signal_helpers import request_frame

channel = shmbridge.Channel("exit", sys.argv[1], slot_count=2, slot_capacity=4096)
started = threading.Event()

def handle(slot, request_id, name, params):
    started.set()
    time.sleep(0.2)  # the GIL released: the main thread goes on to exit meanwhile
    receipt = channel.write_json(slot, request_id, [])
    print("handler done", flush=True)
    return receipt

path = channel.serve_uds(handle)
client = socket.socket(socket.AF_UNIX)
client.connect(path)
client.sendall(request_frame(0, 1, "users", {"count": "0"}))
started.wait(10)
print("exiting while a handler runs", flush=True)
"""


def test_the_interpreter_exits_cleanly_while_a_handler_runs(shm_dir: Path) -> None:
    """The exit hook stops the listener and waits for the running handler before the
    interpreter finalizes: the write completes, and no connection thread is left to
    take the GIL of a finalizing interpreter."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", EXIT_WHILE_HANDLING, str(shm_dir), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "exiting while a handler runs\nhandler done\n" in done.stdout, (done.stdout, done.stderr)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "panicked" not in done.stderr and "fatal" not in done.stderr.lower(), done.stderr
