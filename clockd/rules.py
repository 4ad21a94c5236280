"""The attendance rules of docs/rules.md, as pure functions over plain data (no I/O).

Flow: punches -> per-punch classification (half-day, counted or which anomaly) -> day marks
(morning / afternoon / valid per cadre per day) -> week results -> month results and statistics.

A district runs 10,000 cadres and millions of punches through this every month, so the steps
over punches are vectorised: user IDs become roster positions ("codes") and dates become day
numbers (days since 1970-01-01), and everything in between is integer arrays. The outputs are
DataFrames with the columns documented on each function; `*_HEADERS` map them to the report
columns of docs/reports.md.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from clockd.config import RuleSettings
from clockd.domain import Cadre, Leave, user_id_order
from clockd.workcal import IsoWeek, WorkCalendar, YearMonth, weeks_between

Days = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]

_EPOCH = date(1970, 1, 1)
# Day numbers standing for an open-ended active period.
_OPEN_START = -(10**6)
_OPEN_END = 10**6
_REMARK_SEPARATOR = "；"
_DAY_BITS = 24  # room for 45,000 years of day numbers beside a roster position


class Half(enum.StrEnum):
    MORNING = "morning"
    AFTERNOON = "afternoon"
    OUT_OF_WINDOW = "out_of_window"

    @property
    def label(self) -> str:
        """The 时段 shown in the punch list."""
        return HALF_LABELS[self]


HALF_LABELS = {Half.MORNING: "上午", Half.AFTERNOON: "下午", Half.OUT_OF_WINDOW: "时段外"}

_HALVES = (Half.MORNING, Half.AFTERNOON, Half.OUT_OF_WINDOW)  # index = the half's code


class AnomalyKind(enum.StrEnum):
    """Why a punch is not counted, in the order of precedence when several apply."""

    QUARANTINED = "quarantined"
    UNATTRIBUTED_TERMINAL = "unattributed_terminal"
    UNKNOWN_USER = "unknown_user"
    OUT_OF_WINDOW = "out_of_window"
    INACTIVE_CADRE = "inactive_cadre"

    @property
    def label(self) -> str:
        """The 类型 shown in the 异常 sheet."""
        return ANOMALY_LABELS[self]


ANOMALY_LABELS = {
    AnomalyKind.QUARANTINED: "时钟异常(已隔离)",
    AnomalyKind.UNATTRIBUTED_TERMINAL: "终端未归属",
    AnomalyKind.UNKNOWN_USER: "未知用户",
    AnomalyKind.OUT_OF_WINDOW: "时段外打卡",
    AnomalyKind.INACTIVE_CADRE: "非在岗期间打卡",
}
_KINDS = tuple(AnomalyKind)  # index = the kind's code; -1 means counted
_COUNTED = -1


# --------------------------------------------------------------------------------------------
# Input: the punch frame

PUNCH_COLUMNS = ("user_id", "timestamp", "terminal", "village", "quarantined")


@dataclass(frozen=True, slots=True)
class PunchRecord:
    """One stored punch as the rules see it. `village` is None when the terminal is not
    attributed (e.g. its serial did not match the configuration)."""

    user_id: str
    timestamp: datetime
    terminal: str
    village: str | None
    quarantined: bool = False


def punch_frame(records: Iterable[PunchRecord]) -> pd.DataFrame:
    """The punch DataFrame every rule function takes, with the PUNCH_COLUMNS.

    `timestamp` is naive local wall-clock time; `village` is missing for unattributed terminals.
    """
    rows = list(records)
    return pd.DataFrame(
        {
            "user_id": pd.Series([row.user_id for row in rows], dtype="str"),
            "timestamp": pd.Series([row.timestamp for row in rows], dtype="datetime64[us]"),
            "terminal": pd.Series([row.terminal for row in rows], dtype="str"),
            "village": pd.Series([row.village for row in rows], dtype="str"),
            "quarantined": pd.Series([row.quarantined for row in rows], dtype=bool),
        }
    )


# --------------------------------------------------------------------------------------------
# Internals: the roster and the per-punch classification


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _to_date(day_number: int) -> date:
    return _EPOCH + timedelta(days=day_number)


def _monday(days: Days) -> Days:
    """Day number of the Monday of each day's ISO week (1970-01-01 was a Thursday)."""
    return days - (days + 3) % 7


@dataclass(frozen=True)
class _Roster:
    """Cadres in 工号 order; a cadre's position is its code in every array below."""

    cadres: tuple[Cadre, ...]
    user_ids: pd.Index
    active_from: Days
    active_to: Days
    base_days: Days
    texts: pd.DataFrame  # user_id, name, category, role

    @classmethod
    def of(cls, cadres: Iterable[Cadre], settings: RuleSettings) -> _Roster:
        ordered = tuple(sorted(cadres, key=lambda cadre: user_id_order(cadre.user_id)))
        user_ids = pd.Index([cadre.user_id for cadre in ordered], dtype="str")
        if user_ids.has_duplicates:
            duplicates = sorted(set(user_ids[user_ids.duplicated()]))
            raise ValueError(f"roster lists user_id {', '.join(duplicates)} more than once")
        return cls(
            cadres=ordered,
            user_ids=user_ids,
            active_from=np.array(
                [
                    _OPEN_START if c.active_from is None else _day_number(c.active_from)
                    for c in ordered
                ],
                dtype=np.int64,
            ),
            active_to=np.array(
                [_OPEN_END if c.active_to is None else _day_number(c.active_to) for c in ordered],
                dtype=np.int64,
            ),
            base_days=np.array([settings.base_days[c.role] for c in ordered], dtype=np.int64),
            texts=pd.DataFrame(
                {
                    "user_id": user_ids,
                    "name": [c.name for c in ordered],
                    "category": [c.role.label for c in ordered],
                    "role": [c.role.value for c in ordered],
                },
                dtype="str",
            ),
        )

    def codes(self, user_ids: pd.Series) -> npt.NDArray[np.int64]:
        """Roster position of each user ID, -1 for IDs in no roster."""
        return self.user_ids.get_indexer(pd.Index(user_ids, dtype="str")).astype(np.int64)

    def column(self, codes: npt.NDArray[np.int64], name: str) -> npt.NDArray[np.object_]:
        """The cadre text column `name` (user_id, name, category, role) for each code."""
        return self.texts[name].to_numpy(dtype=object)[codes]


