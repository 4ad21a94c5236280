"""Which report editions exist: what the scheduler needs to know to catch up and to revise."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import ColumnElement, Connection, delete, func, select, update

from clockd.store import chains
from clockd.store.models import ReportRun


def written_periods(connection: Connection) -> set[tuple[str, str]]:
    """(kind, period label) of every report written at least once."""
    rows = connection.execute(select(ReportRun.kind, ReportRun.period).distinct())
    return {(row.kind, row.period) for row in rows}


def latest_editions(connection: Connection) -> dict[tuple[str, str], tuple[int, str]]:
    """Per (kind, period label): the newest edition's revision number and status."""
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    rows = connection.execute(
        select(ReportRun.kind, ReportRun.period, ReportRun.revision, ReportRun.status)
    )
    for kind, label, revision, status in rows:
        if (kind, label) not in latest or revision > latest[(kind, label)][0]:
            latest[(kind, label)] = (revision, status)
    return latest


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
