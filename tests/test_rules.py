import logging
from datetime import date, datetime, time, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockd import rules
from clockd.config import RuleSettings, Window
from clockd.domain import Cadre, Leave, Role
from clockd.rules import (
    WEEK_COLUMNS,
    AnomalyKind,
    Half,
    PunchRecord,
    assess_month,
    assess_weeks,
    classify_halves,
    day_marks,
    find_anomalies,
    month_results,
    month_statistics,
    punch_frame,
    statistics_weeks,
)
from clockd.workcal import IsoWeek, WorkCalendar, YearMonth

W47 = IsoWeek(2026, 47)  # Monday 2026-11-16 to Sunday 2026-11-22, five working days
ORDINARY = Cadre("1001", "王建国", Role.ORDINARY)
RESIDENT = Cadre("1002", "杨春燕", Role.RESIDENT, village="桥东村")
CALENDAR = WorkCalendar()


def punch(
    user_id: str,
    when: str,
    village: str | None = "桥东村",
    *,
    terminal: str = "t02",
    quarantined: bool = False,
) -> PunchRecord:
    return PunchRecord(user_id, datetime.fromisoformat(when), terminal, village, quarantined)


def village_day(user_id: str, day: date, village: str = "桥东村") -> list[PunchRecord]:
    return [
        PunchRecord(user_id, datetime.combine(day, time(8, 30)), "t02", village),
        PunchRecord(user_id, datetime.combine(day, time(15, 0)), "t02", village),
    ]


def assess(
    records: list[PunchRecord],
    cadres: list[Cadre] | None = None,
    leave: list[Leave] | None = None,
    weeks: list[IsoWeek] | None = None,
    rules: RuleSettings | None = None,
    calendar: WorkCalendar = CALENDAR,
) -> pd.DataFrame:
    return assess_weeks(
        punch_frame(records),
        [ORDINARY, RESIDENT] if cadres is None else cadres,
        leave or [],
        calendar,
        [W47] if weeks is None else weeks,
        rules,
    )


def row(results: pd.DataFrame, user_id: str, week: IsoWeek = W47) -> pd.Series:
    match = results[(results["user_id"] == user_id) & (results["week"] == week.label)]
    assert len(match) == 1
    return match.iloc[0]


# Punches of one ordinary cadre in W47: (day of week, second of day, village, quarantined).
week_punches = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.integers(0, 86399),
        st.sampled_from(["桥东村", "桥西村", None]),
        st.booleans(),
    ),
    max_size=20,
)


def to_records(drawn: list[tuple[int, int, str | None, bool]]) -> list[PunchRecord]:
    return [
        PunchRecord(
            ORDINARY.user_id,
            datetime.combine(W47.start, time()) + timedelta(days=weekday, seconds=second),
            "t02" if village else "t99",
            village,
            quarantined,
        )
        for weekday, second, village, quarantined in drawn
    ]


# ---------------------------------------------------------------------------- half-days


@pytest.mark.parametrize(
    ("clock", "half"),
    [
        ("04:59:59", Half.OUT_OF_WINDOW),
        ("05:00:00", Half.MORNING),
        ("11:59:59", Half.MORNING),
        ("12:00:00", Half.AFTERNOON),
        ("20:59:59", Half.AFTERNOON),
        ("21:00:00", Half.OUT_OF_WINDOW),
    ],
)
def test_boundary_times(clock: str, half: Half) -> None:
    frame = punch_frame([punch("1001", f"2026-11-16 {clock}")])
    assert classify_halves(frame).tolist() == [half]
    anomalies = find_anomalies(frame, [ORDINARY])
    assert (len(anomalies) == 1) is (half is Half.OUT_OF_WINDOW)


def test_out_of_window_punches_are_anomalies_and_never_make_a_day() -> None:
    records = [punch("1001", "2026-11-16 04:59:59"), punch("1001", "2026-11-16 21:00:00")]
    records += [punch("1001", "2026-11-16 08:00"), punch("1001", "2026-11-17 15:00")]
    results = assess(records)
    assert row(results, "1001")["valid_days"] == 0
    anomalies = find_anomalies(punch_frame(records), [ORDINARY])
    assert anomalies["kind"].tolist() == [AnomalyKind.OUT_OF_WINDOW] * 2
    assert anomalies["type"].tolist() == ["时段外打卡"] * 2
    assert "05:00" in anomalies["explanation"].iloc[0]


