"""The command line. Thin: parse, call one library function, print the result."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from clockd import __version__
from clockd.errors import ConfigError, InputError, UserError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from clockd.config import Settings
    from clockd.domain import Cadre

# Start-up time matters (`clockd --help` in well under 0.1 s, see docs/performance.md): this
# module imports only the standard library's parsing pieces; each command imports what it
# needs inside its handler, so SQLAlchemy, pydantic and the rest load only when used.

log = logging.getLogger("clockd")


class Context:
    """What a command needs, loaded on first use so that a bad file fails before any write."""

    def __init__(self, args: argparse.Namespace) -> None:
        from clockd.config import config_path

        self.args = args
        self.config_file = config_path(getattr(args, "config", None))

    @cached_property
    def settings(self) -> Settings:
        from clockd.config import load_settings

        return load_settings(self.config_file)

    @cached_property
    def roster(self) -> list[Cadre]:
        from clockd.roster import load_roster

        villages = {t.village for t in self.settings.terminals}
        return load_roster(self.settings.roster_path, villages)

    @cached_property
    def engine(self) -> Engine:
        from clockd.store import db

        return db.make_engine(self.settings.database_url)

    def ready_engine(self) -> Engine:
        """The engine, after checking that `clockd init` has brought the schema up to date."""
        from clockd.store import db

        db.require_current_schema(self.engine)
        return self.engine

    def sync_roster(self, engine: Engine) -> None:
        """Store the roster's cadres (each command that polls or reports starts with it)."""
        from clockd.store import db
        from clockd.store.cadres import sync_cadres

        with db.write_transaction(engine) as connection:
            sync_cadres(connection, self.roster)


# --- commands ---------------------------------------------------------------------------------


def cmd_init(ctx: Context) -> int:
    from clockd.store import db

    path = ctx.config_file
    sample_config = not path.exists()
    if sample_config:
        _write_sample(path, "devices.yaml")
        print(f"wrote a sample configuration to {path}; edit it for your terminals")
    settings = ctx.settings
    roster = settings.roster_path
    empty_roster = False
    if not roster.exists():
        if sample_config:  # the sample town's cadres, for the sample town's villages
            _write_sample(roster, "roster.csv")
            print(f"wrote a sample roster to {roster}")
        else:  # the user's own villages: the sample's cadres would name villages not there
            _write_empty_roster(roster)
            empty_roster = True
    cadres = [] if empty_roster else ctx.roster
    before, after = db.migrate(ctx.engine)
    if not empty_roster:
        ctx.sync_roster(ctx.engine)
    where = db.describe(ctx.engine)
    if before is None:
        print(f"created database {where} (schema {after})")
    elif before != after:
        print(f"migrated database {where} from schema {before} to {after}")
    else:
        print(f"database {where} is up to date (schema {after})")
    if empty_roster:
        print(
            f"wrote an empty roster (its header only) to {roster}: add your cadres"
            f" ({ROSTER_HEADER.replace(',', ', ')}), then run `clockd init` again"
        )
    else:
        print(f"roster: {len(cadres)} cadres from {settings.roster_path}")
    return 0


ROSTER_HEADER = "user_id,name,role,village,department,active_from,active_to"


