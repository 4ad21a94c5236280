"""A report's period and everything its figures depend on, loaded once from the store.

Shared by the weekly and the monthly report: the period's dates and instants, its punches
(with the arrival eras that let an earlier edition be reconstructed), leave, whether every
terminal has been collected since the period ended (final or provisional), and the input
fingerprint that tells whether anything that changes the report has changed. Punches are read
for the period's own weeks only: the weeks a monthly report reaches back over come as kept
totals (earlier.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import pandas as pd
from sqlalchemy import Connection, Engine

from clockd import rules
from clockd.config import RuleSettings, Settings
from clockd.domain import Cadre, Leave
from clockd.due import weekly_due_at
from clockd.ledger import Anchor, anchors_of, printable
from clockd.reports.earlier import PunchDigest, earlier_weeks, keep, weeks_before
from clockd.reports.keys import cadre_key, terminal_key
from clockd.reports.revisions import Plan, plan_edition
from clockd.store import chains
from clockd.store.facts import TerminalFacts
from clockd.store.periods import (
    Edition,
    LeaveRecord,
    kept_records,
    load_leave,
    load_punches,
    punches_as_of,
    report_editions,
    terminal_facts,
)
from clockd.store.week_totals import Arrivals, arrivals_after
from clockd.store.worklog import filed_between
from clockd.workcal import IsoWeek, WorkCalendar
from clockd.zk.wire import read_kept_record

ReportKind = Literal["weekly", "monthly"]


@dataclass(frozen=True)
class Period:
    """The weeks a report assesses, and the first day of punch data its figures need."""

    kind: ReportKind
    label: str  # 2026-W47 | 2026-11
    weeks: tuple[IsoWeek, ...]
    data_from: dt.date  # monthly statistics reach back a year

    @property
    def start(self) -> dt.date:
        return self.weeks[0].start

    @property
    def end(self) -> dt.date:
        return self.weeks[-1].end

    def starts_at(self, settings: Settings) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), settings.zone).astimezone(dt.UTC)

    def ends_at(self, settings: Settings) -> dt.datetime:
        """The instant the period ended: the day after its last day, 00:00 local."""
        day_after = self.end + dt.timedelta(days=1)
        return dt.datetime.combine(day_after, dt.time(), settings.zone).astimezone(dt.UTC)


def data_since(settings: Settings) -> dt.date:
    """When the first terminal went into service: earlier weeks are not assessed."""
    return min(terminal.installed for terminal in settings.terminals)


@dataclass(frozen=True)
class Completeness:
    """Which terminals have been collected since the period ended, as of one instant."""

    facts: tuple[TerminalFacts, ...]
    period_end: dt.datetime

    @property
    def missing(self) -> list[TerminalFacts]:
        """Terminals in service during the period with no successful collection since its end."""
        end_day = (self.period_end - dt.timedelta(seconds=1)).date()
        return [
            fact
            for fact in self.facts
            if fact.collected_after is None and fact.terminal.installed <= end_day
        ]

    @property
    def final(self) -> bool:
        return not self.missing

    def missing_villages(self) -> list[str]:
        return list(dict.fromkeys(fact.terminal.village for fact in self.missing))


def completeness(
    connection: Connection, settings: Settings, period: Period, as_of: dt.datetime
) -> Completeness:
    end = period.ends_at(settings)
    facts = terminal_facts(connection, settings.terminals, end, as_of)
    return Completeness(tuple(facts), end)


@dataclass(frozen=True)
class FiledResult:
    """A work result (工作清单) that counts: filed before its week's report was due."""

    user_id: str
    day: dt.date
    filed_at: dt.datetime


@dataclass(frozen=True)
class HeldRecord:
    """A quarantined record with no punch row (it did not decode), as the weekly 异常 sheet
    lists it: kept and reported, never counted."""

    serial: str
    user_id: str | None  # control characters escaped (ledger.printable); None when unreadable
    at: dt.datetime  # naive local: the time it records, else when it was detected
    recorded: bool  # whether `at` is the time it records
    reason: str


def held_records(
    connection: Connection, settings: Settings, period: Period
) -> tuple[HeldRecord, ...]:
    """The records without a punch row that belong to the period's weeks: by the time they
    record when it can be read, else by when they were detected."""
    held = []
    for kept in kept_records(connection):
        user_id, recorded = read_kept_record(kept.raw)
        at = recorded or kept.detected_at.astimezone(settings.zone).replace(tzinfo=None)
        if period.start <= at.date() <= period.end:
            user = None if user_id is None else printable(user_id)
            held.append(HeldRecord(kept.serial, user, at, recorded is not None, kept.reason))
    return tuple(held)


@dataclass(frozen=True)
class PeriodData:
    """Punches and leave of a period, current, with the means to see them as at a cut."""

    punches: pd.DataFrame  # the period's own weeks; see store.periods.load_punches
    leave_records: tuple[LeaveRecord, ...]
    cuts: tuple[dt.datetime, ...]  # generation times of the editions one may compare with
    results: tuple[FiledResult, ...] = ()
    known: rules.KnownWeeks | None = None  # weeks before the period's own (earlier.py)
    # What reached those weeks after the compared edition's cut, for its revision note.
    known_arrivals: Arrivals = field(default_factory=Arrivals)
    held: tuple[HeldRecord, ...] = ()  # weekly: quarantined records with no punch row

    def leave(self, era: int | None = None) -> list[Leave]:
        """Leave in force now (era None) or at cut number `era`."""
        at = None if era is None else self.cuts[era]
        return [record.leave for record in self.leave_records if record.in_force(at)]

    def work_results(self, era: int | None = None) -> list[tuple[str, dt.date]]:
        """(user ID, day) of the work results that count now (era None) or at cut `era`."""
        at = None if era is None else self.cuts[era]
        return [(r.user_id, r.day) for r in self.results if at is None or r.filed_at <= at]

    def punches_at(self, era: int) -> pd.DataFrame:
        return punches_as_of(self.punches, era)


