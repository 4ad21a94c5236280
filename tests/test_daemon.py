"""The daemon: catch-up, the Monday and month-end schedule, clean stops, one daemon per SQLite
file, shared PostgreSQL with leases, a database that goes away, and the demo."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import Engine, func, select, update

from clockd.scheduler import Daemon, _periods_touched, due_reports, reports_to_refresh
from clockd.sim.emulator import EmulatedDevice, Faults
from clockd.store import db
from clockd.store.models import Lease, PollRun, PunchRow, ReportRun, Worker, utcnow
from clockd.workcal import IsoWeek
from tests.cli_runner import run_clockd, run_clockd_process, spawn_clockd
from tests.emulated import emulated_site, on_device, stored
from tests.report_site import Site, make_site

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def three_weeks_of_punches(site: Site) -> None:
    """Valid days for everyone in 2026-W43, W44 and W45 (Oct 19 - Nov 8), collected from all
    terminals on Monday Nov 9 (the process clock must be travelled past that)."""
    collected = local("2026-11-09 08:00")
    for week in ("2026-W43", "2026-W44", "2026-W45"):
        start = IsoWeek.parse(week).start
        for offset in range(3):
            day = start + dt.timedelta(days=offset)
            site.store(
                "t01",
                [(user, f"{day} 09:00") for user in ("1001", "1002", "1004")]
                + [(user, f"{day} 15:00") for user in ("1001", "1002", "1004")],
                started=collected,
            )
    site.poll_all(started=collected)


def test_catch_up_writes_every_missed_report_once(tmp_path: Path, database_url: str) -> None:
    site = make_site(tmp_path, database_url, installed="2026-10-19")
    with time_machine.travel(local("2026-11-10 08:00")):
        three_weeks_of_punches(site)
        first = Daemon(site.settings, site.engine, lambda: site.cadres).reports()
    assert first == ["weekly 2026-W43", "monthly 2026-10", "weekly 2026-W44", "weekly 2026-W45"]
    for name in ("weekly/2026-W43", "weekly/2026-W44", "weekly/2026-W45", "monthly/2026-10"):
        assert (tmp_path / "reports" / f"{name}.xlsx").exists()
    # The daemon writes the printable notice with the monthly workbook.
    assert (tmp_path / "reports" / "monthly" / "2026-10-通报.docx").exists()
    # A second start finds nothing missing.
    with time_machine.travel(local("2026-11-10 09:00")):
        assert Daemon(site.settings, site.engine, lambda: site.cadres).reports() == []
    with site.engine.connect() as connection:
        rows = connection.execute(select(ReportRun.kind, ReportRun.period, ReportRun.status)).all()
    assert sorted(rows) == [
        ("monthly", "2026-10", "final"),
        ("weekly", "2026-W43", "final"),
        ("weekly", "2026-W44", "final"),
        ("weekly", "2026-W45", "final"),
    ]


def test_a_report_is_due_only_after_its_scheduled_time(tmp_path: Path, sqlite_url: str) -> None:
    site = make_site(tmp_path, sqlite_url, installed="2026-10-19")
    with time_machine.travel(local("2026-11-10 08:00")):
        three_weeks_of_punches(site)
    labels = [r.label for r in due_reports(site.settings, site.engine, local("2026-11-02 07:29"))]
    assert labels == ["2026-W43", "2026-10"]  # W44 is due at 07:30 on Monday Nov 2
    labels = [r.label for r in due_reports(site.settings, site.engine, local("2026-11-02 07:30"))]
    assert labels == ["2026-W43", "2026-10", "2026-W44"]


def test_time_travel_monday_and_month_end(tmp_path: Path, sqlite_url: str) -> None:
    """Travel the whole process's clock; the daemon and its APScheduler triggers follow it."""
    site = make_site(tmp_path, sqlite_url, installed="2026-11-16")
    site.store("t01", [("1001", "2026-11-16 09:00"), ("1001", "2026-11-16 15:00")])
    daemon = Daemon(site.settings, site.engine, lambda: site.cadres)
    scheduler = daemon.build_scheduler()
    weekly = scheduler.get_job("weekly_report").trigger
    monthly = scheduler.get_job("monthly_report").trigger

    with time_machine.travel(local("2026-11-22 23:59"), tick=False):
        site.poll_all(started=local("2026-11-23 00:10"))
        assert daemon.reports() == []  # the week has ended, its report is due Monday 07:30
        next_weekly = weekly.get_next_fire_time(None, dt.datetime.now(SHANGHAI))
        assert next_weekly == local("2026-11-23 07:30")
    with time_machine.travel(local("2026-11-23 07:30:05"), tick=False):
        assert daemon.reports() == ["weekly 2026-W47"]
        assert daemon.reports() == []
    with time_machine.travel(local("2026-11-30 23:00"), tick=False):
        next_monthly = monthly.get_next_fire_time(None, dt.datetime.now(SHANGHAI))
        assert next_monthly == local("2026-12-01 07:30")
        site.poll_all(started=local("2026-11-30 23:00"))
        # Monday Nov 30 07:30 passed; W47, provisional so far, is final now that every
        # terminal has been collected since it ended.
        assert daemon.reports() == ["weekly 2026-W48", "weekly 2026-W47"]
    with time_machine.travel(local("2026-12-01 07:30:05"), tick=False):
        # November holds the weeks whose Sunday is in November: W45 to W48.
        assert daemon.reports() == ["monthly 2026-11"]


