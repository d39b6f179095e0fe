"""Type stubs for the native module ``shmbridge._native`` (written by hand,
checked against the compiled module with ``python -m mypy.stubtest``)."""

import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal, Self, final

from typing_extensions import Buffer

__all__ = [
    "MAX_DEPTH",
    "Channel",
    "ChannelClosed",
    "ChannelInUse",
    "CorruptChannel",
    "NotSerializable",
    "PayloadTooLarge",
    "Reader",
    "Receipt",
    "Reservation",
    "ShmError",
    "SlotBusy",
    "SlotEmpty",
    "WrongRequest",
    "__version__",
    "dumps",
]

__version__: Final[str]
#: Containers nested deeper than this are refused by the JSON serializer.
MAX_DEPTH: Final[int]

class ShmError(Exception):
    """Base class of every error raised by shmbridge itself."""

class PayloadTooLarge(ShmError):
    """A payload does not fit its slot (names the size, the capacity and the setting)."""

class CorruptChannel(ShmError):
    """The channel file or a slot failed validation."""

class WrongRequest(ShmError):
    """The slot holds the data of another request."""

class SlotBusy(ShmError):
    """The slot is being written, or kept changing while it was read."""

class SlotEmpty(ShmError):
    """The slot holds nothing (never written, or abandoned); or no snapshot yet."""

class ChannelClosed(ShmError):
    """The channel has been closed."""

class ChannelInUse(ShmError):
    """A running producer holds the channel file's lock."""

class NotSerializable(ShmError, TypeError):
    """A value has no JSON form; the message names it and where it sits."""

#: A ``default=`` hook: called with each value that has no JSON form of its own;
#: what it returns is written instead (raise to refuse the value).
_Default = Callable[[Any], object]

def dumps(obj: object, /, *, default: _Default | None = None) -> bytes:
    """Compact JSON bytes of `obj`, the same bytes as ``orjson.dumps(obj)``.

    Writes dict (str keys), list, tuple, str, int, float (NaN and infinities as
    null), bool, None, datetime, date, time, UUID, dataclass instances, Enum
    members and subclasses of str, int, float, dict and list; numpy arrays and
    scalars when numpy is imported (as ``orjson.OPT_SERIALIZE_NUMPY`` writes them,
    always on: bool, int8 to uint64, float16 to float64 and datetime64 elements,
    nested lists for more dimensions); anything else goes to `default`, or raises
    NotSerializable naming where it sits (``$[3].zip``).
    ``write_json`` and ``publish`` take the same `default`.
    """

def _remaining_budget() -> float | None:
    """Seconds left of the budget of the signal request handled on this thread; None on
    any other thread or without a deadline (``shmbridge.Bridge`` bounds async handlers by it)."""

def _direct_reads() -> list[str]:
    """Objects the serializer reads directly here (``dict``, ``int-3.11`` or ``int-3.12``);
    empty in the abi3 build, which uses the C API only."""

@final
class Receipt:
    """What a completed write published."""

    @property
    def slot(self) -> int: ...
    @property
    def request_id(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def checksum(self) -> int: ...
    @property
    def encoding(self) -> Literal["json", "raw"]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Channel:
    """The producer's side of a channel file."""

    def __new__(
        cls,
        name: str,
        directory: str | os.PathLike[str] = ...,  # "shared_memory_dir"
        slot_count: int = 16,
        slot_capacity: int = 33554432,
        snapshot_slots: int = 4,
    ) -> Self: ...
    @property
    def path(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def slot_count(self) -> int: ...
    @property
    def slot_capacity(self) -> int: ...
    @property
    def snapshot_slots(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def write_bytes(
        self, slot: int, request_id: int, data: Buffer, *, encoding: Literal["raw", "json"] = "raw"
    ) -> Receipt: ...
    def write_json(
        self, slot: int, request_id: int, obj: object, *, default: _Default | None = None
    ) -> Receipt: ...
    def reserve(self, slot: int, request_id: int, size: int) -> Reservation: ...
    def publish(self, obj: object, *, default: _Default | None = None) -> Receipt: ...
    def publish_bytes(
        self, data: Buffer, *, encoding: Literal["raw", "json"] = "raw"
    ) -> Receipt: ...
    @property
    def uds_path(self) -> str | None: ...
    def serve_uds(
        self,
        handler: Callable[[int, int, str, dict[str, str]], Receipt | tuple[Receipt, str]],
        path: str | os.PathLike[str] | None = None,
        *,
        spin_us: int = 0,
    ) -> str: ...
    def stop_uds(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> bool: ...

@final
class Reservation:
    """A request slot reserved for bytes written in place through a memoryview."""

    @property
    def slot(self) -> int: ...
    @property
    def request_id(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def receipt(self) -> Receipt | None: ...
    @property
    def open(self) -> bool: ...
    def commit(self, length: int | None = None) -> Receipt: ...
    def abandon(self) -> None: ...
    def __enter__(self) -> memoryview: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> bool: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...
        def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class Reader:
    """A read-only view of a channel file."""

    def __new__(cls, path: str | os.PathLike[str]) -> Self: ...
    @property
    def path(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def slot_count(self) -> int: ...
    @property
    def slot_capacity(self) -> int: ...
    def producer_alive(self) -> bool: ...
    def is_current(self) -> bool: ...
    def read_bytes(self, slot: int, request_id: int | None = None) -> bytes: ...
    def read_json(self, slot: int, request_id: int | None = None) -> Any: ...
    def read_snapshot(self) -> tuple[int, bytes]: ...
    def read_snapshot_json(self) -> tuple[int, Any]: ...
    def snapshot_generation(self) -> int | None: ...
