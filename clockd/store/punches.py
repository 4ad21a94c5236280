"""The append-only punch store: insert-or-ignore on (time, serial, user ID), batched."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from clockd.domain import PunchFields
from clockd.store.models import PunchRow, utcnow

BATCH = 5_000
_COLUMNS = "serial, user_id, punched_at, status, punch_state, source, poll_run_id, ingested_at"


@dataclass(frozen=True)
class StoreResult:
    new: int
    duplicates: int


def insert_punches(
    connection: Connection,
    serial: str,
    punches: Sequence[PunchFields],
    *,
    poll_run_id: int,
    source: str,
) -> StoreResult:
    """Store each punch of terminal `serial` unless its (time, serial, user ID) is there.

    This is the ingestion hot path (100,000 records per terminal is normal), so it hands
    parameter tuples straight to the driver's executemany; the values are always bound, never
    formatted into the SQL. The driver's row count tells exactly how many were new, even while
    another process inserts the same punches. On PostgreSQL rows go in key order so that
    concurrent writers wait on each other instead of deadlocking; SQLite writers hold the
    database's one write lock, so order does not matter there.
    """
    if not punches:
        return StoreResult(new=0, duplicates=0)
    rows: list[tuple[object, ...]]
    if connection.dialect.name == "sqlite":
        # The text form SQLAlchemy's DateTime uses on SQLite, so ORM reads and these writes agree.
        now: object = _sqlite_time(utcnow().replace(tzinfo=None))
        rows = [
            (
                serial,
                p.user_id,
                _sqlite_time(p.timestamp),
                p.status,
                p.punch,
                source,
                poll_run_id,
                now,
            )
            for p in punches
        ]
        marks = "?, ?, ?, ?, ?, ?, ?, ?"
    else:
        now = utcnow()
        ordered = sorted(punches, key=lambda p: (p.timestamp, p.user_id))
        rows = [
            (serial, p.user_id, p.timestamp, p.status, p.punch, source, poll_run_id, now)
            for p in ordered
        ]
        marks = "%s, %s, %s, %s, %s, %s, %s, %s"
    statement = (
        f"INSERT INTO punches ({_COLUMNS}) VALUES ({marks}) "  # noqa: S608 - constants only
        "ON CONFLICT (punched_at, serial, user_id) DO NOTHING"
    )
    new = 0
    for start in range(0, len(rows), BATCH):
        result = connection.exec_driver_sql(statement, rows[start : start + BATCH])
        new += result.rowcount
    return StoreResult(new=new, duplicates=len(rows) - new)


def _sqlite_time(value: dt.datetime) -> str:
    return value.isoformat(" ", "microseconds")


def stored_keys(
    connection: Connection, serial: str, punches: Sequence[PunchFields]
) -> set[tuple[str, dt.datetime]]:
    """Which of `punches` are in the store, by (user ID, time): the clear policy's count-back."""
    if not punches:
        return set()
    lo = min(p.timestamp for p in punches)
    hi = max(p.timestamp for p in punches)
    result = connection.execute(
        select(PunchRow.user_id, PunchRow.punched_at).where(
            PunchRow.serial == serial, PunchRow.punched_at.between(lo, hi)
        )
    )
    wanted = {(p.user_id, p.timestamp) for p in punches}
    return {(row.user_id, row.punched_at) for row in result} & wanted
