"""``Channel.reserve``: writing a slot in place through a memoryview, and the
rule that no view outlives the memory it covers (BufferError, never a crash)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import shmbridge
from native_helpers import SMALL_CAPACITY, make_channel, private_dir
from shmbridge import Channel, Reader


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Channel]:
    ch = make_channel(private_dir(tmp_path))
    yield ch
    gc.collect()  # drop views a failing test left behind, then close
    ch.close()


@pytest.fixture
def reader(channel: Channel) -> Reader:
    return Reader(channel.path)


def test_reserve_publishes_on_normal_exit(channel: Channel, reader: Reader) -> None:
    reservation = channel.reserve(1, 11, 10)
    assert (reservation.slot, reservation.request_id, reservation.size) == (1, 11, 10)
    assert reservation.open and reservation.receipt is None
    with reservation as view:
        assert isinstance(view, memoryview)
        assert (len(view), view.readonly, view.format, view.ndim) == (10, False, "B", 1)
        view[:] = b"0123456789"
    receipt = reservation.receipt
    assert receipt is not None
    assert (receipt.slot, receipt.request_id, receipt.length, receipt.encoding) == (
        1,
        11,
        10,
        "raw",
    )
    assert not reservation.open
    assert reader.read_bytes(1, 11) == b"0123456789"


def test_the_view_is_unusable_after_the_block(channel: Channel) -> None:
    with channel.reserve(0, 1, 4) as view:
        view[:] = b"abcd"
    with pytest.raises(ValueError, match="released memoryview"):
        view[0] = 1
    with pytest.raises(ValueError, match="released memoryview"):
        bytes(view)
    with pytest.raises(ValueError):
        memoryview(view)


def test_commit_publishes_a_prefix(channel: Channel, reader: Reader) -> None:
    reservation = channel.reserve(2, 3, 100)
    with reservation as view:
        view[:5] = b"hello"
        receipt = reservation.commit(5)
        with pytest.raises(ValueError, match="released memoryview"):
            view[0] = 0
    assert receipt.length == 5
    assert reservation.receipt == receipt
    assert reservation.commit() == receipt  # idempotent
    assert reader.read_bytes(2, 3) == b"hello"
    with pytest.raises(ValueError, match="exceeds the reserved size"):
        channel.reserve(2, 4, 3).commit(4)


def test_an_exception_abandons_the_slot(channel: Channel, reader: Reader) -> None:
    channel.write_bytes(0, 1, b"previous")
    with pytest.raises(RuntimeError, match="boom"), channel.reserve(0, 2, 8) as view:
        view[:] = b"halfdone"
        raise RuntimeError("boom")
    with pytest.raises(shmbridge.SlotEmpty):
        reader.read_bytes(0)
    with pytest.raises(ValueError):
        view[0] = 0
    channel.write_bytes(0, 3, b"next")  # the slot is free again
    assert reader.read_bytes(0, 3) == b"next"


def test_explicit_abandon_and_dropping_a_reservation(channel: Channel, reader: Reader) -> None:
    reservation = channel.reserve(1, 2, 4)
    reservation.abandon()
    assert not reservation.open
    with pytest.raises(shmbridge.ShmError, match="abandoned"):
        reservation.commit()
    with pytest.raises(BufferError, match="finished"):
        memoryview(reservation)  # type: ignore[arg-type]  # Buffer is 3.12+
    unused = channel.reserve(1, 3, 4)
    del unused
    gc.collect()
    with pytest.raises(shmbridge.SlotEmpty):
        reader.read_bytes(1)
    channel.write_bytes(1, 4, b"free")


def test_a_reserved_slot_is_busy(channel: Channel, reader: Reader) -> None:
    reservation = channel.reserve(3, 1, 4)
    with pytest.raises(shmbridge.SlotBusy, match="kept changing"):
        reader.read_bytes(3)  # a write is in progress: never a torn read
    with pytest.raises(shmbridge.SlotBusy, match="slot 3 is being written"):
        channel.write_bytes(3, 2, b"x")
    with pytest.raises(shmbridge.SlotBusy):
        channel.reserve(3, 2, 4)
    reservation.abandon()
    channel.write_bytes(3, 2, b"x")


def test_reserve_over_capacity_touches_nothing(channel: Channel, reader: Reader) -> None:
    channel.write_bytes(0, 1, b"kept")
    with pytest.raises(shmbridge.PayloadTooLarge, match=f"capacity is {SMALL_CAPACITY} bytes"):
        channel.reserve(0, 2, SMALL_CAPACITY + 1)
    assert reader.read_bytes(0, 1) == b"kept"
    with pytest.raises(ValueError, match="does not exist"):
        channel.reserve(99, 2, SMALL_CAPACITY + 1)


def test_an_extra_view_alive_at_exit_refuses_to_publish(channel: Channel, reader: Reader) -> None:
    reservation = channel.reserve(1, 5, 8)
    with pytest.raises(BufferError, match="still alive"), reservation as view:
        view[:] = b"12345678"
        extra = view[2:]  # shares the export: keeps it alive after view.release()
    assert not reservation.open
    # The slot stays held while the extra view lives: writing through it is safe
    # (the memory is still mapped and nobody else writes there) but never published.
    extra[0] = ord("x")
    with pytest.raises(shmbridge.SlotBusy):
        channel.write_bytes(1, 6, b"other")
    del extra
    gc.collect()
    with pytest.raises(shmbridge.SlotEmpty):
        reader.read_bytes(1)
    channel.write_bytes(1, 6, b"other")
    assert reader.read_bytes(1, 6) == b"other"


def test_a_second_export_of_the_reservation_refuses_to_publish(channel: Channel) -> None:
    reservation = channel.reserve(2, 5, 8)
    with pytest.raises(BufferError, match="1 memoryview"), reservation as view:
        second = memoryview(reservation)  # type: ignore[arg-type]  # 3.12+ Buffer
        view[:] = b"abcdefgh"
    assert bytes(second) == b"abcdefgh"
    second.release()
    channel.write_bytes(2, 6, b"free again")


def test_entering_twice_is_refused(channel: Channel) -> None:
    reservation = channel.reserve(0, 1, 4)
    with reservation, pytest.raises(BufferError, match="already entered"):
        reservation.__enter__()
    assert reservation.receipt is not None


def test_close_with_a_live_view_raises_and_keeps_the_memory(channel: Channel) -> None:
    reader = Reader(channel.path)
    with channel.reserve(0, 1, 6) as view:
        with pytest.raises(BufferError, match="still alive"):
            channel.close()
        assert not channel.closed
        view[:] = b"stayed"  # still mapped: no use after free
    assert reader.read_bytes(0, 1) == b"stayed"
    channel.close()
    assert channel.closed
    assert not Path(channel.path).exists()


def test_close_with_a_leftover_extra_view_raises(channel: Channel) -> None:
    with pytest.raises(BufferError), channel.reserve(0, 1, 6) as view:
        extra = view[:]
    with pytest.raises(BufferError, match="1 memoryview"):
        channel.close()
    extra[:] = b"safe!!"
    del extra
    gc.collect()
    channel.close()
    assert channel.closed


def test_dropping_the_channel_keeps_a_live_view_valid(tmp_path: Path) -> None:
    ch = make_channel(private_dir(tmp_path))
    path = Path(ch.path)
    reservation = ch.reserve(0, 1, 16)
    view = reservation.__enter__()
    del ch
    gc.collect()
    view[:] = b"x" * 16  # the mapping lives as long as the reservation
    assert bytes(view) == b"x" * 16
    reservation.__exit__(None, None, None)
    del reservation
    gc.collect()
    assert not path.exists()  # the last owner removed the file


def test_a_reservation_of_a_closed_channel_is_not_published(channel: Channel) -> None:
    reservation = channel.reserve(0, 1, 4)
    channel.close()
    with pytest.raises(shmbridge.ChannelClosed):
        memoryview(reservation)  # type: ignore[arg-type]  # Buffer is 3.12+
    with pytest.raises(shmbridge.ChannelClosed):
        reservation.commit()
    assert not reservation.open


def test_views_work_with_numpy_if_present(channel: Channel, reader: Reader) -> None:
    np = pytest.importorskip("numpy")
    with channel.reserve(1, 9, 8 * 4) as view:
        array = np.frombuffer(view, dtype=np.float64)
        array[:] = [1.0, 2.0, 3.0, 4.0]
        del array
    assert np.frombuffer(reader.read_bytes(1, 9), dtype=np.float64).tolist() == [1.0, 2.0, 3.0, 4.0]
