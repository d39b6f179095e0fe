"""``Bridge``: a producer of named handlers, served on the channel's signal socket.

A reader (the gateway, ``shmbridge::client::Client`` in Rust, or a Python test) sends a
version-2 signal frame: call handler ``name`` with ``params`` (UTF-8 key/value pairs)
into request slot ``slot`` for ``request_id``. The channel's native listener (Rust
threads) calls :meth:`Bridge.dispatch`, which runs the handler and writes what it
returns into the slot:

- a JSON-able object: written by the native serializer (``Channel.write_json``);
- ``bytes``, ``bytearray``, ``memoryview`` or any other buffer (a numpy array...):
  its bytes, copied once (``Channel.write_bytes``, encoding ``raw``);
- a :class:`Reply`: its body as above, with a content type (a JSON content type with a
  buffer body writes the buffer with encoding ``json``);
- for a handler registered with ``writes=True``: nothing; it fills the slot in place
  through the :class:`Out` it is given.

A handler's exceptions become the answer's status (``ValueError`` -> bad request,
``LookupError`` -> not found, ``TimeoutError`` -> timed out, ``PayloadTooLarge`` -> too
large, anything else -> handler error with ``TypeName: text``); see
``Channel.serve_uds``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias, TypeVar, overload

from shmbridge._native import Channel, Receipt, Reservation, ShmError, _remaining_budget

__all__ = ["Bridge", "Out", "Reply"]

#: Handler names: what the wire allows (src/wire.rs ``check_name``).
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
#: Content types: printable ASCII, at most 255 bytes (what the listener accepts).
_CONTENT_TYPE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")
MAX_CONTENT_TYPE_LEN: Final = 255

Params: TypeAlias = Mapping[str, str]
#: A handler: a function of ``params`` (plain or async) returning what is written.
H = TypeVar("H", bound=Callable[[Params], object])
#: A ``writes=True`` handler: a plain function of ``params`` and :class:`Out`.
W = TypeVar("W", bound=Callable[[Params, "Out"], object])


def check_handler_name(name: str) -> str:
    """``name`` if the wire allows it as a handler name, else ValueError: 1 to 64 bytes
    of ``[a-z0-9_.-]``, starting with ``[a-z0-9]``."""
    if not isinstance(name, str) or not name.isascii() or not _NAME.fullmatch(name):
        raise ValueError(
            f"handler name {name!r} is not allowed: use 1 to 64 characters of "
            "[a-z0-9_.-], starting with a letter or a digit"
        )
    return name


def _check_content_type(content_type: str) -> str:
    if (
        not isinstance(content_type, str)
        or not content_type.isascii()
        or not _CONTENT_TYPE.fullmatch(content_type)
    ):
        raise ValueError(
            f"content type {content_type!r} is not allowed: use 1 to "
            f"{MAX_CONTENT_TYPE_LEN} printable ASCII characters"
        )
    return content_type


def is_json_content_type(content_type: str) -> bool:
    """Whether ``content_type`` is JSON: ``application/json`` or ``*/*+json``."""
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


class Reply:
    """A handler's reply with a content type: ``Reply(body, content_type="text/csv")``.

    ``body`` is written as a handler's return value is (JSON, or a buffer's bytes).
    With a JSON content type, a buffer body is taken to hold JSON (encoding ``json``).
    """

    __slots__ = ("body", "content_type")

    def __init__(self, body: object, content_type: str | None = None) -> None:
        self.body: Final = body
        self.content_type: Final = (
            None if content_type is None else _check_content_type(content_type)
        )

    def __repr__(self) -> str:
        return f"Reply({type(self.body).__name__}, content_type={self.content_type!r})"


class Out:
    """The slot a ``writes=True`` handler fills in place.

    ``out.reserve(size)`` reserves ``size`` bytes of the request slot and returns a
    writable memoryview over them (``numpy.frombuffer(view, dtype)`` writes into the
    slot itself); when the handler returns, the bytes are published (encoding ``raw``);
    when it raises, the slot is abandoned and left empty. Release every other view of
    the memory (numpy arrays made from it included) before returning.
    ``out.content_type`` sets the reply's content type.
    """

    __slots__ = ("_channel", "_content_type", "_request_id", "_reservation", "_slot")

    def __init__(self, channel: Channel, slot: int, request_id: int) -> None:
        self._channel = channel
        self._slot = slot
        self._request_id = request_id
        self._reservation: Reservation | None = None
        self._content_type: str | None = None

    @property
    def content_type(self) -> str | None:
        return self._content_type

    @content_type.setter
    def content_type(self, value: str | None) -> None:
        self._content_type = None if value is None else _check_content_type(value)

    @property
    def capacity(self) -> int:
        """Bytes a slot holds: the largest ``size`` :meth:`reserve` accepts."""
        return self._channel.slot_capacity

    def reserve(self, size: int) -> memoryview:
        """A writable memoryview over the first ``size`` bytes of the slot (once per call
        of the handler). PayloadTooLarge if ``size`` exceeds :attr:`capacity`."""
        if self._reservation is not None:
            raise RuntimeError("out.reserve() was already called for this request")
        reservation = self._channel.reserve(self._slot, self._request_id, size)
        self._reservation = reservation
        return reservation.__enter__()

    def _finish(self, error: BaseException | None) -> Receipt | None:
        reservation, self._reservation = self._reservation, None
        if reservation is None:
            return None
        if error is not None:
            reservation.__exit__(type(error), error, error.__traceback__)
            return None
        reservation.__exit__(None, None, None)
        return reservation.receipt


class _Registered:
    __slots__ = ("function", "is_async", "writes")

    def __init__(self, function: Callable[..., Any], is_async: bool, writes: bool) -> None:
        self.function = function
        self.is_async = is_async
        self.writes = writes


class Bridge:
    """A producer: a channel file and the handlers its signal socket calls by name.

    ``Bridge(name, directory)`` creates the channel file ``{directory}/{name}.shm`` (as
    ``Channel`` does, with its ``slot_count``, ``slot_capacity`` and ``snapshot_slots``);
    ``@bridge.handler("name")`` registers a handler; :meth:`serve` starts the signal
    socket's listener (``{directory}/{name}.sock``) and returns. A plain script with a
    Bridge is a complete producer: no HTTP server is needed.

    Coroutine functions run on ``loop`` if given, else on the loop running when
    :meth:`serve` is called, else on a loop of the bridge's own in a background thread;
    each is bounded by its request's budget.
    """

    def __init__(
        self,
        name: str,
        directory: str | os.PathLike[str] = "shared_memory_dir",
        *,
        slot_count: int = 16,
        slot_capacity: int = 33_554_432,
        snapshot_slots: int = 4,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._channel = Channel(
            name,
            directory,
            slot_count=slot_count,
            slot_capacity=slot_capacity,
            snapshot_slots=snapshot_slots,
        )
        self._handlers: dict[str, _Registered] = {}
        self._loop = loop
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- registration ---------------------------------------------------------------

    @overload
    def handler(self, name: str, *, writes: Literal[False] = False) -> Callable[[H], H]: ...
    @overload
    def handler(self, name: str, *, writes: Literal[True]) -> Callable[[W], W]: ...
    def handler(self, name: str, *, writes: bool = False) -> Callable[[Any], Any]:
        """Registers the decorated function as handler ``name``.

        The function takes ``params`` (a ``Mapping[str, str]``) and returns what is
        written (see :class:`Bridge`); it may be a coroutine function. With
        ``writes=True`` it takes ``(params, out)`` and fills the slot in place through
        ``out`` (a plain function: a coroutine could still be writing after its
        request's budget ran out). ValueError for a name the wire does not allow or one
        already registered.
        """
        check_handler_name(name)

        def register(function: Callable[..., object]) -> Callable[..., object]:
            if not callable(function):
                raise TypeError(f"handler {name!r} must be callable")
            is_async = inspect.iscoroutinefunction(function)
            if writes and is_async:
                raise TypeError(
                    f"handler {name!r}: writes=True needs a plain function, not a coroutine "
                    "function (the slot must be written within the request's budget)"
                )
            with self._lock:
                if name in self._handlers:
                    raise ValueError(f"handler {name!r} is already registered")
                self._handlers[name] = _Registered(function, is_async, writes)
            return function

        return register

    @property
    def handlers(self) -> list[str]:
        """The registered handler names, sorted."""
        return sorted(self._handlers)

    # --- serving --------------------------------------------------------------------

    @property
    def channel(self) -> Channel:
        """The channel the bridge writes (for its path, epoch, geometry...)."""
        return self._channel

    @property
    def uds_path(self) -> str | None:
        """Path of the signal socket while :meth:`serve` runs, else None."""
        return self._channel.uds_path

    def serve(self, *, spin_us: int = 0) -> str:
        """Starts the signal socket's listener (Rust threads) and returns its path.

        ``spin_us`` is ``Channel.serve_uds``'s: how long a connection polls for its
        next request before it sleeps, at low load.
        """
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None
        return self._channel.serve_uds(self.dispatch, spin_us=spin_us)

    def publish(self, obj: object) -> Receipt:
        """Publishes ``obj`` as the channel's newest snapshot (``Channel.publish``)."""
        return self._channel.publish(obj)

    def close(self) -> None:
        """Stops the listener (a request being handled finishes first), removes the
        channel file and its socket, and stops the bridge's own loop if it made one.
        Idempotent."""
        self._channel.close()
        with self._lock:
            loop, thread = self._own_loop, self._own_thread
            self._own_loop = self._own_thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Bridge({self._channel.path!r}, handlers={self.handlers})"

    # --- one request ----------------------------------------------------------------

    def dispatch(
        self, slot: int, request_id: int, name: str, params: Mapping[str, str]
    ) -> tuple[Receipt, str]:
        """Runs handler ``name`` with ``params`` and writes its reply into ``slot`` for
        ``request_id``; returns the receipt and the content type ("" to let the slot's
        encoding decide). The callable the signal listener is given; LookupError for an
        unknown name, listing the known ones."""
        registered = self._handlers.get(name)
        if registered is None:
            known = ", ".join(sorted(self._handlers)) or "(none)"
            raise LookupError(f'no handler "{name}"; known: {known}')
        if registered.writes:
            return self._write_in_place(registered, slot, request_id, name, params)
        if registered.is_async:
            value = self._await(registered.function(params), name)
        else:
            value = registered.function(params)
        return self.write_reply(slot, request_id, value)

    def write_reply(self, slot: int, request_id: int, value: object) -> tuple[Receipt, str]:
        """Writes a handler's return value into ``slot`` (see :class:`Bridge`)."""
        content_type = ""
        if isinstance(value, Reply):
            content_type = value.content_type or ""
            value = value.body
        view = _as_buffer(value)
        if view is None:
            return self._channel.write_json(slot, request_id, value), content_type
        encoding: Literal["json", "raw"] = (
            "json" if content_type and is_json_content_type(content_type) else "raw"
        )
        data: bytes | memoryview = value if isinstance(value, bytes) else view
        if not view.c_contiguous:
            data = view.tobytes()  # a strided view: its bytes in order (one more copy)
        return self._channel.write_bytes(slot, request_id, data, encoding=encoding), content_type

    def _write_in_place(
        self,
        registered: _Registered,
        slot: int,
        request_id: int,
        name: str,
        params: Mapping[str, str],
    ) -> tuple[Receipt, str]:
        out = Out(self._channel, slot, request_id)
        try:
            registered.function(params, out)
        except BaseException as error:
            out._finish(error)
            raise
        receipt = out._finish(None)
        if receipt is None:
            raise ShmError(f"handler {name!r} (writes=True) returned without calling out.reserve()")
        return receipt, out.content_type or ""

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            if loop.is_closed() or not loop.is_running():
                raise ShmError(
                    "the bridge's asyncio loop is not running; async handlers cannot run"
                )
            return loop
        with self._lock:
            if self._own_loop is None:
                own = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(own)
                    own.call_soon(ready.set)
                    own.run_forever()

                thread = threading.Thread(target=run, name="shmbridge-bridge-loop", daemon=True)
                thread.start()
                ready.wait()
                self._own_loop, self._own_thread = own, thread
            return self._own_loop

    def _await(self, coroutine: Awaitable[object], name: str) -> object:
        budget = _remaining_budget()
        try:
            loop = self._event_loop()
        except BaseException:
            if inspect.iscoroutine(coroutine):
                coroutine.close()
            raise
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(coroutine), loop)
        try:
            return future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            if not future.done():
                future.cancel()
                raise TimeoutError(
                    f"handler {name!r} did not finish within the request's budget; "
                    "nothing was written"
                ) from None
            raise
        except concurrent.futures.CancelledError:
            raise ShmError(f"handler {name!r} was cancelled") from None


async def _as_coroutine(awaitable: Awaitable[object]) -> object:
    return await awaitable


#: What handlers return most, never a buffer: one set lookup answers for them.
_PLAIN_JSON_TYPES: Final = frozenset({list, dict, str, int, float, bool, tuple, type(None)})


def _as_buffer(value: object) -> memoryview | None:
    """A memoryview of ``value`` if it is a buffer (bytes, numpy arrays...), else None.
    ``str`` is not a buffer here: it is written as a JSON string."""
    if type(value) in _PLAIN_JSON_TYPES:
        return None
    if isinstance(value, memoryview):
        return value
    if isinstance(value, (bytes, bytearray)):
        return memoryview(value)
    if isinstance(value, (str, int, float, dict, list, tuple)) or value is None:
        return None
    try:
        return memoryview(value)  # type: ignore[arg-type]  # any buffer exporter
    except TypeError:
        return None
