"""Real servers on loopback for alert tests: an HTTP server standing in for a WeCom or DingTalk
group robot, and an SMTP server (aiosmtpd) with STARTTLS or TLS and a login."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROBOT_OK = b'{"errcode":0,"errmsg":"ok"}'


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Robot:
    """Answers POSTs with the scripted (status, body) replies, then with robot success."""

    def __init__(self, replies: list[tuple[int, bytes]] | None = None) -> None:
        self.requests: list[Request] = []
        self.replies = list(replies or [])
        self._lock = threading.Lock()
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with robot._lock:
                    robot.requests.append(Request(self.path, dict(self.headers), body))
                    status, answer = robot.replies.pop(0) if robot.replies else (200, ROBOT_OK)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/cgi-bin/webhook/send?key=robot-SECRET-key-0001") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [request.json() for request in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def robot(replies: list[tuple[int, bytes]] | None = None) -> Iterator[Robot]:
    server = Robot(replies)
    try:
        yield server
    finally:
        server.close()


# --- mail ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (openssl command line), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Mailbox:
    port: int
    cert: Path
    mails: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    def wait(self, count: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while len(self.mails) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mails, got {len(self.mails)}")
            time.sleep(0.02)


@contextmanager
def smtp_server(folder: Path, *, implicit_tls: bool, user: str, password: str) -> Iterator[Mailbox]:
    """aiosmtpd requiring TLS (STARTTLS, or TLS from the first byte) and a login."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox(free_port(), cert)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mail = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            box.mails.append((envelope.mail_from, list(envelope.rcpt_tos), mail))
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (data.login.decode(), data.password.decode())
        box.logins.append(login)
        return AuthResult(success=login == (user, password))

    if implicit_tls:
        # The whole connection is TLS; aiosmtpd only knows about TLS it started itself.
        controller = Controller(
            Handler(), hostname="127.0.0.1", port=box.port, ssl_context=context,
            authenticator=authenticate, auth_require_tls=False,
        )  # fmt: skip
    else:
        controller = Controller(
            Handler(), hostname="127.0.0.1", port=box.port, tls_context=context,
            require_starttls=True, authenticator=authenticate, auth_require_tls=True,
        )  # fmt: skip
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
