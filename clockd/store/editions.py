"""Which report editions exist: what the scheduler needs to know to catch up and to revise."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update

from clockd.store import chains
from clockd.store.models import ReportRefresh, ReportRun

_COLLECTIONS = "collections"  # the report_refresh row of late collections


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
    its first look."""
    through: dt.datetime | None = connection.scalar(
        select(ReportRefresh.through).where(ReportRefresh.name == _COLLECTIONS)
    )
    return through


def mark_refreshed(connection: Connection, through: dt.datetime) -> None:
    """Every collection finished before `through` has been looked at."""
    changed = connection.execute(
        update(ReportRefresh).where(ReportRefresh.name == _COLLECTIONS).values(through=through)
    ).rowcount
    if not changed:
        connection.execute(insert(ReportRefresh).values(name=_COLLECTIONS, through=through))


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