def test_windows_are_configurable() -> None:
    rules = RuleSettings(
        morning=Window(start=time(7), end=time(11, 30)),
        afternoon=Window(start=time(13), end=time(18)),
    )
    frame = punch_frame(
        [
            punch("1001", "2026-11-16 11:29"),
            punch("1001", "2026-11-16 12:30"),  # the lunch gap counts for neither half
            punch("1001", "2026-11-16 13:00"),
            punch("1001", "2026-11-16 18:00"),
        ]
    )
    assert classify_halves(frame, rules).tolist() == [
        Half.MORNING,
        Half.OUT_OF_WINDOW,
        Half.AFTERNOON,
        Half.OUT_OF_WINDOW,
    ]
    with pytest.raises(ValueError, match="morning window must end before"):
        RuleSettings(morning=Window(start=time(5), end=time(13)))


# ---------------------------------------------------------------------------- valid days


@settings(max_examples=60, deadline=None)
@given(week_punches)
def test_a_valid_day_needs_a_counted_morning_and_afternoon_punch(
    drawn: list[tuple[int, int, str | None, bool]],
) -> None:
    records = to_records(drawn)
    counted = [r for r in records if r.village is not None and not r.quarantined]
    halves = {
        (r.timestamp.date(), r.timestamp.hour < 12) for r in counted if 5 <= r.timestamp.hour < 21
    }
    expected = {day for day, morning in halves if morning and (day, False) in halves}
    marks = day_marks(punch_frame(records), [ORDINARY], [], W47.start, W47.end)
    assert set(marks.loc[marks["valid"], "date"]) == expected
    assert row(assess(records), "1001")["valid_days"] == len(expected)


@settings(max_examples=60, deadline=None)
@given(week_punches, week_punches)
def test_adding_punches_never_lowers_valid_days(
    drawn: list[tuple[int, int, str | None, bool]], more: list[tuple[int, int, str | None, bool]]
) -> None:
    before = row(assess(to_records(drawn)), "1001")["valid_days"]
    after = row(assess(to_records(drawn + more)), "1001")["valid_days"]
    assert after >= before


@settings(max_examples=60, deadline=None)
@given(week_punches)
def test_quarantined_and_unattributed_punches_never_count(
    drawn: list[tuple[int, int, str | None, bool]],
) -> None:
    records = to_records(drawn)
    counted_only = [r for r in records if r.village is not None and not r.quarantined]
    assert (
        row(assess(records), "1001")["valid_days"]
        == row(assess(counted_only), "1001")["valid_days"]
    )
    anomalies = find_anomalies(punch_frame(records), [ORDINARY])
    expected = len(records) - len(counted_only)
    listed = anomalies["kind"].isin([AnomalyKind.QUARANTINED, AnomalyKind.UNATTRIBUTED_TERMINAL])
    assert int(listed.sum()) == expected


def test_several_punches_in_one_half_count_once_and_villages_may_differ() -> None:
    records = [
        punch("1001", "2026-11-16 08:00", "桥东村"),
        punch("1001", "2026-11-16 08:01", "桥东村"),
        punch("1001", "2026-11-16 10:00", "桥西村", terminal="t03"),
        punch("1001", "2026-11-16 15:00", "桥西村", terminal="t03"),
        punch("1001", "2026-11-17 09:00"),
        punch("1001", "2026-11-17 09:02"),
        punch("1001", "2026-11-18 16:00"),
    ]
    result = row(assess(records), "1001")
    assert (result["valid_days"], result["morning_only_days"], result["afternoon_only_days"]) == (
        1,
        1,
        1,
    )
    marks = day_marks(punch_frame(records), [ORDINARY], [], W47.start, W47.end)
    assert marks["villages"].tolist() == [("桥东村", "桥西村"), ("桥东村",), ("桥东村",)]
    assert marks[["morning", "afternoon", "valid"]].values.tolist() == [
        [True, True, True],
        [True, False, False],
        [False, True, False],
    ]


def test_same_village_required() -> None:
    records = [
        punch("1001", "2026-11-16 08:00", "桥东村"),
        punch("1001", "2026-11-16 15:00", "桥西村", terminal="t03"),
        *village_day("1001", date(2026, 11, 17)),
    ]
    assert row(assess(records), "1001")["valid_days"] == 2
    strict = row(assess(records, rules=RuleSettings(same_village_required=True)), "1001")
    assert strict["valid_days"] == 1
    assert (strict["morning_only_days"], strict["afternoon_only_days"]) == (0, 0)
    assert "不在同一村" in strict["remarks"]


