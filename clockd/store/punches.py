"""The append-only punch store: insert-or-ignore on (serial, user ID, time), batched."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from clockd.domain import Punch
from clockd.store.models import PunchRow, utcnow

BATCH = 5_000
_COLUMNS = "serial, user_id, punched_at, status, punch_state, source, poll_run_id, ingested_at"


@dataclass(frozen=True)
class StoreResult:
    new: int
    duplicates: int


def insert_punches(
    connection: Connection, punches: Iterable[Punch], *, poll_run_id: int, source: str
) -> StoreResult:
    """Store each punch unless its (serial, user ID, time) is already there.

    This is the ingestion hot path (100,000 records per terminal is normal), so it hands
    parameter tuples straight to the driver's executemany; the values are always bound, never
    formatted into the SQL. Rows go in key order so concurrent writers on PostgreSQL wait on
    each other instead of deadlocking. The driver's row count tells exactly how many were new,
    even while another process inserts the same punches.
    """
    unique = {(p.serial, p.user_id, p.timestamp): p for p in punches}
    if not unique:
        return StoreResult(new=0, duplicates=0)
    sqlite = connection.dialect.name == "sqlite"
    now: object = utcnow()
    if sqlite:
        # The text form SQLAlchemy's DateTime uses on SQLite, so ORM reads and these writes agree.
        now = _sqlite_time(utcnow().replace(tzinfo=None))
    rows = [
        (
            p.serial,
            p.user_id,
            _sqlite_time(p.timestamp) if sqlite else p.timestamp,
            p.status,
            p.punch,
            source,
            poll_run_id,
            now,
        )
        for key, p in sorted(unique.items(), key=lambda item: item[0])
    ]
    marks = ", ".join(["?" if sqlite else "%s"] * 8)
    statement = (
        f"INSERT INTO punches ({_COLUMNS}) VALUES ({marks}) "  # noqa: S608 - constants only
        "ON CONFLICT (serial, user_id, punched_at) DO NOTHING"
    )
    new = 0
    for start in range(0, len(rows), BATCH):
        result = connection.exec_driver_sql(statement, rows[start : start + BATCH])
        new += result.rowcount
    return StoreResult(new=new, duplicates=len(unique) - new)


def _sqlite_time(value: dt.datetime) -> str:
    return value.isoformat(" ", "microseconds")


def stored_keys(
    connection: Connection, serial: str, punches: Sequence[Punch]
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
