"""Migration 0005: edition statuses stored as English values, labels kept for print;
and an edition written before per-cadre figures were recorded still gets a revision note."""

from __future__ import annotations

import datetime as dt

from alembic import command
from sqlalchemy import Engine, insert, select, text

from clockd.reports.revisions import EditionStatus, published_figures
from clockd.store import db
from clockd.store.models import ReportRun


def test_the_migration_stores_statuses_as_values_and_back(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as connection:
            command.upgrade(db._alembic_config(connection), "0003")
            connection.commit()
            for revision, label in enumerate(("临时", "更正", "正式")):
                connection.execute(
                    text(
                        "INSERT INTO report_runs (kind, period, revision, status, generated_at,"
                        " path, input_fingerprint, deduction_total)"
                        " VALUES ('weekly', '2026-W47', :revision, :status, :at, 'x', 'f', 0)"
                    ),
                    {
                        "revision": revision,
                        "status": label,
                        "at": dt.datetime(2026, 11, 23, 1, revision),
                    },
                )
            connection.commit()
        db.migrate(engine)
        with engine.connect() as connection:
            statuses = connection.scalars(
                select(ReportRun.status).order_by(ReportRun.revision)
            ).all()
        assert statuses == ["provisional", "corrected", "final"]
        assert [EditionStatus(s).label for s in statuses] == ["临时", "更正", "正式"]
        # Editions from before the migration recorded no per-cadre figures.
        assert published_figures(engine, "weekly", "2026-W47", 0) is None

        with engine.connect() as connection:
            command.downgrade(db._alembic_config(connection), "0003")
            connection.commit()
            labels = (
                connection.execute(text("SELECT status FROM report_runs ORDER BY revision"))
                .scalars()
                .all()
            )
        assert labels == ["临时", "更正", "正式"]
    finally:
        engine.dispose()


def test_an_edition_with_figures_reads_them_back(engine: Engine) -> None:
    with db.write_transaction(engine) as connection:
        connection.execute(
            insert(ReportRun).values(
                kind="monthly",
                period="2026-11",
                revision=0,
                status=EditionStatus.FINAL.value,
                generated_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
                path="x",
                input_fingerprint="f",
                deduction_total=0,
                figures_recorded=True,
            )
        )
    figures = published_figures(engine, "monthly", "2026-11", 0)
    assert figures is not None and figures.empty  # an edition that named nobody
    assert published_figures(engine, "monthly", "2026-11", 1) is None