def test_weekend_days_count_like_any_other() -> None:
    records = village_day("1001", date(2026, 11, 21)) + village_day("1001", date(2026, 11, 22))
    result = row(assess(records), "1001")
    assert (result["valid_days"], result["met"], result["deduction"]) == (2, True, 0)


# ---------------------------------------------------------------------------- requirement


def test_required_days_by_role_and_the_summary_columns() -> None:
    records = village_day("1001", date(2026, 11, 16)) + village_day("1001", date(2026, 11, 17))
    records += village_day("1002", date(2026, 11, 16)) + village_day("1002", date(2026, 11, 18))
    results = assess(records)
    ordinary, resident = row(results, "1001"), row(results, "1002")
    assert (ordinary["category"], ordinary["required_days"], ordinary["met"]) == (
        "机关干部",
        2,
        True,
    )
    assert (resident["category"], resident["required_days"], resident["met"]) == (
        "驻村干部",
        3,
        False,
    )
    assert (ordinary["deduction"], resident["deduction"]) == (0, 100)
    assert resident["month"] == "2026-11" and resident["name"] == "杨春燕"


def test_a_holiday_week_lowers_the_requirement() -> None:
    national_day = IsoWeek(2026, 40)  # Sep 28 - Oct 4; Oct 1-7 are off
    leave = [Leave("1002", date(2026, 9, 28), date(2026, 9, 29))]
    result = row(assess([], leave=leave, weeks=[national_day]), "1002", national_day)
    assert (result["available_days"], result["required_days"], result["leave_days"]) == (1, 1, 2)
    normal = [Leave("1002", date(2026, 11, 16), date(2026, 11, 17))]
    assert row(assess([], leave=normal), "1002")["required_days"] == 3


def test_a_week_with_no_working_day_requires_nothing() -> None:
    spring_festival = IsoWeek(2026, 8)  # Feb 16-22, all off
    results = assess([], weeks=[spring_festival])
    for user_id in ("1001", "1002"):
        result = row(results, user_id, spring_festival)
        assert (result["available_days"], result["required_days"], result["met"]) == (0, 0, True)
        assert "无可用工作日" in result["remarks"]


def test_make_up_working_days_count_as_available() -> None:
    assert (
        row(assess([], weeks=[IsoWeek(2026, 38)]), "1002", IsoWeek(2026, 38))["available_days"] == 6
    )  # Sunday Sep 20 is a working day
    joined_saturday = Cadre("1003", "新人", Role.RESIDENT, active_from=date(2026, 10, 10))
    result = row(
        assess([], cadres=[joined_saturday], weeks=[IsoWeek(2026, 41)]), "1003", IsoWeek(2026, 41)
    )
    assert (result["available_days"], result["required_days"]) == (1, 1)  # Saturday Oct 10


def test_holiday_overrides_from_the_configuration() -> None:
    calendar = WorkCalendar(
        {date(2026, 11, 16): False, date(2026, 11, 17): False, date(2026, 11, 18): False}
    )
    result = row(assess([], calendar=calendar), "1002")
    assert (result["available_days"], result["required_days"]) == (2, 2)


def test_joining_and_leaving_mid_week() -> None:
    joined = Cadre("1003", "新人", Role.RESIDENT, active_from=date(2026, 11, 19))
    left = Cadre("1004", "调离", Role.ORDINARY, active_to=date(2026, 11, 16))
    gone = Cadre("1005", "早已调离", Role.ORDINARY, active_to=date(2026, 11, 1))
    records = village_day("1003", date(2026, 11, 16)) + village_day("1003", date(2026, 11, 19))
    records += village_day("1004", date(2026, 11, 16)) + village_day("1005", date(2026, 11, 16))
    results = assess(records, cadres=[joined, left, gone])
    assert "1005" not in set(results["user_id"])
    newcomer, leaver = row(results, "1003"), row(results, "1004")
    assert (newcomer["available_days"], newcomer["required_days"], newcomer["valid_days"]) == (
        2,
        2,
        1,
    )
    assert newcomer["remarks"] == "2026-11-19起在岗"
    assert (leaver["available_days"], leaver["required_days"], leaver["met"]) == (1, 1, True)
    assert leaver["remarks"] == "在岗至2026-11-16"
    anomalies = find_anomalies(punch_frame(records), [joined, left, gone])
    assert (anomalies["kind"] == AnomalyKind.INACTIVE_CADRE).sum() == 4


