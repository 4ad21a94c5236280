"""`clockd serve`: several ASGI apps (push listener, web console) on their own addresses,
served by uvicorn in one process and one event loop, stopped together by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)

# A device that opens a connection and then says nothing is dropped after this long; a body
# has its own deadline (push.body_timeout_seconds).
KEEP_ALIVE_SECONDS = 15
SHUTDOWN_SECONDS = 10
SWITCH_INTERVAL_SECONDS = 0.0005


# A connection must complete each request's head (request line and headers) within this:
# uvicorn times out idle keep-alive connections but not a client that drips its headers.
REQUEST_HEAD_SECONDS = 20.0


def guarded_protocol(head_seconds: float = REQUEST_HEAD_SECONDS) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with a deadline on request
    heads: every `head_seconds` a connection must have started a new request or be serving
    one, else it is closed. Bodies have their own deadline in the app."""
    base: type[Any]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class Guarded(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._seen_cycle: object = None
            self._head_timer = self.loop.call_later(head_seconds, self._check_progress)

        def _check_progress(self) -> None:
            cycle = self.cycle
            serving = cycle is not None and not cycle.response_complete
            if serving or cycle is not self._seen_cycle:
                self._seen_cycle = cycle
                self._head_timer = self.loop.call_later(head_seconds, self._check_progress)
            else:
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_timer.cancel()
            super().connection_lost(exc)

    return Guarded


@contextlib.contextmanager
def serving_in_thread(
    app: ASGIApp, host: str, port: int, *, head_seconds: float = REQUEST_HEAD_SECONDS
) -> Iterator[None]:
    """Serve `app` from a background thread while the block runs (the demo, tests)."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=guarded_protocol(head_seconds),
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    )
    sock = _bind(host, port)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="http", daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise OSError(f"cannot serve on {host}:{port}")
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=SHUTDOWN_SECONDS + 5)
        sock.close()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `run_servers`, which stops them all."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def run_servers(
    apps: Sequence[tuple[ASGIApp, str, int]], *, on_ready: Callable[[], None] | None = None
) -> None:
    """Serve each (app, host, port) until SIGTERM/SIGINT; raise OSError if a port is taken."""
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                http=guarded_protocol(),
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                timeout_graceful_shutdown=SHUTDOWN_SECONDS,
                server_header=False,
                date_header=True,  # terminals set their clocks from it
            )
        )
        for app, host, port in apps
    ]
    # Batches are parsed and stored in worker threads; a short GIL switch interval keeps the
    # event loop, which answers the heartbeats, from waiting behind them.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    sockets = []
    try:
        for _, host, port in apps:
            sockets.append(_bind(host, port))
        # uvloop and httptools when installed (uvicorn's "auto"), else asyncio and h11.
        with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
            runner.run(_serve_all(servers, sockets, on_ready))
    finally:
        for sock in sockets:
            sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is an OSError here rather than uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def _serve_all(
    servers: list[_Server],
    sockets: list[socket.socket],
    on_ready: Callable[[], None] | None,
) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                stop()
                break
            await asyncio.sleep(0.02)
        else:
            if on_ready is not None:
                on_ready()
        await asyncio.gather(*tasks)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