def test_late_punches_revise_a_written_report(tmp_path: Path, sqlite_url: str) -> None:
    site = make_site(tmp_path, sqlite_url, installed="2026-10-19")
    daemon = Daemon(site.settings, site.engine, lambda: site.cadres)
    with time_machine.travel(local("2026-11-10 08:00")):
        three_weeks_of_punches(site)
        daemon.reports()
    cycle_start = local("2026-11-10 09:00")
    with time_machine.travel(cycle_start):
        # A village that was offline delivers a W44 punch pair: the cycle revises W44 alone.
        site.store(
            "t02",
            [("1001", "2026-10-29 09:00"), ("1001", "2026-10-29 15:00")],
            started=cycle_start,
        )
        written = daemon.reports()
    assert written == ["weekly 2026-W44"]  # W44 belongs to November: not reported yet
    with site.engine.connect() as connection:
        editions = connection.execute(
            select(ReportRun.revision, ReportRun.status).where(ReportRun.period == "2026-W44")
        ).all()
    assert sorted(editions) == [(0, "final"), (1, "corrected")]
    assert len(list((tmp_path / "reports" / "weekly" / "history").iterdir())) == 1


def test_a_usb_import_between_runs_revises_the_report_in_the_next_run(
    tmp_path: Path, database_url: str
) -> None:
    """cron's `run --once` is a new process each time: what was imported before it started
    must still revise the report, once, and later runs must leave it alone."""
    site = make_site(tmp_path, database_url, installed="2026-10-19")
    config = str(tmp_path / "devices.yaml")
    with time_machine.travel(local("2026-11-10 08:00")):
        three_weeks_of_punches(site)
        Daemon(site.settings, site.engine, lambda: site.cadres).reports()
    late = tmp_path / "late.dat"
    late.write_text(
        "1001\t2026-10-28 09:00:00\t1\t0\t1\t0\n1001\t2026-10-28 15:00:00\t1\t0\t1\t0\n"
    )
    with time_machine.travel(local("2026-11-10 09:00")):
        imported = run_clockd("--config", config, "import-usb", str(late), "--device", "t02")
        assert imported.returncode == 0, imported.stderr
    with time_machine.travel(local("2026-11-10 09:05")):
        assert Daemon(site.settings, site.engine, lambda: site.cadres).reports() == [
            "weekly 2026-W44"
        ]
    with time_machine.travel(local("2026-11-10 09:30")):
        # The next run finds nothing to look at again, and writes nothing.
        assert reports_to_refresh(site.settings, site.engine) == []
        assert Daemon(site.settings, site.engine, lambda: site.cadres).reports() == []
    with site.engine.connect() as connection:
        editions = connection.execute(
            select(ReportRun.revision, ReportRun.status, ReportRun.deduction_total).where(
                ReportRun.period == "2026-W44"
            )
        ).all()
    assert sorted(editions) == [(0, "final", 0), (1, "corrected", 0)]


