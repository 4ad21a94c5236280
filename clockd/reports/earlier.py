"""The weeks a monthly report reaches back over for its 12-month statistics, without reading them.

A monthly report's statistics need about 52 weeks before its own month, but of each only a few
totals (`rules.week_totals`), and of its punches only their share of the input fingerprint.
Both are kept per week in the store (store/week_totals.py) under a digest of everything they
were computed from: the rules, the roster, the terminals, when data begins, the week's working
days and calendar note, the leave in force and the work results that count in it, and the
week's punch state, read before its punches; the digest kept is bound to the totals kept
(`sealed`). While it matches, the week is neither read nor assessed; otherwise (its inputs
changed, or its totals were edited behind clockd's back) it is, alone, and its row replaced.
A report therefore shows exactly what assessing the whole year would
(tests/test_reports_monthly.py compares the two workbooks cell by cell), at the cost of
reading its own month.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

import clockd
from clockd import rules
from clockd.config import Settings
from clockd.domain import Cadre, Leave
from clockd.reports.keys import cadre_key, terminal_key
from clockd.store import db
from clockd.store.periods import load_punches
from clockd.store.week_totals import PunchState, StoredWeek, punch_states, store_weeks, stored_weeks
from clockd.workcal import IsoWeek, WorkCalendar, weeks_between

# Bump when rules.assess_weeks or rules.week_totals change what they compute from the same
# inputs: every kept week is then computed again.
TOTALS_FORMAT = 1
_WRAP = 1 << 64


@dataclass(frozen=True)
class PunchDigest:
    """The order-independent digest of a punch frame that enters the input fingerprint: the
    count, and the wrapping sum and the xor of 64-bit hashes of each row's serial, user ID,
    time and quarantine flag. Digests of disjoint frames add up to the digest of their union."""

    count: int = 0
    total: int = 0  # 0 <= total < 2**64
    xor: int = 0

    @classmethod
    def of(cls, punches: pd.DataFrame) -> PunchDigest:
        columns = punches[["serial", "user_id", "timestamp", "quarantined"]]
        hashes = pd.util.hash_pandas_object(columns, index=False).to_numpy(dtype=np.uint64)
        if not len(hashes):
            return cls()
        total = int(hashes.sum(dtype=np.uint64))
        return cls(len(hashes), total, int(np.bitwise_xor.reduce(hashes)))

    def __add__(self, other: PunchDigest) -> PunchDigest:
        return PunchDigest(
            self.count + other.count, (self.total + other.total) % _WRAP, self.xor ^ other.xor
        )

    def summary(self) -> bytes:
        """The 24 bytes the fingerprint hashes."""
        return np.array([self.count, self.total, self.xor], dtype=np.uint64).tobytes()


@dataclass(frozen=True)
class EarlierWeeks:
    """The weeks before a period's own: their totals, their share of the punch digest, and
    the rows computed afresh this time (to keep)."""

    known: rules.KnownWeeks
    digest: PunchDigest
    fresh: tuple[StoredWeek, ...]


def weeks_before(data_from: dt.date, start: dt.date) -> list[IsoWeek]:
    """The weeks from `data_from` up to the week before `start` (both Mondays)."""
    if data_from >= start:
        return []
    return weeks_between(
        IsoWeek.containing(data_from), IsoWeek.containing(start - dt.timedelta(days=1))
    )


def earlier_weeks(
    connection: Connection,
    settings: Settings,
    cadres: Sequence[Cadre],
    weeks: Sequence[IsoWeek],
    calendar: WorkCalendar,
    since: dt.date,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]],
) -> EarlierWeeks:
    """The `weeks`' totals and punch digest, from the store where still valid, else computed
    from each week's punches (current leave and work results, as the report's own)."""
    states = punch_states(connection, weeks)  # before any punch is read: see the module doc
    kept = stored_weeks(connection, [week.label for week in weeks])
    common = _common_inputs(settings, cadres, since)
    rows: list[StoredWeek] = []
    fresh: list[StoredWeek] = []
    for week in weeks:
        inputs = _week_inputs(common, week, states[week.label], calendar, leave, work_results)
        row = kept.get(week.label)
        if row is None or row.inputs != sealed(inputs, row):
            row = _compute(connection, settings, cadres, week, calendar, since, leave, work_results)
            row = replace(row, inputs=sealed(inputs, row))
            fresh.append(row)
        rows.append(row)
    digest = PunchDigest()
    for row in rows:
        digest += PunchDigest(row.punch_count, row.punch_sum % _WRAP, row.punch_xor % _WRAP)
    assessed = [row for row in rows if row.person_weeks]
    totals = pd.DataFrame(
        {
            "week": [row.week for row in assessed],
            "month": [IsoWeek.parse(row.week).month.label for row in assessed],
            "person_weeks": np.array([row.person_weeks for row in assessed], dtype=np.int64),
            "valid_days": np.array([row.valid_days for row in assessed], dtype=np.int64),
            "deduction": np.array([row.deduction for row in assessed], dtype=np.int64),
            "failing": [row.failing for row in assessed],
        },
        columns=list(rules.WEEK_TOTAL_COLUMNS),
    )
    known = rules.KnownWeeks(frozenset(week.label for week in weeks), totals)
    return EarlierWeeks(known, digest, tuple(fresh))


def sealed(inputs: str, row: StoredWeek) -> str:
    """What a kept row's `inputs` holds: the digest of its inputs bound to its totals, so a row
    whose totals were edited behind clockd's back matches no more and is computed again from
    the week's punches (which the ledger guards) instead of entering a report."""
    totals = [
        row.punch_count,
        row.punch_sum,
        row.punch_xor,
        row.person_weeks,
        row.valid_days,
        row.deduction,
        sorted(row.failing),
    ]
    return hashlib.sha256(f"{inputs}\x1f{json.dumps(totals)}".encode()).hexdigest()


