"""The unattended daemon: poll cycles, the Monday and month-end reports, catch-up, leases,
and the daily retention pass over old poll runs.

`clockd run` keeps one APScheduler in the process: the poll job every `poll.interval_minutes`
(the first right at start), a heartbeat that renews terminal leases, the report jobs at
`schedule` times (the monthly one writes the month's workbook and its printable notice), and
the ledger check (`clockd verify`) right after start and daily. After every poll cycle the
reports are brought up to date: every week or month whose scheduled time has passed and that
has no report is written, oldest first (so a daemon that was down for a fortnight catches up on
start), and reports of periods that received late punches or are still provisional are written
again, which revises them when their figures changed. Late punches are found from what the
database records (collections finished since the last look, which is kept there too), so
an import made between two `run --once` processes counts as much as a poll of the cycle.
`clockd run --once` does one poll cycle and that catch-up, for cron, and the ledger check
when its daily time has passed since the last one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from clockd.config import Settings, TerminalConfig
from clockd.domain import Cadre
from clockd.due import monthly_due_at, weekly_due_at
from clockd.errors import UserError
from clockd.gcpause import gc_paused
from clockd.ingest.poll import PollOutcome, StopSignal, poll_cycle
from clockd.notify import Notifier
from clockd.reports.period import data_since
from clockd.reports.revisions import EditionStatus
from clockd.signals import SignalLatch
from clockd.store import alerts, db, editions, leases, polls
from clockd.store.cadres import sync_cadres
from clockd.store.models import Outcome, utcnow
from clockd.store.punches import first_punch_at
from clockd.workcal import IsoWeek, YearMonth

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import BaseScheduler

    from clockd.ledger import VerifyResult

log = logging.getLogger("clockd.daemon")

LOGGED_PROBLEMS = 50  # a ledger check logs this many broken rows, then a count
LEDGER_CHECK_DELAY = 5  # seconds after start: the first poll cycle goes first
LEDGER_CHECK_CURSOR = "ledger_check"  # the last daily slot checked by `run --once` (a day ordinal)
SHUTDOWN_SECONDS = 8.0
RETENTION_AT = dt.time(3, 17)  # local time of the daily retention pass: a quiet hour


@dataclass(frozen=True)
class DueReport:
    kind: str  # weekly | monthly
    period: IsoWeek | YearMonth

    @property
    def label(self) -> str:
        return self.period.label


def due_reports(settings: Settings, engine: Engine, now: dt.datetime) -> list[DueReport]:
    """Reports whose scheduled time has passed and that were never written, oldest first.

    They start with the first week that is assessed at all: one starting on or after both the
    first stored punch and the first terminal's installation (`data_since` of the reports).
    """
    with engine.connect() as connection:
        first = first_punch_at(connection)
        written = editions.written_periods(connection)
    if first is None:
        return []
    since = max(first.date(), data_since(settings))
    week = IsoWeek.containing(since)
    if week.start < since:
        week = week.shift(1)
    month = week.month
    due: list[DueReport] = []
    while weekly_due_at(settings, week) <= now:
        if ("weekly", week.label) not in written:
            due.append(DueReport("weekly", week))
        week = week.shift(1)
    while monthly_due_at(settings, month) <= now:
        if ("monthly", month.label) not in written:
            due.append(DueReport("monthly", month))
        month = month.shift(1)
    return sorted(due, key=lambda item: (_period_end(item.period), item.kind == "monthly"))


def _period_end(period: IsoWeek | YearMonth) -> dt.date:
    return period.end if isinstance(period, IsoWeek) else period.last_day


# A collection's finish time is stamped just before its transaction commits: a look taken
# at `through` may not yet see a collection stamped a little earlier, so the next look reaches
# back this far. A period it touched is at most assessed once more, unchanged.
COMMIT_SLACK = dt.timedelta(minutes=2)


def reports_to_refresh(settings: Settings, engine: Engine) -> list[DueReport]:
    """Written reports that may be out of date: periods whose latest edition is still
    provisional, and periods that received punches from a poll, push or USB import that
    finished after that edition read its inputs and after the daemon's last look
    (`editions.refreshed_through`, kept in the database, so it holds across `run --once`
    processes and restarts). Writing them again revises them if their figures changed.

    The collections are streamed in one pass, each mapped to the weeks (and their months)
    its punches fall in: the first look after an upgrade reaches back to the oldest edition,
    which for a district is millions of runs."""
    with engine.connect() as connection:
        latest = editions.latest_editions(connection)
        if not latest:
            return []
        looked = editions.refreshed_through(connection)
        oldest = min(edition.generated_at for edition in latest.values())
        since = oldest if looked is None else max(looked, oldest)
        # A collection counts for an edition when it finished after the edition read its
        # inputs and after the last look, less the slack for commits in flight.
        reads = {
            key: (edition.generated_at if looked is None else max(looked, edition.generated_at))
            - COMMIT_SLACK
            for key, edition in latest.items()
        }
        refresh = {k for k, e in latest.items() if e.status == EditionStatus.PROVISIONAL}
        for finished, low, high in polls.added_since(connection, since - COMMIT_SLACK):
            for key in _periods_touched(low.date(), high.date()):
                read = reads.get(key)
                if read is not None and finished >= read:
                    refresh.add(key)
    due = [
        DueReport(kind, IsoWeek.parse(label) if kind == "weekly" else YearMonth.parse(label))
        for kind, label in refresh
    ]
    return sorted(due, key=lambda item: (_period_end(item.period), item.kind == "monthly"))


def _periods_touched(first: dt.date, last: dt.date) -> Iterator[tuple[str, str]]:
    """(kind, label) of the weeks holding the days `first`..`last`, and of their months (a
    month's figures are those of its weeks, each belonging to the month of its Sunday)."""
    week, end = IsoWeek.containing(first), IsoWeek.containing(last)
    months: set[str] = set()
    while week <= end:
        yield "weekly", week.label
        if week.month.label not in months:
            months.add(week.month.label)
            yield "monthly", week.month.label
        week = week.shift(1)


class Daemon:
    """One `clockd run` process. Jobs are plain methods, so tests can drive them directly."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        roster: Callable[[], Sequence[Cadre]],
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.roster = roster
        self.clock = clock
        # The random part tells a restarted process from its predecessor with a reused pid.
        self.worker_id = f"{db.process_name()}:{uuid.uuid4().hex[:6]}"
        self.stop = StopSignal()
        self._report_lock = threading.Lock()
        self.clean_exit = True  # False when a job was still unwinding at exit
        # Only a database that several processes may share needs leases; SQLite admits one
        # daemon (db.sole_daemon), which then polls every terminal.
        self.shared = engine.dialect.name != "sqlite"
        # Alerts (docs/alerts.md): checked after each cycle, sent from their own thread.
        self.notifier = Notifier(settings, engine, self.worker_id, clock=clock)

    @property
    def lease_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.poll.lease_seconds)

    # --- jobs -----------------------------------------------------------------------------

    def heartbeat(self) -> None:
        if not self.shared:
            return
        try:
            with db.write_transaction(self.engine) as connection:
                now = self.clock()
                leases.heartbeat(connection, self.worker_id, now)
                leases.renew_all(connection, self.worker_id, now, self.lease_ttl)
        except SQLAlchemyError as exc:
            log.error("heartbeat failed, database unavailable: %s", db.first_line(exc))

    def poll(self) -> list[PollOutcome] | None:
        """One poll cycle over this process's terminals, then the report catch-up.

        Returns None when the database could not be reached at all.
        """
        began, started_at = time.monotonic(), self.clock()
        mine = [t.id for t in self.settings.terminals]
        try:
            with db.write_transaction(self.engine) as connection:
                if self.shared:
                    leases.heartbeat(connection, self.worker_id, started_at)
                    mine = leases.balance(
                        connection, self.worker_id, mine, started_at, self.lease_ttl
                    )
                sync_cadres(connection, self.roster())
        except SQLAlchemyError as exc:
            log.error(
                "poll cycle skipped, database unavailable: %s; retrying next cycle",
                db.first_line(exc),
            )
            self.notifier.database_unreachable(db.first_line(exc))
            return None
        self.notifier.database_reachable()
        terminals = [t for t in self.settings.terminals if t.id in mine]
        with gc_paused():
            outcomes = poll_cycle(
                self.settings,
                self.engine,
                terminals,
                stop=self.stop,
                claim=self._still_mine if self.shared else None,
            )
        self._log_cycle(outcomes, len(self.settings.terminals), time.monotonic() - began)
        if not self.stop.is_set():
            self.reports()
        if not self.stop.is_set():
            self.notifier.after_poll(self.roster)
        return outcomes

    def _still_mine(self, terminal: TerminalConfig) -> bool:
        """Re-check the lease right before connecting: two processes never poll one terminal."""
        try:
            with db.write_transaction(self.engine) as connection:
                return leases.extend(
                    connection, self.worker_id, terminal.id, self.clock(), self.lease_ttl
                )
        except SQLAlchemyError:
            return False

    def _log_cycle(self, outcomes: list[PollOutcome], configured: int, seconds: float) -> None:
        reached = sum(1 for o in outcomes if o.serial is not None and o.outcome != Outcome.FAILED)
        failed = [o for o in outcomes if not o.ok]
        new = sum(o.new for o in outcomes)
        message = (
            f"poll cycle: {len(outcomes)} of {configured} terminals polled here, {reached} "
            f"reached, {new} new punches, {len(failed)} failed in {seconds:.1f}s"
        )
        if failed:
            message += " (" + "; ".join(f"{o.terminal_id}: {o.error}" for o in failed) + ")"
        fields = {
            "event": "poll_cycle",
            "terminals": len(outcomes),
            "reached": reached,
            "new_punches": new,
            "failed": [o.terminal_id for o in failed],
            "seconds": round(seconds, 2),
        }
        log.log(logging.WARNING if failed else logging.INFO, message, extra={"fields": fields})

    def reports(self) -> list[str]:
        """Write every due or missed report and refresh stale ones; returns what was written.

        When the pass went through, the collections finished before it began are marked as
        looked at (reports_to_refresh); otherwise the next pass looks at them again."""
        from clockd.reports.monthly import write_monthly_report
        from clockd.reports.weekly import write_weekly_report

        written: list[str] = []
        with self._report_lock, self._district_report_lock() as ours:
            if not ours:
                log.info("reports: another clockd process is writing reports; skipped")
                return written
            now = self.clock()
            try:
                todo = self._reconcile()
                todo += [
                    item
                    for item in due_reports(self.settings, self.engine, now)
                    if item not in todo
                ]
                refresh = reports_to_refresh(self.settings, self.engine)
                todo += [item for item in refresh if item not in todo]
                cadres = self.roster()
                for item in todo:
                    if self.stop.is_set():
                        break
                    with gc_paused():
                        if isinstance(item.period, IsoWeek):
                            outcome = write_weekly_report(
                                self.settings, cadres, self.engine, item.period, now=now
                            )
                        else:
                            outcome = write_monthly_report(
                                self.settings, cadres, self.engine, item.period, now=now
                            )
                    if outcome.written:
                        written.append(f"{item.kind} {item.label}")
                        log.info("report %s %s", item.kind, outcome.summary())
                if not self.stop.is_set():
                    with db.write_transaction(self.engine) as connection:
                        editions.mark_refreshed(connection, now)
            except SQLAlchemyError as exc:
                log.error("reports deferred, database unavailable: %s", db.first_line(exc))
            except OSError as exc:  # a full disk, a folder gone: one line, retried next cycle
                where = f"{exc.filename}: " if exc.filename else ""
                log.error("reports deferred: %s%s", where, exc.strerror or exc)
            except UserError as exc:  # e.g. the reports folder cannot be used
                log.error("reports deferred: %s", exc)
            self.notifier.after_reports()
        return written

    def _reconcile(self) -> list[DueReport]:
        """Recorded editions whose file a crash kept from its place, to be written again first;
        stale temporary files are removed on the way (reports.revisions.reconcile)."""
        from clockd.reports.monthly import notice_name
        from clockd.reports.revisions import reconcile

        reports_dir = self.settings.reports_dir
        folders = {"weekly": reports_dir / "weekly", "monthly": reports_dir / "monthly"}
        documents = {"monthly": lambda label: [notice_name(label)]}
        unwritten, removed = reconcile(self.engine, folders, documents)
        for leftover in removed:
            log.warning("removed a temporary report file a stopped writer left: %s", leftover)
        todo = []
        for edition in unwritten:
            log.warning(
                "report %s %s revision %d is recorded but its file %s is not in place (%s): "
                "writing it again",
                edition.kind,
                edition.period,
                edition.revision,
                edition.path.name,
                edition.found,
            )
            period: IsoWeek | YearMonth = (
                IsoWeek.parse(edition.period)
                if edition.kind == "weekly"
                else YearMonth.parse(edition.period)
            )
            todo.append(DueReport(edition.kind, period))
        return todo

    def check_ledger(self) -> VerifyResult | None:
        """The ledger check, daily and at start (docs/integrity.md): every chain recomputed;
        a broken one is logged as an error naming each row. None when it could not run."""
        from clockd import ledger

        with self._district_lock(db.LEDGER_CHECK_LOCK) as ours:
            if not ours:
                log.info("ledger check: another clockd process is running it; skipped")
                return None
            try:
                result = ledger.verify_all(self.engine)
            except SQLAlchemyError as exc:
                log.error("ledger check deferred, database unavailable: %s", db.first_line(exc))
                return None
        fields = {
            "event": "ledger_check",
            "ok": result.ok,
            "problems": len(result.problems),
            "punches": result.rows,
            "seconds": round(result.seconds, 1),
        }
        names = {t.serial: f"{t.id} {t.village}" for t in self.settings.terminals}
        lines = [problem.line(names) for problem in result.problems]
        self._alert_ledger(lines)
        if result.ok:
            log.info(result.summary(), extra={"fields": fields})
            return result
        for line in lines[:LOGGED_PROBLEMS]:
            log.error("ledger: %s", line)
        if len(lines) > LOGGED_PROBLEMS:
            log.error("ledger: %d more problems", len(lines) - LOGGED_PROBLEMS)
        log.error(result.summary(), extra={"fields": fields})
        return result

    def check_ledger_if_due(self) -> VerifyResult | None:
        """The ledger check for `run --once` under cron, which has no scheduler: once per
        daily slot (`schedule.ledger_check`), by the first run after it, and at once the first
        time ever. The slot is claimed in the database, so of several runs exactly one checks;
        None when no check was due (or it could not run)."""
        zone = self.settings.zone
        now = self.clock().astimezone(zone)
        day = now.date()
        if now.time() < self.settings.schedule.ledger_check:
            day -= dt.timedelta(days=1)
        slot = day.toordinal()
        try:
            with db.write_transaction(self.engine) as connection:
                last = alerts.cursor(connection, LEDGER_CHECK_CURSOR, 0)
                claimed = last < slot and alerts.move_cursor(
                    connection, LEDGER_CHECK_CURSOR, last, slot
                )
        except SQLAlchemyError as exc:
            log.error("ledger check deferred, database unavailable: %s", db.first_line(exc))
            return None
        return self.check_ledger() if claimed else None

    def _alert_ledger(self, problems: list[str]) -> None:
        """Tell the alert channels when the ledger starts failing and when it is whole again."""
        from clockd import notify

        try:
            with db.write_transaction(self.engine) as connection:
                notify.ledger_checked(connection, self.settings, problems)
        except SQLAlchemyError as exc:
            log.error("ledger alert deferred, database unavailable: %s", db.first_line(exc))

    def _district_report_lock(self) -> AbstractContextManager[bool]:
        """On PostgreSQL, one process of all that share the database writes reports."""
        return self._district_lock(db.REPORT_LOCK)

    @contextmanager
    def _district_lock(self, name: str) -> Iterator[bool]:
        """On PostgreSQL, a session lock that one process of all sharing the database holds."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        try:
            connection = self.engine.connect()
            ours = db.try_advisory_lock(connection, name)
        except SQLAlchemyError as exc:
            log.error("reports deferred, database unavailable: %s", db.first_line(exc))
            yield False
            return
        try:
            yield ours
        finally:
            try:
                if ours:
                    db.advisory_unlock(connection, name)
                connection.commit()
            except SQLAlchemyError:
                pass  # the connection is gone, and with it the session's lock
            connection.close()

    def retain(self) -> None:
        """Fold poll runs older than retention.poll_runs_days into daily rows (once a day)."""
        from clockd.store.retention import fold_poll_runs

        settings = self.settings
        try:
            with gc_paused():
                folded = fold_poll_runs(
                    self.engine, settings.zone, settings.retention.poll_runs_days, self.clock()
                )
        except SQLAlchemyError as exc:
            log.error("retention deferred, database unavailable: %s", db.first_line(exc))
            return
        if folded is None:
            log.info("retention: another clockd process is folding poll runs; skipped")
        elif folded.runs:
            log.info(folded.line())

    def retire(self) -> None:
        if not self.shared:
            return
        try:
            with db.write_transaction(self.engine) as connection:
                leases.retire(connection, self.worker_id)
        except SQLAlchemyError as exc:
            log.warning("could not release leases (they will expire): %s", db.first_line(exc))

    # --- running --------------------------------------------------------------------------

    def run_once(self) -> int:
        """One poll cycle and every due report, the ledger check when its daily slot has come,
        then the alerts that are due, each channel within its timeout; 0 when every terminal
        succeeded."""
        self.notifier.start_watching()
        try:
            outcomes = self.poll()
            if not self.stop.is_set():
                self.retain()
            if not self.stop.is_set():
                self.check_ledger_if_due()
        finally:
            self.retire()
        self.notifier.flush(self.settings.notify.timeout_seconds * 3)
        if outcomes is None:
            return 1
        return 0 if all(o.ok for o in outcomes) else 1

    def build_scheduler(self) -> BackgroundScheduler:
        """The daemon's jobs on an APScheduler (not started): poll, heartbeat, reports."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        settings = self.settings
        zone = settings.zone
        scheduler = BackgroundScheduler(
            timezone=zone, job_defaults={"coalesce": True, "max_instances": 1}
        )
        weekly, monthly = settings.schedule.weekly, settings.schedule.monthly
        scheduler.add_job(
            self.poll,
            IntervalTrigger(minutes=settings.poll.interval_minutes, timezone=zone),
            id="poll",
            next_run_time=dt.datetime.now(zone),
            misfire_grace_time=None,
        )
        if self.shared:
            scheduler.add_job(
                self.heartbeat,
                IntervalTrigger(seconds=max(5, settings.poll.lease_seconds // 4), timezone=zone),
                id="heartbeat",
            )
        scheduler.add_job(
            self.reports,
            CronTrigger(
                day_of_week=weekly.weekday,
                hour=weekly.time.hour,
                minute=weekly.time.minute,
                timezone=zone,
            ),
            id="weekly_report",
            misfire_grace_time=None,
        )
        scheduler.add_job(
            self.reports,
            CronTrigger(
                day=monthly.day, hour=monthly.time.hour, minute=monthly.time.minute, timezone=zone
            ),
            id="monthly_report",
            misfire_grace_time=None,
        )
        check = settings.schedule.ledger_check
        scheduler.add_job(
            self.check_ledger,
            CronTrigger(hour=check.hour, minute=check.minute, timezone=zone),
            id="ledger_check",
            next_run_time=dt.datetime.now(zone) + dt.timedelta(seconds=LEDGER_CHECK_DELAY),
            misfire_grace_time=None,
        )
        scheduler.add_job(
            self.retain,
            CronTrigger(hour=RETENTION_AT.hour, minute=RETENTION_AT.minute, timezone=zone),
            id="retention",
            misfire_grace_time=None,
        )
        reminder = settings.notify.reminder
        if self.notifier.enabled and reminder is not None:
            # On time even when polls are hours apart; the check itself is once a week.
            scheduler.add_job(
                self.notifier.after_poll,
                CronTrigger(
                    day_of_week=reminder.weekday,
                    hour=reminder.time.hour,
                    minute=reminder.time.minute,
                    timezone=zone,
                ),
                args=[self.roster],
                id="reminder",
                misfire_grace_time=None,
            )
        return scheduler

    def run_forever(self) -> int:
        """Serve until SIGTERM or SIGINT, then stop within a few seconds and return 0."""
        scheduler = self.build_scheduler()
        log.info(
            "clockd running as %s: polling %d terminals every %g minutes",
            self.worker_id,
            len(self.settings.terminals),
            self.settings.poll.interval_minutes,
        )
        with SignalLatch() as latch:
            self.notifier.start_watching()
            self.notifier.start()
            scheduler.start()
            try:
                log.info("received %s, stopping", latch.wait().name)
            finally:
                self.stop.set()  # running polls abandon before their commit
                self.clean_exit = self._shutdown(scheduler)
                self.notifier.stop()
                self.retire()
        log.info("clockd stopped")
        return 0

    def _shutdown(self, scheduler: BaseScheduler) -> bool:
        """Stop the scheduler, giving running jobs a few seconds to unwind; True if they did."""
        closer = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True)
        closer.start()
        closer.join(SHUTDOWN_SECONDS)
        if closer.is_alive():
            log.warning("jobs still running after %.0f s; exiting anyway", SHUTDOWN_SECONDS)
            return False
        return True