# --- the daemon as a process ----------------------------------------------------------------


def clockd_process(config: Path, *args: str, **streams: Any) -> subprocess.Popen[str]:
    return spawn_clockd("--config", str(config), *args, **streams)


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def all_stored(engine: Engine, devices: Sequence[EmulatedDevice]) -> bool:
    """Whether the store holds exactly what every terminal holds."""
    return all(stored(engine, device.serial) == on_device(device) for device in devices)


def age_out(engine: Engine, pid: int) -> None:
    """Let the lease time of the dead daemon with this pid pass: its heartbeat goes stale and
    its leases lapse, as they would lease_seconds after its death."""
    dead = Worker.worker_id.like(f"%:{pid}:%")
    past = utcnow() - dt.timedelta(hours=1)
    with db.write_transaction(engine) as connection:
        connection.execute(update(Worker).where(dead).values(heartbeat_at=past))
        connection.execute(
            update(Lease).where(Lease.worker_id.like(f"%:{pid}:%")).values(expires_at=past)
        )


def last_complete_weeks(count: int) -> dt.datetime:
    """Monday 08:00 of the week `count` weeks before the current one (naive local)."""
    today = dt.datetime.now(SHANGHAI).date()
    monday = IsoWeek.containing(today).shift(-count).start
    return dt.datetime.combine(monday, dt.time(8))


def test_run_once_polls_and_writes_due_reports_then_nothing_more(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    start = last_complete_weeks(2)
    with emulated_site(3, punches=300, users=10, start=start) as site:
        for terminal in site.terminals:
            terminal["installed"] = start.date().isoformat()
        config = site.write_config(tmp_path, url, timeout_seconds=2)
        engine = db.make_engine(url)
        db.migrate(engine)
        # As cron runs it, in this process: the daemon as a process is tested below.
        first = run_clockd("--config", str(config), "run", "--once")
        err = first.stderr
        assert first.returncode == 0, err
        assert "poll cycle: 3 of 3 terminals polled here, 3 reached, 900 new punches" in err
        last_week = IsoWeek.containing(dt.datetime.now(SHANGHAI).date()).shift(-1)
        assert (tmp_path / "reports" / "weekly" / f"{last_week.label}.xlsx").exists()
        with engine.connect() as connection:
            reports = connection.scalar(select(func.count()).select_from(ReportRun))
        second = run_clockd("--config", str(config), "run", "--once")
        err = second.stderr
        assert second.returncode == 0, err
        assert "0 new punches" in err and "report " not in err
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(ReportRun)) == reports
        site.devices[1].faults = Faults(refuse=True)
        third = run_clockd("--config", str(config), "run", "--once")
        assert third.returncode == 1 and "1 failed" in third.stderr


