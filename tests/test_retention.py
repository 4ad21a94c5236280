"""Poll-run retention on a real SQLite file and PostgreSQL: what the terminal facts and the poll
problems say of old periods is the same before and after the runs are folded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, insert, select, text

from clockd.config import RetentionSettings
from clockd.scheduler import Daemon
from clockd.store import db
from clockd.store.models import Outcome, PollRun, PollRunDay
from clockd.store.periods import poll_problems, terminal_facts
from clockd.store.retention import cutoff, fold_poll_runs, oldest_foldable
from tests.report_site import Site, make_site

ZONE = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 30, 10, 0, tzinfo=ZONE).astimezone(dt.UTC)
KEEP = 35
DAYS = 60


def run(
    terminal_id: str, started: dt.datetime, outcome: Outcome, *, new: int = 0, **extra: Any
) -> dict[str, Any]:
    reached = outcome != Outcome.FAILED
    return {
        "terminal_id": terminal_id,
        "serial": {"t01": "SN001", "t02": "SN002", "t03": "SN003"}[terminal_id]
        if reached
        else None,
        "started_at": started,
        "finished_at": started + dt.timedelta(seconds=20),
        "outcome": outcome,
        "records_on_device": 1000 + int(started.timestamp()) % 977 if reached else None,
        "record_capacity": 100_000 if reached else None,
        "drift_seconds": 1.5 if reached else None,
        "new_count": new,
        "error": None if outcome == Outcome.OK else f"{outcome} at {started:%m-%d %H:%M}",
        "worker": "test",
    } | extra


def history() -> list[dict[str, Any]]:
    """Sixty days: t01 healthy (a run every 6 h, the 09:00 one storing punches, one failure a
    week); t02 healthy until 50 days ago, then failing; t03 silent for the last 45 days."""
    runs = []
    first = dt.datetime.combine(NOW.astimezone(ZONE).date(), dt.time(3), ZONE) - dt.timedelta(
        days=DAYS
    )
    for step in range(DAYS * 4):
        started = (first + dt.timedelta(hours=6 * step)).astimezone(dt.UTC)
        age = NOW - started
        if started >= NOW:
            break
        local_hour = started.astimezone(ZONE).hour
        t01 = Outcome.FAILED if step % 28 == 5 else Outcome.OK
        runs.append(run("t01", started, t01, new=3 if local_hour == 9 and t01 == "ok" else 0))
        t02 = Outcome.OK if age > dt.timedelta(days=50) else Outcome.FAILED
        if step % 40 == 7:
            t02 = Outcome.MISMATCH
        runs.append(run("t02", started, t02))
        if age > dt.timedelta(days=45):
            runs.append(run("t03", started, Outcome.OK))
    return runs


def load(site: Site) -> int:
    rows = history()
    with db.write_transaction(site.engine) as connection:
        connection.execute(insert(PollRun), rows)
    return len(rows)


def midnight(days_back: int) -> dt.datetime:
    day = NOW.astimezone(ZONE).date() - dt.timedelta(days=days_back)
    return dt.datetime.combine(day, dt.time(), ZONE).astimezone(dt.UTC)


def snapshot(site: Site) -> tuple[list[Any], list[Any]]:
    """Terminal facts at now and for periods ending at several old local midnights, and the
    poll problems of old weeks, per terminal and day."""
    terminals = site.settings.terminals
    facts = []
    with site.engine.connect() as connection:
        for days_back in (0, 40, 47, 52, 58):
            facts += terminal_facts(connection, terminals, midnight(days_back), NOW)
        problems: dict[tuple[str, dt.date, str], int] = {}
        # Periods begin and end at local midnight, the bounds of a folded day.
        start, end = midnight(DAYS), midnight(36)
        for problem in poll_problems(connection, terminals, start, end, NOW):
            day = problem.started_at.astimezone(ZONE).date()
            key = (problem.terminal_id, day, problem.outcome)
            count = int(problem.error.split()[0]) if "daily total" in problem.error else 1
            problems[key] = problems.get(key, 0) + count
    return facts, sorted(problems.items())


def test_folding_keeps_every_fact_of_old_periods(tmp_path: Path, database_url: str) -> None:
    site = make_site(tmp_path, database_url)
    try:
        total = load(site)
        before = snapshot(site)
        until = cutoff(NOW, ZONE, KEEP)
        with site.engine.connect() as connection:
            old = connection.scalar(
                select(func.count()).select_from(PollRun).where(PollRun.started_at < until)
            )
            kept_with_punches = connection.scalar(
                select(func.count())
                .select_from(PollRun)
                .where(PollRun.started_at < until, PollRun.new_count > 0)
            )
        assert old and kept_with_punches

        folded = fold_poll_runs(site.engine, ZONE, KEEP, NOW)
        assert folded is not None
        assert folded.runs == old
        assert snapshot(site) == before

        with site.engine.connect() as connection:
            remaining = connection.scalar(select(func.count()).select_from(PollRun))
            summaries = connection.execute(select(PollRunDay)).all()
            oldest_kept = connection.scalar(
                select(func.min(PollRun.started_at)).where(PollRun.new_count == 0)
            )
        # Only runs younger than the cutoff, and the runs that punches point at, stay.
        assert remaining == total - old + kept_with_punches
        assert oldest_kept is not None and oldest_kept >= until
        assert sum(row.runs for row in summaries) == old
        assert len({(row.terminal_id, row.day) for row in summaries}) == len(summaries)
        assert all(row.day < until.astimezone(ZONE).date() for row in summaries)

        # A second pass folds nothing again, and changes nothing.
        assert fold_poll_runs(site.engine, ZONE, KEEP, NOW) == folded.__class__(0, 0, 0)
        assert snapshot(site) == before
        # A day later, one more day is folded.
        later = fold_poll_runs(site.engine, ZONE, KEEP, NOW + dt.timedelta(days=1))
        assert later is not None and later.days == 1
        assert snapshot(site)[1] == before[1]
    finally:
        site.engine.dispose()


def test_a_terminal_silent_beyond_retention_still_shows_its_last_contact(
    tmp_path: Path, sqlite_url: str
) -> None:
    site = make_site(tmp_path, sqlite_url)
    try:
        load(site)
        fold_poll_runs(site.engine, ZONE, KEEP, NOW)
        with site.engine.connect() as connection:
            facts = {
                f.terminal.id: f
                for f in terminal_facts(connection, site.settings.terminals, NOW, NOW)
            }
        silent = facts["t03"]
        assert silent.last_success is not None
        assert NOW - silent.last_success > dt.timedelta(days=45)
        assert silent.records_on_device is not None and silent.reported_serial == "SN003"
        failing = facts["t02"]
        assert failing.last_outcome == Outcome.FAILED
        assert failing.last_success is not None
        assert NOW - failing.last_success > dt.timedelta(days=50)
    finally:
        site.engine.dispose()


def test_the_daemon_folds_once_a_day(tmp_path: Path, sqlite_url: str) -> None:
    site = make_site(tmp_path, sqlite_url)
    try:
        load(site)
        assert site.settings.retention.poll_runs_days == 90  # the default
        settings = site.settings.model_copy(
            update={"retention": RetentionSettings(poll_runs_days=KEEP)}
        )
        daemon = Daemon(settings, site.engine, lambda: site.cadres, clock=lambda: NOW)
        job = daemon.build_scheduler().get_job("retention")
        assert job is not None and "cron" in str(job.trigger)
        daemon.retain()
        with site.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(PollRunDay))
            assert not connection.scalar(
                select(func.count())
                .select_from(PollRun)
                .where(PollRun.started_at < cutoff(NOW, ZONE, KEEP), PollRun.new_count == 0)
            )
    finally:
        site.engine.dispose()


def test_a_second_folding_process_on_postgresql_waits_its_turn(pg_url: str) -> None:
    engine: Engine = db.make_engine(pg_url)
    try:
        db.migrate(engine)
        with engine.connect() as holder:
            assert db.try_advisory_lock(holder, "retention")
            assert fold_poll_runs(engine, ZONE, KEEP, NOW) is None
            db.advisory_unlock(holder, "retention")
            holder.commit()
        assert fold_poll_runs(engine, ZONE, KEEP, NOW) is not None
    finally:
        engine.dispose()


def test_the_search_for_the_next_fold_skips_the_runs_kept_for_their_punches(
    database_url: str,
) -> None:
    """Runs that stored punches stay forever; the search for the oldest deletable run walks
    only the deletable ones (`ix_poll_runs_foldable`), however many are kept."""
    engine = db.make_engine(database_url)
    db.migrate(engine)
    first = NOW - dt.timedelta(days=400)
    kept = [
        run("t01", first + dt.timedelta(minutes=30 * n), Outcome.OK, new=3) for n in range(3000)
    ]
    deletable = first + dt.timedelta(days=90)
    with engine.begin() as connection:
        connection.execute(insert(PollRun), [*kept, run("t01", deletable, Outcome.OK)])
        connection.execute(text("ANALYZE"))
    query = oldest_foldable(cutoff(NOW, ZONE, KEEP))
    with engine.connect() as connection:
        assert connection.scalar(query) == deletable
        compiled = str(query.compile(connection, compile_kwargs={"literal_binds": True}))
        if connection.dialect.name == "sqlite":
            plan = " ".join(
                row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            )
        else:
            plan = " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert "ix_poll_runs_foldable" in plan, plan