def load_period(
    connection: Connection, settings: Settings, period: Period, editions: Sequence[Edition]
) -> PeriodData:
    """The punches of the period's own weeks, and leave and work results from `data_from`;
    cuts at the last two editions' generation times."""
    cuts = tuple(edition.generated_at for edition in editions[-2:])
    punches = load_punches(connection, period.start, period.end, settings.terminals, cuts)
    leave = load_leave(connection, period.data_from, period.end)
    due: dict[dt.date, dt.datetime] = {}  # per day: when its week's report was due
    results = []
    for user_id, day, filed_at in filed_between(connection, period.data_from, period.end):
        if day not in due:
            due[day] = weekly_due_at(settings, IsoWeek.containing(day))
        if filed_at <= due[day]:
            results.append(FiledResult(user_id, day, filed_at))
    held = held_records(connection, settings, period) if period.kind == "weekly" else ()
    return PeriodData(punches, tuple(leave), cuts, tuple(results), held=held)


def fingerprint(
    settings: Settings,
    cadres: Sequence[Cadre],
    period: Period,
    punches: PunchDigest,
    leave: Sequence[Leave],
    calendar: WorkCalendar,
    work_results: Sequence[tuple[str, dt.date]] = (),
    today: dt.date | None = None,
    held: Sequence[HeldRecord] = (),
) -> str:
    """SHA-256 over every input that can change a figure or a row of the report.

    Punches from `period.data_from` enter as an order-independent digest (earlier.PunchDigest),
    so the database's row order does not matter and the weeks before the period's own add
    their kept share. Poll history is not an input: whether the report is final is its
    status, not its figures. The period's weeks still in progress on `today` are an input:
    when one ends, its shortfalls are charged.
    """
    digest = hashlib.sha256()
    described = {
        "period": [period.kind, period.label, period.data_from.isoformat()],
        "rules": settings.rules.model_dump(mode="json"),
        "data_since": data_since(settings).isoformat(),
        "terminals": [terminal_key(terminal) for terminal in settings.terminals],
        "cadres": sorted(map(cadre_key, cadres)),
        "leave": sorted(
            [e.user_id, e.start.isoformat(), e.end.isoformat(), e.kind.value] for e in leave
        ),
        "workdays": [day.isoformat() for day in calendar.workdays(period.data_from, period.end)],
    }
    ongoing = [week.label for week in period.weeks if today is not None and week.end >= today]
    if ongoing:  # absent when none, so reports of weeks that are over keep their print
        described["in_progress"] = ongoing
    if held:  # absent when none, so reports without such records keep their print
        described["held"] = sorted(
            [h.serial, h.user_id or "", h.at.isoformat(), h.reason] for h in held
        )
    if work_results:  # absent when none, so reports from before work results keep their print
        described["work_results"] = sorted(
            [user_id, day.isoformat()] for user_id, day in work_results
        )
    digest.update(json.dumps(described, ensure_ascii=False, sort_keys=True).encode())
    digest.update(punches.summary())
    return digest.hexdigest()


@dataclass(frozen=True)
class Basis:
    """Everything one edition of a report is built from."""

    period: Period
    data: PeriodData
    plan: Plan
    completeness: Completeness  # as of the edition's generation time
    fingerprint: str
    calendar: WorkCalendar
    rules: RuleSettings
    since: dt.date  # data_since
    today: dt.date  # local date of the edition: weeks not ended by then are in progress
    anchors: tuple[Anchor, ...] = ()  # the chain heads the data was read at (reports/anchors.py)


def gather(
    engine: Engine,
    settings: Settings,
    cadres: Sequence[Cadre],
    period: Period,
    now: dt.datetime,
) -> Basis:
    """Load the period, fingerprint it and decide which revision to write (revisions.py)."""
    calendar = WorkCalendar(settings.holiday_overrides())
    since = data_since(settings)
    today = now.astimezone(settings.zone).date()
    with engine.connect() as connection:
        editions = report_editions(connection, period.kind, period.label)
        # Finality first: a terminal counted as collected then has its punches in the load.
        current = completeness(connection, settings, period, now)
        data = load_period(connection, settings, period, editions)
        earlier = earlier_weeks(
            connection,
            settings,
            cadres,
            weeks_before(period.data_from, period.start),
            calendar,
            since,
            data.leave(),
            data.work_results(),
        )
        data = replace(data, known=earlier.known)
        anchors = tuple(anchors_of(chains.heads(connection)))
        punches = PunchDigest.of(data.punches) + earlier.digest
        digest = fingerprint(
            settings,
            cadres,
            period,
            punches,
            data.leave(),
            calendar,
            data.work_results(),
            today,
            data.held,
        )
        plan = plan_edition(editions, digest, current.final, now)
        if plan.generated_at != now:
            current = completeness(connection, settings, period, plan.generated_at)
        if plan.compared_era is not None and period.data_from < period.start:
            cut = data.cuts[plan.compared_era]
            arrivals = arrivals_after(connection, period.data_from, period.start, cut)
            data = replace(data, known_arrivals=arrivals)
    keep(engine, earlier)
    return Basis(
        period=period,
        data=data,
        plan=plan,
        completeness=current,
        fingerprint=digest,
        calendar=calendar,
        rules=settings.rules,
        since=since,
        today=today,
        anchors=anchors,
    )
