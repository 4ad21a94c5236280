"""Storage on a real SQLite file and the real PostgreSQL: migrations and the punch store."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, event, func, insert, inspect, select, text
from sqlalchemy.engine import make_url

from clockd import ledger
from clockd.domain import Punch
from clockd.errors import UserError
from clockd.store import chains, db, polls
from clockd.store.models import Base, PollRun, PunchRow, Terminal
from clockd.store.periods import load_punches
from clockd.store.punches import first_punch_at, insert_punches, stored_keys

T0 = dt.datetime(2026, 11, 16, 8, 30)


def new_run(engine: Engine, serial: str = "SN1") -> int:
    with db.write_transaction(engine) as connection:
        known = select(func.count()).select_from(Terminal).where(Terminal.serial == serial)
        if not connection.scalar(known):
            connection.execute(insert(Terminal).values(serial=serial, terminal_id="t01"))
        run_id = connection.execute(insert(PollRun).values(terminal_id="t01")).inserted_primary_key
        assert run_id is not None
        return int(run_id[0])


def punches(count: int, serial: str = "SN1", start: dt.datetime = T0) -> list[Punch]:
    return [
        Punch(serial, str(1001 + i % 47), start + dt.timedelta(minutes=7 * i), verify=1)
        for i in range(count)
    ]


def test_migration_matches_the_models_and_is_idempotent(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with pytest.raises(UserError, match="not initialised: run `clockd init`"):
            db.require_current_schema(engine)
        assert db.migrate(engine) == (None, db.head_revision())
        assert db.migrate(engine) == (db.head_revision(), db.head_revision())
        db.require_current_schema(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"terminals", "cadres", "punches", "quarantine", "poll_runs", "leave"} <= tables
        assert {"leave_audit", "report_runs", "alembic_version"} <= tables
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_the_same_punch_is_stored_once(engine: Engine) -> None:
    first = new_run(engine)
    batch = punches(12_000)  # more than one insert batch
    with db.write_transaction(engine) as connection:
        result = insert_punches(
            connection, "SN1", batch + batch[:10], poll_run_id=first, source="poll"
        )
    assert (result.new, result.duplicates) == (12_000, 10)

    second = new_run(engine)
    extra = punches(5, start=T0 + dt.timedelta(days=200))
    with db.write_transaction(engine) as connection:
        result = insert_punches(connection, "SN1", batch + extra, poll_run_id=second, source="usb")
    assert (result.new, result.duplicates) == (5, 12_000)

    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(PunchRow)) == 12_005
        rows = connection.execute(select(PunchRow).order_by(PunchRow.id).limit(1)).one()
        assert (rows.serial, rows.user_id, rows.punched_at, rows.verify) == ("SN1", "1001", T0, 1)
        assert rows.ingested_at.tzinfo is not None
        never_stored = punches(1, start=T0 + dt.timedelta(seconds=1))
        assert stored_keys(connection, "SN1", batch[:3] + never_stored) == {
            (p.user_id, p.timestamp) for p in batch[:3]
        }


def test_same_user_and_time_on_two_terminals_are_two_punches(engine: Engine) -> None:
    run_a, run_b = new_run(engine, "SN-A"), new_run(engine, "SN-B")
    with db.write_transaction(engine) as connection:
        assert (
            insert_punches(
                connection, "SN-A", punches(3, "SN-A"), poll_run_id=run_a, source="poll"
            ).new
            == 3
        )
        assert (
            insert_punches(
                connection, "SN-B", punches(3, "SN-B"), poll_run_id=run_b, source="poll"
            ).new
            == 3
        )


def test_a_failed_transaction_stores_nothing(engine: Engine) -> None:
    run = new_run(engine)
    with pytest.raises(RuntimeError), db.write_transaction(engine) as connection:
        insert_punches(connection, "SN1", punches(100), poll_run_id=run, source="poll")
        raise RuntimeError("terminal dropped the connection")
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(PunchRow)) == 0


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_store_each_punch_once(database_url: str, writers: int) -> None:
    """Overlapping batches written at once by several connections: no loss, no duplicate, and
    the per-writer `new` counts add up to exactly the distinct punches."""
    engine = db.make_engine(database_url)
    db.migrate(engine)
    everything = punches(20_000)
    # Every writer gets three quarters of the punches, shifted so that they all overlap.
    slices = [(everything[i * 5_000 :] + everything[: i * 5_000])[:15_000] for i in range(writers)]
    runs = [new_run(engine) for _ in range(writers)]
    results: list[int] = [0] * writers
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def write(index: int) -> None:
        try:
            barrier.wait()
            with db.write_transaction(engine) as connection:
                results[index] = insert_punches(
                    connection, "SN1", slices[index], poll_run_id=runs[index], source="poll"
                ).new
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected = len({(p.user_id, p.timestamp) for s in slices for p in s})
    assert sum(results) == expected
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(PunchRow)) == expected
    engine.dispose()


def test_unreachable_database_is_a_clear_error() -> None:
    engine = db.make_engine("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(db.DatabaseUnavailable, match=r"127\.0\.0\.1"):
        db.migrate(engine)
    with pytest.raises(UserError, match="not valid"):
        db.make_engine("not a url")


def test_the_store_reports_which_punches_were_new(engine: Engine) -> None:
    """The time range of the new punches (how the daemon finds reports to revise) and the ids
    of flagged new punches (how clock faults are quarantined), also beside another writer."""
    first, other, second = new_run(engine), new_run(engine, "SN-OTHER"), new_run(engine)
    old = punches(50)
    with db.write_transaction(engine) as connection:
        insert_punches(connection, "SN1", old, poll_run_id=first, source="poll")
    late = [Punch("SN1", "1003", T0 - dt.timedelta(days=9)), Punch("SN1", "1004", T0)]
    clock_fault = Punch("SN1", "1005", dt.datetime(2000, 1, 1, 0, 0, 7))
    with db.write_transaction(engine) as connection:
        insert_punches(
            connection, "SN-OTHER", punches(5, "SN-OTHER"), poll_run_id=other, source="poll"
        )
        result = insert_punches(
            connection,
            "SN1",
            [*old, *late, clock_fault],
            poll_run_id=second,
            source="poll",
            flagged=[(clock_fault.user_id, clock_fault.timestamp), (old[0].user_id, T0)],
        )
    assert (result.new, result.duplicates) == (3, 50)
    assert (result.new_from, result.new_to) == (clock_fault.timestamp, T0)
    with engine.connect() as connection:
        fault_id = connection.scalar(
            select(PunchRow.id).where(PunchRow.punched_at == clock_fault.timestamp)
        )
    assert result.flagged_ids == {("1005", clock_fault.timestamp): fault_id}


@pytest.mark.postgres
def test_advisory_locks_are_per_schema(pg_url: str) -> None:
    """Installations (and parallel tests) in different schemas of one database never wait for
    each other's locks; every process of one installation agrees on them."""
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    first, again = db.make_engine(pg_url), db.make_engine(pg_url)
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={other_schema}"})
    other = db.make_engine(url.render_as_string(hide_password=False))
    with first.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{other_schema}"'))
    try:
        with first.connect() as a, again.connect() as b, other.connect() as c:
            assert db.advisory_key(a, db.REPORT_LOCK) == db.advisory_key(b, db.REPORT_LOCK)
            assert db.advisory_key(a, db.REPORT_LOCK) != db.advisory_key(a, db.MIGRATION_LOCK)
            assert db.try_advisory_lock(a, db.REPORT_LOCK)
            assert not db.try_advisory_lock(b, db.REPORT_LOCK)  # same schema: held
            assert db.try_advisory_lock(c, db.REPORT_LOCK)  # another schema: free
            db.advisory_unlock(a, db.REPORT_LOCK)
            assert db.try_advisory_lock(b, db.REPORT_LOCK)
            db.advisory_unlock(b, db.REPORT_LOCK)
            db.advisory_unlock(c, db.REPORT_LOCK)
    finally:
        with first.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{other_schema}" CASCADE'))
        for engine in (first, again, other):
            engine.dispose()


