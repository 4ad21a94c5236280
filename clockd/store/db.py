"""Engines and migrations: embedded SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from clockd.errors import InputError, UserError
from clockd.store.schema import MIGRATIONS, expected_revision

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Names of the PostgreSQL advisory locks clockd takes (see advisory_key).
MIGRATION_LOCK = "migration"
REPORT_LOCK = "reports"
LEDGER_CHECK_LOCK = "ledger-check"


class DatabaseUnavailable(UserError):
    """The database cannot be reached or opened."""


def make_engine(url: str) -> Engine:
    """An engine with clockd's connection settings; `url` is an SQLAlchemy URL.

    Whatever is wrong with the URL, the message shows it with its password masked.
    """
    shown = mask_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise InputError(
            f"database URL {shown!r} is not valid (e.g. sqlite:///clockd.sqlite3)"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _configure_sqlite(engine)
            _WRITE_TURNS[engine] = threading.RLock()
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        raise InputError(
            f"database URL {shown!r}: unsupported database type (use sqlite or postgresql)"
        ) from None
    except ImportError as exc:
        if parsed.get_backend_name() == "postgresql":
            raise InputError(
                "PostgreSQL needs the psycopg driver: pip install 'clockd[postgres]'"
            ) from None
        raise InputError(
            f"database URL {shown!r}: its driver is not installed ({exc.name or exc})"
        ) from None
    except (ArgumentError, TypeError, ValueError) as exc:
        reason = _without_password(first_line(exc), url)
        raise InputError(f"database URL {shown!r} is not valid: {reason}") from None
    return engine


_URL_PASSWORD = re.compile(r"(?P<head>//[^/@]*?:)(?P<password>[^@]*)(?P<at>@)")


def _without_password(text: str, url: str) -> str:
    """A driver's message with the URL's password blanked, should the driver quote it."""
    match = _URL_PASSWORD.search(url)
    password = match["password"] if match else ""
    return text.replace(password, "***") if password else text


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, even when the URL cannot be parsed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a malformed URL: masked by pattern instead
        return _URL_PASSWORD.sub(r"\g<head>***\g<at>", url)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling issues a deferred BEGIN, so two writers can deadlock on
    the lock upgrade; clockd takes the write lock up front with `immediate=True` instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # clockd emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# One writer at a time per SQLite engine, queued in the process. SQLite's own busy handler
# makes a waiting writer sleep and retry (up to 100 ms between tries), so with a poll cycle's
# threads all waiting for the write lock it sat idle between transactions most of the time; a
# thread waiting on this lock starts the moment the previous writer commits.
_WRITE_TURNS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that intends to write: it holds SQLite's write lock from the start.

    On SQLite the threads of one process also take turns on an in-process lock first; one
    that waits longer than the busy timeout goes ahead to SQLite, which then decides as before.
    """
    turn = _WRITE_TURNS.get(engine)
    queued = turn is not None and turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection = connection.execution_options(sqlite_immediate=True)
            with connection.begin():
                yield connection
    finally:
        if queued:
            assert turn is not None
            turn.release()


def _alembic_config(connection: Connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration, as Alembic resolves it (imports Alembic: for `init` and checks)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _stored_revision(engine: Engine) -> str | None:
    """The schema version with one SELECT; None when that SELECT cannot answer (no table yet,
    or a database error the slower Alembic path then reports in its own words)."""
    try:
        with engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:
        return None
    return str(versions[0][0]) if len(versions) == 1 else None


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to head; safe to run twice and from two processes at once.

    Returns (revision before, revision after).
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_lock(:k)"),
                    {"k": advisory_key(connection, MIGRATION_LOCK)},
                )
            try:
                with sqlite_foreign_keys_off(connection):
                    before = MigrationContext.configure(connection).get_current_revision()
                    command.upgrade(_alembic_config(connection), "head")
                    check_foreign_keys(connection)
                    connection.commit()
                after = MigrationContext.configure(connection).get_current_revision()
            finally:
                if engine.dialect.name == "postgresql":
                    advisory_unlock(connection, MIGRATION_LOCK)
                    connection.commit()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database {describe(engine)}: {first_line(exc)}") from None
    assert after is not None
    return before, after


@contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Foreign keys unenforced on an SQLite connection for a migration (nothing on others).

    Batch mode rebuilds a table by copy, drop and rename, and with foreign keys enforced the
    drop fails as soon as another table's rows refer to it (a quarantine entry to a punch).
    The pragma only takes effect outside a transaction; `check_foreign_keys` then checks every
    reference before the migration commits, and enforcement is back on afterwards.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw: Any = connection.connection.driver_connection
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        connection.rollback()  # no-op after a commit; the pragma needs no open transaction
        raw.execute("PRAGMA foreign_keys = ON")


def check_foreign_keys(connection: Connection) -> None:
    """Refuse to commit a migration that left an SQLite row referring to a missing one."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise UserError(
            f"the migration left {len(broken)} broken references, e.g. {table} row {rowid} "
            f"refers to a missing {parent} row; nothing was changed"
        )


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database that `clockd init` has not brought to this version.

    The common case (schema at head) costs one SELECT; Alembic is loaded only to confirm and
    explain a difference.
    """
    stored = _stored_revision(engine)
    if stored is not None and stored == expected_revision():
        return
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database {describe(engine)}: {first_line(exc)}") from None
    if current is None:
        raise UserError(f"database {describe(engine)} is not initialised: run `clockd init`")
    if current != head_revision():
        raise UserError(
            f"database {describe(engine)} is at schema {current}, this clockd needs "
            f"{head_revision()}: run `clockd init` to migrate"
        )


def advisory_key(connection: Connection, name: str) -> int:
    """The 64-bit PostgreSQL advisory-lock key of `name` in the connection's schema.

    Advisory locks belong to the whole database, while clockd's tables live in the schema the
    search_path names: deriving the key from the schema lets installations (or test runs) in
    different schemas of one database lock independently, and every process of one
    installation still agrees on the key.
    """
    schema = connection.scalar(text("SELECT current_schema()")) or ""
    digest = hashlib.blake2b(f"clockd:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def try_advisory_lock(connection: Connection, name: str) -> bool:
    """Take the session-level advisory lock `name` if no other session holds it."""
    key = advisory_key(connection, name)
    return bool(connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))


def advisory_unlock(connection: Connection, name: str) -> None:
    key = advisory_key(connection, name)
    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def process_name() -> str:
    """host:pid, recorded with poll runs and reports so an operator knows who wrote them."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def sole_daemon(engine: Engine) -> Iterator[None]:
    """Refuse a second `clockd run` on the same SQLite file (a lock file beside it).

    On PostgreSQL any number of daemons may share the database: they split the terminals with
    leases instead.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(database).resolve()
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise UserError(
                f"{path} is already in use by another `clockd run` ({owner}); "
                "only one may run on an SQLite database"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{process_name()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upsert_insert(connection: Connection, model: type[Any]) -> Any:
    """An INSERT with on_conflict_do_nothing/do_update for this connection's database."""
    return dialect_insert(connection.dialect.name, model)


def dialect_insert(dialect: str, target: Any) -> Any:
    """An INSERT with on_conflict_do_nothing/do_update for the database named `dialect`, for a
    statement built once per database rather than per call."""
    if dialect == "postgresql":  # each dialect's module only where it is used
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(target)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(target)


def describe(engine: Engine) -> str:
    """The URL without its password, for messages and logs."""
    return engine.url.render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__
