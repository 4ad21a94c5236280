"""`clockd serve`: several ASGI apps (push listener, web console) on their own addresses,
served by uvicorn in one process and one event loop, stopped together by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Generator, Sequence

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)

# A device that opens a connection and then says nothing is dropped after this long; a body
# has its own deadline (push.body_timeout_seconds).
KEEP_ALIVE_SECONDS = 15
SHUTDOWN_SECONDS = 10
SWITCH_INTERVAL_SECONDS = 0.0005


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
