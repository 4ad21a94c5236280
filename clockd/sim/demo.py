"""`clockd demo`: from nothing to real reports in one command, telling the seed's story.

It writes a working configuration into a folder (the packaged Guanbuqiao sample, pointed at
free loopback ports and an SQLite file there), starts the emulated town (docs/reports.md, "The
demo") on those ports with last year's and this year's punches, and then does what an operator's
installation does: `init`, a poll of every terminal over the ZKTeco protocol, the push receiver
of `clockd serve` taking the log of one 4G village's terminal that pushes (ADMS), and the weekly
and monthly reports with the printable notice.

The town's year is the news report's: 47 cadres, about 3.7 village days per cadre-week, about
27 % more than the year before, six cadres notified and 1,200 yuan deducted so far this year.
The story also has a cadre on leave, one on a business trip, a stranger punching a village
terminal, and 湖山村's terminal offline when the demo first polls: the reports come out
provisional (临时), and are revised (更正) when the terminal answers again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import yaml
from sqlalchemy import Engine

from clockd import rules
from clockd.config import RuleSettings, Settings, load_settings, read_yaml, split_listen
from clockd.domain import Cadre, Leave, LeaveKind
from clockd.errors import UserError
from clockd.ingest.poll import PollOutcome, poll_cycle
from clockd.ingest.push import PushReceiver
from clockd.leave import add_leave
from clockd.ledger import printable
from clockd.reports.monthly import write_monthly_report
from clockd.reports.revisions import ReportOutcome
from clockd.reports.weekly import write_weekly_report
from clockd.roster import load_roster
from clockd.sim.push_device import PushDevice
from clockd.sim.simulate import build_town
from clockd.sim.town import TOWN, YEAR_BEFORE, TownPunch, TownTerminal, generate_punches
from clockd.store import db
from clockd.store.cadres import sync_cadres
from clockd.store.periods import load_leave, load_punches
from clockd.store.punches import count_stored
from clockd.textui import render_table
from clockd.workcal import IsoWeek, WorkCalendar, YearMonth, weeks_between

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
OFFLINE_TERMINAL = "t07"  # 湖山村: its 4G link is down when the demo first polls
ACTOR = "clockd demo"
# The story's cadres (user IDs of the packaged roster).
SHORT_THIS_WEEK = "1008"  # one valid day of two in the last week, and a morning-only day
# On leave Monday to Wednesday of the last week: the first of these whose visits on the other
# days still meet the (reduced) requirement, so the leave reads as the reason, not a failure.
ON_LEAVE = ("1005", "1009", "1016", "1019", "1023", "1029")
ON_TRIP = "1013"  # on a business trip for a week of the last month
STRANGER = "2046"  # a PIN enrolled on 桥东村's terminal but in no roster (a village clerk)
NOTIFIED = ("1008", "1017", "1025", "1031", "1040", "1044")  # six cadres, two weeks each
# The news report's figures (docs/reports.md, "The demo"): what `make demo` compares with.
ARTICLE = {
    "cadres": 47,
    "average": 3.7,
    "change": 0.27,
    "notified": 6,
    "deduction": 1200,
}


@dataclass(frozen=True)
class StoryFigures:
    """The demo's own figures for the news report's, for the year of the last month."""

    cadres: int
    average: float | None  # valid village days per cadre-week, January to the last month
    last_year_average: float | None  # the same weeks a year earlier
    notified: int  # cadres with a failed week, January to the last month
    deduction: int

    @property
    def change(self) -> float | None:
        if self.average is None or not self.last_year_average:
            return None
        return (self.average - self.last_year_average) / self.last_year_average


PUSH_TERMINAL = "t16"  # 柳塘村: on a 4G router, so its terminal pushes (ADMS) to clockd serve


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    outcomes: list[PollOutcome]  # the latest poll of every terminal
    provisional: list[ReportOutcome]  # the reports written while a terminal was offline
    weekly: ReportOutcome
    monthly: ReportOutcome
    story: StoryFigures
    pushed: dict[str, int] = field(default_factory=dict)  # terminal id -> punches stored


def demo_span(today: dt.date) -> tuple[IsoWeek, int, IsoWeek, YearMonth]:
    """(first week, number of weeks, last complete week, last complete month): last year and
    this year (the year of the last complete month), up to the last complete week."""
    last_week = IsoWeek.containing(today).shift(-1)
    last_month = YearMonth.containing(today).shift(-1)
    first_week = YearMonth(last_month.year - 1, 1).weeks()[0]
    weeks = (last_week.start - first_week.start).days // 7 + 1
    return first_week, weeks, last_week, last_month


# What a demo writes into its folder; a demo run again removes these and nothing else.
DEMO_ENTRIES = frozenset(
    {
        "devices.yaml",
        "roster.csv",
        "reports",
        "clockd.sqlite3",
        "clockd.sqlite3-wal",
        "clockd.sqlite3-shm",
        "clockd.sqlite3-journal",
    }
)


def prepare_folder(folder: Path) -> None:
    """An empty folder, or one holding an earlier demo (its files replaced); anything else is
    refused, so that the demo never deletes a user's files."""
    if not folder.exists() or not any(folder.iterdir()):
        return
    config = folder / "devices.yaml"
    if not config.is_file() or not config.read_text(encoding="utf-8").startswith(MARKER):
        raise UserError(f"{folder} is not empty and holds no earlier demo; choose another --dir")
    others = sorted(entry.name for entry in folder.iterdir() if entry.name not in DEMO_ENTRIES)
    if others:
        listed = ", ".join(printable(name) for name in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        raise UserError(
            f"{folder} holds an earlier demo and files it did not write ({listed}{more});"
            " move them or choose another --dir"
        )
    for name in DEMO_ENTRIES:
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()


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
    # One 4G village's terminal pushes (ADMS) instead of being polled: no host, no port.
    for terminal in data["terminals"]:
        if terminal["id"] == PUSH_TERMINAL:
            for key in ("host", "port", "encoding"):
                terminal.pop(key, None)
            terminal["transport"] = "push"
            terminal["address"] = f"{terminal['village']}村委会 (4G 路由器, ADMS 推送)"
    # The polled terminals' ports and the push listener's, all distinct.
    polled = [t for t in data["terminals"] if t.get("transport") != "push"]
    *ports, push_port = _free_ports([t.get("transport", "tcp") for t in polled] + ["tcp"])
    for terminal, port in zip(polled, ports, strict=True):
        terminal["port"] = port
    for terminal in data["terminals"]:
        terminal["installed"] = first_day.isoformat()
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
    calendar = WorkCalendar(settings.holiday_overrides())
    punches = story_punches(settings, cadres, first_week, weeks, last_month, seed)
    leave = story_leave(punches, last_week, last_month, calendar)
    punches = without_days(punches, _leave_days(leave))
    punches = with_shortfalls(
        punches, cadres, calendar, shortfall_weeks(last_week, last_month, calendar, seed)
    )
    tuesday = last_week.start + dt.timedelta(days=1)
    punches.append(TownPunch("t02", STRANGER, dt.datetime.combine(tuesday, dt.time(8, 47, 12))))
    say(
        f"emulating {settings.township}: {len(settings.terminals)} village terminals, "
        f"{len(cadres)} cadres, {len(punches)} punches from {first_week.start} "
        f"to {last_week.end} ({weeks} weeks)"
    )
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    with db.write_transaction(engine) as connection:
        sync_cadres(connection, cadres)
    for entry in leave:
        add_leave(
            engine,
            cadres,
            entry.user_id,
            entry.start,
            entry.end,
            kind=entry.kind,
            note=entry.note,
            actor=ACTOR,
        )
        say(f"  approved {entry.kind.label} for {entry.user_id}: {entry.start} to {entry.end}")
    done = 0

    polled = sum(terminal.polled for terminal in settings.terminals)

    def progress(outcome: PollOutcome) -> None:
        nonlocal done
        done += 1
        state = f"{outcome.new} new punches" if outcome.ok else f"FAILED {outcome.error}"
        say(f"  polling [{done:2d}/{polled}] {outcome.terminal_id} {outcome.village}: {state}")

    reachable = [t for t in settings.terminals if t.id != OFFLINE_TERMINAL]
    offline = [t for t in settings.terminals if t.id == OFFLINE_TERMINAL]
    served = [p for p in punches if p.terminal_id != OFFLINE_TERMINAL]
    town = build_town(settings.model_copy(update={"terminals": reachable}), cadres, served)
    # The offline terminal refuses at once: the demo does not sit through the retries.
    impatient = settings.model_copy(
        update={"poll": settings.poll.model_copy(update={"retries": 0})}
    )
    with town.server:
        say(f"polling {polled} terminals over the ZKTeco protocol (TCP and UDP)")
        outcomes = poll_cycle(impatient, engine, on_outcome=progress, environ={})
    pushed = receive_pushes(settings, engine, town.push_devices, say)
    provisional = _write_reports(settings, cadres, engine, last_week, last_month, say)
    done = polled - 1
    held = [p for p in punches if p.terminal_id == OFFLINE_TERMINAL]
    town = build_town(settings.model_copy(update={"terminals": offline}), cadres, held)
    with town.server:
        say(f"{offline[0].village}'s terminal is back online: polling it again")
        again = poll_cycle(settings, engine, offline, on_outcome=progress, environ={})
    outcomes = [o for o in outcomes if o.terminal_id != OFFLINE_TERMINAL] + again
    weekly, monthly = _write_reports(settings, cadres, engine, last_week, last_month, say)
    story = story_figures(settings, cadres, engine, last_month, calendar)
    engine.dispose()
    return DemoResult(folder, outcomes, provisional, weekly, monthly, story, pushed)


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
        return count_stored(connection, serial)


def _write_reports(
    settings: Settings,
    cadres: Sequence[Cadre],
    engine: Engine,
    week: IsoWeek,
    month: YearMonth,
    say: Callable[[str], None],
) -> list[ReportOutcome]:
    say(f"writing the weekly report for {week.label} ...")
    weekly = write_weekly_report(settings, cadres, engine, week)
    say(f"writing the monthly report and notice for {month.label} ...")
    monthly = write_monthly_report(settings, cadres, engine, month)
    for outcome in (weekly, monthly):
        say(f"  {outcome.summary()}")
    return [weekly, monthly]


def story_punches(
    settings: Settings,
    cadres: Sequence[Cadre],
    first_week: IsoWeek,
    weeks: int,
    last_month: YearMonth,
    seed: int,
) -> list[TownPunch]:
    """Last year at the year-before pace, this year at the town's, without random shortfalls
    (the story places its own)."""
    terminals = [TownTerminal(t.id, t.village) for t in settings.terminals]
    calendar = WorkCalendar(settings.holiday_overrides())
    this_year = YearMonth(last_month.year, 1).weeks()[0]
    before = (this_year.start - first_week.start).days // 7
    diligent = replace(TOWN, shortfall_cadre_share=0.0, shortfall_week_rate=0.0)
    return [
        *generate_punches(cadres, terminals, first_week.start, before, seed, calendar, YEAR_BEFORE),
        *generate_punches(
            cadres, terminals, this_year.start, weeks - before, seed + 1, calendar, diligent
        ),
    ]


def story_leave(
    punches: Sequence[TownPunch],
    last_week: IsoWeek,
    last_month: YearMonth,
    calendar: WorkCalendar,
) -> list[Leave]:
    """A cadre on leave early in the last week, another on a business trip in the last month."""
    leave_end = last_week.start + dt.timedelta(days=2)
    halves: dict[tuple[str, dt.date], set[bool]] = {}
    for punch in punches:
        day = punch.timestamp.date()
        if leave_end < day <= last_week.end:
            halves.setdefault((punch.user_id, day), set()).add(punch.timestamp.hour < 12)
    valid_after = {
        user_id: sum(1 for (uid, _), seen in halves.items() if uid == user_id and len(seen) == 2)
        for user_id in ON_LEAVE
    }
    on_leave = next((uid for uid in ON_LEAVE if valid_after[uid] >= 2), ON_LEAVE[0])
    trip_week = next(
        (w for w in reversed(last_month.weeks()) if len(calendar.workdays(w.start, w.end)) == 5),
        last_month.weeks()[-1],
    )
    return [
        Leave(
            on_leave,
            last_week.start,
            leave_end,
            LeaveKind.LEAVE,
            "家中老人住院",
        ),
        Leave(
            ON_TRIP,
            trip_week.start,
            trip_week.start + dt.timedelta(days=4),
            LeaveKind.BUSINESS_TRIP,
            "赴区委党校参加乡村振兴培训",
        ),
    ]


def _leave_days(leave: Sequence[Leave]) -> set[tuple[str, dt.date]]:
    days = set()
    for entry in leave:
        day = entry.start
        while day <= entry.end:
            days.add((entry.user_id, day))
            day += dt.timedelta(days=1)
    return days


def without_days(punches: Sequence[TownPunch], days: set[tuple[str, dt.date]]) -> list[TownPunch]:
    """The punches except those of the given (user ID, day)s."""
    return [p for p in punches if (p.user_id, p.timestamp.date()) not in days]


def shortfall_weeks(
    last_week: IsoWeek, last_month: YearMonth, calendar: WorkCalendar, seed: int
) -> list[tuple[str, IsoWeek]]:
    """The year's failed weeks: two for each of six cadres, one of them in the last month (so
    its notice names them), and the last week for one of them, which also shows in the weekly
    summary. Weeks without five working days are avoided, so the failures read plainly."""
    rng = np.random.default_rng(seed)
    year_weeks = [
        week
        for week in weeks_between(YearMonth(last_month.year, 1).weeks()[0], last_month.weeks()[-1])
        if len(calendar.workdays(week.start, week.end)) == 5
    ]
    month_weeks = [week for week in year_weeks if week.month == last_month]
    chosen: list[tuple[str, IsoWeek]] = [(SHORT_THIS_WEEK, last_week)]
    in_scope = last_week.month <= last_month
    for index, user_id in enumerate(NOTIFIED):
        count = 2 - (user_id == SHORT_THIS_WEEK and in_scope)
        pool = month_weeks if index < 2 and month_weeks else year_weeks
        first = pool[int(rng.integers(len(pool)))]
        picks = [first]
        while len(picks) < count:
            other = year_weeks[int(rng.integers(len(year_weeks)))]
            if other not in picks and other != last_week:
                picks.append(other)
        chosen.extend((user_id, week) for week in picks[:count])
    return chosen


def with_shortfalls(
    punches: Sequence[TownPunch],
    cadres: Sequence[Cadre],
    calendar: WorkCalendar,
    shortfalls: Sequence[tuple[str, IsoWeek]],
) -> list[TownPunch]:
    """Each (cadre, week) left one valid village day short of the requirement, with the
    afternoon of the first missing day dropped (so it shows as a morning-only day)."""
    base = RuleSettings().base_days
    roles = {cadre.user_id: cadre.role for cadre in cadres}
    drop_all: set[tuple[str, dt.date]] = set()
    drop_afternoon: set[tuple[str, dt.date]] = set()
    for user_id, week in shortfalls:
        required = min(base[roles[user_id]], len(calendar.workdays(week.start, week.end)))
        halves: dict[dt.date, set[bool]] = {}
        for punch in punches:
            day = punch.timestamp.date()
            if punch.user_id == user_id and week.start <= day <= week.end:
                halves.setdefault(day, set()).add(punch.timestamp.hour < 12)
        valid = sorted(day for day, seen in halves.items() if seen == {True, False})
        keep = max(required - 1, 0)
        missing = valid[keep:]
        if missing:
            drop_afternoon.add((user_id, missing[0]))
            drop_all.update((user_id, day) for day in missing[1:])
    return [
        p
        for p in punches
        if (p.user_id, p.timestamp.date()) not in drop_all
        and not ((p.user_id, p.timestamp.date()) in drop_afternoon and p.timestamp.hour >= 12)
    ]


def story_figures(
    settings: Settings,
    cadres: Sequence[Cadre],
    engine: Engine,
    month: YearMonth,
    calendar: WorkCalendar,
) -> StoryFigures:
    """The news report's figures from the stored punches: this year (January to `month`)
    and the same weeks of last year."""
    this_year = weeks_between(YearMonth(month.year, 1).weeks()[0], month.weeks()[-1])
    last_year = [
        week
        for week in weeks_between(
            YearMonth(month.year - 1, 1).weeks()[0], month.shift(-12).weeks()[-1]
        )
    ]
    with engine.connect() as connection:
        punches = load_punches(
            connection, last_year[0].start, this_year[-1].end, settings.terminals
        )
        leave = [
            record.leave
            for record in load_leave(connection, last_year[0].start, this_year[-1].end)
            if record.in_force()
        ]
    results = rules.assess_weeks(
        punches, cadres, leave, calendar, [*last_year, *this_year], settings.rules
    )
    labels = {week.label for week in this_year}
    now = results[results["week"].isin(labels)]
    before = results[~results["week"].isin(labels)]
    failed = now[~now["met"].astype(bool)]
    return StoryFigures(
        cadres=len(cadres),
        average=float(now["valid_days"].mean()) if len(now) else None,
        last_year_average=float(before["valid_days"].mean()) if len(before) else None,
        notified=int(failed["user_id"].nunique()),
        deduction=int(failed["deduction"].sum()),
    )


def summary(result: DemoResult) -> str:
    """Where the reports are, the headline figures, and the news report's beside the demo's."""

    def average(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [
        [
            f"{label} {report.period}",
            report.cadres,
            report.failed_weeks,
            report.deduction_total,
            average(report.average_days),
            f"{report.status.value} (r{report.revision})",
        ]
        for label, report in (
            ("weekly", result.provisional[0]),
            ("monthly", result.provisional[1]),
            ("weekly", result.weekly),
            ("monthly", result.monthly),
        )
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
    story = result.story
    change = "-" if story.change is None else f"{story.change:+.0%}"
    comparison = render_table(
        ["figure (this year to date)", "news report", "demo"],
        [
            ["cadres", ARTICLE["cadres"], story.cadres],
            ["village days per cadre-week", ARTICLE["average"], average(story.average)],
            ["change on last year", f"+{ARTICLE['change']:.0%}", change],
            ["cadres notified", ARTICLE["notified"], story.notified],
            ["yuan deducted", f"{ARTICLE['deduction']:,}", f"{story.deduction:,}"],
        ],
    )
    reached = sum(outcome.ok for outcome in result.outcomes)
    pushed = (
        f"{len(result.pushed)} terminal(s) pushed {sum(result.pushed.values())} punches\n"
        if result.pushed
        else ""
    )
    notice = result.monthly.path.with_name(f"{result.monthly.period}-通报.docx")
    return (
        f"\n{reached}/{len(result.outcomes)} terminals polled into "
        f"{result.folder / 'clockd.sqlite3'}\n"
        f"{pushed}"
        f"weekly report:  {result.weekly.path}\n"
        f"monthly report: {result.monthly.path}\n"
        f"monthly notice: {notice}\n"
        f"earlier (provisional) editions: {result.weekly.path.parent / 'history'}, "
        f"{result.monthly.path.parent / 'history'}\n\n{table}\n\n{comparison}\n"
    )