@dataclass(frozen=True)
class _Classified:
    """Per punch, aligned with the punch frame's rows."""

    code: npt.NDArray[np.int64]  # roster position, -1 unknown user
    day: Days
    half: npt.NDArray[np.int8]  # index into _HALVES
    status: npt.NDArray[np.int8]  # index into _KINDS, or _COUNTED

    @property
    def counted(self) -> Flags:
        return np.equal(self.status, _COUNTED)


def _timestamps(punches: pd.DataFrame) -> npt.NDArray[np.datetime64]:
    stamps = pd.to_datetime(punches["timestamp"])
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        raise ValueError("punch timestamps must be naive local wall-clock time, not zone-aware")
    return stamps.to_numpy()


def _halves(
    stamps: npt.NDArray[np.datetime64],
    midnights: npt.NDArray[np.datetime64],
    settings: RuleSettings,
) -> npt.NDArray[np.int8]:
    """Index into _HALVES of each timestamp."""
    time_of_day = stamps - midnights
    morning_start, morning_end, afternoon_start, afternoon_end = (
        np.timedelta64(t.hour * 3600 + t.minute * 60 + t.second, "s")
        for t in (
            settings.morning.start,
            settings.morning.end,
            settings.afternoon.start,
            settings.afternoon.end,
        )
    )
    half = np.full(len(stamps), 2, dtype=np.int8)
    half[(time_of_day >= morning_start) & (time_of_day < morning_end)] = 0
    half[(time_of_day >= afternoon_start) & (time_of_day < afternoon_end)] = 1
    return half


def _classify(punches: pd.DataFrame, roster: _Roster, settings: RuleSettings) -> _Classified:
    stamps = _timestamps(punches)
    midnights = stamps.astype("datetime64[D]")
    half = _halves(stamps, midnights, settings)
    day = midnights.view(np.int64)
    code = roster.codes(punches["user_id"])
    known = code >= 0
    safe_code = np.where(known, code, 0)
    inactive = np.zeros(len(day), dtype=bool)
    if roster.cadres:
        inactive = known & (
            (day < roster.active_from[safe_code]) | (day > roster.active_to[safe_code])
        )
    reasons = {
        AnomalyKind.QUARANTINED: punches["quarantined"].to_numpy(dtype=bool),
        AnomalyKind.UNATTRIBUTED_TERMINAL: punches["village"].isna().to_numpy(),
        AnomalyKind.UNKNOWN_USER: ~known,
        AnomalyKind.OUT_OF_WINDOW: half == 2,
        AnomalyKind.INACTIVE_CADRE: inactive,
    }
    status = np.full(len(day), _COUNTED, dtype=np.int8)
    for code_of_kind, kind in reversed(list(enumerate(_KINDS))):  # the first kind wins
        status[reasons[kind]] = code_of_kind
    return _Classified(code=code, day=day, half=half, status=status)


def classify_halves(punches: pd.DataFrame, settings: RuleSettings | None = None) -> pd.Series:
    """The Half of each punch (for the 时段 column), aligned with `punches`."""
    stamps = _timestamps(punches)
    halves = _halves(stamps, stamps.astype("datetime64[D]"), settings or RuleSettings())
    return pd.Series([_HALVES[code] for code in halves], index=punches.index, dtype="object")


def _day_flags(
    punches: pd.DataFrame, classified: _Classified, settings: RuleSettings
) -> pd.DataFrame:
    """One row per (code, day) with a counted punch: morning, afternoon, valid, split_village.

    `split_village` marks a day with both halves that is not valid only because
    `same_village_required` wants them at one village. The (code, day) pair is packed into
    one integer key because grouping millions of punches by one column takes a fraction of
    the memory and time of grouping by two.
    """
    counted = classified.counted
    first_day = int(classified.day[counted].min()) if counted.any() else 0
    frame = pd.DataFrame(
        {
            "key": (classified.code[counted] << _DAY_BITS) | (classified.day[counted] - first_day),
            "morning": classified.half[counted] == 0,
            "afternoon": classified.half[counted] == 1,
        }
    )
    if settings.same_village_required:
        frame["village"] = pd.factorize(punches["village"].to_numpy()[counted])[0]
        per_village = frame.groupby(["key", "village"], sort=False)[["morning", "afternoon"]].any()
        per_village["valid"] = per_village["morning"] & per_village["afternoon"]
        flags = per_village.groupby(level="key", sort=False)[
            ["morning", "afternoon", "valid"]
        ].any()
    else:
        flags = frame.groupby("key", sort=False)[["morning", "afternoon"]].any()
        flags["valid"] = flags["morning"] & flags["afternoon"]
    flags["split_village"] = flags["morning"] & flags["afternoon"] & ~flags["valid"]
    key = flags.index.to_numpy()
    return flags.reset_index(drop=True).assign(
        code=key >> _DAY_BITS, day=(key & ((1 << _DAY_BITS) - 1)) + first_day
    )