def test_leave_reduces_availability_and_counts_calendar_days() -> None:
    leave = [
        Leave("1002", date(2026, 11, 20), date(2026, 11, 24)),  # Fri-Sun inside W47
        Leave("1002", date(2026, 11, 21), date(2026, 11, 21)),  # overlapping entries count once
    ]
    result = row(assess([], leave=leave), "1002")
    assert (result["leave_days"], result["available_days"], result["required_days"]) == (3, 4, 3)
    marks = day_marks(punch_frame([]), [RESIDENT], leave, W47.start, W47.end)
    assert marks["date"].tolist() == [date(2026, 11, day) for day in (20, 21, 22)]
    assert marks["leave"].all()


def test_leave_outside_the_active_period_is_not_counted() -> None:
    joined = Cadre("1003", "新人", Role.RESIDENT, active_from=date(2026, 11, 18))
    leave = [Leave("1003", date(2026, 11, 16), date(2026, 11, 18))]
    result = row(assess([], cadres=[joined], leave=leave), "1003")
    assert (result["leave_days"], result["available_days"]) == (1, 2)


active_dates = st.one_of(st.none(), st.dates(date(2026, 11, 10), date(2026, 11, 28)))


@settings(max_examples=60, deadline=None)
@given(
    active_dates,
    active_dates,
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 5)), max_size=3),
    st.sampled_from(list(Role)),
)
def test_required_days_never_exceed_available_days(
    active_from: date | None,
    active_to: date | None,
    leave_spans: list[tuple[int, int]],
    role: Role,
) -> None:
    cadre = Cadre("1001", "王建国", role, active_from=active_from, active_to=active_to)
    leave = [
        Leave(
            "1001",
            date(2026, 11, 12) + timedelta(days=start),
            date(2026, 11, 12) + timedelta(days=start + length),
        )
        for start, length in leave_spans
    ]
    results = assess([], cadres=[cadre], leave=leave)
    assert (results["required_days"] <= results["available_days"]).all()
    assert (results["available_days"] <= 5).all()
    assert (results["leave_days"] <= 7).all()
    assert (results["met"] == (results["required_days"] == 0)).all()


# ---------------------------------------------------------------------------- deductions


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 27), st.sampled_from(["1001", "1002"])), max_size=20),
    st.integers(0, 500),
)
def test_deduction_is_the_rate_times_failed_weeks(
    visits: list[tuple[int, str]], deduction_yuan: int
) -> None:
    weeks = [IsoWeek(2026, number) for number in (45, 46, 47, 48)]
    records = [
        r
        for offset, user_id in visits
        for r in village_day(user_id, weeks[0].start + timedelta(days=offset))
    ]
    results = assess(records, weeks=weeks, rules=RuleSettings(deduction_yuan=deduction_yuan))
    failed = int((~results["met"]).sum())
    assert int(results["deduction"].sum()) == deduction_yuan * failed
    assert (results["met"] == (results["valid_days"] >= results["required_days"])).all()
    months = month_results(results)
    assert int(months["deduction_total"].sum()) == deduction_yuan * failed


# ---------------------------------------------------------------------------- anomalies


def test_unknown_users_are_listed_and_never_dropped() -> None:
    records = [*village_day("9999", date(2026, 11, 16)), *village_day("1001", date(2026, 11, 16))]
    frame = punch_frame(records)
    anomalies = find_anomalies(frame, [ORDINARY])
    assert anomalies["user_id"].tolist() == ["9999", "9999"]
    assert anomalies["type"].tolist() == ["未知用户", "未知用户"]
    assert "9999" in anomalies["explanation"].iloc[0]
    assert anomalies["terminal"].tolist() == ["t02", "t02"]
    assert anomalies["timestamp"].tolist() == [
        pd.Timestamp("2026-11-16 08:30"),
        pd.Timestamp("2026-11-16 15:00"),
    ]
    assert "9999" not in set(assess(records)["user_id"])


