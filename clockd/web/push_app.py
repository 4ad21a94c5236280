"""The ADMS push listener: /iclock/cdata, /iclock/getrequest and /iclock/devicecmd.

Terminals are plain HTTP clients with old firmware: HTTP/1.0 or 1.1, sometimes no
Content-Type, odd headers, no redirects followed. Everything they send is hostile until
parsed: a body is read to at most `push.max_body_bytes` within `push.body_timeout_seconds`,
and refused with 413 (too large) or 408 (too slow) otherwise. Replies are `text/plain`; the
server adds a `Date` header, from which terminals set their clocks. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router

from clockd.config import Settings
from clockd.ingest.push import PushReceiver, Refused
from clockd.store.db import first_line
from clockd.zk import push as codec

log = logging.getLogger(__name__)

# Storing batches in threads: bounded, so a burst of posts queues instead of piling up
# threads that would all wait for the one SQLite write lock anyway.
STORE_THREADS = 8


class BodyRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, at most `limit` bytes, all of it within `timeout` seconds.

    A post that declares neither its length nor chunks would be read as empty (HTTP/1.0
    gives a request no other way to end its body): it is refused with 411, so the terminal
    keeps its records and sends them again, rather than hearing OK for records never read."""
    declared = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if declared is None and not chunked:
        raise BodyRefused(411, "a body needs a Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"body of {int(declared)} bytes refused (limit {limit})")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, f"body over {limit} bytes refused")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(408, f"body not received within {timeout:g}s") from None
    return b"".join(chunks)


def _text(body: str, status: int = 200) -> Response:
    return PlainTextResponse(body, status_code=status)


def _serial(request: Request) -> str | None:
    params = request.query_params
    return codec.valid_serial(params.get("SN") or params.get("sn"))


def _param(request: Request, name: str) -> str | None:
    params = request.query_params
    return params.get(name) or params.get(name.lower()) or params.get(name.upper())


def build_push_app(
    settings: Settings, engine: Engine, receiver: PushReceiver | None = None
) -> Starlette:
    """The ASGI app of the push listener; flushes last-contact times in the background."""
    push = receiver if receiver is not None else PushReceiver(settings, engine)
    limiter = anyio.CapacityLimiter(STORE_THREADS)
    limit = settings.push.max_body_bytes
    timeout = settings.push.body_timeout_seconds

    async def body_or_refusal(request: Request, serial: str) -> bytes | Response:
        try:
            return await read_body(request, limit, timeout)
        except BodyRefused as exc:
            log.warning("push %s: %s", serial, exc.message)
            return _text(exc.message + "\n", exc.status)

    async def cdata(request: Request) -> Response:
        serial = _serial(request)
        if serial is None:
            return _text("missing or invalid SN\n", 400)
        if request.method == "GET":
            return _text(push.handshake(serial))
        body = await body_or_refusal(request, serial)
        if isinstance(body, Response):
            return body
        table = (_param(request, "table") or "").upper()
        if table != "ATTLOG":
            # OPERLOG, options, user and photo tables: acknowledged, not stored.
            push.touch(serial)
            count = codec.count_records(body)
            log.debug("push %s: table %r acknowledged (%d lines)", serial, table, count)
            return _text(codec.ok_reply(count))
        stamp = _param(request, "Stamp")
        try:
            outcome = await anyio.to_thread.run_sync(
                push.store_attlog, serial, body, stamp, limiter=limiter
            )
        except SQLAlchemyError as exc:
            # Not committed: no OK, so the device keeps the batch and sends it again.
            log.error("push %s: batch not stored: %s", serial, first_line(exc))
            return _text("ERROR: database unavailable, send again later\n", 503)
        except Refused as exc:
            log.warning("push %s: batch refused: %s", serial, exc)
            return _text("ERROR: refused, send again later\n", 503)
        log.info(
            "push %s: %d lines, new %d, duplicates %d, quarantined %d",
            serial,
            outcome.lines,
            outcome.new,
            outcome.duplicates,
            outcome.quarantined,
        )
        return _text(codec.ok_reply(outcome.lines))

    async def getrequest(request: Request) -> Response:
        serial = _serial(request)
        if serial is None:
            return _text("missing or invalid SN\n", 400)
        return _text(push.heartbeat(serial, _param(request, "INFO")))

    async def devicecmd(request: Request) -> Response:
        serial = _serial(request)
        if serial is None:
            return _text("missing or invalid SN\n", 400)
        body = await body_or_refusal(request, serial)
        if isinstance(body, Response):
            return body
        return _text(push.command_results(serial, body))

    async def ping(request: Request) -> Response:
        serial = _serial(request)
        if serial is not None:
            push.touch(serial)
        return _text("OK\n")

    async def flush() -> None:
        try:
            await anyio.to_thread.run_sync(push.flush_contacts, limiter=limiter)
        except SQLAlchemyError as exc:
            log.error("push: last-contact times not written (kept for later): %s", first_line(exc))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def flusher() -> None:
            while True:
                await asyncio.sleep(settings.push.contact_flush_seconds)
                await flush()

        task = asyncio.create_task(flusher())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await flush()

    routes = []
    for path, endpoint, methods in (
        ("cdata", cdata, ["GET", "POST"]),
        ("getrequest", getrequest, ["GET", "POST"]),
        ("devicecmd", devicecmd, ["POST"]),
        ("ping", ping, ["GET"]),
    ):
        for suffix in ("", ".aspx"):  # some firmware asks for the .aspx names
            routes.append(Route(f"/iclock/{path}{suffix}", endpoint, methods=methods))
    app = Starlette(routes=routes, lifespan=lifespan)
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False  # terminals do not follow redirects
    app.state.receiver = push
    return app
