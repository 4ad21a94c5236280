"""Which report editions exist: what the scheduler needs to know to catch up and to revise."""

from __future__ import annotations

from sqlalchemy import Connection, select

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