def _leave_days(leave: Iterable[Leave], roster: _Roster, first: int, last: int) -> pd.DataFrame:
    """Distinct (code, day) of approved leave within first..last and the cadre's active period."""
    entries = list(leave)
    positions = roster.codes(pd.Series([entry.user_id for entry in entries], dtype="str"))
    codes: list[int] = []
    days: list[int] = []
    for entry, position in zip(entries, positions, strict=True):
        if position < 0:
            continue
        start = max(_day_number(entry.start), first, int(roster.active_from[position]))
        end = min(_day_number(entry.end), last, int(roster.active_to[position]))
        codes.extend([int(position)] * max(end - start + 1, 0))
        days.extend(range(start, end + 1))
    frame = pd.DataFrame(
        {"code": np.array(codes, dtype=np.int64), "day": np.array(days, dtype=np.int64)}
    )
    return frame.drop_duplicates(ignore_index=True)


# --------------------------------------------------------------------------------------------
# Day marks


@dataclass(frozen=True)
class _DayWindow:
    """The punches dated `start`..`end`, classified, with each cadre-day's flags: where the
    day marks and the village visits both begin."""

    roster: _Roster
    first: int
    last: int
    punches: pd.DataFrame
    classified: _Classified
    flags: pd.DataFrame

    @classmethod
    def of(
        cls,
        punches: pd.DataFrame,
        cadres: Sequence[Cadre],
        start: date,
        end: date,
        settings: RuleSettings,
    ) -> _DayWindow:
        roster = _Roster.of(cadres, settings)
        first, last = _day_number(start), _day_number(end)
        days = _timestamps(punches).astype("datetime64[D]").astype(np.int64)
        punches = punches[(days >= first) & (days <= last)]
        classified = _classify(punches, roster, settings)
        flags = _day_flags(punches, classified, settings)
        return cls(roster, first, last, punches, classified, flags)


DAY_COLUMNS = (
    "user_id",
    "date",
    "morning",
    "afternoon",
    "valid",
    "villages",
    "leave",
    "morning_villages",
    "afternoon_villages",
)


def day_marks(
    punches: pd.DataFrame,
    cadres: Sequence[Cadre],
    leave: Iterable[Leave],
    start: date,
    end: date,
    settings: RuleSettings | None = None,
) -> pd.DataFrame:
    """Per cadre per day from `start` to `end` (inclusive), the DAY_COLUMNS:

    user_id; date (datetime.date); morning / afternoon (a counted punch in that half);
    valid (a valid village day); villages (tuple of the villages of the day's counted punches,
    in the order first punched); leave (an approved leave day); morning_villages /
    afternoon_villages (the villages of each half's counted punches, which tell a day with
    both halves at different villages apart when `same_village_required`). Only days inside
    the cadre's
    active period with a counted punch or leave have a row; sorted by 工号 then date.
    A punch on a leave day still counts.
    """
    window = _DayWindow.of(punches, cadres, start, end, settings or RuleSettings())
    roster, flags = window.roster, window.flags
    split = flags.loc[flags["split_village"].to_numpy(), ["code", "day"]]
    flags = flags.merge(
        _villages_by_day(window.punches, window.classified, split), on=["code", "day"], how="left"
    )
    leave_days = _leave_days(leave, roster, window.first, window.last).assign(leave=True)
    marks = flags.merge(leave_days, on=["code", "day"], how="outer")
    for column in ("morning", "afternoon", "valid", "leave"):
        marks[column] = marks[column].astype("boolean").fillna(False).astype(bool)
    marks = marks.sort_values(["code", "day"], ignore_index=True)
    return pd.DataFrame(
        {
            "user_id": pd.Series(roster.column(marks["code"].to_numpy(), "user_id"), dtype="str"),
            "date": [_to_date(day) for day in marks["day"]],
            "morning": marks["morning"],
            "afternoon": marks["afternoon"],
            "valid": marks["valid"],
            "villages": _tuples(marks["villages"]),
            "leave": marks["leave"],
            "morning_villages": _tuples(marks["morning_villages"]),
            "afternoon_villages": _tuples(marks["afternoon_villages"]),
        },
        columns=list(DAY_COLUMNS),
    )


def _tuples(values: pd.Series) -> list[tuple[str, ...]]:
    return [value if isinstance(value, tuple) else () for value in values]


def _villages_by_day(
    punches: pd.DataFrame, classified: _Classified, split: pd.DataFrame
) -> pd.DataFrame:
    """Per (code, day): the villages of the day's counted punches; and for the `split` days
    (both halves, at different villages) the villages of each half."""
    counted = classified.counted
    visits = pd.DataFrame(
        {
            "code": classified.code[counted],
            "day": classified.day[counted],
            "half": classified.half[counted],
            "timestamp": _timestamps(punches)[counted],
            "village": punches["village"].to_numpy()[counted],
        }
    ).sort_values("timestamp")
    keys = ["code", "day"]
    frames = [_village_tuples(visits.drop_duplicates([*keys, "village"]), "villages")]
    if len(split):
        # Only the few split days need their halves told apart.
        halves = visits.merge(split, on=keys).drop_duplicates([*keys, "half", "village"])
        for code, name in ((0, "morning_villages"), (1, "afternoon_villages")):
            frames.append(_village_tuples(halves[halves["half"] == code], name))
    villages = pd.concat(frames, axis=1).reset_index()
    for name in ("morning_villages", "afternoon_villages"):
        if name not in villages:
            villages[name] = [()] * len(villages)
    return villages