def test_one_anomaly_per_punch_in_precedence_order() -> None:
    records = [
        punch("9999", "2026-11-16 03:00", None, terminal="t99", quarantined=True),
        punch("9999", "2026-11-16 03:00", None, terminal="t99"),
        punch("9999", "2026-11-16 03:00"),
        punch("1001", "2026-11-16 03:00"),
    ]
    anomalies = find_anomalies(punch_frame(records), [ORDINARY])
    assert anomalies["kind"].tolist() == [
        AnomalyKind.QUARANTINED,
        AnomalyKind.UNATTRIBUTED_TERMINAL,
        AnomalyKind.UNKNOWN_USER,
        AnomalyKind.OUT_OF_WINDOW,
    ]
    assert "t99" in anomalies["explanation"].iloc[1]


# ---------------------------------------------------------------------------- weeks and months


def test_week_to_month_rule() -> None:
    w44, w43 = IsoWeek(2026, 44), IsoWeek(2026, 43)  # W44 runs Oct 26 - Nov 1
    records = village_day("1001", date(2026, 10, 26)) + village_day("1001", date(2026, 10, 27))
    results = assess(records, weeks=[w43, w44])
    assert row(results, "1001", w44)["month"] == "2026-11"
    assert row(results, "1001", w43)["month"] == "2026-10"
    months = month_results(results)
    october = months[(months["month"] == "2026-10") & (months["user_id"] == "1001")].iloc[0]
    november = months[(months["month"] == "2026-11") & (months["user_id"] == "1001")].iloc[0]
    assert (october["assessed_weeks"], october["failed_week_labels"]) == (1, ("2026-W43",))
    assert (november["valid_days"], november["failed_weeks"]) == (2, 0)


def test_an_unknown_year_falls_back_with_a_remark(caplog: pytest.LogCaptureFixture) -> None:
    week = IsoWeek(2027, 1)  # Jan 4-10 2027; chinese-calendar 1.11 stops at 2026
    with caplog.at_level(logging.WARNING):
        result = row(assess([], weeks=[week], calendar=WorkCalendar()), "1002", week)
    assert result["available_days"] == 5
    assert "2027年" in result["remarks"] and "周一至周五" in result["remarks"]
    assert any("2027" in record.getMessage() for record in caplog.records)


def test_month_results_columns_and_order() -> None:
    cadres = [Cadre("10", "甲", Role.ORDINARY), Cadre("9", "乙", Role.RESIDENT)]
    weeks = [IsoWeek(2026, number) for number in (45, 46, 47, 48)]
    records = [r for day in (2, 3, 9, 10, 16, 17) for r in village_day("10", date(2026, 11, day))]
    months = month_results(assess(records, cadres=cadres, weeks=weeks))
    assert months["user_id"].tolist() == ["9", "10"]
    first = months.iloc[1]
    assert (first["assessed_weeks"], first["met_weeks"], first["failed_weeks"]) == (4, 3, 1)
    assert (first["valid_days"], first["average_valid_days"], first["deduction_total"]) == (
        6,
        1.5,
        100,
    )
    assert first["failed_week_labels"] == ("2026-W48",)
    assert months.iloc[0]["failed_week_labels"] == tuple(week.label for week in weeks)


def test_month_statistics() -> None:
    month = YearMonth(2026, 11)
    records = []
    for week in statistics_weeks(month):
        days = 3 if week.month == month else 2  # 3 days a week this month, 2 before
        for offset in range(days):
            records += village_day("1001", week.start + timedelta(days=offset))
            records += village_day("1002", week.start + timedelta(days=offset))
    figures = assess_month(punch_frame(records), [ORDINARY, RESIDENT], [], CALENDAR, month)
    stats = figures.statistics
    assert (stats.cadre_count, stats.notified_count, stats.deduction_total) == (2, 0, 0)
    assert stats.average_valid_days == 3.0
    assert (stats.previous_month_average, stats.last_year_average) == (2.0, 2.0)
    assert stats.year_on_year_change == pytest.approx(0.5)
    # The resident fails every week before November with 2 of 3 days, except W08 (no workday).
    failed_this_year = figures.week_results[
        ~figures.week_results["met"] & figures.week_results["month"].str.startswith("2026-")
    ]
    assert stats.year_to_date_notified == 1
    assert stats.year_to_date_deduction == 100 * len(failed_this_year)
    chart_months = [chart_month for chart_month, _ in stats.monthly_averages]
    assert chart_months == [month.shift(offset) for offset in range(-11, 1)]
    assert stats.monthly_averages[-1] == (month, 3.0)
    assert len(figures.month_results) == 2


