"""The tamper-evident ledger on a real SQLite file and the real PostgreSQL: chains kept by every
writer, and `clockd verify` naming each row changed, inserted or deleted behind clockd's back."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import zipfile
from pathlib import Path

import pytest
from alembic import command
from docx import Document
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from clockd import ledger
from clockd.domain import LeaveKind, Punch, TimeTexts
from clockd.ingest.poll import poll_cycle
from clockd.ingest.usb import import_usb
from clockd.leave import add_leave, revoke_leave
from clockd.reports.anchors import read_anchors
from clockd.reports.monthly import notice_path, write_monthly_report
from clockd.reports.weekly import write_weekly_report
from clockd.scheduler import Daemon
from clockd.store import chains, db
from clockd.store.models import ChainHead, LedgerEntry, PollRun, PunchRow, Terminal
from clockd.store.punches import BATCH, insert_punches
from clockd.workcal import IsoWeek, YearMonth
from clockd.zk import wire
from tests.cli_runner import Result, run_clockd
from tests.emulated import emulated_site
from tests.report_site import AFTER_W47, Site, make_site

W47 = IsoWeek(2026, 47)


def clockd(*args: str, cwd: Path) -> Result:
    return run_clockd(*args, cwd=cwd)


def behind_the_back(site: Site) -> Engine:
    """A plain engine on the same database: none of clockd's code in the way."""
    url = make_url(site.settings.database_url)
    if url.drivername.startswith("postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url)


def punch_ids(engine: Engine, serial: str) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                select(PunchRow.id).where(PunchRow.serial == serial).order_by(PunchRow.id)
            )
        )


def week_of_punches(site: Site) -> None:
    """Two collections on t01 (the second overlapping the first), one on t02, one quarantined."""
    days = [f"2026-11-{day}" for day in range(16, 21)]
    first = [("1001", f"{day} 08:0{n}") for n, day in enumerate(days)]
    first += [("1001", f"{day} 15:0{n}") for n, day in enumerate(days)]
    site.store("t01", first)
    site.store("t01", [*first[3:], ("1002", "2026-11-18 09:30"), ("1002", "2026-11-18 16:00")])
    site.store("t02", [("1002", f"{day} 10:00") for day in days] + [("1003", "2024-01-01 09:00")])


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Site:
    made = make_site(tmp_path, database_url)
    week_of_punches(made)
    return made


def test_an_intact_ledger_verifies(site: Site) -> None:
    add_leave(
        site.engine,
        site.cadres,
        "1002",
        dt.date(2026, 11, 19),
        dt.date(2026, 11, 20),
        kind=LeaveKind.LEAVE,
        note="病假",
        actor="hr",
    )
    result = ledger.verify_all(site.engine)
    assert result.ok, [p.line() for p in result.problems]
    assert (result.rows, result.chains) == (18, 2)
    assert result.entries >= 3  # the quarantine entry, the leave row and its audit row
    with site.engine.connect() as connection:
        seqs = connection.execute(
            select(PunchRow.serial, PunchRow.chain_seq).order_by(PunchRow.id)
        ).all()
        heads = chains.heads(connection)
    for serial in ("SN001", "SN002"):
        assert [s for r, s in seqs if r == serial] == list(
            range(1, 1 + sum(1 for r, _ in seqs if r == serial))
        )
        assert heads[ledger.punch_chain(serial)].seq == len([1 for r, _ in seqs if r == serial])
    run = clockd("verify", cwd=site.folder)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ledger intact: 18 punches on 2 chains")


