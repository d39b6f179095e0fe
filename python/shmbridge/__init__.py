"""shmbridge: hand data from a Python producer to a Rust (or Python) reader
through a memory-mapped channel file.

The producer creates a :class:`Channel` and writes request slots
(``write_json``, ``write_bytes``, ``reserve``) or snapshots (``publish``);
readers open the file with :class:`Reader` (or the Rust core's ``ChannelReader``).
Everything here is implemented in the native module :mod:`shmbridge._native`.
"""

from shmbridge._native import (
    MAX_DEPTH,
    Channel,
    ChannelClosed,
    ChannelInUse,
    CorruptChannel,
    NotSerializable,
    PayloadTooLarge,
    Reader,
    Receipt,
    Reservation,
    ShmError,
    SlotBusy,
    SlotEmpty,
    WrongRequest,
    __version__,
    dumps,
)

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
