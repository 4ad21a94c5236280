"""Poll-run retention: every run is kept for `retention.poll_runs_days`, then the runs of each
terminal and local day are folded into one `poll_run_days` row.

A district of 3,400 terminals polled every 30 minutes adds about 60 M poll runs a year; what
the reports and `clockd devices` need from old runs fits in one row per terminal per day: the
first successful collection after a period ended, the last good contact, the last device facts
and the day's failures (see docs/operations.md, "Retention").

Runs that stored punches or quarantined records are summarised too but stay in poll_runs, since
those rows point at them (punches are never changed); the rest are deleted. Each day is folded
in its own transaction, so a first pass over years of history holds the write lock a day's
worth at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.sql import ColumnElement, Select

from clockd.store.db import advisory_unlock, try_advisory_lock, write_transaction
from clockd.store.models import Outcome, PollRun, PollRunDay

RETENTION_LOCK = "retention"  # PostgreSQL advisory lock: one folding process at a time

# Summary columns merged by sum, by min and by max when a day is folded again: a kept run (one
# that stored data) is summarised with its day's first fold; a run that began on an already
# folded day (a clock set far back) is merged in later.
_SUMS = (
    "runs",
    "ok_runs",
    "failed_runs",
    "mismatch_runs",
    "new_count",
    "duplicate_count",
    "quarantined_count",
)
_MINS = ("new_from", "first_started_at", "first_ok_finished_at")
_MAXES = ("new_to", "last_finished_at", "last_ok_finished_at")
_DEVICE = ("serial", "records_on_device", "record_capacity", "drift_seconds")


@dataclass(frozen=True)
class Folded:
    """What one retention pass did."""

    days: int  # local days that had runs to fold
    runs: int  # poll runs summarised (all but those that stored data are deleted)
    summaries: int  # poll_run_days rows written

    def line(self) -> str:
        return f"retention: {self.runs} poll runs of {self.days} days folded into daily rows"


def cutoff(now: dt.datetime, zone: ZoneInfo, keep_days: int) -> dt.datetime:
    """The instant before which runs are folded: the local midnight `keep_days` days back, so
    every run younger than `keep_days` days is kept and whole local days are folded."""
    day = now.astimezone(zone).date() - dt.timedelta(days=keep_days)
    return _midnight(day, zone)


def _deletable() -> ColumnElement[bool]:
    """Runs that no punch or quarantined record points at (poll_run_id): only these leave
    poll_runs; the others are the provenance of stored data, which is never deleted."""
    runs = PollRun.__table__
    # Literal zeros, as the partial index `ix_poll_runs_foldable` says them: a planner proves
    # a query's condition implies an index's from the SQL text, not from bound values.
    zero: ColumnElement[int] = literal_column("0")
    return and_(runs.c.new_count == zero, runs.c.quarantined_count == zero)


def fold_poll_runs(
    engine: Engine, zone: ZoneInfo, keep_days: int, now: dt.datetime
) -> Folded | None:
    """Fold every poll run started before `cutoff(now, ...)` into per-terminal daily rows and
    delete the folded runs that nothing points at. Running it again folds nothing twice.

    None when another process sharing the PostgreSQL database is folding right now.
    """
    if engine.dialect.name != "postgresql":
        return _fold(engine, zone, keep_days, now)
    with engine.connect() as connection:
        if not try_advisory_lock(connection, RETENTION_LOCK):
            connection.commit()
            return None
        try:
            return _fold(engine, zone, keep_days, now)
        finally:
            advisory_unlock(connection, RETENTION_LOCK)
            connection.commit()


def _fold(engine: Engine, zone: ZoneInfo, keep_days: int, now: dt.datetime) -> Folded:
    until = cutoff(now, zone, keep_days)
    with engine.connect() as connection:
        oldest: dt.datetime | None = connection.scalar(oldest_foldable(until))
    if oldest is None:
        return Folded(0, 0, 0)
    days = folded = summaries = 0
    day = oldest.astimezone(zone).date()
    while (start := _midnight(day, zone)) < until:
        end = min(_midnight(day + dt.timedelta(days=1), zone), until)
        with write_transaction(engine) as connection:
            count, written = _fold_day(connection, day, start, end)
        if count:
            days, folded, summaries = days + 1, folded + count, summaries + written
        day += dt.timedelta(days=1)
    return Folded(days, folded, summaries)


def oldest_foldable(until: dt.datetime) -> Select[Any]:
    """The start of the oldest run before `until` that folding would delete: where the next
    fold begins. It walks `ix_poll_runs_foldable`, which holds those runs alone."""
    runs = PollRun.__table__
    return select(func.min(runs.c.started_at)).where(runs.c.started_at < until, _deletable())


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)


def _fold_day(
    connection: Connection, day: dt.date, start: dt.datetime, end: dt.datetime
) -> tuple[int, int]:
    """Fold the runs started in [start, end) (local day `day`) that are newer than the day's
    summary; returns (runs folded, summary rows written)."""
    runs = PollRun.__table__
    days = PollRunDay.__table__
    earlier = days.alias("earlier")
    in_day = and_(runs.c.started_at >= start, runs.c.started_at < end)
    ok = runs.c.outcome == Outcome.OK

    def counted(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    grouped = (
        select(
            runs.c.terminal_id,
            func.count().label("runs"),
            counted(ok).label("ok_runs"),
            counted(runs.c.outcome == Outcome.FAILED).label("failed_runs"),
            counted(runs.c.outcome == Outcome.MISMATCH).label("mismatch_runs"),
            func.coalesce(func.sum(runs.c.new_count), 0).label("new_count"),
            func.coalesce(func.sum(runs.c.duplicate_count), 0).label("duplicate_count"),
            func.coalesce(func.sum(runs.c.quarantined_count), 0).label("quarantined_count"),
            func.min(runs.c.new_from).label("new_from"),
            func.max(runs.c.new_to).label("new_to"),
            func.min(runs.c.started_at).label("first_started_at"),
            func.max(runs.c.finished_at).label("last_finished_at"),
            func.min(case((ok, runs.c.finished_at))).label("first_ok_finished_at"),
            func.max(case((ok, runs.c.finished_at))).label("last_ok_finished_at"),
            func.max(runs.c.id).label("last_run_id"),
            func.max(case((runs.c.records_on_device.is_not(None), runs.c.id))).label("device_id"),
        )
        .select_from(
            runs.outerjoin(
                earlier,
                and_(earlier.c.day == day, earlier.c.terminal_id == runs.c.terminal_id),
            )
        )
        .where(in_day, or_(earlier.c.last_run_id.is_(None), runs.c.id > earlier.c.last_run_id))
        .group_by(runs.c.terminal_id)
        .subquery()
    )
    last = runs.alias("last_run")
    device = runs.alias("device_run")
    rows = connection.execute(
        select(
            grouped,
            last.c.outcome.label("last_outcome"),
            last.c.error.label("last_error"),
            device.c.serial,
            device.c.records_on_device,
            device.c.record_capacity,
            device.c.drift_seconds,
        )
        .join(last, last.c.id == grouped.c.last_run_id)
        .outerjoin(device, device.c.id == grouped.c.device_id)
    ).all()
    if not rows:
        return 0, 0
    fresh: dict[str, dict[str, Any]] = {}
    for row in rows:
        values = dict(row._mapping)
        del values["device_id"]
        values["day"] = day
        fresh[values["terminal_id"]] = values
    before = {
        row.terminal_id: dict(row._mapping)
        for row in connection.execute(
            select(days).where(days.c.day == day, days.c.terminal_id.in_(list(fresh)))
        )
    }
    if before:
        connection.execute(
            delete(PollRunDay).where(days.c.day == day, days.c.terminal_id.in_(list(before)))
        )
        for terminal_id, summary in before.items():
            fresh[terminal_id] = _merged(summary, fresh[terminal_id])
    connection.execute(insert(PollRunDay), list(fresh.values()))
    connection.execute(delete(PollRun).where(in_day, _deletable()))
    return sum(int(row.runs) for row in rows), len(fresh)


def _merged(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Two summaries of one terminal's day as one; `after` holds the later runs."""
    merged = dict(after)
    for key in _SUMS:
        merged[key] = before[key] + after[key]
    for key in _MINS:
        merged[key] = min((v for v in (before[key], after[key]) if v is not None), default=None)
    for key in _MAXES:
        merged[key] = max((v for v in (before[key], after[key]) if v is not None), default=None)
    if after["records_on_device"] is None:
        for key in _DEVICE:
            merged[key] = before[key]
    return merged


