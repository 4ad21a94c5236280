"""What clockd last stored of each terminal's log (the re-poll fast path, ingest/logtail.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from clockd.store.db import upsert_insert
from clockd.store.models import TerminalLog, utcnow


@dataclass(frozen=True)
class LogMark:
    """The first `records` records of a terminal's log, all stored: their size and digests."""

    record_size: int
    records: int
    digest: bytes
    users_digest: bytes | None


def known(connection: Connection, serial: str) -> LogMark | None:
    """The mark of what is stored of the log of the terminal stored as `serial`, if any."""
    row = connection.execute(
        select(
            TerminalLog.record_size,
            TerminalLog.records,
            TerminalLog.digest,
            TerminalLog.users_digest,
        ).where(TerminalLog.serial == serial)
    ).one_or_none()
    if row is None:
        return None
    users = row.users_digest
    return LogMark(row.record_size, row.records, bytes(row.digest), bytes(users) if users else None)


def remember(connection: Connection, serial: str, mark: LogMark) -> None:
    """Record `mark` in the caller's transaction, the one that stored the records it covers."""
    values = {
        "record_size": mark.record_size,
        "records": mark.records,
        "digest": mark.digest,
        "users_digest": mark.users_digest,
        "updated_at": utcnow(),
    }
    connection.execute(
        upsert_insert(connection, TerminalLog)
        .values(serial=serial, **values)
        .on_conflict_do_update(index_elements=["serial"], set_=values)
    )