@pytest.mark.serial  # asserts how soon the daemon stops
def test_sigterm_mid_poll_stops_in_time_and_writes_nothing_partial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    with emulated_site(2, punches=10_000, users=30, transports=("tcp",)) as site:
        slow = site.devices[0]
        slow.faults = Faults(reply_delay=0.4)  # ~20 chunks of the log: about 8 s to read
        config = site.write_config(tmp_path, url, timeout_seconds=5)
        engine = db.make_engine(url)
        db.migrate(engine)
        daemon = clockd_process(config, "run")
        try:
            # The fast terminal is stored within a second or two; the slow one's download
            # takes about 10 s, so it is well inside it then.
            wait_for(lambda: slow.in_session, 30, "the poll of the slow terminal")
            wait_for(lambda: all_stored(engine, site.devices[1:]), 30, "the fast terminal")
            assert slow.in_session
            began = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=15)
            assert time.monotonic() - began < 10
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert daemon.returncode == 0, err
        assert "received SIGTERM, stopping" in err and "clockd stopped" in err
        with engine.connect() as connection:
            ok_runs = connection.scalar(
                select(func.count())
                .select_from(PollRun)
                .where(PollRun.terminal_id == "t01", PollRun.outcome == "ok")
            )
        assert ok_runs == 0
        assert stored(engine, slow.serial) == []  # abandoned before its commit: nothing
        assert stored(engine, site.devices[1].serial) == on_device(site.devices[1])
        slow.faults = Faults()
        again = run_clockd("--config", str(config), "poll")  # the next cycle, without reports
        assert again.returncode == 0, again.stderr
        assert stored(engine, slow.serial) == on_device(slow)


def test_a_second_daemon_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    with emulated_site(1, punches=10) as site:
        config = site.write_config(tmp_path, url)
        db.migrate(db.make_engine(url))
        first = clockd_process(config, "run")
        try:
            wait_for(lambda: site.devices[0].punch_count and _polled(url), 30, "the first poll")
            # The lock is a file lock, which another open of the file in this process meets
            # just as another process would.
            second = run_clockd("--config", str(config), "run", "--once")
            assert second.returncode == 1
            assert "is already in use by another `clockd run`" in second.stderr
            assert "Traceback" not in second.stderr, second.stderr
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=15)
        assert first.returncode == 0


def _polled(url: str) -> bool:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            return bool(connection.scalar(select(func.count()).select_from(PollRun)))
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.serial  # 2-second poll timeouts and 3-second cycles of two daemons
def test_two_daemons_share_postgresql_and_take_over_from_each_other(
    tmp_path: Path, pg_url: str
) -> None:
    engine = db.make_engine(pg_url)
    db.migrate(engine)
    start = last_complete_weeks(2)
    with emulated_site(16, punches=200, users=12, start=start) as site:
        for terminal in site.terminals:
            terminal["installed"] = start.date().isoformat()
        config = site.write_config(
            tmp_path, pg_url, interval_minutes=0.05, lease_seconds=10, timeout_seconds=2
        )
        daemons = [clockd_process(config, "run") for _ in range(2)]

        def logs() -> str:
            for daemon in daemons:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
            return "\n----\n".join(daemon.communicate(timeout=15)[1] for daemon in daemons)

        try:
            # Several 3-second cycles: the first process takes every terminal, gives back half
            # when it sees the second one, and the second takes those.
            try:
                wait_for(lambda: len(_runs_by_worker(engine)) == 2, 45, "both daemons to poll")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {_runs_by_worker(engine)}\n{logs()}") from None
            wait_for(lambda: all_stored(engine, site.devices), 30, "every punch stored")
            _assert_never_both_at_once(engine)
            with engine.connect() as connection:  # a terminal busy with the other: none
                failures = connection.execute(
                    select(PollRun.terminal_id, PollRun.error).where(PollRun.outcome != "ok")
                ).all()
            assert failures == []

            # One dies without cleaning up: its leases expire and the survivor takes over.
            daemons[0].kill()
            daemons[0].wait()
            killed_at = dt.datetime.now(dt.UTC)
            age_out(engine, daemons[0].pid)
            for device in site.devices:
                device.add_punch("1003", dt.datetime.combine(start.date(), dt.time(17, 30)))

            def taken_over() -> bool:
                survivor = _runs_by_worker(engine, since=killed_at)
                return len(survivor) == 1 and len(next(iter(survivor.values()))) == 16

            try:
                wait_for(taken_over, 60, "the survivor to poll all 16 terminals")
            except AssertionError as exc:
                runs = _runs_by_worker(engine, since=killed_at)
                raise AssertionError(f"{exc}: {runs}\n{logs()}") from None
            wait_for(lambda: all_stored(engine, site.devices), 30, "the last punches stored")
            _assert_never_both_at_once(engine)
        finally:
            for daemon in daemons:
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
                    daemon.communicate(timeout=15)
    with engine.connect() as connection:
        editions = connection.execute(
            select(ReportRun.kind, ReportRun.period, ReportRun.revision, ReportRun.worker)
        ).all()
        punches = connection.scalar(select(func.count()).select_from(PunchRow))
    assert punches == 16 * 201
    keys = [(kind, period, revision) for kind, period, revision, _ in editions]
    assert len(keys) == len(set(keys)) and keys  # each edition written once
    last_week = IsoWeek.containing(dt.datetime.now(SHANGHAI).date()).shift(-1).label
    assert ("weekly", last_week) in {(kind, period) for kind, period, _, _ in editions}