def test_month_statistics_without_earlier_data() -> None:
    month = YearMonth(2026, 11)
    figures = assess_month(
        punch_frame(village_day("1001", date(2026, 11, 16))),
        [ORDINARY],
        [],
        CALENDAR,
        month,
        data_since=date(2026, 11, 2),
    )
    stats = figures.statistics
    assert set(figures.week_results["week"]) == {"2026-W45", "2026-W46", "2026-W47", "2026-W48"}
    assert (stats.previous_month_average, stats.last_year_average, stats.year_on_year_change) == (
        None,
        None,
        None,
    )
    assert stats.average_valid_days == 0.25
    assert stats.year_to_date_deduction == 400
    assert stats.monthly_averages[0] == (YearMonth(2025, 12), None)
    assert (
        month_statistics(figures.week_results.iloc[:0], figures.week_totals, month).cadre_count == 0
    )


# ---------------------------------------------------------------------------- plumbing


def test_results_are_sorted_by_week_then_numeric_user_id() -> None:
    cadres = [Cadre(uid, uid, Role.ORDINARY) for uid in ("10", "9", "A1", "100")]
    results = assess([], cadres=cadres, weeks=[IsoWeek(2026, 47), IsoWeek(2026, 46)])
    assert results["week"].tolist() == ["2026-W46"] * 4 + ["2026-W47"] * 4
    assert results["user_id"].tolist()[:4] == ["9", "10", "100", "A1"]


def test_duplicate_roster_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="1001 more than once"):
        assess([], cadres=[ORDINARY, ORDINARY])


def test_zone_aware_timestamps_are_rejected() -> None:
    frame = punch_frame([punch("1001", "2026-11-16 08:00")])
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("Asia/Shanghai")
    with pytest.raises(ValueError, match="naive"):
        assess_weeks(frame, [ORDINARY], [], CALENDAR, [W47])


def test_empty_inputs() -> None:
    assert list(assess([], weeks=[]).columns) == list(WEEK_COLUMNS)
    assert assess([], cadres=[]).empty
    assert not assess([])["met"].any()  # no punches at all: everyone falls short
    assert month_results(assess([], weeks=[])).empty
    assert find_anomalies(punch_frame([]), [ORDINARY]).empty
    assert day_marks(punch_frame([]), [ORDINARY], [], W47.start, W47.end).empty


def test_a_week_in_progress_is_charged_nothing_and_a_week_not_begun_is_not_assessed() -> None:
    """On Wednesday nobody has failed yet: the week is in progress until Sunday is over."""
    monday = W47.start
    records = village_day("1001", monday)
    cadres = [ORDINARY, RESIDENT]
    wednesday = monday + timedelta(days=2)
    ongoing = assess_weeks(punch_frame(records), cadres, [], CALENDAR, [W47], today=wednesday)
    assert ongoing["in_progress"].tolist() == [True, True]
    assert ongoing["deduction"].tolist() == [0, 0]
    assert ongoing["valid_days"].tolist() == [1, 0]
    assert rules.failed(ongoing).tolist() == [False, False]
    assert rules.met_labels(ongoing) == ["进行中", "进行中"]
    assert month_results(ongoing)["failed_weeks"].tolist() == [0, 0]

    sunday = W47.end
    assert assess_weeks(punch_frame(records), cadres, [], CALENDAR, [W47], today=sunday)[
        "deduction"
    ].tolist() == [0, 0]
    over = assess_weeks(
        punch_frame(records), cadres, [], CALENDAR, [W47], today=sunday + timedelta(days=1)
    )
    assert over["in_progress"].tolist() == [False, False]
    assert over["deduction"].tolist() == [100, 100]
    assert month_results(over)["failed_weeks"].tolist() == [1, 1]

    not_begun = assess_weeks(punch_frame([]), cadres, [], CALENDAR, [W47.shift(1)], today=sunday)
    assert not_begun.empty


def test_a_month_under_way_charges_only_the_weeks_that_are_over() -> None:
    november = YearMonth(2026, 11)  # W44 (its Sunday is Nov 1) to W48
    today = IsoWeek(2026, 47).start + timedelta(days=1)  # Tuesday of W47
    figures = assess_month(punch_frame([]), [ORDINARY], [], CALENDAR, november, today=today)
    weeks = figures.month_results
    assert weeks["assessed_weeks"].tolist() == [4]  # W44 to W47; W48 has not begun
    assert weeks["failed_weeks"].tolist() == [3]
    assert weeks["deduction_total"].tolist() == [300]
    assert figures.statistics.deduction_total == 300
