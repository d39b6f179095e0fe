"""Round trips through every entry point of ``shmbridge._native``."""

from __future__ import annotations

import array
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import shmbridge
from native_helpers import SMALL_CAPACITY, make_channel, private_dir, run_python
from shmbridge import Channel, Reader


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Channel]:
    with make_channel(private_dir(tmp_path)) as ch:
        yield ch


@pytest.fixture
def reader(channel: Channel) -> Reader:
    return Reader(channel.path)


def test_package_reexports_the_native_module() -> None:
    from shmbridge import _native

    for name in _native.__all__:
        assert getattr(shmbridge, name) is getattr(_native, name)
    # Beyond the native module: the pure-Python Bridge and its reply types.
    assert set(shmbridge.__all__) == set(_native.__all__) | {"Bridge", "Out", "Reply"}
    assert shmbridge.Bridge.__module__ == "shmbridge.bridge"
    assert Channel.__module__ == "shmbridge._native"
    assert shmbridge.MAX_DEPTH == 254


def test_channel_properties(channel: Channel) -> None:
    assert channel.slot_count == 4
    assert channel.snapshot_slots == 2
    assert channel.slot_capacity == SMALL_CAPACITY
    assert channel.epoch > 0
    assert channel.path.endswith("test.shm")
    assert not channel.closed
    assert "slot_count=4" in repr(channel)


def test_capacity_is_rounded_up_to_whole_pages(tmp_path: Path) -> None:
    with make_channel(private_dir(tmp_path), slot_capacity=5000) as ch:
        assert ch.slot_capacity == 8192


@pytest.mark.parametrize(
    "make",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: memoryview(bytearray(b)),
        lambda b: memoryview(b"xx" + b + b"yy")[2:-2],
    ],
    ids=["bytes", "bytearray", "memoryview", "memoryview-of-bytearray", "memoryview-slice"],
)
def test_write_bytes_round_trips_any_contiguous_buffer(
    channel: Channel, reader: Reader, make: object
) -> None:
    payload = bytes(range(256)) * 10
    data = make(payload)  # type: ignore[operator]
    receipt = channel.write_bytes(1, 42, data)
    assert (receipt.slot, receipt.request_id, receipt.length) == (1, 42, len(payload))
    assert receipt.encoding == "raw"
    assert receipt.sequence % 2 == 0
    assert reader.read_bytes(1, 42) == payload
    assert reader.read_bytes(1) == payload


def test_write_bytes_accepts_typed_buffers_by_their_bytes(channel: Channel, reader: Reader) -> None:
    numbers = array.array("i", range(100))
    channel.write_bytes(0, 1, numbers)
    assert reader.read_bytes(0, 1) == numbers.tobytes()


def test_write_bytes_refuses_strided_buffers(channel: Channel) -> None:
    strided = memoryview(bytes(range(100)))[::2]
    with pytest.raises(BufferError, match="not C-contiguous"):
        channel.write_bytes(0, 1, strided)


def test_write_bytes_can_mark_json(channel: Channel, reader: Reader) -> None:
    receipt = channel.write_bytes(0, 1, orjson.dumps({"a": 1}), encoding="json")
    assert receipt.encoding == "json"
    assert reader.read_json(0, 1) == {"a": 1}
    with pytest.raises(ValueError, match="encoding"):
        channel.write_bytes(0, 1, b"x", encoding="yaml")  # type: ignore[arg-type]


def test_empty_payloads_round_trip(channel: Channel, reader: Reader) -> None:
    channel.write_bytes(2, 9, b"")
    assert reader.read_bytes(2, 9) == b""


def test_write_json_round_trips(channel: Channel, reader: Reader) -> None:
    value = {"users": [{"id": 1, "name": "Zoë"}], "ok": True, "none": None, "pi": 3.25}
    receipt = channel.write_json(3, 7, value)
    assert receipt.encoding == "json"
    assert receipt.length == len(orjson.dumps(value))
    assert reader.read_bytes(3, 7) == orjson.dumps(value)
    assert reader.read_json(3, 7) == value


def test_read_json_keeps_key_order(channel: Channel, reader: Reader) -> None:
    value = {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}
    channel.write_json(0, 1, value)
    parsed = reader.read_json(0, 1)
    assert list(parsed) == ["z", "a", "m"]
    assert list(parsed["m"]) == ["y", "b"]


def test_read_json_of_non_json_is_a_value_error(channel: Channel, reader: Reader) -> None:
    channel.write_bytes(0, 1, b"\xff not json")
    with pytest.raises(ValueError, match="slot 0 does not hold valid JSON"):
        reader.read_json(0, 1)


def test_receipts_compare_and_repr(channel: Channel) -> None:
    first = channel.write_bytes(0, 5, b"abc")
    again = channel.write_bytes(0, 5, b"abc")
    assert first != again  # the sequence moved
    assert first == first
    assert hash(first) == hash(first)
    assert repr(first).startswith("Receipt(slot=0, request_id=5,")
    assert first.checksum == again.checksum


