"""Pure-ASGI middleware: one log line per request, and a quiet startup failure.

BaseHTTPMiddleware is avoided on purpose: it costs a task and a queue per request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("py_producer.access")

#: Scope key of a dict that endpoints fill with extra fields for the request's log line.
LOG_EXTRA_KEY = "py_producer.log_extra"


class StartupError(Exception):
    """Raised by the lifespan when the producer cannot start (e.g. no channel).

    Its message is what gets logged: no traceback, since the cause is a setting or the
    environment, not a bug.
    """


def log_extra(scope: Scope) -> dict[str, Any]:
    """The dict of extra log fields of this request (a throwaway dict if not logging)."""
    extra = scope.get(LOG_EXTRA_KEY)
    return extra if isinstance(extra, dict) else {}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class AccessLogMiddleware:
    """Logs ``METHOD path?query status duration`` plus endpoint extras, at INFO.

    Also rewrites a lifespan startup failure caused by :class:`StartupError` into that
    error's one-line message (Starlette would report a full traceback).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if access_log.isEnabledFor(logging.INFO):
                await self._http(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 0
        extra: dict[str, Any] = {}
        scope[LOG_EXTRA_KEY] = extra

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            query = scope.get("query_string", b"")
            target = scope.get("path", "")
            if query:
                target = f"{target}?{query.decode('latin-1')}"
            parts = [scope.get("method", "?"), target, str(status or "-"), f"{elapsed_ms:.2f}ms"]
            request_id = _header(scope, b"x-request-id")
            if request_id is not None:
                parts.append(f"x_request_id={request_id[:100]}")
            parts.extend(f"{key}={value}" for key, value in extra.items())
            access_log.info(" ".join(parts))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)  # sent below, once we know the exception
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_failure)
        except StartupError as exc:
            if held:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
            raise
        except BaseException:
            for message in held:
                await send(message)
            raise
        for message in held:
            await send(message)
