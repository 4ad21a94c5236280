"""What clockd last stored of each terminal's log (the re-poll fast path, ingest/logtail.py)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import Connection, Executable, bindparam, select

from clockd.store.db import dialect_insert
from clockd.store.models import TerminalLog, table_of, utcnow


@dataclass(frozen=True)
class LogMark:
    """The first `records` records of a terminal's log, all stored: their size and digests."""

    record_size: int
    records: int
    digest: bytes
    users_digest: bytes | None


# Built once: a poll runs each of these per terminal, and building a statement costs several
# times what executing a cached one does (docs/performance.md, "Rules the code keeps").
_KNOWN = select(
    TerminalLog.record_size, TerminalLog.records, TerminalLog.digest, TerminalLog.users_digest
).where(TerminalLog.serial == bindparam("log_serial"))
_MARK_COLUMNS = ("record_size", "records", "digest", "users_digest", "updated_at")


@cache
def _remember(dialect: str) -> Executable:
    statement = dialect_insert(dialect, table_of(TerminalLog))
    upsert: Executable = statement.on_conflict_do_update(
        index_elements=["serial"], set_={name: statement.excluded[name] for name in _MARK_COLUMNS}
    )
    return upsert


def known(connection: Connection, serial: str) -> LogMark | None:
    """The mark of what is stored of the log of the terminal stored as `serial`, if any."""
    row = connection.execute(_KNOWN, {"log_serial": serial}).one_or_none()
    if row is None:
        return None
    users = row.users_digest
    return LogMark(row.record_size, row.records, bytes(row.digest), bytes(users) if users else None)


def remember(connection: Connection, serial: str, mark: LogMark) -> None:
    """Record `mark` in the caller's transaction, the one that stored the records it covers."""
    connection.execute(
        _remember(connection.dialect.name),
        {
            "serial": serial,
            "record_size": mark.record_size,
            "records": mark.records,
            "digest": mark.digest,
            "users_digest": mark.users_digest,
            "updated_at": utcnow(),
        },
    )