def test_reading_checks_the_request_id(channel: Channel, reader: Reader) -> None:
    channel.write_bytes(0, 5, b"abc")
    with pytest.raises(shmbridge.WrongRequest, match="holds request 5, not the expected request 6"):
        reader.read_bytes(0, 6)


def test_never_written_slot_is_empty(reader: Reader) -> None:
    with pytest.raises(shmbridge.SlotEmpty, match="never been written"):
        reader.read_bytes(2)


def test_publish_and_read_snapshot(channel: Channel, reader: Reader) -> None:
    assert reader.snapshot_generation() is None
    with pytest.raises(shmbridge.SlotEmpty, match="no snapshot"):
        reader.read_snapshot()
    for generation in range(1, 6):
        receipt = channel.publish({"generation": generation})
        assert receipt.request_id == generation
        assert receipt.slot >= channel.slot_count  # the ring follows the request slots
        assert reader.read_snapshot() == (generation, orjson.dumps({"generation": generation}))
        assert reader.read_snapshot_json() == (generation, {"generation": generation})
        assert reader.snapshot_generation() == generation
    receipt = channel.publish_bytes(b"raw snapshot")
    assert receipt.encoding == "raw"
    assert reader.read_snapshot() == (6, b"raw snapshot")


def test_publish_without_a_ring_is_refused(tmp_path: Path) -> None:
    with (
        make_channel(private_dir(tmp_path), snapshot_slots=0) as ch,
        pytest.raises(shmbridge.ShmError, match="no snapshot ring"),
    ):
        ch.publish({"a": 1})


def test_bad_arguments(channel: Channel) -> None:
    with pytest.raises(OverflowError):
        channel.write_bytes(-1, 1, b"x")
    with pytest.raises(ValueError, match="slot 4 does not exist: the channel has 4 request slots"):
        channel.write_bytes(4, 1, b"x")
    with pytest.raises(ValueError, match="request id 0 is reserved"):
        channel.write_json(0, 0, {})
    with pytest.raises(OverflowError):
        channel.reserve(0, 1, -5)
    with pytest.raises(TypeError):
        channel.write_bytes(0, 1, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid channel name"):
        Channel("../escape", Path(channel.path).parent)
    with pytest.raises(ValueError, match="slot count must be at least 1"):
        Channel("zero", Path(channel.path).parent, slot_count=0)


def test_reader_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Reader(tmp_path / "nothing.shm")


def test_reader_of_a_file_that_is_not_a_channel(tmp_path: Path) -> None:
    junk = tmp_path / "junk.shm"
    junk.write_bytes(b"\0" * 8192)
    with pytest.raises(shmbridge.CorruptChannel, match="bad magic"):
        Reader(junk)


def test_reader_properties(channel: Channel, reader: Reader) -> None:
    assert reader.epoch == channel.epoch
    assert reader.path == channel.path
    assert reader.slot_count == channel.slot_count
    assert reader.slot_capacity == channel.slot_capacity
    assert reader.producer_alive()
    assert reader.is_current()


def test_reader_sees_the_producer_go(tmp_path: Path) -> None:
    ch = make_channel(private_dir(tmp_path))
    reader = Reader(ch.path)
    ch.close()
    assert not reader.is_current()
    assert not reader.producer_alive()


def test_another_process_reads_what_this_one_wrote(channel: Channel) -> None:
    value = {"hello": "wörld", "n": [1, 2, 3]}
    channel.write_json(2, 77, value)
    channel.write_bytes(3, 78, b"\x00raw\xff")
    result = run_python(
        f"""
        import json, shmbridge
        reader = shmbridge.Reader({channel.path!r})
        print(json.dumps([reader.read_json(2, 77), reader.read_bytes(3, 78).hex(),
                          reader.epoch, reader.producer_alive()]))
        """
    )
    assert result.returncode == 0, result.stderr
    parsed, raw_hex, epoch, alive = json.loads(result.stdout)
    assert parsed == value
    assert bytes.fromhex(raw_hex) == b"\x00raw\xff"
    assert epoch == channel.epoch
    assert alive is True


def test_this_process_reads_what_another_wrote(tmp_path: Path) -> None:
    directory = private_dir(tmp_path)
    code = f"""
import shmbridge, sys
ch = shmbridge.Channel("child", {str(directory)!r}, slot_count=2, slot_capacity=8192)
ch.write_json(1, 5, {{"from": "child", "n": 1}})
print(ch.path, flush=True)
sys.stdin.readline()
ch.close()
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        path = child.stdout.readline().strip()
        reader = Reader(path)
        assert reader.read_json(1, 5) == {"from": "child", "n": 1}
        assert reader.producer_alive()
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not Path(path).exists()
    assert not reader.producer_alive()
    # The mapping outlives the file: the last content is still readable.
    assert reader.read_json(1, 5) == {"from": "child", "n": 1}