def _village_tuples(visits: pd.DataFrame, name: str) -> pd.Series:
    """Per (code, day) of `visits`, its rows' villages as a tuple in row order: what
    `groupby(...).agg(tuple)` gives, without a pandas call per group (a district month is
    hundreds of thousands of them)."""
    codes, days = visits["code"].to_numpy(), visits["day"].to_numpy()
    if not len(codes):
        return visits.groupby(["code", "day"])["village"].agg(tuple).rename(name)
    order = np.lexsort((days, codes))  # stable: each group's rows keep their order
    codes, days = codes[order], days[order]
    villages = visits["village"].to_numpy()[order].tolist()
    starts = np.flatnonzero(
        np.concatenate(([True], (codes[1:] != codes[:-1]) | (days[1:] != days[:-1])))
    )
    ends = [*starts[1:].tolist(), len(villages)]
    index = pd.MultiIndex.from_arrays([codes[starts], days[starts]], names=["code", "day"])
    tuples = [tuple(villages[start:end]) for start, end in zip(starts.tolist(), ends, strict=True)]
    return pd.Series(tuples, index=index, name=name, dtype=object)


def village_visits(
    punches: pd.DataFrame,
    cadres: Sequence[Cadre],
    start: date,
    end: date,
    settings: RuleSettings | None = None,
) -> pd.DataFrame:
    """Per village with a counted punch from `start` to `end`: cadres (distinct cadres with a
    valid day there), cadre_days (valid days with a counted punch there: a day split between
    two villages counts for both) and half_days (days with a counted punch there that were
    not valid). Index: village. Vectorised: a district month is millions of punches."""
    window = _DayWindow.of(punches, cadres, start, end, settings or RuleSettings())
    punches, classified, flags = window.punches, window.classified, window.flags
    counted = classified.counted
    visits = pd.DataFrame(
        {
            "code": classified.code[counted],
            "day": classified.day[counted],
            "village": punches["village"].astype(object).to_numpy()[counted],
        }
    ).drop_duplicates()
    visits = visits.merge(flags[["code", "day", "valid"]], on=["code", "day"])
    valid = visits[visits["valid"].to_numpy()]
    result = valid.groupby("village").agg(cadres=("code", "nunique"), cadre_days=("day", "size"))
    halves = visits[~visits["valid"].to_numpy()].groupby("village").size().rename("half_days")
    result = result.join(halves, how="outer").fillna(0).astype(np.int64)
    return result


# --------------------------------------------------------------------------------------------
# Weeks

WEEK_COLUMNS = (
    "week",
    "month",
    "user_id",
    "name",
    "category",
    "role",
    "available_days",
    "required_days",
    "valid_days",
    "morning_only_days",
    "afternoon_only_days",
    "leave_days",
    "met",
    "deduction",
    "result_days",
    "remarks",
    "in_progress",
)
# The 汇总 sheet's columns (docs/reports.md); `met` is written 是/否.
WEEK_HEADERS = {
    "user_id": "工号",
    "name": "姓名",
    "category": "类别",
    "required_days": "应下村天数",
    "valid_days": "有效下村天数",
    "morning_only_days": "仅上午打卡天数",
    "afternoon_only_days": "仅下午打卡天数",
    "leave_days": "请假天数",
    "met": "是否达标",
    "deduction": "扣款(元)",
    "result_days": "已填工作成效天数",
    "remarks": "备注",
}


def assess_weeks(
    punches: pd.DataFrame,
    cadres: Sequence[Cadre],
    leave: Iterable[Leave],
    calendar: WorkCalendar,
    weeks: Iterable[IsoWeek],
    settings: RuleSettings | None = None,
    work_results: Iterable[tuple[str, date]] = (),
    today: date | None = None,
) -> pd.DataFrame:
    """One row per cadre per assessed week, sorted by week then 工号, the WEEK_COLUMNS:

    week (`2026-W47`); month (`2026-11`, the month holding the week's Sunday); user_id, name;
    category (机关干部/驻村干部); role (Role value); available_days (working days inside the
    active period, not on leave); required_days = min(base, available_days); valid_days;
    morning_only_days / afternoon_only_days (half days); leave_days (calendar days of leave
    inside the week and the active period); met (valid_days >= required_days); deduction
    (yuan, 0 when met); result_days (valid days with a work result in `work_results`,
    (user ID, date) pairs that count); remarks (Chinese text for the 备注 column, "" when none);
    in_progress (the week has not ended by `today`). With `work_results_required`, a valid day
    without a work result does not count.

    A cadre active on no day of a week is not assessed that week. A week with no available
    working day (Spring Festival, or leave all week) requires 0 days and is met. Given `today`,
    a week that has not begun is not assessed, and one that has not ended is in progress: it
    is charged nothing and has not failed (`failed`), whatever it holds so far.
    """
    settings = settings or RuleSettings()
    roster = _Roster.of(cadres, settings)
    ordered_weeks = sorted(week for week in set(weeks) if today is None or week.start <= today)
    if not ordered_weeks or not roster.cadres:
        return pd.DataFrame({column: [] for column in WEEK_COLUMNS})
    week_starts = np.array([_day_number(week.start) for week in ordered_weeks], dtype=np.int64)
    grid = _week_grid(roster, week_starts)
    grid = _add_availability(grid, roster, leave, calendar, week_starts)
    grid = _add_day_counts(grid, punches, roster, settings, week_starts, work_results)

    codes = grid["code"].to_numpy()
    week_index = grid["week_index"].to_numpy()
    required = np.minimum(roster.base_days[codes], grid["available_days"].to_numpy())
    met = grid["valid_days"].to_numpy() >= required
    ongoing = np.array([today is not None and week.end >= today for week in ordered_weeks])
    in_progress = ongoing[week_index]
    return pd.DataFrame(
        {
            "week": np.array([week.label for week in ordered_weeks])[week_index],
            "month": np.array([week.month.label for week in ordered_weeks])[week_index],
            "user_id": roster.column(codes, "user_id"),
            "name": roster.column(codes, "name"),
            "category": roster.column(codes, "category"),
            "role": roster.column(codes, "role"),
            "available_days": grid["available_days"],
            "required_days": required,
            "valid_days": grid["valid_days"],
            "morning_only_days": grid["morning_only_days"],
            "afternoon_only_days": grid["afternoon_only_days"],
            "leave_days": grid["leave_days"],
            "met": met,
            "deduction": np.where(met | in_progress, 0, settings.deduction_yuan).astype(np.int64),
            "result_days": grid["result_days"],
            "remarks": _week_remarks(grid, roster, calendar, ordered_weeks, settings),
            "in_progress": in_progress,
        },
        columns=list(WEEK_COLUMNS),
    )