def test_verify_names_every_change_made_behind_clockds_back(site: Site) -> None:
    entry = add_leave(
        site.engine,
        site.cadres,
        "1002",
        dt.date(2026, 11, 19),
        dt.date(2026, 11, 20),
        kind=LeaveKind.LEAVE,
        note="",
        actor="hr",
    )
    other = add_leave(
        site.engine,
        site.cadres,
        "1001",
        dt.date(2026, 11, 16),
        dt.date(2026, 11, 16),
        kind=LeaveKind.BUSINESS_TRIP,
        note="",
        actor="hr",
    )
    revoke_leave(site.engine, other.id, "主任")
    t01, t02 = punch_ids(site.engine, "SN001"), punch_ids(site.engine, "SN002")
    changed, deleted, swap_a, swap_b, moved = t01[1], t01[4], t01[7], t01[8], t01[10]
    sqlite = site.engine.dialect.name == "sqlite"
    raw = behind_the_back(site)
    try:
        with raw.begin() as connection:
            connection.execute(
                text("UPDATE punches SET punched_at = :t WHERE id = :i"),
                {
                    "t": "2026-11-17 09:01:00.000000"
                    if sqlite
                    else dt.datetime(2026, 11, 17, 9, 1),
                    "i": changed,
                },
            )
            connection.execute(text("DELETE FROM punches WHERE id = :i"), {"i": deleted})
            a, b = (
                connection.scalar(text("SELECT chain_hash FROM punches WHERE id = :i"), {"i": i})
                for i in (swap_a, swap_b)
            )
            connection.execute(
                text("UPDATE punches SET chain_hash = :h WHERE id = :i"), {"h": b, "i": swap_a}
            )
            connection.execute(
                text("UPDATE punches SET chain_hash = :h WHERE id = :i"), {"h": a, "i": swap_b}
            )
            connection.execute(
                text("DELETE FROM punches WHERE id IN (:a, :b)"), {"a": t02[-1], "b": t02[-2]}
            )
            connection.execute(
                text("UPDATE punches SET chain_seq = chain_seq + 1000 WHERE id = :i"), {"i": moved}
            )
            forged = connection.execute(
                text(
                    "INSERT INTO punches (serial, user_id, punched_at, verify, state, workcode,"
                    " source, ingested_at) VALUES ('SN001', '1003', :t, 1, 0, 0, 'poll', :n)"
                    " RETURNING id"
                ),
                {
                    "t": "2026-11-19 08:30:00.000000"
                    if sqlite
                    else dt.datetime(2026, 11, 19, 8, 30),
                    "n": "2026-11-23 02:00:00.000000" if sqlite else dt.datetime.now(dt.UTC),
                },
            ).scalar_one()
            connection.execute(
                text("UPDATE leave SET end_date = :d WHERE id = :i"),
                {"d": dt.date(2026, 11, 27), "i": entry.id},
            )
            connection.execute(
                text("UPDATE leave SET revoked_at = NULL, revoked_by = NULL WHERE id = :i"),
                {"i": other.id},
            )
    finally:
        raw.dispose()

    run = clockd("verify", cwd=site.folder)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1].startswith("ledger BROKEN: 9 problem(s)"), run.stdout

    def line(prefix: str) -> str:
        found = [item for item in lines if item.startswith(prefix)]
        assert len(found) == 1, (prefix, run.stdout)
        return found[0]

    t01_name, t02_name = "terminal 'SN001' (t01 东村)", "terminal 'SN002' (t02 西村)"
    assert "changed after it was stored" in line(f"{t01_name}, id {changed}:")
    assert "at 2026-11-17 09:01:00" in line(f"{t01_name}, id {changed}:")
    assert "1 row(s) at chain position(s) 5..5 are missing" in line(f"{t01_name}, id {t01[5]}:")
    for swapped in (swap_a, swap_b):
        assert "stored hash was overwritten" in line(f"{t01_name}, id {swapped}:")
    assert "inserted out of band" in line(f"{t01_name}, id {forged}:")
    # An edited position alone: named as such, and the rows after it are not blamed.
    assert "its chain position was changed to 1011 (it is position 11)" in line(
        f"{t01_name}, id {moved}:"
    )
    assert "2 row(s) deleted from its end" in line(f"{t02_name}, id {t02[-1]}:")
    assert "end_date was '2026-11-20', now '2026-11-27'" in line(f"table leave, id {entry.id}:")
    revived = line(f"table leave, id {other.id}:")
    assert "revoked_by was '主任', now None" in revived and "revoked_at was" in revived