def fill_from_folded(
    connection: Connection,
    ids: Iterable[str],
    period_end: dt.datetime,
    as_of: dt.datetime,
    latest: MutableMapping[str, dict[str, object]],
    latest_ok: MutableMapping[str, dict[str, object]],
    latest_device: MutableMapping[str, dict[str, object]],
    first_after: MutableMapping[str, Any],
) -> None:
    """Complete terminal_facts' answers from the raw runs with the daily rows of folded runs.

    The mappings are keyed by terminal id and hold the poll_runs columns terminal_facts reads
    (finished_at among them). Only a terminal whose raw answer is missing or older than the
    newest folded day is looked up, so a fleet polled recently costs one indexed query. A
    folded day counts as begun at its first run: for a period ending at local midnight the
    first collection after it is the same as the runs gave.
    """
    days = PollRunDay.__table__
    ids = list(ids)
    newest_day = connection.scalar(select(func.max(days.c.day)))
    if not ids or newest_day is None:
        return
    # A local day that began at or after period_end is no earlier than period_end's UTC date
    # minus one; bounding `day` lets the primary key's range answer (nothing for "now").
    earliest_day = period_end.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    for terminal_id, finished in connection.execute(
        select(days.c.terminal_id, func.min(days.c.first_ok_finished_at))
        .where(
            days.c.day >= earliest_day,
            days.c.terminal_id.in_(ids),
            days.c.ok_runs > 0,
            days.c.first_started_at >= period_end,
            days.c.first_ok_finished_at <= as_of,
        )
        .group_by(days.c.terminal_id)
    ):
        known = first_after.get(terminal_id)
        first_after[terminal_id] = finished if known is None else min(known, finished)

    # Every folded run finished before this (zones within a day of UTC; runs within a day).
    folded_until = dt.datetime.combine(newest_day + dt.timedelta(days=3), dt.time(), dt.UTC)

    def stale(found: Mapping[str, dict[str, object]]) -> list[str]:
        return [
            t for t in ids if t not in found or _before(found[t].get("finished_at"), folded_until)
        ]

    def newest(
        target: MutableMapping[str, dict[str, object]],
        finished: Any,
        columns: Mapping[str, str],
        *conditions: ColumnElement[bool],
    ) -> None:
        missing = stale(target)
        if not missing:
            return
        newest_days = (
            select(days.c.terminal_id, func.max(days.c.day).label("day"))
            .where(days.c.terminal_id.in_(missing), finished <= as_of, *conditions)
            .group_by(days.c.terminal_id)
            .subquery()
        )
        rows = connection.execute(
            select(days).join(
                newest_days,
                and_(
                    days.c.terminal_id == newest_days.c.terminal_id,
                    days.c.day == newest_days.c.day,
                ),
            )
        )
        for row in rows:
            values = {key: getattr(row, column) for key, column in columns.items()}
            raw = target.get(row.terminal_id)
            if raw is None or _before(raw.get("finished_at"), values["finished_at"]):
                target[row.terminal_id] = values

    newest(
        latest,
        days.c.last_finished_at,
        {"finished_at": "last_finished_at", "outcome": "last_outcome", "error": "last_error"},
    )
    newest(
        latest_ok,
        days.c.last_ok_finished_at,
        {"finished_at": "last_ok_finished_at"},
        days.c.ok_runs > 0,
    )
    newest(
        latest_device,
        days.c.last_finished_at,
        {"finished_at": "last_finished_at"} | {key: key for key in _DEVICE},
        days.c.records_on_device.is_not(None),
    )


