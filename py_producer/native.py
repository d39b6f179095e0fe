"""The native ``shmbridge`` module, loaded if it is installed.

The producer's REST side works without it (for instance before ``maturin develop``);
the shared-memory endpoints then answer 503 and /healthz says ``degraded``.
The module is imported dynamically and typed through the protocols below, so this
package type-checks whether or not the native module is built.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Literal, Protocol


class Receipt(Protocol):
    @property
    def slot(self) -> int: ...
    @property
    def request_id(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def length(self) -> int: ...


class Channel(Protocol):
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
    def write_json(self, slot: int, request_id: int, obj: object) -> Receipt: ...
    def write_bytes(
        self, slot: int, request_id: int, data: bytes, *, encoding: Literal["raw", "json"] = ...
    ) -> Receipt: ...
    def publish(self, obj: object) -> Receipt: ...
    def publish_bytes(self, data: bytes, *, encoding: Literal["raw", "json"] = ...) -> Receipt: ...
    def stop_uds(self) -> None: ...
    def close(self) -> None: ...


def load() -> tuple[ModuleType | None, str | None]:
    """(module, None) if ``shmbridge`` imports, else (None, why not)."""
    try:
        module = importlib.import_module("shmbridge")
    except ImportError as exc:
        return None, f"native module shmbridge is not importable ({exc})"
    missing = [
        name
        for name in ("Channel", "ShmError", "PayloadTooLarge", "SlotBusy")
        if not hasattr(module, name)
    ]
    if missing:
        return None, f"native module shmbridge lacks {', '.join(missing)}"
    return module, None
