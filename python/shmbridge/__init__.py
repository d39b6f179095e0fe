"""shmbridge: hand data from a Python producer to a Rust (or Python) reader
through a memory-mapped channel file.

The producer creates a :class:`Channel` and writes request slots
(``write_json``, ``write_bytes``, ``reserve``) or snapshots (``publish``);
readers open the file with :class:`Reader` (or the Rust core's ``ChannelReader``).
:class:`Bridge` serves named handlers on the channel's signal socket (a complete
producer without an HTTP server). The rest is implemented in the native module
:mod:`shmbridge._native`.
"""

import sys

# The interpreters shmbridge supports; pyproject.toml's requires-python and build.rs
# say the same.
_SUPPORTED = (
    "CPython 3.11, 3.12 and 3.13 (a wheel for each), and later CPython versions "
    "through the abi3 wheel"
)

if sys.implementation.name != "cpython" or sys.version_info < (3, 11):
    raise ImportError(
        f"shmbridge supports {_SUPPORTED}; this is {sys.implementation.name} "
        f"{sys.version_info.major}.{sys.version_info.minor}"
    )

try:
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
except ImportError as exc:  # a module built for another interpreter, or none at all
    raise ImportError(
        f"shmbridge's native module does not load on {sys.implementation.name} "
        f"{sys.version_info.major}.{sys.version_info.minor} ({exc}). shmbridge supports "
        f"{_SUPPORTED}: install it with this interpreter's pip."
    ) from exc

from shmbridge.bridge import Bridge, Out, Reply  # noqa: E402  (after the native check)

__all__ = [
    "MAX_DEPTH",
    "Bridge",
    "Channel",
    "ChannelClosed",
    "ChannelInUse",
    "CorruptChannel",
    "NotSerializable",
    "Out",
    "PayloadTooLarge",
    "Reader",
    "Receipt",
    "Reply",
    "Reservation",
    "ShmError",
    "SlotBusy",
    "SlotEmpty",
    "WrongRequest",
    "__version__",
    "dumps",
]