MET_LABELS = {True: "是", False: "否"}
IN_PROGRESS_LABEL = "进行中"


def met_labels(week_results: pd.DataFrame) -> list[str]:
    """是否达标 of each row of `assess_weeks`: 是, 否, or 进行中 for a week still in progress
    that has not reached its required days."""
    return [
        MET_LABELS[bool(met)] if bool(met) or not bool(ongoing) else IN_PROGRESS_LABEL
        for met, ongoing in zip(week_results["met"], week_results["in_progress"], strict=True)
    ]


def failed(week_results: pd.DataFrame) -> Flags:
    """Which rows of `assess_weeks` are failed weeks: short of the required days, and over
    (a week still in progress has not failed, whatever it holds so far)."""
    met: Flags = week_results["met"].to_numpy().astype(bool)
    in_progress: Flags = week_results["in_progress"].to_numpy().astype(bool)
    return ~met & ~in_progress


def _week_grid(roster: _Roster, week_starts: Days) -> pd.DataFrame:
    """Every (week, cadre) with at least one active day: the part of the week the cadre is
    active, first_active..last_active, as day numbers."""
    first_active = np.maximum(week_starts[:, None], roster.active_from[None, :])
    last_active = np.minimum(week_starts[:, None] + 6, roster.active_to[None, :])
    week_index, code = np.nonzero(first_active <= last_active)  # week-major, 工号 order
    return pd.DataFrame(
        {
            "week_index": week_index,
            "code": code,
            "first_active": first_active[week_index, code],
            "last_active": last_active[week_index, code],
        }
    )


def _week_positions(days: Days, week_starts: Days) -> tuple[npt.NDArray[np.intp], Flags]:
    """Index into `week_starts` of each day's week, and whether that week is assessed at all."""
    mondays = _monday(days)
    index = np.searchsorted(week_starts, mondays).clip(max=len(week_starts) - 1)
    return index, week_starts[index] == mondays


def _add_availability(
    grid: pd.DataFrame,
    roster: _Roster,
    leave: Iterable[Leave],
    calendar: WorkCalendar,
    week_starts: Days,
) -> pd.DataFrame:
    """available_days and leave_days of each grid row."""
    first, last = int(week_starts[0]), int(week_starts[-1]) + 6
    is_workday = np.array(
        [calendar.is_workday(_to_date(day)) for day in range(first, last + 1)], dtype=bool
    )
    workdays_before = np.concatenate([[0], np.cumsum(is_workday)])  # index: day - first
    active_workdays = (
        workdays_before[grid["last_active"].to_numpy() - first + 1]
        - workdays_before[grid["first_active"].to_numpy() - first]
    )
    leave_days = _leave_days(leave, roster, first, last)
    week_index, assessed = _week_positions(leave_days["day"].to_numpy(), week_starts)
    leave_days = leave_days.assign(
        week_index=week_index, workday=is_workday[leave_days["day"].to_numpy() - first]
    )[assessed]
    per_week = leave_days.groupby(["week_index", "code"]).agg(
        leave_days=("day", "size"), leave_workdays=("workday", "sum")
    )
    grid = grid.merge(per_week, on=["week_index", "code"], how="left")
    grid[["leave_days", "leave_workdays"]] = (
        grid[["leave_days", "leave_workdays"]].fillna(0).astype(np.int64)
    )
    grid["available_days"] = active_workdays - grid["leave_workdays"].to_numpy()
    return grid


_DAY_COUNTS = [
    "valid_days",
    "morning_only_days",
    "afternoon_only_days",
    "split_village_days",
    "result_days",
    "unreported_days",
]