def test_verify_holds_each_chain_to_what_its_collections_stored(site: Site) -> None:
    """Deleting a terminal's whole chain with its head, or its newest rows with the head moved
    back onto the row left last, leaves every remaining link intact; the counts the poll runs
    recorded still name the loss."""
    t01 = punch_ids(site.engine, "SN001")
    raw = behind_the_back(site)
    try:
        with raw.begin() as connection:
            connection.execute(text("DELETE FROM quarantine WHERE serial = 'SN002'"))
            connection.execute(text("DELETE FROM punches WHERE serial = 'SN002'"))
            connection.execute(text("DELETE FROM chain_heads WHERE chain = 'punches/SN002'"))
            connection.execute(
                text("DELETE FROM punches WHERE id IN (:a, :b)"), {"a": t01[-1], "b": t01[-2]}
            )
            connection.execute(
                text(
                    "UPDATE chain_heads SET seq = seq - 2, last_id = :i,"
                    " hash = (SELECT chain_hash FROM punches WHERE id = :i)"
                    " WHERE chain = 'punches/SN001'"
                ),
                {"i": t01[-3]},
            )
    finally:
        raw.dispose()
    run = clockd("verify", cwd=site.folder)
    assert run.returncode == 1, run.stdout + run.stderr
    punch_lines = [line for line in run.stdout.splitlines() if line.startswith("terminal ")]
    assert punch_lines == [
        f"terminal 'SN001' (t01 东村): its collections stored {len(t01)} punches, the chain"
        f" holds {len(t01) - 2}: 2 row(s) deleted out of band",
        "terminal 'SN002' (t02 西村): its collections stored 6 punches, the chain holds 0:"
        " the whole chain, head and all, deleted out of band",
    ], run.stdout


def test_a_rewritten_history_fails_the_reports_anchors(tmp_path: Path, database_url: str) -> None:
    site = make_site(tmp_path, database_url)
    week_of_punches(site)
    site.poll_all()
    add_leave(
        site.engine, site.cadres, "1001", W47.start, W47.start, kind=LeaveKind.OTHER, actor="hr"
    )
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    assert outcome.written
    anchors = read_anchors(outcome.path)
    assert {a.chain for a in anchors} >= {"punches/SN001", "punches/SN002", "leave", "quarantine"}
    month = write_monthly_report(
        site.settings, site.cadres, site.engine, YearMonth(2026, 11), now=AFTER_W47
    )
    notice = notice_path(site.settings, YearMonth(2026, 11))
    assert read_anchors(notice) == read_anchors(month.path) == anchors  # nothing came between
    for report in (outcome.path, month.path, notice):
        good = clockd("verify", "--report", str(report), cwd=site.folder)
        assert good.returncode == 0, good.stdout + good.stderr
        assert f"{len(anchors)} report anchors" in good.stdout

    # Someone who knows the scheme moves a punch and rebuilds every chain from its genesis:
    # the database alone looks intact, the published report does not agree.
    raw = behind_the_back(site)
    try:
        with raw.begin() as connection:
            first = connection.scalar(text("SELECT min(id) FROM punches WHERE serial = 'SN001'"))
            connection.execute(
                text("UPDATE punches SET user_id = '1003' WHERE id = :i"), {"i": first}
            )
            connection.execute(text("DELETE FROM chain_heads WHERE chain LIKE 'punches/%'"))
            chains.build_punch_chains(connection)
    finally:
        raw.dispose()
    assert clockd("verify", cwd=site.folder).returncode == 0
    for report in (outcome.path, notice):
        bad = clockd("verify", "--report", str(report), cwd=site.folder)
        assert bad.returncode == 1
        assert "terminal 'SN001' (t01 东村), id" in bad.stdout
        assert "history was rewritten after the report" in bad.stdout
    missing = clockd("verify", "--report", str(tmp_path / "nope.xlsx"), cwd=site.folder)
    assert missing.returncode == 1 and "file not found" in missing.stderr