def _before(value: object, instant: object) -> bool:
    """Whether `value` (an instant or None) is earlier than `instant` (None: unknown, so no)."""
    if not isinstance(instant, dt.datetime):
        return False
    return not isinstance(value, dt.datetime) or value < instant


@dataclass(frozen=True)
class FoldedProblems:
    """A folded day's failed or serial-mismatch runs, for the reports' problem lists."""

    terminal_id: str
    outcome: str  # failed | mismatch
    started_at: dt.datetime
    count: int
    last_error: str | None

    @property
    def error(self) -> str:
        text = f"{self.count} {self.outcome} polls this day (kept as a daily total)"
        return f"{text}; the day's last error: {self.last_error}" if self.last_error else text


def folded_problems(
    connection: Connection,
    ids: Iterable[str],
    start: dt.datetime,
    end: dt.datetime,
    as_of: dt.datetime,
) -> list[FoldedProblems]:
    """Failed and mismatch runs of folded days that began in [start, end), per terminal-day."""
    days = PollRunDay.__table__
    rows = connection.execute(
        select(days)
        .where(
            days.c.day >= start.astimezone(dt.UTC).date() - dt.timedelta(days=1),
            days.c.day <= end.astimezone(dt.UTC).date() + dt.timedelta(days=1),
            days.c.terminal_id.in_(list(ids)),
            days.c.failed_runs + days.c.mismatch_runs > 0,
            days.c.first_started_at >= start,
            days.c.first_started_at < end,
            days.c.last_finished_at <= as_of,
        )
        .order_by(days.c.first_started_at, days.c.terminal_id)
    )
    problems = []
    for row in rows:
        for outcome, count in (
            (Outcome.FAILED, row.failed_runs),
            (Outcome.MISMATCH, row.mismatch_runs),
        ):
            if count:
                problems.append(
                    FoldedProblems(
                        row.terminal_id, outcome.value, row.first_started_at, count, row.last_error
                    )
                )
    return problems