def _add_day_counts(
    grid: pd.DataFrame,
    punches: pd.DataFrame,
    roster: _Roster,
    settings: RuleSettings,
    week_starts: Days,
    work_results: Iterable[tuple[str, date]],
) -> pd.DataFrame:
    """The _DAY_COUNTS of each grid row."""
    flags = _day_flags(punches, _classify(punches, roster, settings), settings)
    week_index, assessed = _week_positions(flags["day"].to_numpy(), week_starts)
    reported = flags["valid"].to_numpy() & _has_result(flags, roster, work_results)
    valid = reported if settings.work_results_required else flags["valid"].to_numpy()
    flags = flags.assign(
        week_index=week_index,
        valid_days=valid,
        morning_only_days=flags["morning"] & ~flags["afternoon"],
        afternoon_only_days=flags["afternoon"] & ~flags["morning"],
        split_village_days=flags["split_village"],
        result_days=reported,
        unreported_days=flags["valid"].to_numpy() & ~reported,
    )[assessed]
    counts = flags.groupby(["week_index", "code"])[_DAY_COUNTS].sum()
    grid = grid.merge(counts, on=["week_index", "code"], how="left")
    grid[_DAY_COUNTS] = grid[_DAY_COUNTS].fillna(0).astype(np.int64)
    return grid


def _has_result(
    flags: pd.DataFrame, roster: _Roster, work_results: Iterable[tuple[str, date]]
) -> Flags:
    """Whether each (code, day) of `flags` has a work result."""
    pairs = list(work_results)
    if not pairs or flags.empty:
        return np.zeros(len(flags), dtype=bool)
    codes = roster.codes(pd.Series([user_id for user_id, _ in pairs], dtype="str"))
    days = np.array([_day_number(day) for _, day in pairs], dtype=np.int64)
    known = codes >= 0
    filed = (codes[known].astype(np.int64) << 32) | days[known]
    keys = (flags["code"].to_numpy().astype(np.int64) << 32) | flags["day"].to_numpy()
    return np.isin(keys, filed)


def _week_remarks(
    grid: pd.DataFrame,
    roster: _Roster,
    calendar: WorkCalendar,
    weeks: Sequence[IsoWeek],
    settings: RuleSettings,
) -> npt.NDArray[np.object_]:
    """The 备注 text of each grid row; only the few rows with something to say are visited."""
    fallback_notes = np.array(
        [calendar.fallback_note(week.start, week.end) for week in weeks], dtype=object
    )
    week_index = grid["week_index"].to_numpy()
    codes = grid["code"].to_numpy()
    week_starts = np.array([_day_number(week.start) for week in weeks])[week_index]
    available = grid["available_days"].to_numpy()
    split = grid["split_village_days"].to_numpy()
    unreported = (
        grid["unreported_days"].to_numpy()
        if settings.work_results_required
        else np.zeros(len(grid), dtype=np.int64)
    )
    noteworthy = (
        (fallback_notes[week_index] != "")
        | (roster.active_from[codes] > week_starts)
        | (roster.active_to[codes] < week_starts + 6)
        | (available == 0)
        | (split > 0)
        | (unreported > 0)
    )
    remarks = np.full(len(grid), "", dtype=object)
    for row in np.flatnonzero(noteworthy):
        week, cadre = weeks[week_index[row]], roster.cadres[codes[row]]
        notes = [str(fallback_notes[week_index[row]])]
        if cadre.active_from is not None and cadre.active_from > week.start:
            notes.append(f"{cadre.active_from.isoformat()}起在岗")
        if cadre.active_to is not None and cadre.active_to < week.end:
            notes.append(f"在岗至{cadre.active_to.isoformat()}")
        if available[row] == 0:
            notes.append("本周无可用工作日，不作下村要求")
        if split[row]:
            notes.append(f"{split[row]}天上午下午不在同一村，不计为有效天")
        if unreported[row]:
            notes.append(f"{unreported[row]}天未按时填报工作成效，不计为有效天")
        remarks[row] = _REMARK_SEPARATOR.join(note for note in notes if note)
    return remarks


# --------------------------------------------------------------------------------------------
# Months

MONTH_COLUMNS = (
    "month",
    "user_id",
    "name",
    "category",
    "role",
    "assessed_weeks",
    "met_weeks",
    "failed_weeks",
    "valid_days",
    "average_valid_days",
    "deduction_total",
    "failed_week_labels",
)
# The 月度汇总 sheet's columns (docs/reports.md).
MONTH_HEADERS = {
    "user_id": "工号",
    "name": "姓名",
    "category": "类别",
    "assessed_weeks": "考核周数",
    "met_weeks": "达标周数",
    "failed_weeks": "未达标周数",
    "valid_days": "有效下村天数",
    "average_valid_days": "周均下村天数",
    "deduction_total": "扣款合计(元)",
}
# The 通报 sheet's columns; `failed_week_labels` is written joined with 、.
NOTICE_HEADERS = {
    "user_id": "工号",
    "name": "姓名",
    "category": "类别",
    "failed_weeks": "未达标周数",
    "deduction_total": "扣款合计(元)",
    "failed_week_labels": "未达标周次",
}


