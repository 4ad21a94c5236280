"""The append-only punch store: insert-or-ignore on (time, serial, user ID), batched."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from clockd.domain import PunchFields
from clockd.store.models import PunchRow, utcnow

BATCH = 5_000
_COLUMNS = "serial, user_id, punched_at, verify, state, workcode, source, poll_run_id, ingested_at"

Key = tuple[str, dt.datetime]  # (user ID, time) within one terminal


@dataclass(frozen=True)
class StoreResult:
    new: int
    duplicates: int
    new_from: dt.datetime | None = None  # earliest and latest time among the new punches
    new_to: dt.datetime | None = None
    flagged_ids: dict[Key, int] = field(default_factory=dict)  # ids of new flagged punches


def insert_punches(
    connection: Connection,
    serial: str,
    punches: Sequence[PunchFields],
    *,
    poll_run_id: int,
    source: str,
    flagged: Collection[Key] = (),
) -> StoreResult:
    """Store each punch of terminal `serial` unless its (time, serial, user ID) is there.

    The ingestion hot path (100,000 records per terminal is normal): parameter tuples go
    straight to the driver's executemany with ON CONFLICT DO NOTHING, and the driver's row
    count says exactly how many were new, even while another process inserts the same
    punches. Values are always bound, never formatted into SQL. On PostgreSQL rows go in key
    order so that concurrent writers wait for each other instead of deadlocking (SQLite
    writers hold the one write lock). The rows this call added are then found by id: they
    are the ones above the highest id before it that carry this poll run. `flagged` punches
    that turn out new get their ids back, to be quarantined.
    """
    if not punches:
        return StoreResult(new=0, duplicates=0)
    before = connection.scalar(select(func.max(PunchRow.id))) or 0
    rows: list[tuple[object, ...]]
    if connection.dialect.name == "sqlite":
        # The text form SQLAlchemy's DateTime uses on SQLite, so ORM reads and these writes agree.
        now: object = _sqlite_time(utcnow().replace(tzinfo=None))
        rows = [
            (
                serial,
                p.user_id,
                _sqlite_time(p.timestamp),
                p.verify,
                p.state,
                p.workcode,
                source,
                poll_run_id,
                now,
            )
            for p in punches
        ]
        marks = "?, ?, ?, ?, ?, ?, ?, ?, ?"
    else:
        now = utcnow()
        ordered = sorted(punches, key=lambda p: (p.timestamp, p.user_id))
        rows = [
            (
                serial,
                p.user_id,
                p.timestamp,
                p.verify,
                p.state,
                p.workcode,
                source,
                poll_run_id,
                now,
            )
            for p in ordered
        ]
        marks = "%s, %s, %s, %s, %s, %s, %s, %s, %s"
    statement = (
        f"INSERT INTO punches ({_COLUMNS}) VALUES ({marks}) "  # noqa: S608 - constants only
        "ON CONFLICT (punched_at, serial, user_id) DO NOTHING"
    )
    new = 0
    for start in range(0, len(rows), BATCH):
        new += connection.exec_driver_sql(statement, rows[start : start + BATCH]).rowcount
    if not new:
        return StoreResult(new=0, duplicates=len(rows))
    added = (PunchRow.id > before) & (PunchRow.poll_run_id == poll_run_id)
    new_from, new_to = connection.execute(
        select(func.min(PunchRow.punched_at), func.max(PunchRow.punched_at)).where(added)
    ).one()
    flagged_ids: dict[Key, int] = {}
    if flagged:
        wanted = set(flagged)
        for punch_id, user_id, moment in connection.execute(
            select(PunchRow.id, PunchRow.user_id, PunchRow.punched_at).where(
                added, PunchRow.punched_at.in_(sorted({moment for _, moment in wanted}))
            )
        ):
            if (user_id, moment) in wanted:
                flagged_ids[(user_id, moment)] = punch_id
    return StoreResult(new, len(rows) - new, new_from, new_to, flagged_ids)


def _sqlite_time(value: dt.datetime) -> str:
    return value.isoformat(" ", "microseconds")


def stored_keys(connection: Connection, serial: str, punches: Sequence[PunchFields]) -> set[Key]:
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


def first_punch_at(connection: Connection) -> dt.datetime | None:
    """The local time of the earliest punch stored, None while there is none."""
    first: dt.datetime | None = connection.scalar(select(func.min(PunchRow.punched_at)))
    return first
