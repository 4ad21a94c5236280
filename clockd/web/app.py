"""The console's ASGI application: `create_app(settings, engine)`.

One FastAPI app serves the HTML pages (pages.py), the JSON API under /api/v1 (api.py) and
the stylesheet. Pages work without JavaScript. Every request is logged once (method, path,
status, user, milliseconds); never a cookie, token, password or query string.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clockd.config import Settings
from clockd.domain import Cadre
from clockd.errors import UserError
from clockd.roster import load_roster
from clockd.web.auth import SESSION_COOKIE, ClientThrottle, SessionCodec
from clockd.web.figures import Figures

log = logging.getLogger("clockd.web")
access_log = logging.getLogger("clockd.web.access")

WEB_DIR = Path(str(resources.files("clockd.web")))


MAX_BODY = 1024 * 1024  # forms and API bodies are small; nothing is uploaded


class _TooLarge(HTTPException):
    """Raised while the body is being read; the app answers it with 413 like any HTTP error."""

    def __init__(self) -> None:
        super().__init__(413, "请求内容过大")


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413), declared or streamed, before they are
    buffered: whatever a client declares, memory stays bounded."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await _too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except _TooLarge:
            if started:
                raise
            await _too_large(scope, receive, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    log.info("%s %s refused: request body over %d bytes", scope["method"], scope["path"], MAX_BODY)
    await PlainTextResponse("请求内容过大", status_code=413)(scope, receive, send)


@dataclass
class Console:
    """What every request handler needs; one per app."""

    settings: Settings
    engine: Engine
    cadres: list[Cadre]
    codec: SessionCodec
    templates: Environment
    secure_cookies: bool
    figures: Figures
    throttle: ClientThrottle = field(default_factory=ClientThrottle)

    @property
    def roster(self) -> dict[str, Cadre]:
        return {cadre.user_id: cadre for cadre in self.cadres}


def session_secret(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    name = settings.web.secret_key_env
    secret = env.get(name, "")
    if not secret:
        raise UserError(
            f"web: environment variable {name} (the console's session key) is not set; "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    return secret


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    cadres: Sequence[Cadre] | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """The console for `settings`' township; the roster is read now unless given."""
    from clockd.web import api, pages

    if cadres is None:
        cadres = load_roster(settings.roster_path, {t.village for t in settings.terminals})
    templates = Environment(
        loader=FileSystemLoader(str(WEB_DIR / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    console = Console(
        settings=settings,
        engine=engine,
        cadres=list(cadres),
        codec=SessionCodec(session_secret(settings, environ), settings.web.session_hours * 3600),
        templates=templates,
        secure_cookies=(settings.web.base_url or "").startswith("https://"),
        figures=Figures(settings, engine, cadres),
    )
    app = FastAPI(
        title="clockd API",
        version="1",
        description=(
            "干部下村考勤 JSON API. Authorization: Bearer <token from `clockd token create`>."
        ),
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.console = console
    app.add_middleware(BodyLimit)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.add_exception_handler(pages.LoginRequired, pages.login_required)
    app.add_exception_handler(pages.Refused, pages.refused)
    app.add_exception_handler(UserError, pages.user_error)
    app.add_exception_handler(HTTPException, pages.http_error)
    app.add_exception_handler(RequestValidationError, pages.invalid_request)

    @app.get("/static/style.css", include_in_schema=False)
    def stylesheet() -> Response:
        css = (WEB_DIR / "static" / "style.css").read_text(encoding="utf-8")
        return PlainTextResponse(
            css, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.middleware("http")
    async def log_and_protect(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        request.state.user = "-"
        request.state.new_cookie = None
        try:
            response = await call_next(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = HTMLResponse("<h1>服务器内部错误</h1>", status_code=500)
        cookie = request.state.new_cookie
        if cookie is not None:
            response.set_cookie(
                SESSION_COOKIE,
                cookie,
                max_age=console.codec.max_age,
                httponly=True,
                samesite="lax",
                secure=console.secure_cookies,
                path="/",
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/api/"):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                "form-action 'self'; frame-ancestors 'none'",
            )
        access_log.info(
            "%s %s %d %s %.1fms",
            request.method,
            request.url.path,
            response.status_code,
            request.state.user,
            (time.perf_counter() - began) * 1000,
        )
        return response

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    return app


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