def _write_empty_roster(target: Path) -> None:
    """A roster without cadres in the format its name asks for (docs/rules.md, the roster)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = (
            "# The township's cadres, one entry each (docs/rules.md):\n"
            "# - {user_id: '1001', name: 王建国, role: 机关干部, department: 党政办}\n"
            "# - {user_id: '1003', name: 张三, role: 驻村干部, village: 桥东村}\n"
            "cadres: []\n"
        )
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    elif suffix in (".xlsx", ".xlsm"):
        from openpyxl import Workbook

        workbook = Workbook()
        workbook.active.append(ROSTER_HEADER.split(","))  # type: ignore[union-attr]
        with target.open("xb") as handle:
            workbook.save(handle)
    else:
        with target.open("x", encoding="utf-8-sig") as handle:
            handle.write(ROSTER_HEADER + "\n")


def _write_sample(target: Path, name: str) -> None:
    from importlib import resources

    target.parent.mkdir(parents=True, exist_ok=True)
    sample = resources.files("clockd").joinpath("data", name).read_bytes()
    with target.open("xb") as handle:  # never overwrite a user's file
        handle.write(sample)


def cmd_devices(ctx: Context) -> int:
    from clockd.store.fleet import open_sqlite
    from clockd.textui import render_table

    settings = ctx.settings
    now = dt.datetime.now(dt.UTC)
    configured_serials = {t.serial for t in settings.terminals}
    polled_ids = {t.id for t in settings.terminals if t.polled}
    # A district's year of runs on SQLite is read with the standard library alone: loading
    # SQLAlchemy and the models took longer than the rest of the command (store/fleet.py).
    sqlite = open_sqlite(settings.database_url)
    if sqlite is not None:
        from clockd.store import fleet

        with sqlite:
            statuses = fleet.terminal_facts_now(sqlite, settings.terminals, now)
            unconfigured = fleet.unconfigured_serials(sqlite, configured_serials, polled_ids)
        sqlite.close()
    else:
        from clockd.store.periods import terminal_facts
        from clockd.store.unconfigured import unconfigured_serials

        engine = ctx.ready_engine()
        with engine.connect() as connection:
            statuses = terminal_facts(connection, settings.terminals, now, now)
            unconfigured = unconfigured_serials(connection, configured_serials, polled_ids)
    zone = settings.zone
    configured = {t.id: t for t in settings.terminals}  # a district lists thousands
    rows = []
    for status in statuses:
        serial = status.terminal.serial
        if status.serial_mismatch:
            serial += f" (device says {status.reported_serial}!)"
        capacity = ""
        if status.records_on_device is not None:
            capacity = f"{status.records_on_device}/{status.record_capacity or '?'}"
            ratio = status.capacity_ratio
            if ratio is not None:
                warn = " FULL SOON" if settings.poll.nearly_full(ratio) else ""
                capacity += f" ({100 * ratio:.0f}%{warn})"
        drift = "" if status.drift_seconds is None else f"{round(status.drift_seconds):+d}s"
        last_good = (
            status.last_success.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            if status.last_success
            else "never"
        )
        error = status.last_error if status.last_outcome not in (None, "ok") else ""
        terminal = configured[status.terminal.id]
        source = "pull" if terminal.polled else "push"
        rows.append(
            [terminal.id, terminal.village, serial, last_good, capacity, drift, error or "", source]
        )
    rows.extend(
        [
            "?",
            "(not in devices.yaml)",
            entry.serial,
            entry.last_seen.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "",
            "",
            f"{entry.quarantined} records quarantined until it is added to devices.yaml",
            "push" if entry.quarantined else "",
        ]
        for entry in unconfigured
    )
    print(
        render_table(
            [
                "terminal",
                "village",
                "serial",
                "last good contact",
                "records/capacity",
                "drift",
                "last error",
                "source",
            ],
            rows,
        )
    )
    return 0


def cmd_poll(ctx: Context) -> int:
    from clockd.gcpause import gc_paused
    from clockd.ingest.poll import poll_cycle

    settings = ctx.settings
    terminals = [settings.terminal(ctx.args.device)] if ctx.args.device else None
    engine = ctx.ready_engine()
    ctx.sync_roster(engine)
    with gc_paused():
        outcomes = poll_cycle(
            settings,
            engine,
            terminals,
            on_outcome=lambda outcome: print(outcome.line(), flush=True),
        )
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def cmd_run(ctx: Context) -> int:
    from clockd.roster import RosterFile
    from clockd.scheduler import Daemon
    from clockd.store import db

    settings = ctx.settings
    roster = RosterFile(settings.roster_path, {t.village for t in settings.terminals})
    roster()  # a bad roster stops the daemon before it starts
    engine = ctx.ready_engine()
    daemon = Daemon(settings, engine, roster)
    with db.sole_daemon(engine):
        if ctx.args.once:
            return daemon.run_once()
        code = daemon.run_forever()
    if not daemon.clean_exit:
        # A poll thread is still waiting on a terminal; its transaction never committed, so
        # leaving now loses nothing, and the service manager gets its prompt exit.
        logging.shutdown()
        os._exit(code)
    return code


def cmd_demo(ctx: Context) -> int:
    import tempfile

    from clockd.sim.demo import prepare_folder, run_demo, summary
    from clockd.web.demo import demo_console

    folder = ctx.args.dir or Path(tempfile.mkdtemp(prefix="clockd-demo-"))
    if folder.is_symlink():
        raise InputError(f"--dir {folder}: is a symbolic link; give the folder it points to")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--dir {folder}: is not a folder")
    prepare_folder(folder)
    result = run_demo(folder, ctx.args.seed, say=lambda line: print(line, flush=True))
    print(summary(result))
    print(demo_console(folder / "devices.yaml"))
    return 0 if all(outcome.ok for outcome in result.outcomes) else 1


def cmd_simulate(ctx: Context) -> int:
    from clockd.sim import simulate

    settings = ctx.settings
    cadres = ctx.roster
    terminals = simulate.emulated_terminals(settings)
    if ctx.args.punches is not None:
        punches = simulate.read_punch_csv(ctx.args.punches, [t.id for t in terminals])
    else:
        today = dt.datetime.now(settings.zone).date()
        punches = simulate.synthetic_punches(
            settings, cadres, terminals, ctx.args.weeks, ctx.args.seed, today
        )
    town = simulate.build_town(settings, cadres, punches)
    print(
        f"serving {len(town.devices)} emulated terminals ({len(cadres)} cadres enrolled, "
        f"{town.punches} punches) until SIGTERM",
        file=sys.stderr,
    )
    fleet = None
    if town.push_devices:
        from clockd.sim.push_device import PushFleet

        print(
            f"{len(town.push_devices)} push terminals post to {simulate.push_base_url(settings)}",
            file=sys.stderr,
        )
        fleet = PushFleet(list(town.push_devices.values()))
        fleet.start()
    try:
        town.server.run_until_signal(on_ready=lambda: print("ready", flush=True))
    except OSError as exc:
        raise UserError(f"cannot listen: {exc}") from None
    finally:
        if fleet is not None:
            fleet.stop()
    return 0


def cmd_report_weekly(ctx: Context) -> int:
    from clockd.gcpause import gc_paused
    from clockd.reports.weekly import write_weekly_report
    from clockd.workcal import IsoWeek, last_complete_week

    settings = ctx.settings
    today = dt.datetime.now(settings.zone).date()
    week = (
        _parsed(IsoWeek.parse, ctx.args.week, "--week")
        if ctx.args.week
        else last_complete_week(today)
    )
    _begun("--week", week.label, week.start, today)
    with gc_paused():
        outcome = write_weekly_report(settings, ctx.roster, ctx.ready_engine(), week)
    print(outcome.path)
    print(outcome.summary())
    return 0


def cmd_report_monthly(ctx: Context) -> int:
    from clockd.gcpause import gc_paused
    from clockd.reports.monthly import write_monthly_report
    from clockd.workcal import YearMonth, last_complete_month

    settings = ctx.settings
    today = dt.datetime.now(settings.zone).date()
    month = (
        _parsed(YearMonth.parse, ctx.args.month, "--month")
        if ctx.args.month
        else last_complete_month(today)
    )
    _begun("--month", month.label, month.weeks()[0].start, today)
    with gc_paused():
        outcome = write_monthly_report(settings, ctx.roster, ctx.ready_engine(), month)
    print(outcome.path)
    print(outcome.summary())
    return 0


def cmd_report_notice(ctx: Context) -> int:
    """The printable notice is part of the month's edition: writing the month writes both,
    so the notice and the workbook always agree."""
    from clockd.reports.monthly import notice_path, write_monthly_report
    from clockd.workcal import YearMonth, last_complete_month

    settings = ctx.settings
    today = dt.datetime.now(settings.zone).date()
    month = (
        _parsed(YearMonth.parse, ctx.args.month, "--month")
        if ctx.args.month
        else last_complete_month(today)
    )
    _begun("--month", month.label, month.weeks()[0].start, today)
    outcome = write_monthly_report(settings, ctx.roster, ctx.ready_engine(), month)
    print(notice_path(settings, month))
    print(outcome.summary())
    return 0


def _begun(option: str, label: str, start: dt.date, today: dt.date) -> None:
    """A report of a period that has not begun could only charge every cadre: refused."""
    if start > today:
        raise InputError(f"{option}: {label} has not begun yet (it starts {start.isoformat()})")


def _parsed(parse: Callable[[str], _Period], text: str, option: str) -> _Period:
    """A report period from the command line; years beyond what a calendar computation can
    step past (9999 has no next year) are refused here, not deep in the report."""
    try:
        period = parse(text)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None
    if not MIN_REPORT_YEAR <= period.year <= MAX_REPORT_YEAR:
        raise InputError(
            f"{option}: {text} is out of range (years {MIN_REPORT_YEAR} to {MAX_REPORT_YEAR})"
        )
    return period


def cmd_import_usb(ctx: Context) -> int:
    from clockd.gcpause import gc_paused
    from clockd.ingest.usb import import_usb

    with gc_paused():
        result = import_usb(ctx.settings, ctx.ready_engine(), ctx.args.file, ctx.args.device)
    for bad in result.bad:
        print(f"clockd: {ctx.args.file}: {bad}", file=sys.stderr)
    summary = result.bad_summary()
    if summary is not None:
        print(f"clockd: {ctx.args.file}: {summary}", file=sys.stderr)
    print(result.line())
    return 1 if result.bad_count else 0


def cmd_leave_add(ctx: Context) -> int:
    from clockd import leave

    args = ctx.args
    entry = leave.add_leave(
        ctx.ready_engine(),
        ctx.roster,
        args.user_id,
        leave.parse_day(args.start, "FROM"),
        leave.parse_day(args.end, "TO"),
        kind=leave.parse_kind(args.kind),
        note=args.note,
        actor=args.by or leave.current_user(),
    )
    print(f"added leave #{entry.id}: {entry.describe()} ({entry.days} days)")
    return 0


def cmd_leave_list(ctx: Context) -> int:
    from clockd import leave
    from clockd.textui import render_table

    args = ctx.args
    entries = leave.list_leave(
        ctx.ready_engine(),
        args.user,
        leave.parse_day(args.start, "--from") if args.start else None,
        leave.parse_day(args.end, "--to") if args.end else None,
    )
    zone = ctx.settings.zone
    rows = [
        [
            entry.id,
            entry.user_id,
            entry.start.isoformat(),
            entry.end.isoformat(),
            entry.kind.label,
            entry.note,
            f"{entry.created_by} {_local_minute(entry.created_at, zone)}",
            (
                f"revoked by {entry.revoked_by} {_local_minute(entry.revoked_at, zone)}"
                if entry.revoked_at is not None
                else ""
            ),
        ]
        for entry in entries
    ]
    headers = ["id", "user", "from", "to", "kind", "note", "entered", "revoked"]
    print(render_table(headers, rows))
    return 0


def cmd_leave_import(ctx: Context) -> int:
    from clockd import leave

    result = leave.import_leave(
        ctx.ready_engine(), ctx.roster, ctx.args.file, ctx.args.by or leave.current_user()
    )
    print(
        f"imported {len(result.added)} leave entries from {ctx.args.file}"
        f" ({result.already_recorded} already recorded)"
    )
    return 0


def cmd_leave_revoke(ctx: Context) -> int:
    from clockd import leave

    entry = leave.revoke_leave(ctx.ready_engine(), ctx.args.id, ctx.args.by or leave.current_user())
    print(f"revoked leave #{entry.id}: {entry.describe()}")
    return 0


def cmd_notify_test(ctx: Context) -> int:
    from clockd.notify import send_test

    settings = ctx.settings
    if not settings.notify.channels:
        raise UserError(
            f"{ctx.config_file}: no notify channels configured (see the notify: example in "
            "devices.yaml and docs/alerts.md)"
        )
    results = send_test(settings)
    for result in results:
        print(f"{result.channel}: {'ok' if result.ok else 'FAILED'} ({result.detail})", flush=True)
    return 0 if all(result.ok for result in results) else 1


# --- console: accounts, tokens, quarantine, work results, serve --------------------------------


def _read_password() -> str:
    """CLOCKD_PASSWORD, else a line of standard input (asked twice on a terminal)."""
    import getpass

    from_env = os.environ.get("CLOCKD_PASSWORD")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UserError("the two passwords differ")
        return first
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UserError("give the password on standard input or in CLOCKD_PASSWORD")
    return line


def cmd_user_add(ctx: Context) -> int:
    from clockd.web.auth import add_user

    args = ctx.args
    engine = ctx.ready_engine()
    roster = {cadre.user_id for cadre in ctx.roster} if args.role == "cadre" else set()
    account = add_user(
        engine,
        args.name,
        args.role,
        _read_password(),
        args.user_id,
        roster,
        _actor(args),
    )
    linked = f" for cadre {account.cadre_id}" if account.cadre_id else ""
    print(f"added {account.role} user {account.username}{linked}")
    return 0


def cmd_user_list(ctx: Context) -> int:
    from clockd.store.console import list_accounts
    from clockd.textui import render_table

    zone = ctx.settings.zone
    rows = [
        [
            account.username,
            account.role,
            account.cadre_id or "",
            _local_minute(account.created_at, zone),
            (
                f"disabled {_local_minute(account.disabled_at, zone)}"
                if account.disabled_at
                else "active"
            ),
        ]
        for account in list_accounts(ctx.ready_engine())
    ]
    print(render_table(["user", "role", "cadre", "created", "state"], rows))
    return 0


def cmd_user_disable(ctx: Context) -> int:
    from clockd.store.console import disable_account

    account = disable_account(ctx.ready_engine(), ctx.args.name, _actor(ctx.args))
    if account is None:
        raise UserError(f"no console user named {ctx.args.name}")
    print(f"disabled {account.username}; their sessions and API tokens no longer work")
    return 0


def cmd_token_create(ctx: Context) -> int:
    from clockd.web.auth import create_token

    token_id, token = create_token(ctx.ready_engine(), ctx.args.name, _actor(ctx.args))
    print(f"token #{token_id} for {ctx.args.name} (shown once; keep it secret):", file=sys.stderr)
    print(token)
    return 0


def cmd_token_revoke(ctx: Context) -> int:
    from clockd.store.console import revoke_token

    if not revoke_token(ctx.ready_engine(), ctx.args.id, _actor(ctx.args)):
        raise UserError(f"no live token #{ctx.args.id}")
    print(f"revoked token #{ctx.args.id}")
    return 0


def cmd_quarantine_list(ctx: Context) -> int:
    from clockd.store.console import list_quarantine
    from clockd.textui import render_table

    zone = ctx.settings.zone
    rows = [
        [
            entry.id,
            entry.terminal_id or entry.serial,
            entry.user_id or "",
            f"{entry.punched_at:%Y-%m-%d %H:%M:%S}" if entry.punched_at else "(undecoded)",
            entry.reason,
            (
                f"{entry.decision} by {entry.decided_by} "
                f"{_local_minute(entry.decided_at, zone)}: {entry.decision_note}"
                if entry.decision and entry.decided_at
                else "undecided"
            ),
        ]
        for entry in list_quarantine(ctx.ready_engine(), undecided_only=not ctx.args.all)
    ]
    print(render_table(["id", "terminal", "user", "punched", "reason", "decision"], rows))
    return 0


def _decide_quarantine(ctx: Context, decision: str) -> int:
    from clockd.store.console import decide_quarantine

    reason = ctx.args.reason.strip()
    if not reason:
        raise UserError("--reason: say why")
    problem = decide_quarantine(
        ctx.ready_engine(),
        ctx.args.id,
        decision,
        _actor(ctx.args),
        reason,
    )
    if problem is not None:
        raise UserError(str(problem))
    print(f"quarantine entry #{ctx.args.id}: {decision}d")
    return 0


def cmd_quarantine_release(ctx: Context) -> int:
    return _decide_quarantine(ctx, "release")


def cmd_quarantine_reject(ctx: Context) -> int:
    return _decide_quarantine(ctx, "reject")


def cmd_worklog_import(ctx: Context) -> int:
    from clockd.store.worklog import import_results

    results = import_results(
        ctx.ready_engine(),
        {cadre.user_id for cadre in ctx.roster},
        {terminal.village for terminal in ctx.settings.terminals},
        ctx.args.file,
        _actor(ctx.args),
    )
    print(f"imported {len(results)} work results from {ctx.args.file}")
    return 0


def cmd_worklog_list(ctx: Context) -> int:
    from clockd.leave import parse_day
    from clockd.store.worklog import results_between
    from clockd.textui import render_table
    from clockd.workcal import IsoWeek

    args = ctx.args
    if args.start or args.end:
        start = parse_day(args.start, "--from") if args.start else dt.date.min
        end = parse_day(args.end, "--to") if args.end else dt.date.max
    else:
        week = IsoWeek.containing(dt.datetime.now(ctx.settings.zone).date())
        start, end = week.start, week.end
    rows = [
        [r.user_id, r.day.isoformat(), r.village, r.text, r.entered_by]
        for r in results_between(ctx.ready_engine(), start, end, args.user)
    ]
    print(render_table(["user", "date", "village", "result", "entered by"], rows))
    return 0


def cmd_serve(ctx: Context) -> int:
    """The web console on `web.listen` and the ADMS push receiver on `push.listen`, in one
    process. The push receiver runs when a terminal pushes or `push:` is set; the console
    unless the configuration is push-only (push terminals and no `web:` section)."""
    from clockd.config import split_listen
    from clockd.notify import Notifier
    from clockd.store import db
    from clockd.web.serve import run_servers

    settings = ctx.settings
    engine = ctx.ready_engine()
    # Alerts raised here (an unknown push terminal) are sent from here too, not only by a
    # `clockd run` sharing the database: the outbox lets exactly one sender deliver each.
    notifier = Notifier(settings, engine, f"serve:{db.process_name()}")
    configured = settings.model_fields_set
    push = "push" in configured or any(not t.polled for t in settings.terminals)
    console = "web" in configured or not push
    apps: list[tuple[Any, str, int]] = []
    listening = []
    if console:
        from clockd.web.app import create_app

        apps.append(
            (create_app(settings, engine, cadres=ctx.roster), *split_listen(settings.web.listen))
        )
        listening.append(f"console on {settings.web.listen}")
    if push:
        from clockd.ingest.push import PushReceiver
        from clockd.web.push_app import build_push_app

        receiver = PushReceiver(settings, engine, on_alert=notifier.dispatcher.wake)
        app = build_push_app(settings, engine, receiver)
        apps.append((app, *split_listen(settings.push.listen)))
        listening.append(f"push receiver (ADMS) on {settings.push.listen}")
    log.info("clockd serve: %s", "; ".join(listening))
    notifier.start()
    try:
        run_servers(apps, on_ready=lambda: print("ready", flush=True))
    except OSError as exc:
        raise UserError(str(exc)) from None
    finally:
        notifier.stop()
    return 0


# --- parsing ----------------------------------------------------------------------------------

Command = Callable[[Context], int]


class _HasYear(Protocol):
    @property
    def year(self) -> int: ...


_Period = TypeVar("_Period", bound=_HasYear)
MIN_REPORT_YEAR, MAX_REPORT_YEAR = 1970, 9998


def cmd_verify(ctx: Context) -> int:
    from clockd import ledger

    engine = ctx.ready_engine()
    if ctx.args.report is not None:
        result = ledger.verify_report(engine, ctx.args.report)
    else:
        result = ledger.verify_all(engine)
    names = {t.serial: f"{t.id} {t.village}" for t in ctx.settings.terminals}
    for problem in result.problems:
        print(problem.line(names))
    print(result.summary())
    return 0 if result.ok else 1


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are suppressed so they do not overwrite values given before
    # the subcommand name (`clockd --config x.yaml poll` and `clockd poll --config x.yaml`).
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="PATH",
        help="devices.yaml to use (default: $CLOCKD_CONFIG, else ./devices.yaml)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="more log output (repeat for debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clockd",
        description="Collect fingerprint time-clock punches and write village-attendance reports.",
    )
    parser.add_argument("--version", action="version", version=f"clockd {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    add(
        "init",
        cmd_init,
        "create or migrate the database; write a sample devices.yaml and roster if absent",
    )
    poll = add("poll", cmd_poll, "poll terminals once and store new punches; one line per terminal")
    poll.add_argument(
        "--device", metavar="ID", help="poll only this terminal (its id in devices.yaml)"
    )
    add(
        "devices",
        cmd_devices,
        "show every terminal's village, serial, last good poll, records, drift and last error",
    )
    run = add(
        "run",
        cmd_run,
        "the daemon: poll on the interval, write the weekly and monthly reports on schedule, "
        "catch up on missed ones; stops cleanly on SIGTERM",
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="one poll cycle plus every due or missed report, then exit (for cron)",
    )
    run.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    add(
        "serve",
        cmd_serve,
        "the web console and JSON API (web.listen) and the ADMS push receiver (push.listen); "
        "prints ready once listening, runs until SIGTERM",
    )
    demo = add(
        "demo",
        cmd_demo,
        "from nothing to reports: an emulated town of 16 terminals, polled into SQLite, "
        "then the weekly and monthly reports",
    )
    demo.add_argument(
        "--dir",
        type=Path,
        metavar="PATH",
        help="folder for the demo (default: a new temporary one); an earlier demo there is"
        " replaced, other files are never touched",
    )
    demo.add_argument("--seed", type=int, default=2015, metavar="N", help="random seed (2015)")
    simulate = add(
        "simulate",
        cmd_simulate,
        "serve the configured loopback terminals as emulated ZKTeco terminals until SIGTERM",
    )
    simulate.add_argument(
        "--punches", type=Path, metavar="CSV", help="punches to hold (device,user_id,timestamp)"
    )
    simulate.add_argument(
        "--weeks", type=_positive, default=4, metavar="N", help="weeks of synthetic punches (4)"
    )
    simulate.add_argument("--seed", type=int, default=1, metavar="N", help="random seed (1)")

    report = _group(
        commands, "report", "write the weekly summary, the monthly report or the printable notice"
    )
    weekly = _subcommand(
        report,
        "weekly",
        cmd_report_weekly,
        "write reports/weekly/<YYYY>-W<ww>.xlsx (default: the last complete week)",
    )
    weekly.add_argument("--week", metavar="YYYY-Www", help="the ISO week, e.g. 2026-W47")
    monthly = _subcommand(
        report,
        "monthly",
        cmd_report_monthly,
        "write reports/monthly/<YYYY>-<MM>.xlsx and its notice (default: the last complete month)",
    )
    monthly.add_argument("--month", metavar="YYYY-MM", help="the month, e.g. 2026-11")
    notice = _subcommand(
        report,
        "notice",
        cmd_report_notice,
        "write the printable notice reports/monthly/<YYYY>-<MM>-通报.docx, with the month's "
        "workbook (default: the last complete month)",
    )
    notice.add_argument("--month", metavar="YYYY-MM", help="the month, e.g. 2026-11")

    usb = add(
        "import-usb", cmd_import_usb, "store a terminal's USB attendance export (*_attlog.dat)"
    )
    usb.add_argument("file", type=Path, metavar="FILE", help="the exported attlog file")
    usb.add_argument(
        "--device",
        required=True,
        metavar="ID",
        help="the terminal it came from (id in devices.yaml)",
    )

    verify = add(
        "verify",
        cmd_verify,
        "check the tamper-evident ledger: every punch chain and audit chain; exit 1 naming "
        "each row changed, inserted or deleted behind clockd's back",
    )
    verify.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="also check that the chain heads printed in this report workbook are still on "
        "the chains (history was not rewritten after it was published)",
    )

    leave = _group(commands, "leave", "manage approved leave and business trips")
    leave_add = _subcommand(leave, "add", cmd_leave_add, "record approved leave for a cadre")
    leave_add.add_argument("user_id", metavar="USER_ID", help="the cadre's 工号")
    leave_add.add_argument("start", metavar="FROM", help="first day, YYYY-MM-DD")
    leave_add.add_argument("end", metavar="TO", help="last day (inclusive), YYYY-MM-DD")
    leave_add.add_argument(
        "--kind", default="leave", help="leave|business_trip|other (请假|出差|其他); default leave"
    )
    leave_add.add_argument("--note", default="", metavar="TEXT", help="a remark")
    _by(leave_add)
    leave_list = _subcommand(leave, "list", cmd_leave_list, "list leave entries, revoked ones too")
    leave_list.add_argument("--user", metavar="ID", help="only this cadre")
    leave_list.add_argument("--from", dest="start", metavar="D", help="touching this day or later")
    leave_list.add_argument("--to", dest="end", metavar="D", help="touching this day or earlier")
    leave_import = _subcommand(
        leave,
        "import",
        cmd_leave_import,
        "import a CSV, xlsx or YAML sheet (user_id, from, to, kind, note); all rows or none",
    )
    leave_import.add_argument("file", type=Path, metavar="FILE")
    _by(leave_import)
    leave_revoke = _subcommand(leave, "revoke", cmd_leave_revoke, "withdraw a leave entry")
    leave_revoke.add_argument("id", type=int, metavar="ID", help="the entry's id (leave list)")
    _by(leave_revoke)
    notify = _group(commands, "notify", "alerts and reminders (WeCom, DingTalk, email)")
    _subcommand(
        notify,
        "test",
        cmd_notify_test,
        "send a test message on every configured channel and report each result",
    )

    user = _group(commands, "user", "console accounts (admin, hr, leader, cadre)")
    user_add = _subcommand(
        user, "add", cmd_user_add, "add an account; password from stdin or CLOCKD_PASSWORD"
    )
    user_add.add_argument("name", metavar="NAME", help="the login name")
    user_add.add_argument("--role", required=True, choices=["admin", "hr", "leader", "cadre"])
    user_add.add_argument("--user-id", metavar="PIN", help="a cadre's roster user ID (工号)")
    _by(user_add)
    _subcommand(user, "list", cmd_user_list, "list accounts")
    user_disable = _subcommand(
        user, "disable", cmd_user_disable, "disable an account; its sessions and tokens end"
    )
    user_disable.add_argument("name", metavar="NAME")
    _by(user_disable)

    token = _group(commands, "token", "API tokens for scripts (Authorization: Bearer ...)")
    token_create = _subcommand(
        token, "create", cmd_token_create, "create a token acting as account NAME; printed once"
    )
    token_create.add_argument("name", metavar="NAME", help="the console account it acts as")
    _by(token_create)
    token_revoke = _subcommand(token, "revoke", cmd_token_revoke, "revoke a token")
    token_revoke.add_argument("id", type=int, metavar="ID")
    _by(token_revoke)

    quarantine = _group(commands, "quarantine", "decide on quarantined punches (audited)")
    quarantine_list = _subcommand(
        quarantine, "list", cmd_quarantine_list, "list undecided quarantined punches"
    )
    quarantine_list.add_argument("--all", action="store_true", help="decided ones too")
    for name, handler, help_text in (
        ("release", cmd_quarantine_release, "count the punch from the next report edition on"),
        ("reject", cmd_quarantine_reject, "keep the punch out of every report"),
    ):
        decide = _subcommand(quarantine, name, handler, help_text)
        decide.add_argument("id", type=int, metavar="ID")
        decide.add_argument("--reason", required=True, metavar="TEXT")
        _by(decide)

    worklog = _group(commands, "worklog", "work results (工作清单) of valid village days")
    worklog_import = _subcommand(
        worklog,
        "import",
        cmd_worklog_import,
        "import a CSV, xlsx or YAML sheet (user_id, date, village, result); all rows or none",
    )
    worklog_import.add_argument("file", type=Path, metavar="FILE")
    _by(worklog_import)
    worklog_list = _subcommand(
        worklog, "list", cmd_worklog_list, "list work results (default: this week)"
    )
    worklog_list.add_argument("--user", metavar="ID", help="only this cadre")
    worklog_list.add_argument("--from", dest="start", metavar="D")
    worklog_list.add_argument("--to", dest="end", metavar="D")
    return parser


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _group(commands: Subcommands, name: str, help_text: str) -> Subcommands:
    """A command that only groups subcommands (`clockd report weekly`)."""
    parser = commands.add_parser(name, help=help_text, description=help_text)
    _common(parser, top=False)
    return parser.add_subparsers(dest=name, metavar="COMMAND", required=True)


def _subcommand(
    group: Subcommands, name: str, handler: Command, help_text: str
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text, description=help_text)
    _common(parser, top=False)
    parser.set_defaults(handler=handler)
    return parser


def _actor(args: argparse.Namespace) -> str:
    """Who a change is by: `--by` (checked), else the OS user."""
    from clockd.leave import check_actor, current_user

    return check_actor(args.by or current_user())


def _local_minute(moment: dt.datetime, zone: dt.tzinfo) -> str:
    """A stored UTC time as the listings show it: local, to the minute."""
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def _by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--by", metavar="NAME", help="who makes the change (default: the logged-in user)"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    # clockd does no linear algebra; OpenBLAS would start a thread per core when numpy is
    # first imported, which costs more than the rest of numpy's import (docs/performance.md).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # clockd uses no pydantic plugins; looking for them reads every installed package's entry
    # points (importlib.metadata), a tenth of `clockd devices`.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    parser = build_parser()
    args = parser.parse_args(argv)
    from clockd.logs import setup_logging

    setup_logging(
        args.verbose,
        json_lines=getattr(args, "log_json", False),
        default=logging.INFO if args.command in ("run", "serve") else logging.WARNING,
    )
    ctx = Context(args)
    try:
        result: int = args.handler(ctx)
        return result
    except ConfigError as exc:
        for line in exc.lines():
            print(f"clockd: {line}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"clockd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clockd: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a folder gone: the system's own words, one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"clockd: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
