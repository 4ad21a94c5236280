"""Sending one message on one channel: a webhook (WeCom, DingTalk, plain JSON) or SMTP mail.

Channel URLs carry secrets (a robot's key, an SMTP password), so no error text that could
contain them leaves this module unredacted, and none is ever logged with the URL itself.
Every exchange has a deadline; a response body is read to a bounded size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from clockd import __version__
from clockd.config import EmailChannel, Settings, WebhookChannel
from clockd.errors import UserError
from clockd.notify.messages import Message

Channel = WebhookChannel | EmailChannel
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = f"clockd/{__version__}"


class _NoRequestLines(logging.Filter):
    """httpx logs every request with its full URL, which for a robot holds the key."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


logging.getLogger("httpx").addFilter(_NoRequestLines())


class ChannelError(Exception):
    """A delivery failed; the text is safe to log (no URL, no secret)."""


def send(
    settings: Settings,
    channel: Channel,
    message: Message,
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Deliver or raise ChannelError."""
    timeout = settings.notify.timeout_seconds
    try:
        if isinstance(channel, WebhookChannel):
            _post(settings, channel, message, timeout, environ)
        else:
            _mail(settings, channel, message, timeout, environ)
    except UserError as exc:  # a secret missing from the environment
        raise ChannelError(str(exc)) from None


# --- webhooks ---------------------------------------------------------------------------------


def payload(settings: Settings, channel: WebhookChannel, message: Message) -> dict[str, object]:
    """The JSON body. WeCom and DingTalk group robots take the same text message shape."""
    if channel.format in ("wecom", "dingtalk"):
        return {"msgtype": "text", "text": {"content": message.text}}
    return {
        "event": message.kind.value,
        "key": message.key,
        "township": settings.township,
        "title": message.title,
        "text": message.body,
    }


def _post(
    settings: Settings,
    channel: WebhookChannel,
    message: Message,
    timeout: float,
    environ: Mapping[str, str] | None,
) -> None:
    url = channel.url(environ)
    secrets = _secret_parts(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChannelError(f"{channel.url_env} does not hold an http(s) URL")
    secret = channel.secret(environ)
    if secret is not None:
        secrets.append(secret)
        url = _dingtalk_signed(url, secret)
    body = json.dumps(payload(settings, channel, message), ensure_ascii=False).encode()
    deadline = time.monotonic() + 3 * timeout
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(
                "POST",
                url,
                content=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "User-Agent": USER_AGENT,
                },
            ) as response,
        ):
            status = response.status_code
            answer = bytearray()
            for chunk in response.iter_bytes():
                answer += chunk
                if len(answer) > MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                    break
    except httpx.TimeoutException:
        raise ChannelError(f"no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ChannelError(_redact(f"{type(exc).__name__}: {exc}", secrets)) from None
    if not 200 <= status < 300:
        raise ChannelError(f"HTTP {status}")
    if channel.format in ("wecom", "dingtalk"):
        _check_robot_answer(bytes(answer), secrets)


def _check_robot_answer(answer: bytes, secrets: list[str]) -> None:
    """WeCom and DingTalk answer HTTP 200 even on failure; `errcode` 0 means delivered."""
    try:
        reply = json.loads(answer)
    except ValueError:
        raise ChannelError("the robot's answer is not JSON") from None
    code = reply.get("errcode") if isinstance(reply, dict) else None
    if code != 0:
        text = str(reply.get("errmsg", ""))[:120] if isinstance(reply, dict) else ""
        raise ChannelError(_redact(f"robot refused the message: errcode {code} {text}", secrets))


def _dingtalk_signed(url: str, secret: str) -> str:
    """DingTalk 加签: timestamp (ms) and the HMAC-SHA256 of "timestamp\\nsecret", base64."""
    timestamp = str(round(time.time() * 1000))
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    sign = base64.b64encode(digest.digest()).decode()
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{separator}{urllib.parse.urlencode({'timestamp': timestamp, 'sign': sign})}"


# --- mail -------------------------------------------------------------------------------------


def _mail(
    settings: Settings,
    channel: EmailChannel,
    message: Message,
    timeout: float,
    environ: Mapping[str, str] | None,
) -> None:
    raw = channel.smtp_url(environ)
    secrets = _secret_parts(raw)
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ChannelError(f"{channel.smtp_url_env} must be an smtp:// or smtps:// URL")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
    except ValueError:
        raise ChannelError(f"{channel.smtp_url_env} has an invalid port") from None
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password or "")
    options = urllib.parse.parse_qs(parts.query)
    starttls = options.get("starttls", ["yes"])[0].lower() not in ("no", "false", "0")
    if parts.scheme == "smtp" and not starttls and user:
        raise ChannelError(
            f"{channel.smtp_url_env}: refusing to send a password without TLS "
            "(drop starttls=no, or use smtps://)"
        )
    ca_file = channel.ca_file
    if ca_file is not None and not ca_file.is_absolute():
        ca_file = settings.config_dir / ca_file
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = channel.from_
    mail["To"] = ", ".join(channel.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=channel.from_.rsplit("@", 1)[1])
    mail["X-Clockd-Event"] = message.kind.value
    mail.set_content(f"{message.body}\n\n-- \nclockd · {settings.township}\n")
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        server: smtplib.SMTP
        if parts.scheme == "smtps":
            server = smtplib.SMTP_SSL(parts.hostname, port, timeout=timeout, context=context)
        else:
            server = smtplib.SMTP(parts.hostname, port, timeout=timeout)
        with server:
            server.ehlo()
            if parts.scheme == "smtp" and starttls:
                if not server.has_extn("starttls"):
                    raise ChannelError("the mail server does not offer STARTTLS")
                server.starttls(context=context)
                server.ehlo()
            if user:
                server.login(user, password)
            server.send_message(mail)
    except ChannelError:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(_redact(f"{type(exc).__name__}: {exc}", secrets)) from None


# --- secrets ------------------------------------------------------------------------------------


def _secret_parts(url: str) -> list[str]:
    """Pieces of a URL that must never appear in a log: itself, its path, query and password."""
    parts = urllib.parse.urlsplit(url)
    pieces = [url, parts.query, parts.password or "", urllib.parse.unquote(parts.password or "")]
    if parts.path not in ("", "/"):
        pieces.append(parts.path)
    return [piece for piece in pieces if len(piece) >= 4]


def _redact(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:300]
