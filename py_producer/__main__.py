"""``python -m py_producer``: parse settings, configure logging, serve with uvicorn."""

from __future__ import annotations

import importlib.util
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from py_producer.app import ProducerState, create_app
from py_producer.settings import Settings, parse_settings

log = logging.getLogger("py_producer")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class _Server(uvicorn.Server):
    """uvicorn's server, printing one line with the real address once it listens."""

    def __init__(self, config: uvicorn.Config, state: ProducerState) -> None:
        super().__init__(config)
        self.producer = state

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        host, port = self.config.host, self.config.port
        listening = getattr(self, "servers", [])
        if listening and listening[0].sockets:
            port = listening[0].sockets[0].getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        channel = self.producer.channel
        where = channel.path if channel is not None else "none (shared memory unavailable)"
        print(
            f"py_producer listening on http://{shown_host}:{port} channel {where}",
            flush=True,
        )


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _after_graceful_stop(signum: int, frame: FrameType | None) -> None:
    log.debug("stopped by signal %d", signum)


def run(settings: Settings) -> int:
    app = create_app(settings)
    state: ProducerState = app.state.producer
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if _has_module("uvloop") else "asyncio",
        http="httptools" if _has_module("httptools") else "h11",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        workers=1,
        server_header=False,
    )
    server = _Server(config, state)
    # uvicorn handles SIGINT/SIGTERM itself (graceful shutdown, lifespan shutdown closes the
    # channel) and afterwards re-raises the signal to the handler found at start. A no-op
    # handler there makes a graceful stop exit 0 instead of dying by the signal.
    previous = {sig: signal.signal(sig, _after_graceful_stop) for sig in _STOP_SIGNALS}
    try:
        server.run()
    except SystemExit as exc:
        # uvicorn exits this way when startup fails (lifespan or bind); it has logged why.
        if state.startup_error is not None:
            print(f"py_producer: {state.startup_error}", file=sys.stderr, flush=True)
            return 1
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging(settings.log_level)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