def test_verify_report_refuses_what_is_not_a_report_in_one_line(
    tmp_path: Path, database_url: str
) -> None:
    site = make_site(tmp_path, database_url)
    week_of_punches(site)
    named = tmp_path / "named.docx"
    named.write_text("user_id,name\n1001,张三\n", encoding="utf-8")
    bomb = tmp_path / "bomb.docx"  # a docx whose parts claim far more than any notice
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<" + b" " * (30 * 2**20))
    plain = tmp_path / "plain.docx"
    Document().save(str(plain))
    torn = tmp_path / "torn.xlsx"
    torn.write_bytes(
        write_weekly_report(
            site.settings, site.cadres, site.engine, W47, now=AFTER_W47
        ).path.read_bytes()[:4000]
    )
    expected = {
        named: "not a clockd report, an xlsx workbook or a docx notice",
        bomb: "far larger than a clockd notice",
        plain: "no table of chain heads",
        torn: "not a clockd report",
    }
    for path, message in expected.items():
        refused = clockd("verify", "--report", str(path), cwd=site.folder)
        assert refused.returncode == 1, (path, refused.stdout, refused.stderr)
        assert message in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_encodings_in_python_and_sql_agree(engine: Engine) -> None:
    odd = ["1001", "a\x1fb", "张三", "x|y", "'; --", "9" * 24, " 7", "é\u200b"]
    with db.write_transaction(engine) as connection:
        connection.execute(
            text(
                "INSERT INTO terminals (serial, terminal_id, first_seen, last_seen)"
                " VALUES ('S\x1f1', 't', :n, :n)"
            ),
            {"n": dt.datetime.now(dt.UTC)}
            if engine.dialect.name != "sqlite"
            else {"n": "2026-01-01 00:00:00"},
        )
        run = connection.execute(
            text(
                "INSERT INTO poll_runs (terminal_id, source, started_at,"
                " outcome, new_count, duplicate_count, quarantined_count,"
                " clock_synced, cleared) VALUES ('t', 'push', :n, 'ok', 0,"
                " 0, 0, false, false) RETURNING id"
            ),
            {"n": dt.datetime.now(dt.UTC)}
            if engine.dialect.name != "sqlite"
            else {"n": "2026-01-01 00:00:00"},
        ).scalar_one()
        punches = [
            Punch("S\x1f1", user, dt.datetime(2026, 11, 16, 8, n, 0, 1000 * n), n % 3, 1, 2**40 + n)
            for n, user in enumerate(odd)
        ]
        insert_punches(connection, "S\x1f1", punches, poll_run_id=run, source="push")
    with engine.connect() as connection:
        rows = list(chains.stream_punches(connection))
        stored = connection.execute(select(PunchRow).order_by(PunchRow.id)).all()
    for (_, serial, _, _, encoding), row in zip(rows, stored, strict=True):
        assert serial == "S\x1f1"
        assert encoding == ledger.encode_punch(
            ledger.time_text(row.punched_at),
            row.user_id,
            row.verify,
            row.state,
            row.workcode,
            row.source,
            row.poll_run_id,
            ledger.utc_text(row.ingested_at),
        )
    assert ledger.verify_all(engine).ok


def test_every_insert_path_stores_each_link_as_the_hash_of_its_row(engine: Engine) -> None:
    """A first batch (linked as built), a re-poll with new rows (linked after the insert) and a
    first batch with duplicates inside (linked, then put right): every stored link is a
    32-byte binary value equal to sha256(previous link || the row's canonical encoding)."""
    start = dt.datetime(2026, 11, 16, 7, 30)
    batch = [
        Punch("SN9", str(1001 + n % 4), start + dt.timedelta(minutes=n), 1 + n % 2, n % 3, 0)
        for n in range(40)
    ]
    with db.write_transaction(engine) as connection:
        connection.execute(insert(Terminal).values(serial="SN9", terminal_id="t9"))
        run = connection.execute(
            insert(PollRun).values(terminal_id="t9").returning(PollRun.id)
        ).scalar_one()
        assert insert_punches(connection, "SN9", batch, poll_run_id=run, source="poll").new == 40
    with db.write_transaction(engine) as connection:
        later = [Punch("SN9", "1001", start + dt.timedelta(hours=5, minutes=n)) for n in range(5)]
        stored = insert_punches(connection, "SN9", batch + later, poll_run_id=run, source="usb")
        assert (stored.new, stored.duplicates) == (5, 40)
    with db.write_transaction(engine) as connection:
        fresh = [Punch("SN9", "1002", start + dt.timedelta(days=1, minutes=n)) for n in range(6)]
        stored = insert_punches(
            connection, "SN9", [*fresh[:3], fresh[0], *fresh[3:]], poll_run_id=run, source="push"
        )
        assert (stored.new, stored.duplicates) == (6, 1)
    with engine.connect() as connection:
        rows = connection.execute(select(PunchRow).order_by(PunchRow.id)).all()
        head = chains.heads(connection)[ledger.punch_chain("SN9")]
        if engine.dialect.name == "sqlite":
            kinds = set(connection.scalars(text("SELECT DISTINCT typeof(chain_hash) FROM punches")))
            assert kinds == {"blob"}
    previous = ledger.genesis(ledger.punch_chain("SN9"))
    for seq, row in enumerate(rows, 1):
        encoding = ledger.encode_punch(
            ledger.time_text(row.punched_at),
            row.user_id,
            row.verify,
            row.state,
            row.workcode,
            row.source,
            row.poll_run_id,
            ledger.utc_text(row.ingested_at),
        )
        previous = ledger.link(previous, encoding)
        assert (row.chain_seq, type(row.chain_hash), row.chain_hash) == (seq, bytes, previous)
    assert len(rows) == 51
    assert (head.seq, head.hash, head.last_id) == (51, previous, rows[-1].id)
    assert ledger.verify_all(engine).ok


