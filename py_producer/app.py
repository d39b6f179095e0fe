"""The producer's HTTP app: users over REST, and writes into the shared-memory channel.

Hot paths return plain starlette Responses of orjson bytes; query values are parsed by
hand so every error has the project's shape ``{"error": kind, "detail": sentence}``.

Besides HTTP, the channel's native listener takes write requests on the Unix socket
``<shm-dir>/<channel>.sock`` (``--signal-socket``) and runs the producer's
:class:`shmbridge.Bridge` handlers (``users``, ``profiles``: :mod:`py_producer.bridge`) on
its own threads; ``/api/write-to-shm`` writes through the same handler; and in snapshot
mode (``--snapshot``) every user is published as one
JSON array at start and after each data change (:func:`on_data_changed`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from py_producer import native
from py_producer import openapi_docs as docs
from py_producer.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from py_producer.metrics import ProducerMetrics
from py_producer.middleware import AccessLogMiddleware, StartupError, log_extra
from py_producer.params import ApiError, count_param, int_param, profiles_param
from py_producer.profiles import Profile, build_profile
from py_producer.settings import SLOT_CAPACITY_SETTING, Settings
from py_producer.users import USER_HARD_CAP, User, build_users, extend_users

if TYPE_CHECKING:
    from py_producer.bridge import ProducerBridge

log = logging.getLogger("py_producer")

MAX_REQUEST_ID = 2**63 - 1
MAX_USERS_PER_POST = 1000
CACHE_MAX_ENTRIES = 8
CACHE_MAX_BYTES = 256 * 1024 * 1024
# --- answers -----------------------------------------------------------------------------


def error_response(
    status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = orjson.dumps({"error": kind, "detail": detail})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def json_response(obj: object, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


# --- state -------------------------------------------------------------------------------


class PayloadCache:
    """Serialized payloads by count, least recently used first out; one data version."""

    def __init__(
        self, max_entries: int = CACHE_MAX_ENTRIES, max_bytes: int = CACHE_MAX_BYTES
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, count: int) -> bytes | None:
        body = self._entries.get(count)
        if body is not None:
            self._entries.move_to_end(count)
        return body

    def put(self, count: int, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        old = self._entries.pop(count, None)
        if old is not None:
            self._bytes -= len(old)
        self._entries[count] = body
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


@dataclass
class ProducerState:
    settings: Settings
    users: list[User]
    data_version: int = 1
    cache: PayloadCache | None = None
    shm: ModuleType | None = None
    shm_unavailable: str | None = None
    channel: native.Channel | None = None
    #: The Bridge whose handlers every shared-memory write goes through.
    bridge: ProducerBridge | None = None
    startup_error: str | None = None
    #: Path of the signal socket while the native listener serves it.
    signal_socket: str | None = None
    #: Generation of the newest published snapshot (0: none yet).
    snapshot_generation: int = 0
    metrics: ProducerMetrics = field(default_factory=ProducerMetrics)
    #: Profiles built so far (on demand: the second dataset, see py_producer.profiles).
    _profiles: list[Profile] = field(default_factory=list)
    _profiles_lock: threading.Lock = field(default_factory=threading.Lock)

    def profiles(self, count: int) -> list[Profile]:
        """Profiles 1..count (built once, on first use; ``count`` <= ``MAX_PROFILES``)."""
        built = self._profiles
        if len(built) < count:
            with self._profiles_lock:
                built.extend(build_profile(i) for i in range(len(built) + 1, count + 1))
        return built[:count]

    def payload(self, count: int) -> bytes:
        """orjson bytes of the first ``count`` users (cached per data version if enabled)."""
        if self.cache is None:
            return orjson.dumps(self.users[:count])
        body = self.cache.get(count)
        if body is None:
            body = orjson.dumps(self.users[:count])
            self.cache.put(count, body)
        return body

    def add_users(self, extra: int) -> None:
        extend_users(self.users, extra)
        self.data_version += 1
        if self.cache is not None:
            self.cache.clear()
        on_data_changed(self)

    # writes into the channel

    def write_users(self, slot: int, request_id: int, count: int) -> native.Receipt:
        """Write the first ``count`` users into ``slot`` for ``request_id`` through the
        bridge's ``users`` handler, the one the signal socket calls too.

        Raises ValueError for a count out of range, and the native module's errors
        (PayloadTooLarge, SlotBusy, ValueError for a bad slot or id, ShmError).
        """
        bridge = self.bridge
        if bridge is None:
            raise RuntimeError(
                f"shared memory is unavailable: {self.shm_unavailable or 'no channel'}"
            )
        return bridge.write(slot, request_id, "users", {"count": str(count)})

    def publish_snapshot(self) -> None:
        """Publish every user as the channel's newest snapshot (snapshot mode only).

        If the users cannot be published (too large for a slot...), a small raw marker
        ``{"error": kind, "detail": sentence}`` is published instead, so a reader never
        keeps serving the snapshot this one should have replaced.
        """
        channel, shm = self.channel, self.shm
        if channel is None or shm is None or not self.settings.snapshot:
            return
        start = time.perf_counter()
        try:
            receipt = channel.publish(self.users)
        except shm.ShmError as exc:
            kind = (
                "payload_too_large" if isinstance(exc, shm.PayloadTooLarge) else "snapshot_failed"
            )
            detail = f"the producer could not publish its {len(self.users)} users: {exc}"
            if isinstance(exc, shm.PayloadTooLarge):
                detail = f"{detail} (raise it with {SLOT_CAPACITY_SETTING})"
            log.error("snapshot not published: %s", detail)
            marker = orjson.dumps({"error": kind, "detail": detail})
            try:
                receipt = channel.publish_bytes(marker, encoding="raw")
            except shm.ShmError as again:
                log.error("the snapshot failure marker could not be published either: %s", again)
                return
            self.snapshot_generation = receipt.request_id
            self.metrics.record_publish("marker")
            return
        self.snapshot_generation = receipt.request_id
        self.metrics.record_publish("ok")
        log.info(
            "snapshot %d published: %d users, %d bytes in %.1f ms",
            receipt.request_id,
            len(self.users),
            receipt.length,
            (time.perf_counter() - start) * 1000.0,
        )

    # channel life cycle

    def open_channel(self) -> None:
        """Create the channel file; raises StartupError with a one-line reason."""
        settings = self.settings
        directory = Path(settings.shm_dir)
        try:
            if not directory.exists():
                directory.mkdir(mode=0o700, parents=True)
                os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
        except OSError as exc:
            raise StartupError(
                f"cannot create shm directory {str(directory)!r} "
                f"(--shm-dir / SHMBRIDGE_SHM_DIR): {exc.strerror or exc}"
            ) from None
        shm, why = native.load()
        if shm is None:
            self.shm_unavailable = why
            log.warning("%s: shared-memory endpoints answer 503; REST works", why)
            return
        self.shm = shm
        from py_producer.bridge import make_bridge  # imports the native module

        try:
            self.bridge = make_bridge(self)
            self.channel = self.bridge.channel
        except (shm.ShmError, OSError, ValueError, OverflowError) as exc:
            raise StartupError(
                f"cannot create channel {settings.channel!r} in {str(directory)!r}: {exc}"
            ) from None
        log.info(
            "channel %s created: epoch %d, %d slots of %d bytes",
            self.channel.path,
            self.channel.epoch,
            self.channel.slot_count,
            self.channel.slot_capacity,
        )
        self.publish_snapshot()
        if settings.signal_socket:
            try:
                self.signal_socket = self.bridge.serve(spin_us=settings.signal_spin_us)
            except (shm.ShmError, OSError, ValueError) as exc:
                self.close_channel()
                raise StartupError(
                    f"cannot serve the signal socket of channel {settings.channel!r}: {exc} "
                    "(turn it off with --no-signal-socket / SHMBRIDGE_SIGNAL_SOCKET=0)"
                ) from None
            log.info("signal socket %s listening", self.signal_socket)

    def close_channel(self) -> None:
        channel, self.channel = self.channel, None
        bridge, self.bridge = self.bridge, None
        if channel is None or bridge is None:
            return
        path = channel.path
        socket_path, self.signal_socket = self.signal_socket, None
        try:
            bridge.close()  # stops the signal listener and removes its socket too
        except Exception as exc:
            log.error("closing channel %s failed: %s", path, exc)
        else:
            if socket_path is not None:
                log.info("signal socket %s closed and removed", socket_path)
            log.info("channel %s closed and removed", path)


def on_data_changed(state: ProducerState) -> None:
    """Hook called after the users change (the data version has already moved).

    In snapshot mode, publishes the new users before the change is answered, so a
    snapshot read that starts after ``POST /api/users`` returns sees the new data.
    """
    state.publish_snapshot()


# --- the app -----------------------------------------------------------------------------


def create_app(settings: Settings) -> FastAPI:
    state = ProducerState(
        settings=settings,
        users=build_users(settings.max_count),
        cache=PayloadCache() if settings.cache_payload else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            state.open_channel()
        except StartupError as exc:
            state.startup_error = str(exc)
            raise
        try:
            yield
        finally:
            state.close_channel()

    app = FastAPI(
        title="shmbridge producer",
        description="Builds users and hands them to the gateway over REST or shared memory.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.producer = state
    app.add_middleware(AccessLogMiddleware)
    _install_error_handlers(app)

    @app.get("/healthz", **docs.HEALTHZ)
    async def healthz() -> Response:
        channel = state.channel
        if channel is None:
            return json_response(
                {
                    "status": "degraded",
                    "epoch": None,
                    "channel": None,
                    "detail": state.shm_unavailable or "the channel is not open",
                    "users": len(state.users),
                }
            )
        return json_response(
            {
                "status": "ok",
                "epoch": channel.epoch,
                "channel": channel.path,
                "users": len(state.users),
                "signal_socket": state.signal_socket,
                "snapshot_generation": state.snapshot_generation,
            }
        )

    @app.get("/metrics", **docs.METRICS)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/api/users", **docs.USERS_GET)
    async def get_users(request: Request) -> Response:
        count = count_param(request.query_params, len(state.users))
        return Response(state.payload(count), media_type="application/json")

    @app.get("/api/profiles", **docs.PROFILES_GET)
    async def get_profiles(request: Request) -> Response:
        count = profiles_param(request.query_params)
        return Response(orjson.dumps(state.profiles(count)), media_type="application/json")

    @app.post("/api/users", **docs.USERS_POST)
    async def post_users(request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(
                400, "invalid_body", 'the body must be JSON like {"count": 10}'
            ) from None
        count = body.get("count") if isinstance(body, dict) else None
        if type(count) is not int or not 1 <= count <= MAX_USERS_PER_POST:
            raise ApiError(
                400,
                "invalid_body",
                f"'count' in the JSON body must be an integer in 1..{MAX_USERS_PER_POST}",
            )
        if len(state.users) + count > USER_HARD_CAP:
            raise ApiError(
                409,
                "user_cap_reached",
                f"adding {count} users would pass the cap of {USER_HARD_CAP} users "
                f"(now {len(state.users)})",
            )
        state.add_users(count)
        return json_response(
            {"total": len(state.users), "added": count, "data_version": state.data_version}
        )

    @app.api_route("/api/write-to-shm", methods=["GET", "POST"], **docs.WRITE_TO_SHM)
    async def write_to_shm(request: Request) -> Response:
        channel, shm = state.channel, state.shm
        if channel is None or shm is None:
            raise ApiError(
                503,
                "shm_unavailable",
                f"shared memory is unavailable: {state.shm_unavailable or 'no channel'}",
            )
        params = request.query_params
        count = count_param(params, len(state.users))
        slot = int_param(params, "slot", 0, channel.slot_count - 1)
        request_id = int_param(params, "request_id", 1, MAX_REQUEST_ID)
        manual = slot is None
        if slot is None:
            slot = channel.slot_count - 1
        if request_id is None:
            request_id = secrets.randbits(63) or 1
        # When the caller stops waiting, in ms since the Unix epoch (the gateway sends it).
        deadline_ms = int_param(params, "deadline_ms", 0, 2**63 - 1)

        if settings.write_delay_ms:
            await asyncio.sleep(settings.write_delay_ms / 1000.0)
        # No await from this check to the end of the write: a write starts before the
        # caller's deadline or never, so a late write cannot land in a slot the caller has
        # given up on and handed to another request (its quarantine covers the write).
        if deadline_ms is not None:
            late_ms = time.time_ns() // 1_000_000 - deadline_ms
            if late_ms > 0:
                log.warning(
                    "write of request %d into slot %d refused: its deadline passed %d ms ago",
                    request_id,
                    slot,
                    late_ms,
                )
                raise ApiError(
                    504,
                    "deadline_passed",
                    f"the caller's deadline passed {late_ms} ms before the write could start; "
                    f"nothing was written to slot {slot}",
                )
        start = time.perf_counter()
        try:
            receipt = state.write_users(slot, request_id, count)
        except shm.PayloadTooLarge as exc:
            detail = f"{exc} (raise it with {SLOT_CAPACITY_SETTING})"
            raise ApiError(507, "payload_too_large", detail) from None
        except shm.SlotBusy as exc:
            raise ApiError(409, "slot_busy", str(exc)) from None
        except shm.ShmError as exc:
            raise ApiError(500, "shm_error", str(exc)) from None
        write_s = time.perf_counter() - start
        state.metrics.record_write("http", receipt.length, write_s)
        write_ms = write_s * 1000.0
        log_extra(request.scope).update(
            slot=slot,
            request_id=request_id,
            length=receipt.length,
            write_ms=f"{write_ms:.2f}",
        )
        answer: dict[str, Any] = {
            "path": channel.path,
            "epoch": channel.epoch,
            "slot": slot,
            "request_id": request_id,
            "sequence": receipt.sequence,
            "length": receipt.length,
            "encoding": "json",
        }
        if manual:
            answer["note"] = f"manual write: slot {slot} is reserved for hand calls"
        return json_response(answer)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.kind, exc.detail)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            kind, detail = "not_found", f"no such endpoint: {where}"
        elif exc.status_code == 405:
            kind, detail = "method_not_allowed", f"method not allowed: {where}"
        else:
            kind, detail = "http_error", f"{exc.detail} ({where})"
        return error_response(exc.status_code, kind, detail, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err.get('loc', ()))}: {err.get('msg', '')}"
            for err in exc.errors()
        )
        return error_response(400, "invalid_request", f"invalid request: {problems}")

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer, so the server logs the traceback.
        return error_response(
            500,
            "internal_error",
            f"unexpected {type(exc).__name__} on {request.method} {request.url.path}; "
            "see the producer log",
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
