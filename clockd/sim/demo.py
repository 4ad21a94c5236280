"""`clockd demo`: from nothing to real reports in one command.

It writes a working configuration into a folder (the packaged Guanbuqiao sample, pointed at
free loopback ports and an SQLite file there), starts the emulated town (docs/rules.md) on those
ports with weeks of punches, and then does exactly what an operator's installation does:
`init`, a poll of every terminal over the ZKTeco protocol, the push receiver of `clockd serve`
taking the log of one 4G village's terminal that pushes (ADMS), and the weekly and monthly
reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import yaml
from sqlalchemy import Engine, func, select

from clockd.config import Settings, load_settings, read_yaml, split_listen
from clockd.errors import UserError
from clockd.ingest.poll import PollOutcome, poll_cycle
from clockd.ingest.push import PushReceiver
from clockd.reports.monthly import write_monthly_report
from clockd.reports.revisions import ReportOutcome
from clockd.reports.weekly import write_weekly_report
from clockd.roster import load_roster
from clockd.sim.push_device import PushDevice
from clockd.sim.simulate import build_town
from clockd.sim.town import TownTerminal, generate_punches
from clockd.store import db
from clockd.store.cadres import sync_cadres
from clockd.store.models import PunchRow
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


PUSH_TERMINAL = {
    "id": "t17",
    "village": "港口村",
    "address": "港口村渔业码头服务点 (4G 路由器, ADMS 推送)",
    "serial": "CQZ7231060017",
}


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    outcomes: list[PollOutcome]
    weekly: ReportOutcome
    monthly: ReportOutcome
    pushed: dict[str, int] = field(default_factory=dict)  # terminal id -> punches stored


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
    # The polled terminals' ports and the push listener's, all distinct.
    *ports, push_port = _free_ports(
        [terminal.get("transport", "tcp") for terminal in data["terminals"]] + ["tcp"]
    )
    for terminal, port in zip(data["terminals"], ports, strict=True):
        terminal["port"] = port
        terminal["installed"] = first_day.isoformat()
    # One 4G village whose terminal pushes (ADMS) instead of being polled.
    data["terminals"].append(
        {
            "id": PUSH_TERMINAL["id"],
            "village": PUSH_TERMINAL["village"],
            "address": PUSH_TERMINAL["address"],
            "transport": "push",
            "serial": PUSH_TERMINAL["serial"],
            "installed": first_day.isoformat(),
        }
    )
    data["push"] = {"listen": f"127.0.0.1:{push_port}"}
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
        say(f"  polling [{done:2d}/{len(polled)}] {outcome.terminal_id} {outcome.village}: {state}")

    polled = [t for t in settings.terminals if t.polled]
    with town.server:
        say(f"polling {len(polled)} terminals over the ZKTeco protocol (TCP and UDP)")
        outcomes = poll_cycle(settings, engine, on_outcome=progress, environ={})
    pushed = receive_pushes(settings, engine, town.push_devices, say)
    say(f"writing the weekly report for {last_week.label} ...")
    weekly = write_weekly_report(settings, cadres, engine, last_week)
    say(f"writing the monthly notice for {last_month.label} ...")
    monthly = write_monthly_report(settings, cadres, engine, last_month)
    engine.dispose()
    return DemoResult(folder, outcomes, weekly, monthly, pushed)


def receive_pushes(
    settings: Settings,
    engine: Engine,
    devices: Mapping[str, PushDevice],
    say: Callable[[str], None],
) -> dict[str, int]:
    """Run the push receiver of `clockd serve` while the push terminals upload their logs
    over HTTP as real ADMS terminals do; returns the punches stored per terminal."""
    if not devices:
        return {}
    from clockd.web.push_app import build_push_app
    from clockd.web.serve import serving_in_thread

    host, port = split_listen(settings.push.listen)
    say(f"receiving {len(devices)} push terminal(s) over ADMS (HTTP) on {settings.push.listen}")
    receiver = PushReceiver(settings, engine)
    stored: dict[str, int] = {}

    async def upload(device: PushDevice) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await device.handshake(client)
            await device.upload_all(client)
            await device.heartbeat(client)

    with serving_in_thread(build_push_app(settings, engine, receiver), host, port):
        for terminal_id, device in devices.items():
            before = _stored(engine, device.serial)
            asyncio.run(upload(device))
            stored[terminal_id] = _stored(engine, device.serial) - before
            terminal = settings.terminal(terminal_id)
            say(
                f"  push {terminal_id} {terminal.village}: {stored[terminal_id]} new punches "
                f"in {device.uploaded_batches} batches"
            )
    return stored


def _stored(engine: Engine, serial: str) -> int:
    with engine.connect() as connection:
        count = connection.scalar(
            select(func.count()).select_from(PunchRow).where(PunchRow.serial == serial)
        )
    return int(count or 0)


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
    pushed = (
        f"{len(result.pushed)} terminal(s) pushed {sum(result.pushed.values())} punches\n"
        if result.pushed
        else ""
    )
    return (
        f"\n{reached}/{len(result.outcomes)} terminals polled into "
        f"{result.folder / 'clockd.sqlite3'}\n"
        f"{pushed}"
        f"weekly report:  {result.weekly.path}\n"
        f"monthly notice: {result.monthly.path}\n\n{table}\n"
    )
