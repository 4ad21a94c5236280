"""`clockd demo`: from nothing to real reports in one command.

It writes a working configuration into a folder (the packaged Guanbuqiao sample, pointed at
free loopback ports and an SQLite file there), starts the emulated town (docs/rules.md) on those
ports with weeks of punches, and then does exactly what an operator's installation does:
`init`, a poll of every terminal over the ZKTeco protocol, and the weekly and monthly reports.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from clockd.config import load_settings, read_yaml
from clockd.errors import UserError
from clockd.ingest.poll import PollOutcome, poll_cycle
from clockd.reports.monthly import write_monthly_report
from clockd.reports.revisions import ReportOutcome
from clockd.reports.weekly import write_weekly_report
from clockd.roster import load_roster
from clockd.sim.simulate import build_town
from clockd.sim.town import TownTerminal, generate_punches
from clockd.store import db
from clockd.store.cadres import sync_cadres
from clockd.textui import render_table
from clockd.workcal import IsoWeek, WorkCalendar, YearMonth

MARKER = "# Written by `clockd demo`"
HEADER = (
    MARKER
    + """: the packaged Guanbuqiao sample, with every terminal on a free
# loopback port (served by the demo's emulator only while the demo runs) and the database
# and reports in this folder. Inspect the results with, for example:
#   clockd --config {config} devices
#   clockd --config {config} report weekly
"""
)


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    outcomes: list[PollOutcome]
    weekly: ReportOutcome
    monthly: ReportOutcome


def demo_span(today: dt.date) -> tuple[IsoWeek, int, IsoWeek, YearMonth]:
    """(first week, number of weeks, last complete week, last complete month): enough weeks to
    cover the last complete month and the month before it (for month-on-month figures), up to
    the last complete week."""
    last_week = IsoWeek.containing(today).shift(-1)
    last_month = YearMonth.containing(today).shift(-1)
    first_week = last_month.shift(-1).weeks()[0]
    weeks = (last_week.start - first_week.start).days // 7 + 1
    return first_week, weeks, last_week, last_month


def prepare_folder(folder: Path) -> None:
    """An empty folder, or one holding an earlier demo (replaced); anything else is refused,
    so that the demo never deletes a user's files."""
    if not folder.exists() or not any(folder.iterdir()):
        return
    config = folder / "devices.yaml"
    if not config.is_file() or not config.read_text(encoding="utf-8").startswith(MARKER):
        raise UserError(f"{folder} is not empty and holds no earlier demo; choose another --dir")
    shutil.rmtree(folder)


def _free_ports(transports: list[str]) -> list[int]:
    """Ports nothing listens on now (held all at once, so no two are the same)."""
    held = []
    try:
        for transport in transports:
            kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
            probe = socket.socket(socket.AF_INET, kind)
            probe.bind(("127.0.0.1", 0))
            held.append(probe)
        return [int(probe.getsockname()[1]) for probe in held]
    finally:
        for probe in held:
            probe.close()


def write_demo_site(folder: Path, first_day: dt.date) -> Path:
    """devices.yaml and roster.csv for the demo in `folder`; returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    sample = resources.files("clockd").joinpath("data")
    data, _root = read_yaml(sample.joinpath("devices.yaml").read_text(encoding="utf-8"))
    ports = _free_ports([terminal.get("transport", "tcp") for terminal in data["terminals"]])
    for terminal, port in zip(data["terminals"], ports, strict=True):
        terminal["port"] = port
        terminal["installed"] = first_day.isoformat()
    data["database_url"] = f"sqlite:///{(folder / 'clockd.sqlite3').resolve()}"
    data["reports_dir"] = str((folder / "reports").resolve())
    data["roster"] = "roster.csv"
    config = folder / "devices.yaml"
    config.write_text(
        HEADER.format(config=config) + yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    (folder / "roster.csv").write_bytes(sample.joinpath("roster.csv").read_bytes())
    return config


def run_demo(
    folder: Path,
    seed: int,
    *,
    today: dt.date | None = None,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole demo in `folder`; `today` (the township's date) defaults to now."""
    if today is None:
        sample = resources.files("clockd").joinpath("data", "devices.yaml").read_text("utf-8")
        zone = ZoneInfo(read_yaml(sample)[0].get("timezone", "Asia/Shanghai"))
        today = dt.datetime.now(zone).date()
    first_week, weeks, last_week, last_month = demo_span(today)
    config = write_demo_site(folder, first_week.start)
    settings = load_settings(config, environ={})
    cadres = load_roster(settings.roster_path, {t.village for t in settings.terminals})
    terminals = [TownTerminal(t.id, t.village) for t in settings.terminals]
    calendar = WorkCalendar(settings.holiday_overrides())
    punches = generate_punches(cadres, terminals, first_week.start, weeks, seed, calendar)
    say(
        f"emulating {settings.township}: {len(settings.terminals)} village terminals, "
        f"{len(cadres)} cadres, {len(punches)} punches from {first_week.start} "
        f"to {last_week.end} ({weeks} weeks)"
    )
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    with db.write_transaction(engine) as connection:
        sync_cadres(connection, cadres)
    town = build_town(settings, cadres, punches)
    done = 0

    def progress(outcome: PollOutcome) -> None:
        nonlocal done
        done += 1
        state = f"{outcome.new} new punches" if outcome.ok else f"FAILED {outcome.error}"
        say(
            f"  polling [{done:2d}/{len(settings.terminals)}] {outcome.terminal_id} "
            f"{outcome.village}: {state}"
        )

    with town.server:
        say(f"polling {len(settings.terminals)} terminals over the ZKTeco protocol (TCP and UDP)")
        outcomes = poll_cycle(settings, engine, on_outcome=progress, environ={})
    say(f"writing the weekly report for {last_week.label} ...")
    weekly = write_weekly_report(settings, cadres, engine, last_week)
    say(f"writing the monthly notice for {last_month.label} ...")
    monthly = write_monthly_report(settings, cadres, engine, last_month)
    engine.dispose()
    return DemoResult(folder, outcomes, weekly, monthly)


def summary(result: DemoResult) -> str:
    """Where the reports are, and the headline figures HR and the party secretary look at."""

    def average(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [
        [
            f"{label} {report.period}",
            report.cadres,
            report.failed_weeks,
            report.deduction_total,
            average(report.average_days),
            report.status,
        ]
        for label, report in (("weekly", result.weekly), ("monthly", result.monthly))
    ]
    table = render_table(
        [
            "report",
            "cadres",
            "failed weeks",
            "deductions (yuan)",
            "avg village days/week",
            "status",
        ],
        rows,
    )
    reached = sum(outcome.ok for outcome in result.outcomes)
    return (
        f"\n{reached}/{len(result.outcomes)} terminals polled into "
        f"{result.folder / 'clockd.sqlite3'}\n"
        f"weekly report:  {result.weekly.path}\n"
        f"monthly notice: {result.monthly.path}\n\n{table}\n"
    )
