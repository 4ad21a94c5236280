"""The monthly statistics' week totals kept between reports, and the per-week punch state that
says whether they still hold (reports/earlier.py decides; this module only reads and writes).

The punch state of a week is cheap to read where the punches themselves are not: a count and
an id sum over each terminal's `punched_at` range of the key (punches are never updated or
deleted, so a new punch changes both), and the same two figures over the punches quarantined
now.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, or_, select

from clockd.store.models import PunchRow, Quarantine, WeekTotal
from clockd.store.periods import RELEASE
from clockd.store.punches import each_terminal
from clockd.workcal import IsoWeek


@dataclass(frozen=True)
class PunchState:
    """Punches dated in a week: how many, their id sum; the same for those quarantined now."""

    count: int
    id_sum: int
    quarantined: int
    quarantined_id_sum: int


def punch_states(connection: Connection, weeks: Sequence[IsoWeek]) -> dict[str, PunchState]:
    """The PunchState of each week, by label. One range count per week, probing each
    terminal's range of the key as the period query does; the quarantine (a few rows) is read
    whole, led by its own table."""
    punches = PunchRow.__table__
    totals: dict[str, tuple[int, int]] = {}
    for week in weeks:
        start, end = _bounds(week)
        count, id_sum = connection.execute(
            select(func.count(), func.coalesce(func.sum(punches.c.id), 0)).where(
                each_terminal(connection),
                punches.c.punched_at >= start,
                punches.c.punched_at < end,
            )
        ).one()
        totals[week.label] = (int(count), int(id_sum))
    held: dict[str, list[int]] = {week.label: [] for week in weeks}
    if weeks:
        first, last = _bounds(weeks[0])[0], _bounds(weeks[-1])[1]
        quarantine = Quarantine.__table__
        # No date condition in SQL: given one, the planner walks the punches' range instead.
        rows = connection.execute(
            select(punches.c.punched_at, punches.c.id)
            .select_from(quarantine.join(punches, punches.c.id == quarantine.c.punch_id))
            .where(or_(quarantine.c.decision.is_(None), quarantine.c.decision != RELEASE))
        )
        for punched_at, punch_id in rows:
            if first <= punched_at < last:
                label = IsoWeek.containing(punched_at.date()).label
                if label in held:
                    held[label].append(int(punch_id))
    return {
        label: PunchState(count, id_sum, len(held[label]), sum(held[label]))
        for label, (count, id_sum) in totals.items()
    }


def _bounds(week: IsoWeek) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(week.start, dt.time())
    return start, start + dt.timedelta(days=7)


@dataclass(frozen=True)
class StoredWeek:
    """A week_totals row (see models.WeekTotal)."""

    week: str
    inputs: str
    punch_count: int
    punch_sum: int
    punch_xor: int
    person_weeks: int
    valid_days: int
    deduction: int
    failing: tuple[str, ...]


def stored_weeks(connection: Connection, labels: Sequence[str]) -> dict[str, StoredWeek]:
    """The stored rows of the weeks `labels`, by label."""
    table = WeekTotal.__table__
    rows = connection.execute(
        select(
            table.c.week,
            table.c.inputs,
            table.c.punch_count,
            table.c.punch_sum,
            table.c.punch_xor,
            table.c.person_weeks,
            table.c.valid_days,
            table.c.deduction,
            table.c.failing,
        ).where(table.c.week.in_(list(labels)))
    )
    return {
        row.week: StoredWeek(
            week=row.week,
            inputs=row.inputs,
            punch_count=int(row.punch_count),
            punch_sum=int(row.punch_sum),
            punch_xor=int(row.punch_xor),
            person_weeks=int(row.person_weeks),
            valid_days=int(row.valid_days),
            deduction=int(row.deduction),
            failing=tuple(json.loads(row.failing)),
        )
        for row in rows
    }


def store_weeks(connection: Connection, weeks: Sequence[StoredWeek]) -> None:
    """Replace the rows of `weeks` (two reports computing one week write the same row)."""
    if not weeks:
        return
    connection.execute(delete(WeekTotal).where(WeekTotal.week.in_([w.week for w in weeks])))
    connection.execute(
        insert(WeekTotal),
        [
            {
                "week": week.week,
                "inputs": week.inputs,
                "punch_count": week.punch_count,
                "punch_sum": week.punch_sum,
                "punch_xor": week.punch_xor,
                "person_weeks": week.person_weeks,
                "valid_days": week.valid_days,
                "deduction": week.deduction,
                "failing": json.dumps(list(week.failing), ensure_ascii=False),
            }
            for week in weeks
        ],
    )


@dataclass(frozen=True)
class Arrivals:
    """What reached punches dated in a range after an instant: punches stored later (late),
    and quarantined ones released later."""

    late: int = 0
    released: int = 0


def arrivals_after(
    connection: Connection, start: dt.date, end: dt.date, cut: dt.datetime
) -> Arrivals:
    """Arrivals after `cut` for punches dated `start` up to (not including) `end`. The count
    of late punches reads the table in storage order (a revision's note needs it, nothing else
    does): it needs each row's ingestion time, which no index holds, and a year is most of the
    table, so one scan beats probing each terminal's range and looking up every row (on a
    year of a district, 0.9 s against 10-14 s)."""
    punches, quarantine = PunchRow.__table__, Quarantine.__table__
    first, last = dt.datetime.combine(start, dt.time()), dt.datetime.combine(end, dt.time())
    late = connection.execute(
        select(func.count()).where(
            punches.c.punched_at >= first,
            punches.c.punched_at < last,
            punches.c.ingested_at > cut,
        )
    ).scalar_one()
    released = connection.execute(  # led by the (few) releases after the cut, as above
        select(punches.c.punched_at)
        .select_from(quarantine.join(punches, punches.c.id == quarantine.c.punch_id))
        .where(quarantine.c.decision == RELEASE, quarantine.c.decided_at > cut)
    ).scalars()
    return Arrivals(int(late), sum(1 for punched_at in released if first <= punched_at < last))