def _runs_by_worker(engine: Engine, since: dt.datetime | None = None) -> dict[str, set[str]]:
    query = select(PollRun.worker, PollRun.terminal_id).where(PollRun.outcome == "ok")
    if since is not None:
        query = query.where(PollRun.started_at > since)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    workers: dict[str, set[str]] = {}
    for worker, terminal in rows:
        workers.setdefault(str(worker), set()).add(terminal)
    return workers


def _assert_never_both_at_once(engine: Engine) -> None:
    with engine.connect() as connection:
        runs = connection.execute(
            select(PollRun.terminal_id, PollRun.worker, PollRun.started_at, PollRun.finished_at)
        ).all()
    by_terminal: dict[str, list[tuple[dt.datetime, dt.datetime, str]]] = {}
    for terminal, worker, began, ended in runs:
        assert ended is not None and worker is not None  # no poll is left unfinished here
        by_terminal.setdefault(terminal, []).append((began, ended, worker))
    for terminal, spans in by_terminal.items():
        spans.sort()
        for (_, end_a, worker_a), (start_b, _, worker_b) in itertools.pairwise(spans):
            if worker_a != worker_b:
                assert start_b >= end_a, f"{terminal} polled by {worker_a} and {worker_b} at once"


# --- a database that goes away --------------------------------------------------------------