def test_concurrent_sources_of_one_terminal_keep_one_chain(
    tmp_path: Path, database_url: str
) -> None:
    """Poll, USB import and direct store inserts (as the push receiver makes) race."""
    with emulated_site(1, punches=3_000, users=30, transports=("tcp",)) as emulated:
        settings = emulated.settings(database_url)
        engine = db.make_engine(database_url)
        db.migrate(engine)
        device = emulated.devices[0]
        records = device.attendance()
        export = tmp_path / "1_attlog.dat"
        export.write_text(
            "".join(
                f"{r.user_id}\t{r.timestamp:%Y-%m-%d %H:%M:%S}\t1\t{r.verify}\t0\t0\n"
                for r in records[1_000:2_500]
            )
            + "".join(
                f"{r.user_id}\t{r.timestamp:%Y-%m-%d %H:%M:%S}\t1\t1\t0\t0\n" for r in records[:200]
            ),
            encoding="utf-8",
        )
        serial = device.serial
        pushed = [
            Punch(
                serial,
                str(5000 + n % 7),
                dt.datetime(2026, 12, 1, 8, 0) + dt.timedelta(minutes=n),
                15,
            )
            for n in range(600)
        ]
        errors: list[BaseException] = []

        def guarded(action: object) -> threading.Thread:
            def body() -> None:
                try:
                    action()  # type: ignore[operator]
                except BaseException as exc:  # reported by the test
                    errors.append(exc)

            return threading.Thread(target=body)

        with db.write_transaction(engine) as connection:
            connection.execute(insert(Terminal).values(serial=serial, terminal_id="t01"))
            run = connection.execute(
                insert(PollRun).values(terminal_id="t01", source="push").returning(PollRun.id)
            ).scalar_one()

        def push() -> None:
            for start in range(0, len(pushed), 50):
                with db.write_transaction(engine) as connection:
                    insert_punches(
                        connection,
                        serial,
                        pushed[start : start + 60],
                        poll_run_id=run,
                        source="push",
                    )

        threads = [
            guarded(lambda: poll_cycle(settings, engine)),
            guarded(lambda: import_usb(settings, engine, export, "t01")),
            guarded(push),
            guarded(lambda: poll_cycle(settings, engine)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        result = ledger.verify_all(engine)
        assert result.ok, [p.line() for p in result.problems]
        with engine.connect() as connection:
            seqs = list(
                connection.scalars(
                    select(PunchRow.chain_seq)
                    .where(PunchRow.serial == serial)
                    .order_by(PunchRow.id)
                )
            )
            head = connection.execute(
                select(ChainHead.seq).where(ChainHead.chain == ledger.punch_chain(serial))
            ).scalar_one()
        assert len(seqs) == len({(r.user_id, r.timestamp) for r in records}) + len(pushed)
        assert seqs == list(range(1, len(seqs) + 1)) and head == len(seqs)
        engine.dispose()


def test_the_migration_builds_chains_for_rows_already_stored(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as connection:
            command.upgrade(db._alembic_config(connection), "0003")
            connection.commit()
        sqlite = engine.dialect.name == "sqlite"
        now = "2026-11-23 01:00:00.000000" if sqlite else dt.datetime.now(dt.UTC)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO terminals (serial, terminal_id, first_seen, last_seen)"
                    " VALUES ('OLD1', 't01', :n, :n), ('OLD2', 't02', :n, :n)"
                ),
                {"n": now},
            )
            for n in range(30):
                connection.execute(
                    text(
                        "INSERT INTO punches (serial, user_id, punched_at, verify, state,"
                        " workcode, source, ingested_at) VALUES (:s, :u, :t, 1, 0, 0, 'poll',"
                        " :n)"
                    ),
                    {
                        "s": f"OLD{1 + n % 2}",
                        "u": str(1001 + n % 5),
                        "n": now,
                        "t": (dt.datetime(2026, 11, 16, 8) + dt.timedelta(minutes=n)).isoformat(
                            " ", "microseconds"
                        )
                        if sqlite
                        else dt.datetime(2026, 11, 16, 8) + dt.timedelta(minutes=n),
                    },
                )
            connection.execute(
                text(
                    "INSERT INTO leave (user_id, start_date, end_date, kind, note, created_at,"
                    " created_by) VALUES ('1001', :d, :d, 'leave', '', :n, 'hr')"
                ),
                {"d": dt.date(2026, 11, 18), "n": now},
            )
        db.migrate(engine)
        result = ledger.verify_all(engine)
        assert result.ok, [p.line() for p in result.problems]
        assert (result.rows, result.chains) == (30, 2)
        with engine.connect() as connection:
            assert (
                connection.scalar(
                    select(func.count())
                    .select_from(LedgerEntry)
                    .where(LedgerEntry.chain == "leave")
                )
                == 1
            )
    finally:
        engine.dispose()


def test_the_daemon_checks_the_ledger_at_start_and_daily(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(site.settings, site.engine, lambda: site.cadres)
    scheduler = daemon.build_scheduler()
    job = scheduler.get_job("ledger_check")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert job.next_run_time is not None and job.next_run_time <= soon  # right after start
    after = dt.datetime(2026, 11, 23, 12, 0, tzinfo=site.settings.zone)
    assert job.trigger.get_next_fire_time(None, after) == after.replace(day=24, hour=3, minute=30)
    with caplog.at_level(logging.INFO, logger="clockd.daemon"):
        intact = daemon.check_ledger()
    assert intact is not None and intact.ok
    assert any(r.message.startswith("ledger intact") for r in caplog.records)

    raw = behind_the_back(site)
    try:
        with raw.begin() as connection:
            connection.execute(text("UPDATE punches SET verify = 0 WHERE id = 3"))
    finally:
        raw.dispose()
    caplog.clear()
    broken = daemon.check_ledger()
    assert broken is not None and not broken.ok
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith("ledger: terminal 'SN001' (t01 东村), id 3: changed")
    assert errors[-1].startswith("ledger BROKEN: 1 problem(s)")


def test_a_decoded_log_stores_what_its_records_given_one_by_one_store(tmp_path: Path) -> None:
    """The fast path of a first poll (records built a batch at a time from the decoder's
    columns, times formatted in bulk) stores the same rows, and chains that verify, as the
    same records handed over as a plain list; across several insert batches."""
    start = dt.datetime(2026, 11, 16, 7, 30, 5)
    given = [
        wire.AttendanceRecord(1 + n % 7, str(1001 + n % 7), start + dt.timedelta(seconds=97 * n))
        for n in range(2 * BATCH + 321)
    ]
    raw = b"".join(wire.encode_attendance(record, 40) for record in given)
    decoded = wire.decode_attendance(raw, len(given), {}, record_size=40).records
    assert isinstance(decoded, TimeTexts)
    stored = []
    for name, records in (("columns", decoded), ("list", list(decoded))):
        engine = db.make_engine(f"sqlite:///{tmp_path / name}.sqlite3")
        db.migrate(engine)
        with db.write_transaction(engine) as connection:
            connection.execute(insert(Terminal).values(serial="SN7", terminal_id="t7"))
            run = connection.execute(
                insert(PollRun).values(terminal_id="t7").returning(PollRun.id)
            ).scalar_one()
            result = insert_punches(connection, "SN7", records, poll_run_id=run, source="poll")
            assert (result.new, result.new_from, result.new_to) == (
                len(given),
                given[0].timestamp,
                given[-1].timestamp,
            )
        assert ledger.verify_all(engine).ok
        with engine.connect() as connection:
            stored.append(
                connection.exec_driver_sql(
                    "SELECT id, serial, user_id, punched_at, verify, state, workcode, source, "
                    "poll_run_id, chain_seq FROM punches ORDER BY id"
                ).all()
            )
        engine.dispose()
    assert len(stored[0]) == len(given)
    assert stored[0] == stored[1]