def keep(engine: Engine, earlier: EarlierWeeks) -> None:
    """Store the rows computed afresh, for the next report. Another process storing the same
    weeks at the same moment (PostgreSQL lets both inserts race) leaves its rows instead."""
    if not earlier.fresh:
        return
    try:
        with db.write_transaction(engine) as connection:
            store_weeks(connection, earlier.fresh)
    except IntegrityError:
        pass  # the rows are a cache: the next report checks whichever rows won


def _compute(
    connection: Connection,
    settings: Settings,
    cadres: Sequence[Cadre],
    week: IsoWeek,
    calendar: WorkCalendar,
    since: dt.date,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]],
) -> StoredWeek:
    """One week's row from its punches (the `inputs` digest is the caller's)."""
    punches = load_punches(connection, week.start, week.end, settings.terminals)
    digest = PunchDigest.of(punches)
    assessed = [week] if week.start >= since else []
    results = rules.assess_weeks(
        punches, cadres, leave, calendar, assessed, settings.rules, work_results
    )
    totals = rules.week_totals(results)
    row = totals.iloc[0] if len(totals) else None
    return StoredWeek(
        week=week.label,
        inputs="",
        punch_count=digest.count,
        punch_sum=_signed(digest.total),
        punch_xor=_signed(digest.xor),
        person_weeks=0 if row is None else int(row["person_weeks"]),
        valid_days=0 if row is None else int(row["valid_days"]),
        deduction=0 if row is None else int(row["deduction"]),
        failing=() if row is None else tuple(str(uid) for uid in row["failing"]),
    )


def _signed(value: int) -> int:
    """An unsigned 64-bit value as the signed one a BIGINT column holds."""
    return value - _WRAP if value >= 1 << 63 else value


def _common_inputs(settings: Settings, cadres: Sequence[Cadre], since: dt.date) -> str:
    described = {
        "format": [TOTALS_FORMAT, clockd.__version__],
        "rules": settings.rules.model_dump(mode="json"),
        "data_since": since.isoformat(),
        "terminals": [terminal_key(t) for t in settings.terminals],
        "cadres": sorted(map(cadre_key, cadres)),
    }
    return hashlib.sha256(json.dumps(described, ensure_ascii=False).encode()).hexdigest()


def _week_inputs(
    common: str,
    week: IsoWeek,
    state: PunchState,
    calendar: WorkCalendar,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]],
) -> str:
    described = {
        "common": common,
        "week": week.label,
        "workdays": [day.isoformat() for day in calendar.workdays(week.start, week.end)],
        "calendar_note": calendar.fallback_note(week.start, week.end),
        "leave": sorted(
            [e.user_id, e.start.isoformat(), e.end.isoformat(), e.kind.value]
            for e in leave
            if e.start <= week.end and e.end >= week.start
        ),
        "work_results": sorted(
            [user_id, day.isoformat()]
            for user_id, day in work_results
            if week.start <= day <= week.end
        ),
        "punches": [state.count, state.id_sum, state.quarantined, state.quarantined_id_sum],
    }
    return hashlib.sha256(json.dumps(described, ensure_ascii=False).encode()).hexdigest()
