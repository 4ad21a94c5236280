import logging
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clockd.workcal import (
    IsoWeek,
    WorkCalendar,
    YearMonth,
    last_complete_month,
    last_complete_week,
    weeks_between,
)

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))


def test_national_day_2026_is_off_and_the_make_up_days_are_working_days() -> None:
    calendar = WorkCalendar()
    assert not any(calendar.is_workday(date(2026, 10, day)) for day in range(1, 8))
    assert calendar.is_workday(date(2026, 10, 8))
    assert calendar.is_workday(date(2026, 9, 20))  # a Sunday, 调休
    assert calendar.is_workday(date(2026, 10, 10))  # a Saturday, 调休
    assert calendar.workdays(date(2026, 9, 28), date(2026, 10, 4)) == [
        date(2026, 9, 28),
        date(2026, 9, 29),
        date(2026, 9, 30),
    ]


def test_overrides_win_both_ways() -> None:
    calendar = WorkCalendar({date(2026, 11, 18): False, date(2026, 11, 22): True})
    assert not calendar.is_workday(date(2026, 11, 18))  # a Wednesday
    assert calendar.is_workday(date(2026, 11, 22))  # a Sunday
    assert len(calendar.workdays(date(2026, 11, 16), date(2026, 11, 22))) == 5


def test_unknown_year_falls_back_to_monday_to_friday_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calendar = WorkCalendar({date(2027, 1, 4): False})
    assert calendar.knows_year(2026)
    assert not calendar.knows_year(2027)
    with caplog.at_level(logging.WARNING, logger="clockd.workcal"):
        week = calendar.workdays(date(2027, 1, 4), date(2027, 1, 10))
        calendar.workdays(date(2027, 2, 1), date(2027, 2, 28))
    assert week == [date(2027, 1, day) for day in (5, 6, 7, 8)]  # Monday overridden off
    assert calendar.fallback_years == {2027}
    warnings = [record for record in caplog.records if "2027" in record.getMessage()]
    assert len(warnings) == 1
    assert calendar.falls_back(date(2026, 12, 28), date(2027, 1, 3))
    assert not calendar.falls_back(date(2026, 11, 16), date(2026, 11, 22))


def test_known_years_do_not_fall_back() -> None:
    calendar = WorkCalendar()
    calendar.workdays(date(2026, 1, 1), date(2026, 12, 31))
    assert calendar.fallback_years == frozenset()


@given(days)
def test_week_label_round_trips(day: date) -> None:
    week = IsoWeek.containing(day)
    assert IsoWeek.parse(week.label) == week
    assert week.start <= day <= week.end
    assert week.start.weekday() == 0
    assert week.end - week.start == timedelta(days=6)


def test_week_label_format() -> None:
    assert IsoWeek(2026, 47).label == "2026-W47"
    assert str(IsoWeek(2026, 3)) == "2026-W03"
    assert IsoWeek.parse(" 2026-w47 ") == IsoWeek(2026, 47)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-47", "expected YYYY-Www"),
        ("2026W47", "expected YYYY-Www"),
        ("2026-W7", "expected YYYY-Www"),
        ("W47", "expected YYYY-Www"),
        ("2026-W54", "W01 to W53"),
        ("2025-W53", "W01 to W52"),
        ("2026-W00", "W01 to W53"),
    ],
)
def test_bad_week_labels_are_rejected_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IsoWeek.parse(text)


def test_week_44_of_2026_belongs_to_november() -> None:
    week = IsoWeek.parse("2026-W44")
    assert (week.start, week.end) == (date(2026, 10, 26), date(2026, 11, 1))
    assert week.month == YearMonth(2026, 11)
    assert week.days()[0] == week.start and len(week.days()) == 7


def test_the_weeks_of_a_month() -> None:
    assert [week.label for week in YearMonth(2026, 11).weeks()] == [
        "2026-W44",
        "2026-W45",
        "2026-W46",
        "2026-W47",
        "2026-W48",
    ]
    assert IsoWeek(2026, 53).month == YearMonth(2027, 1)
    assert YearMonth(2027, 1).weeks()[0] == IsoWeek(2026, 53)


@given(st.integers(min_value=2000, max_value=2099), st.integers(min_value=1, max_value=12))
def test_every_week_of_a_month_has_its_sunday_in_it(year: int, number: int) -> None:
    month = YearMonth(year, number)
    weeks = month.weeks()
    assert all(week.month == month for week in weeks)
    assert weeks == weeks_between(weeks[0], weeks[-1])
    assert weeks[0].shift(-1).month == month.shift(-1)
    assert weeks[-1].shift(1).month == month.shift(1)


@given(days)
def test_last_complete_week_has_ended_and_the_next_has_not(today: date) -> None:
    week = last_complete_week(today)
    assert week.end < today <= week.shift(1).end


def test_last_complete_week_on_monday_and_sunday() -> None:
    assert last_complete_week(date(2026, 11, 23)) == IsoWeek(2026, 47)
    assert last_complete_week(date(2026, 11, 22)) == IsoWeek(2026, 46)


@given(days)
def test_last_complete_month_has_ended_with_all_its_weeks(today: date) -> None:
    month = last_complete_month(today)
    assert month.last_day < today
    assert all(week.end < today for week in month.weeks())
    assert month.shift(1).last_day >= today


def test_month_labels() -> None:
    assert YearMonth.parse("2026-11") == YearMonth(2026, 11)
    assert YearMonth(2026, 1).shift(-1) == YearMonth(2025, 12)
    assert YearMonth(2026, 2).last_day == date(2026, 2, 28)
    assert str(YearMonth(2026, 3)) == "2026-03"
    for text in ("2026-13", "2026/11", "26-11"):
        with pytest.raises(ValueError, match="month"):
            YearMonth.parse(text)
