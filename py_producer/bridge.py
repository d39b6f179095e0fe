"""The producer's handlers, served through :class:`shmbridge.Bridge`: the one code path
of every shared-memory write (the signal socket's and ``/api/write-to-shm``'s).

- ``users``: param ``count`` (decimal, 0..users; absent: ``DEFAULT_COUNT``): the first
  ``count`` users, the same bytes as ``GET /api/users``. With the payload cache on, the
  cached orjson bytes go out as a JSON buffer reply.
- ``profiles``: param ``count`` (0..``MAX_PROFILES``; absent: ``DEFAULT_COUNT``): the
  second dataset (nested objects, lists, floats), the bytes of ``GET /api/profiles``.

This module imports the native module: :mod:`py_producer.app` loads it only once
``shmbridge`` is known to import, so the REST side works without it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urlencode

import shmbridge

from py_producer.metrics import ProducerMetrics
from py_producer.middleware import access_log
from py_producer.params import ApiError, count_param, profiles_param
from py_producer.profiles import Profile
from py_producer.settings import SLOT_CAPACITY_SETTING, SNAPSHOT_RING, Settings
from py_producer.users import User

log = logging.getLogger("py_producer")


class BridgeState(Protocol):
    """What the handlers need of the producer's state (the app's ``ProducerState``
    has it; this module does not import the app, which imports it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def metrics(self) -> ProducerMetrics: ...
    @property
    def users(self) -> Sequence[User]: ...
    @property
    def cache(self) -> object | None:
        """The payload cache, or None when it is off."""

    def payload(self, count: int) -> bytes:
        """The cached JSON bytes of the first ``count`` users."""

    def profiles(self, count: int) -> list[Profile]:
        """The first ``count`` profiles."""


class ProducerBridge(shmbridge.Bridge):
    """The producer's Bridge: its signal requests keep the producer's access log line,
    its ``uds`` write metrics and its ``--write-delay-ms`` hook."""

    def __init__(
        self,
        state: BridgeState,
        name: str,
        directory: str | os.PathLike[str],
        *,
        slot_count: int,
        slot_capacity: int,
        snapshot_slots: int,
    ) -> None:
        super().__init__(
            name,
            directory,
            slot_count=slot_count,
            slot_capacity=slot_capacity,
            snapshot_slots=snapshot_slots,
        )
        self.state = state

    def write(
        self, slot: int, request_id: int, name: str, params: Mapping[str, str]
    ) -> shmbridge.Receipt:
        """Runs handler ``name`` into ``slot`` (the HTTP path: no UDS log or metrics)."""
        return super().dispatch(slot, request_id, name, params)[0]

    def dispatch(
        self, slot: int, request_id: int, name: str, params: Mapping[str, str]
    ) -> tuple[shmbridge.Receipt, str]:
        """The signal socket's calls: runs on a native listener thread, the GIL held.

        Does what ``/api/write-to-shm`` does (the ``--write-delay-ms`` hook included, as a
        blocking sleep that releases the GIL) and logs one access line per request. A
        write reached after the gateway's budget raises TimeoutError in the native layer,
        so it never starts late.
        """
        state = self.state
        start = time.perf_counter()
        outcome = "ok"
        receipt: shmbridge.Receipt | None = None
        write_s = 0.0
        try:
            if state.settings.write_delay_ms:
                time.sleep(state.settings.write_delay_ms / 1000.0)
            write_start = time.perf_counter()
            receipt, content_type = super().dispatch(slot, request_id, name, params)
            write_s = time.perf_counter() - write_start
            state.metrics.record_write("uds", receipt.length, write_s)
            return receipt, content_type
        except shmbridge.PayloadTooLarge as exc:
            outcome = type(exc).__name__
            hint = f"{exc} (raise it with {SLOT_CAPACITY_SETTING})"
            raise shmbridge.PayloadTooLarge(hint) from None
        except Exception as exc:
            outcome = type(exc).__name__
            expected = (ValueError, LookupError, TimeoutError, shmbridge.ShmError)
            if not isinstance(exc, expected):
                log.exception("signal socket: handler %r for request %d failed", name, request_id)
            raise
        finally:
            if access_log.isEnabledFor(logging.INFO):
                elapsed_ms = (time.perf_counter() - start) * 1000.0
                extra = (
                    f" length={receipt.length} write_ms={write_s * 1000.0:.2f}"
                    if receipt is not None
                    else ""
                )
                query = urlencode(list(params.items()))
                access_log.info(
                    "UDS write-%s?%sslot=%d&request_id=%d %s %.2fms slot=%d request_id=%d%s",
                    name,
                    f"{query}&" if query else "",
                    slot,
                    request_id,
                    outcome,
                    elapsed_ms,
                    slot,
                    request_id,
                    extra,
                )


def make_bridge(state: BridgeState) -> ProducerBridge:
    """The producer's Bridge over its channel, with its handlers registered."""
    settings = state.settings
    bridge = ProducerBridge(
        state,
        settings.channel,
        settings.shm_dir,
        slot_count=settings.slot_count,
        slot_capacity=settings.slot_capacity,
        snapshot_slots=SNAPSHOT_RING if settings.snapshot else 0,
    )

    @bridge.handler("users")
    def users(params: Mapping[str, str]) -> object:
        try:
            count = count_param(params, len(state.users))
        except ApiError as exc:
            raise ValueError(exc.detail) from None
        if state.cache is not None:
            return shmbridge.Reply(state.payload(count), content_type="application/json")
        return state.users[:count]

    @bridge.handler("profiles")
    def profiles(params: Mapping[str, str]) -> object:
        try:
            count = profiles_param(params)
        except ApiError as exc:
            raise ValueError(exc.detail) from None
        return state.profiles(count)

    return bridge