class Proxy:
    """A TCP forwarder to PostgreSQL that a test can cut and restore, like a server restart."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.links: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up.clear()
        for link in self.links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
        self.links.clear()

    def restore(self) -> None:
        self.up.set()


@contextmanager
def proxied(pg_url: str) -> Iterator[tuple[Proxy, str]]:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    finally:
        proxy.listener.close()
        proxy.cut()


@pytest.mark.postgres
def test_the_daemon_survives_a_database_outage(tmp_path: Path, pg_url: str) -> None:
    db.migrate(db.make_engine(pg_url))
    engine = db.make_engine(pg_url)
    with proxied(pg_url) as (proxy, through), emulated_site(3, punches=50) as site:
        config = site.write_config(tmp_path, through, interval_minutes=0.03, timeout_seconds=2)
        log_path = tmp_path / "daemon.log"
        with log_path.open("w", encoding="utf-8") as log:
            daemon = clockd_process(config, "run", stdout=subprocess.DEVNULL, stderr=log)

        def failures() -> int:
            text = log_path.read_text(encoding="utf-8")
            return text.count("database unavailable") + text.count("database:")

        try:
            wait_for(lambda: all_stored(engine, site.devices), 30, "the first poll")
            proxy.cut()
            seen = failures()
            for device in site.devices:
                device.add_punch("1002", dt.datetime(2026, 11, 25, 9, 0))
            wait_for(lambda: failures() > seen, 30, "a cycle failing while the database is away")
            assert all(len(stored(engine, d.serial)) == 50 for d in site.devices)
            proxy.restore()
            wait_for(
                lambda: all_stored(engine, site.devices),
                30,
                "the punches held by the terminals to arrive after the outage",
            )
            assert daemon.poll() is None  # still running
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
        err = log_path.read_text(encoding="utf-8")
        assert daemon.returncode == 0
        assert "database unavailable" in err or "database:" in err
        assert "Traceback" not in err, err


def test_demo_runs_from_nothing_to_reports(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    began = time.monotonic()
    result = run_clockd_process("demo", "--dir", str(folder), timeout=120)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began < 120
    out = result.stdout
    assert "polling [15/15]" in out and "15/15 terminals polled" in out
    assert "push t16 柳塘村: " in out and "1 terminal(s) pushed" in out  # the 4G village
    weekly = sorted((folder / "reports" / "weekly").glob("*.xlsx"))
    monthly = sorted((folder / "reports" / "monthly").glob("*.xlsx"))
    assert len(weekly) == 1 and len(monthly) == 1
    assert str(weekly[0]) in out and str(monthly[0]) in out
    assert (folder / "reports" / "monthly" / f"{monthly[0].stem}-通报.docx").is_file()
    lines = out.rstrip().splitlines()
    reports = lines[lines.index(next(line for line in lines if line.startswith("report "))) :]
    # The provisional editions (a terminal offline), then the revised ones.
    assert reports[2].split()[:3] == ["weekly", weekly[0].stem, "47"]
    assert reports[4].split()[:3] == ["weekly", weekly[0].stem, "47"]
    assert reports[5].split()[:3] == ["monthly", monthly[0].stem, "47"]
    assert "provisional (r0)" in reports[2] and "corrected (r1)" in reports[4]
    # make demo prints the news report's figures beside the demo's.
    assert any(line.split()[:2] == ["cadres", "notified"] for line in lines)
    # The folder is a working site: its own config drives the other commands.
    devices = run_clockd("--config", str(folder / "devices.yaml"), "devices")
    assert devices.returncode == 0 and devices.stdout.count("AEH72017600") == 16
    # It ends by saying how to open the console on this data.
    assert f"clockd --config {folder / 'devices.yaml'} serve" in out
    assert "sign in as demo-hr" in out.rstrip().splitlines()[-1]


def test_demo_replaces_its_own_folder_and_nothing_else(tmp_path: Path) -> None:
    from clockd.errors import UserError
    from clockd.sim.demo import prepare_folder

    earlier = tmp_path / "demo"
    earlier.mkdir()
    (earlier / "devices.yaml").write_text("# Written by `clockd demo`: ...\n", encoding="utf-8")
    (earlier / "clockd.sqlite3").write_bytes(b"old")
    (earlier / "reports" / "weekly").mkdir(parents=True)
    (earlier / "reports" / "weekly" / "2026-W47.xlsx").write_bytes(b"old")
    prepare_folder(earlier)
    assert earlier.is_dir() and not any(earlier.iterdir())

    # An earlier demo beside a file of the user's: nothing is deleted.
    (earlier / "devices.yaml").write_text("# Written by `clockd demo`: ...\n", encoding="utf-8")
    (earlier / "我的笔记.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(UserError, match=r"files it did not write \(我的笔记\.txt\)"):
        prepare_folder(earlier)
    assert (earlier / "我的笔记.txt").exists() and (earlier / "devices.yaml").exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "devices.yaml").write_text("township: 我的镇\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds no earlier demo"):
        prepare_folder(mine)
    assert (mine / "devices.yaml").exists()


def test_late_punches_reach_the_weeks_they_fall_in_and_those_weeks_months() -> None:
    # Friday 30 October to Monday 2 November 2026: W44 ends on Sunday 1 November, so it and
    # W45 both belong to November; October's report is not touched.
    assert list(_periods_touched(dt.date(2026, 10, 30), dt.date(2026, 11, 2))) == [
        ("weekly", "2026-W44"),
        ("monthly", "2026-11"),
        ("weekly", "2026-W45"),
    ]
    assert list(_periods_touched(dt.date(2026, 10, 25), dt.date(2026, 10, 25))) == [
        ("weekly", "2026-W43"),
        ("monthly", "2026-10"),
    ]
