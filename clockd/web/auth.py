"""Accounts, passwords, API tokens and session cookies for the console.

Passwords are Argon2id hashes (argon2-cffi). API tokens are 32 random bytes shown once; only
their SHA-256 is stored, which is enough for a secret of that strength. The session cookie is
signed (itsdangerous) and carries the account id, the account's session version and the CSRF
token: disabling an account or signing out raises the version, which ends every session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine

from clockd.errors import UserError
from clockd.store import console
from clockd.store.console import Account

ADMIN, HR, LEADER, CADRE = "admin", "hr", "leader", "cadre"
ROLES = (ADMIN, HR, LEADER, CADRE)
ROLE_LABELS = {ADMIN: "管理员", HR: "人事", LEADER: "领导", CADRE: "干部"}
READ_ALL = frozenset({ADMIN, HR, LEADER})  # every cadre's records
MANAGE = frozenset({ADMIN, HR})  # quarantine, reports, leave entry, others' work results
DECIDE_LEAVE = frozenset({ADMIN, HR, LEADER})
DECIDE_LONG_LEAVE = frozenset({ADMIN, LEADER})

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
TOKEN_PREFIX = "clk_"  # noqa: S105 (marks a clockd token in logs and scanners)
MIN_SECRET = 32

_hasher = PasswordHasher()
# Verified against when the user name is unknown, so that the answer takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password is longer than {MAX_PASSWORD} characters")


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a new hash when the stored one uses outdated parameters)."""
    if len(password) > MAX_PASSWORD:
        return False, None
    try:
        _hasher.verify(stored_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False, None
    if stored_hash is None:
        return False, None
    return True, _hasher.hash(password) if _hasher.check_needs_rehash(stored_hash) else None


def add_user(
    engine: Engine,
    username: str,
    role: str,
    password: str,
    cadre_id: str | None,
    roster: set[str],
    actor: str,
) -> Account:
    """Create a console account; a cadre account names its roster user ID."""
    if not USERNAME.match(username):
        raise UserError("a user name is 1 to 64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if role == CADRE:
        if not cadre_id:
            raise UserError("a cadre account needs --user-id (the cadre's roster user ID)")
        if cadre_id not in roster:
            raise UserError(f"user ID {cadre_id} is not in the roster")
    elif cadre_id:
        raise UserError("--user-id is for cadre accounts only")
    account = console.insert_account(
        engine, username, role, cadre_id or None, hash_password(password), actor
    )
    if account is None:
        raise UserError(f"there is already a user named {username}")
    return account


def new_token() -> tuple[str, str]:
    """(the token to show once, its hash to store)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_token(engine: Engine, username: str, actor: str) -> tuple[int, str]:
    account = console.account_by_name(engine, username)
    if account is None or not account.active:
        raise UserError(f"no active console user named {username}")
    token, digest = new_token()
    return console.insert_token(engine, account.id, digest, actor), token


# --- sessions ----------------------------------------------------------------------------------

SESSION_COOKIE = "clockd_session"


@dataclass(frozen=True)
class Session:
    csrf: str
    account_id: int | None = None
    version: int | None = None


class SessionCodec:
    """Signs and reads the session cookie; an unsigned, altered or expired cookie reads as none."""

    def __init__(self, secret: str, max_age_seconds: float) -> None:
        if len(secret) < MIN_SECRET:
            raise UserError(f"the console's session key must have at least {MIN_SECRET} characters")
        self._serializer = URLSafeTimedSerializer(secret, salt="clockd-session")
        self.max_age = int(max_age_seconds)

    def dump(self, session: Session) -> str:
        payload: dict[str, object] = {"c": session.csrf}
        if session.account_id is not None:
            payload |= {"a": session.account_id, "v": session.version}
        return self._serializer.dumps(payload)

    def load(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            payload = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("c"), str):
            return None
        account, version = payload.get("a"), payload.get("v")
        if not isinstance(account, int) or not isinstance(version, int):
            return Session(payload["c"])
        return Session(payload["c"], account, version)


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


# --- slowing repeated failures -----------------------------------------------------------------

FREE_FAILURES = 3
MAX_WAIT_SECONDS = 300.0


def wait_after(failures: int) -> float:
    """Seconds to refuse attempts after `failures` consecutive failures: 1, 2, 4 … 300."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(2.0 ** (failures - FREE_FAILURES), MAX_WAIT_SECONDS)


class ClientThrottle:
    """Failures per client address (in memory, bounded): slows guessing across user names."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._failures: OrderedDict[str, tuple[int, dt.datetime]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def retry_in(self, client: str, now: dt.datetime) -> float:
        with self._lock:
            entry = self._failures.get(client)
        if entry is None:
            return 0.0
        count, last = entry
        return max(0.0, wait_after(count) - (now - last).total_seconds())

    def failed(self, client: str, now: dt.datetime) -> None:
        with self._lock:
            count = self._failures.pop(client, (0, now))[0]
            self._failures[client] = (count + 1, now)
            while len(self._failures) > self._capacity:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
