"""Which report editions exist: what the scheduler needs to know to catch up and to revise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, Connection, delete, func, select, update

from clockd.store import alerts, chains
from clockd.store.models import AlertState, ReportRun

# The stored position (alerts.cursor) of the daemon's last look at finished collections, in
# microseconds since the epoch.
REFRESH_CURSOR = "report_refresh"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def written_periods(connection: Connection) -> set[tuple[str, str]]:
    """(kind, period label) of every report written at least once."""
    rows = connection.execute(select(ReportRun.kind, ReportRun.period).distinct())
    return {(row.kind, row.period) for row in rows}


@dataclass(frozen=True)
class Latest:
    """The newest edition of a period."""

    revision: int
    status: str
    generated_at: dt.datetime  # when it read its inputs (a rewrite keeps the original time)


def latest_editions(connection: Connection) -> dict[tuple[str, str], Latest]:
    """Per (kind, period label): the newest edition."""
    latest: dict[tuple[str, str], Latest] = {}
    rows = connection.execute(
        select(
            ReportRun.kind,
            ReportRun.period,
            ReportRun.revision,
            ReportRun.status,
            ReportRun.generated_at,
        )
    )
    for kind, label, revision, status, generated_at in rows:
        if (kind, label) not in latest or revision > latest[(kind, label)].revision:
            latest[(kind, label)] = Latest(revision, status, generated_at)
    return latest


def refreshed_through(connection: Connection) -> dt.datetime | None:
    """Until when the daemon has looked at finished collections for late punches; None before
    its first look. Only read: a reader never writes the cursor's row."""
    position = connection.scalar(
        select(AlertState.position).where(AlertState.key == f"{alerts.CURSOR}:{REFRESH_CURSOR}")
    )
    return None if not position else _EPOCH + int(position) * _MICROSECOND


def mark_refreshed(connection: Connection, through: dt.datetime) -> None:
    """Every collection finished before `through` has been looked at (the mark only moves on)."""
    old = alerts.cursor(connection, REFRESH_CURSOR, 0)
    new = (through - _EPOCH) // _MICROSECOND
    if new > old:
        alerts.move_cursor(connection, REFRESH_CURSOR, old, new)


def _edition(kind: str, period: str, revision: int) -> ColumnElement[bool]:
    return (
        (ReportRun.kind == kind) & (ReportRun.period == period) & (ReportRun.revision == revision)
    )


def newest_revision(connection: Connection, kind: str, period: str) -> int | None:
    """The highest revision claimed for a period, None when it has none."""
    newest: int | None = connection.scalar(
        select(func.max(ReportRun.revision)).where(
            ReportRun.kind == kind, ReportRun.period == period
        )
    )
    return newest


def unclaim(connection: Connection, kind: str, period: str, revision: int, actor: str) -> None:
    """Give a claimed revision back (its file could not be written); the ledger says so."""
    which = _edition(kind, period, revision)
    for claimed in connection.scalars(select(ReportRun.id).where(which)).all():
        chains.record_deleted(connection, "report_runs", claimed, "unclaim", actor)
    connection.execute(delete(ReportRun).where(which))


def record_move(
    connection: Connection, kind: str, period: str, revision: int, where: Path, actor: str
) -> None:
    """An edition's file now lives in history/ at `where`."""
    which = _edition(kind, period, revision)
    connection.execute(update(ReportRun).where(which).values(path=str(where)))
    moved = connection.scalars(select(ReportRun.id).where(which)).all()
    chains.record(connection, "report_runs", moved, "move", actor)