def test_the_key_migration_keeps_every_punch_its_id_and_its_chain(database_url: str) -> None:
    """0010 moves the punches' unique key to (serial, punched_at, user_id), rebuilding the table
    on SQLite: rows, ids (a quarantine entry refers to one) and hash chains come through, both
    ways, and the new key still refuses a punch stored twice."""
    engine = db.make_engine(database_url)
    db.migrate(engine)
    try:
        for serial in ("SN1", "SN2"):
            run = new_run(engine, serial)
            with db.write_transaction(engine) as connection:
                insert_punches(
                    connection, serial, punches(3_000, serial), poll_run_id=run, source="poll"
                )
        with db.write_transaction(engine) as connection:
            held = connection.scalar(select(func.max(PunchRow.id)))
            entry = {"punch_id": held, "serial": "SN2", "reason": "test", "poll_run_id": run}
            polls.quarantine(connection, [entry])
            polls.ledger_quarantine(connection, run, actor="test")
        columns = (PunchRow.id, PunchRow.serial, PunchRow.user_id, PunchRow.punched_at)
        links = (PunchRow.chain_seq, PunchRow.chain_hash)

        def stored() -> list[tuple[object, ...]]:
            with engine.connect() as connection:
                query = select(*columns, *links).order_by(PunchRow.id)
                return [tuple(row) for row in connection.execute(query)]

        def key() -> list[list[str]]:
            found = inspect(engine).get_unique_constraints("punches")
            return [constraint["column_names"] for constraint in found]

        before = stored()
        with engine.connect() as connection, db.sqlite_foreign_keys_off(connection):
            command.downgrade(db._alembic_config(connection), "0008")
            db.check_foreign_keys(connection)
            connection.commit()
        assert key() == [["punched_at", "serial", "user_id"]]
        assert stored() == before
        db.migrate(engine)
        assert key() == [["serial", "punched_at", "user_id"]]
        assert stored() == before
        assert ledger.verify_all(engine).ok
        run = new_run(engine, "SN1")
        with db.write_transaction(engine) as connection:
            again = insert_punches(connection, "SN1", punches(10), poll_run_id=run, source="poll")
        assert (again.new, again.duplicates) == (0, 10)
    finally:
        engine.dispose()


def test_queries_by_time_probe_each_terminal_on_the_key(sqlite_url: str) -> None:
    """The key leads with the serial; reading a period, the earliest punch and a re-poll's
    rechain must still be index probes on SQLite, never a scan of every punch or a sort of a
    terminal's whole history."""
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    run = new_run(engine)
    with db.write_transaction(engine) as connection:
        insert_punches(connection, "SN1", punches(100), poll_run_id=run, source="poll")
    statements: list[tuple[str, Any]] = []

    def capture(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        if "punches" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as connection:
            load_punches(connection, T0.date(), T0.date() + dt.timedelta(days=6), [])
            assert first_punch_at(connection) == T0
            list(chains.stream_punches(connection, serial="SN1", after_id=50))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(statements) == 3
    with engine.connect() as connection:
        for statement, parameters in statements:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            steps = [str(row[-1]) for row in plan]
            assert not [s for s in steps if s.startswith("SCAN punches") or "TEMP B-TREE" in s], (
                statement,
                steps,
            )
    engine.dispose()