def month_results(week_results: pd.DataFrame) -> pd.DataFrame:
    """Per cadre per month of the weeks given (from `assess_weeks`), the MONTH_COLUMNS:

    month; user_id, name, category, role; assessed_weeks, met_weeks, failed_weeks; valid_days
    (sum over the weeks); average_valid_days (valid_days / assessed_weeks); deduction_total;
    failed_week_labels (tuple of week labels, in order). Sorted by month then 工号.
    """
    if week_results.empty:
        return pd.DataFrame({column: [] for column in MONTH_COLUMNS})
    keys = ["month", "user_id"]
    summary = (
        week_results.groupby(keys, sort=False)
        .agg(
            name=("name", "first"),
            category=("category", "first"),
            role=("role", "first"),
            assessed_weeks=("met", "size"),
            met_weeks=("met", "sum"),
            valid_days=("valid_days", "sum"),
            deduction_total=("deduction", "sum"),
        )
        .reset_index()
    )
    failing = week_results[failed(week_results)]
    counts = failing.groupby(keys, sort=False).size().rename("failed_weeks").reset_index()
    summary = summary.merge(counts, on=keys, how="left")
    summary["failed_weeks"] = summary["failed_weeks"].fillna(0).astype(np.int64)
    summary["average_valid_days"] = summary["valid_days"] / summary["assessed_weeks"]
    failing = failing.sort_values("week")
    labels = failing.groupby(keys, sort=False)["week"].agg(tuple).rename("failed_week_labels")
    summary = summary.merge(labels.reset_index(), on=keys, how="left")
    summary["failed_week_labels"] = [
        value if isinstance(value, tuple) else () for value in summary["failed_week_labels"]
    ]
    order = {
        uid: rank for rank, uid in enumerate(sorted(set(summary["user_id"]), key=user_id_order))
    }
    summary["rank"] = summary["user_id"].map(order)
    summary = summary.sort_values(["month", "rank"], ignore_index=True)
    return summary[list(MONTH_COLUMNS)]


# What the monthly statistics need of each assessed week: a district's year of weeks is half a
# million cadre-weeks, which the statistics reduce to these few figures per week, so a monthly
# report can keep them (reports/earlier.py) instead of assessing the year again.
WEEK_TOTAL_COLUMNS = ("week", "month", "person_weeks", "valid_days", "deduction", "failing")


def week_totals(week_results: pd.DataFrame) -> pd.DataFrame:
    """Per week of `week_results` (from `assess_weeks`) with at least one row, sorted by week,
    the WEEK_TOTAL_COLUMNS: week; month; person_weeks (cadres assessed); valid_days and
    deduction (sums); failing (tuple of the user IDs that failed the week, in 工号 order)."""
    if week_results.empty:
        return empty_week_totals()
    grouped = week_results.groupby("week", sort=True)
    totals = grouped.agg(
        month=("month", "first"),
        person_weeks=("met", "size"),
        valid_days=("valid_days", "sum"),
        deduction=("deduction", "sum"),
    ).reset_index()
    failing = (
        week_results[failed(week_results)]
        .groupby("week", sort=False)["user_id"]
        .agg(tuple)
        .to_dict()
    )
    totals["failing"] = [failing.get(week, ()) for week in totals["week"]]
    return totals[list(WEEK_TOTAL_COLUMNS)]


def empty_week_totals() -> pd.DataFrame:
    return pd.DataFrame({column: [] for column in WEEK_TOTAL_COLUMNS}).astype(
        {"person_weeks": np.int64, "valid_days": np.int64, "deduction": np.int64}
    )


@dataclass(frozen=True)
class MonthStatistics:
    """The 统计 sheet (docs/reports.md). Averages are valid village days per assessed cadre-week;
    None where no week of that month was assessed (e.g. before the terminals were installed)."""

    month: YearMonth
    cadre_count: int  # 干部人数: cadres assessed in the month
    notified_count: int  # 通报人数: cadres with at least one failed week
    deduction_total: int  # 扣款总额(元)
    average_valid_days: float | None  # 人均周下村天数
    previous_month_average: float | None  # 上月人均周下村天数
    last_year_average: float | None  # 去年同期人均周下村天数
    year_on_year_change: float | None  # 同比变化, a ratio: 0.27 means up 27%
    year_to_date_notified: int  # 年度累计通报人数: distinct cadres failing a week, Jan..month
    year_to_date_deduction: int  # 年度累计扣款(元)
    monthly_averages: tuple[tuple[YearMonth, float | None], ...]  # last 12 months, oldest first


def month_statistics(
    month_weeks: pd.DataFrame, totals: pd.DataFrame, month: YearMonth
) -> MonthStatistics:
    """Figures for `month` from its own week results (`assess_weeks` rows of the month) and
    the `week_totals` of `statistics_weeks(month)` (the month's own weeks included)."""
    valid_days = totals.groupby("month")["valid_days"].sum().to_dict() if len(totals) else {}
    person_weeks = totals.groupby("month")["person_weeks"].sum().to_dict() if len(totals) else {}

    def average(of: YearMonth) -> float | None:
        weeks = int(person_weeks.get(of.label, 0))
        return int(valid_days[of.label]) / weeks if weeks else None

    year_to_date_months = [
        YearMonth(month.year, number).label for number in range(1, month.month + 1)
    ]
    year_to_date = totals[totals["month"].isin(year_to_date_months)]
    current, last_year = average(month), average(month.shift(-12))
    return MonthStatistics(
        month=month,
        cadre_count=int(month_weeks["user_id"].nunique()),
        notified_count=_failing_cadres(month_weeks),
        deduction_total=int(month_weeks["deduction"].sum()),
        average_valid_days=current,
        previous_month_average=average(month.shift(-1)),
        last_year_average=last_year,
        year_on_year_change=(
            (current - last_year) / last_year
            if current is not None and last_year is not None and last_year > 0
            else None
        ),
        year_to_date_notified=len(set().union(*year_to_date["failing"])),
        year_to_date_deduction=int(year_to_date["deduction"].sum()),
        monthly_averages=tuple(
            (month.shift(offset), average(month.shift(offset))) for offset in range(-11, 1)
        ),
    )


def _failing_cadres(week_results: pd.DataFrame) -> int:
    return int(week_results.loc[failed(week_results), "user_id"].nunique())


def statistics_weeks(month: YearMonth) -> list[IsoWeek]:
    """The weeks `month_statistics` needs: same month last year through `month`, which
    covers the previous month, the year to date and the 12-month chart."""
    return weeks_between(month.shift(-12).weeks()[0], month.weeks()[-1])


@dataclass(frozen=True)
class MonthlyFigures:
    week_results: pd.DataFrame  # assess_weeks over the weeks assessed from punches
    month_results: pd.DataFrame  # month_results for `month` only
    statistics: MonthStatistics
    week_totals: pd.DataFrame  # week_totals of statistics_weeks(month)


@dataclass(frozen=True)
class KnownWeeks:
    """Statistics weeks already assessed: the labels of all of them, and their `week_totals`
    (a week in which no cadre was assessed has a label but no row)."""

    labels: frozenset[str]
    totals: pd.DataFrame


def assess_month(
    punches: pd.DataFrame,
    cadres: Sequence[Cadre],
    leave: Iterable[Leave],
    calendar: WorkCalendar,
    month: YearMonth,
    settings: RuleSettings | None = None,
    data_since: date | None = None,
    work_results: Iterable[tuple[str, date]] = (),
    known: KnownWeeks | None = None,
    today: date | None = None,
) -> MonthlyFigures:
    """Everything the monthly notice needs. Weeks starting before `data_since` (when the
    terminals went into service) are not assessed, so the years before clockd do not read as
    all failures. The `known` weeks are not assessed again: `punches` need cover only the
    dates of the other weeks of `statistics_weeks(month)` (the month's own are never known).
    Given `today`, weeks that have not ended are charged nothing (assess_weeks).
    """
    skipped = frozenset() if known is None else known.labels
    weeks = [
        week
        for week in statistics_weeks(month)
        if (data_since is None or week.start >= data_since) and week.label not in skipped
    ]
    week_results = assess_weeks(
        punches, cadres, leave, calendar, weeks, settings, work_results, today
    )
    totals = week_totals(week_results)
    if known is not None and len(known.totals):
        totals = pd.concat([known.totals, totals], ignore_index=True)
        totals = totals.sort_values("week", ignore_index=True)
    month_weeks = week_results[week_results["month"] == month.label]
    return MonthlyFigures(
        week_results=week_results,
        month_results=month_results(month_weeks),
        statistics=month_statistics(month_weeks, totals, month),
        week_totals=totals,
    )


# --------------------------------------------------------------------------------------------
# Anomalies

ANOMALY_COLUMNS = ("kind", "type", "terminal", "user_id", "timestamp", "explanation")


def find_anomalies(
    punches: pd.DataFrame, cadres: Sequence[Cadre], settings: RuleSettings | None = None
) -> pd.DataFrame:
    """Every punch that is not counted, once each, sorted by time; the ANOMALY_COLUMNS:

    kind (AnomalyKind value); type (its Chinese label); terminal; user_id; timestamp;
    explanation (Chinese, for the 说明 column). When several reasons apply, the first in
    AnomalyKind order is given.
    """
    settings = settings or RuleSettings()
    roster = _Roster.of(cadres, settings)
    classified = _classify(punches, roster, settings)
    rows = punches.loc[~classified.counted, ["terminal", "user_id", "timestamp"]].copy()
    kinds = [_KINDS[code] for code in classified.status[~classified.counted]]
    codes = classified.code[~classified.counted]
    rows["kind"] = pd.Series([kind.value for kind in kinds], index=rows.index, dtype="str")
    rows["type"] = pd.Series([kind.label for kind in kinds], index=rows.index, dtype="str")
    rows["explanation"] = pd.Series(
        [
            _explain(kind, terminal, user_id, stamp, roster, code, settings)
            for kind, terminal, user_id, stamp, code in zip(
                kinds, rows["terminal"], rows["user_id"], rows["timestamp"], codes, strict=True
            )
        ],
        index=rows.index,
        dtype="str",
    )
    return rows.sort_values("timestamp", kind="stable", ignore_index=True)[list(ANOMALY_COLUMNS)]


def _explain(
    kind: AnomalyKind,
    terminal: str,
    user_id: str,
    stamp: pd.Timestamp,
    roster: _Roster,
    code: int,
    settings: RuleSettings,
) -> str:
    if kind is AnomalyKind.QUARANTINED:
        return "终端时钟异常(早于安装日期或超前服务器时间)，记录已隔离，不计入考勤"
    if kind is AnomalyKind.UNATTRIBUTED_TERMINAL:
        return f"终端 {terminal} 未确认所属村(社区)(如序列号与配置不符)，不计入考勤"
    if kind is AnomalyKind.UNKNOWN_USER:
        return f"工号 {user_id} 不在花名册中，记录保留，不计入考勤"
    if kind is AnomalyKind.OUT_OF_WINDOW:
        return (
            f"打卡时间 {stamp:%H:%M:%S} 不在上午({settings.morning.start:%H:%M}–"
            f"{settings.morning.end:%H:%M})或下午({settings.afternoon.start:%H:%M}–"
            f"{settings.afternoon.end:%H:%M})时段内，不计入考勤"
        )
    cadre = roster.cadres[code]
    since = f"{cadre.active_from.isoformat()}起" if cadre.active_from else ""
    until = f"至{cadre.active_to.isoformat()}" if cadre.active_to else ""
    return f"打卡日期不在该干部在岗期({since}{until})内，不计入考勤"
