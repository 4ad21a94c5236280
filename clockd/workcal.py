"""Working days, ISO weeks and the week-to-month rule (docs/rules.md). Pure: no I/O.

Chinese working days come from the `chinese-calendar` package, which only knows the years the
State Council has published. A year it does not know falls back to Monday–Friday so reports
keep running; the fallback is logged once per year and remembered, so a report can say its
requirement figures are provisional.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import chinese_calendar

log = logging.getLogger(__name__)

_WEEK_LABEL = re.compile(r"(\d{4})-[Ww](\d{2})")
_MONTH_LABEL = re.compile(r"(\d{4})-(\d{2})")


class WorkCalendar:
    """Official working days, with devices.yaml `holidays` overrides taking precedence.

    An override maps a date to True (a working day) or False (a day off).
    """

    def __init__(self, overrides: Mapping[date, bool] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._known_years: dict[int, bool] = {}
        self._fallback_years: set[int] = set()

    def knows_year(self, year: int) -> bool:
        """Whether `chinese-calendar` has the holiday schedule for `year`."""
        if year not in self._known_years:
            try:
                chinese_calendar.is_workday(date(year, 1, 1))
            except NotImplementedError:
                self._known_years[year] = False
            else:
                self._known_years[year] = True
        return self._known_years[year]

    def is_workday(self, day: date) -> bool:
        override = self._overrides.get(day)
        if override is not None:
            return override
        if self.knows_year(day.year):
            return bool(chinese_calendar.is_workday(day))
        self._note_fallback(day.year)
        return day.weekday() < 5

    def workdays(self, start: date, end: date) -> list[date]:
        """Working days from `start` to `end`, both inclusive."""
        return [day for day in date_range(start, end) if self.is_workday(day)]

    def falls_back(self, start: date, end: date) -> bool:
        """Whether any day of `start`..`end` is judged by the Monday–Friday fallback."""
        return any(
            not self.knows_year(day.year) and day not in self._overrides
            for day in date_range(start, end)
        )

    def fallback_note(self, start: date, end: date) -> str:
        """The remark a report makes when a day of `start`..`end` is judged by the fallback."""
        if not self.falls_back(start, end):
            return ""
        years = sorted(
            {day.year for day in date_range(start, end) if not self.knows_year(day.year)}
        )
        listed = "、".join(f"{year}年" for year in years)
        return f"节假日日历缺少{listed}数据，按周一至周五计工作日"

    @property
    def fallback_years(self) -> frozenset[int]:
        """Years this calendar has judged by the Monday–Friday fallback so far."""
        return frozenset(self._fallback_years)

    def _note_fallback(self, year: int) -> None:
        if year in self._fallback_years:
            return
        self._fallback_years.add(year)
        log.warning(
            "chinese-calendar %s has no holiday data for %d: using Monday-Friday working days "
            "(plus devices.yaml holiday overrides); upgrade the package when the State Council "
            "publishes the %d schedule",
            chinese_calendar.__version__,
            year,
            year,
        )


def date_range(start: date, end: date) -> Iterator[date]:
    """Every day from `start` to `end`, both inclusive."""
    for offset in range((end - start).days + 1):
        yield start + timedelta(days=offset)


@dataclass(frozen=True, order=True, slots=True)
class YearMonth:
    """A calendar month, labelled `2026-11` as in `reports/monthly/2026-11.xlsx`."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9999:
            raise ValueError(f"no such month: {self.year}-{self.month:02d}")

    @classmethod
    def parse(cls, text: str) -> YearMonth:
        match = _MONTH_LABEL.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"bad month {text!r}: expected YYYY-MM, e.g. 2026-11")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, day: date) -> YearMonth:
        return cls(day.year, day.month)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.shift(1).first_day - timedelta(days=1)

    def shift(self, months: int) -> YearMonth:
        """The month `months` later (earlier when negative)."""
        index = self.year * 12 + self.month - 1 + months
        return YearMonth(index // 12, index % 12 + 1)

    def weeks(self) -> list[IsoWeek]:
        """Every ISO week whose Sunday lies in this month, in order."""
        first_sunday = self.first_day + timedelta(days=6 - self.first_day.weekday())
        count = (self.last_day - first_sunday).days // 7 + 1
        return [IsoWeek.containing(first_sunday + timedelta(weeks=n)) for n in range(count)]

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, order=True, slots=True)
class IsoWeek:
    """An ISO week, Monday to Sunday, labelled `2026-W47`."""

    year: int
    week: int

    def __post_init__(self) -> None:
        try:
            date.fromisocalendar(self.year, self.week, 1)
        except ValueError:
            raise ValueError(self._range_error()) from None

    def _range_error(self) -> str:
        if not 1 <= self.year <= 9999:
            return f"no such week: year {self.year} is out of range"
        last = date(self.year, 12, 28).isocalendar().week
        return f"no such week: {self.year} has ISO weeks W01 to W{last:02d}, not W{self.week:02d}"

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        match = _WEEK_LABEL.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"bad week {text!r}: expected YYYY-Www, e.g. 2026-W47")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, day: date) -> IsoWeek:
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    @property
    def start(self) -> date:
        """The Monday."""
        return date.fromisocalendar(self.year, self.week, 1)

    @property
    def end(self) -> date:
        """The Sunday (the week runs to Sunday 24:00)."""
        return date.fromisocalendar(self.year, self.week, 7)

    @property
    def month(self) -> YearMonth:
        """The month the week is published in: the one holding its Sunday."""
        return YearMonth.containing(self.end)

    def days(self) -> list[date]:
        return list(date_range(self.start, self.end))

    def shift(self, weeks: int) -> IsoWeek:
        """The week `weeks` later (earlier when negative)."""
        return IsoWeek.containing(self.start + timedelta(weeks=weeks))

    def __str__(self) -> str:
        return self.label


def weeks_between(first: IsoWeek, last: IsoWeek) -> list[IsoWeek]:
    """`first` to `last`, both inclusive; empty when `last` comes before `first`."""
    count = (last.start - first.start).days // 7 + 1
    return [first.shift(offset) for offset in range(max(count, 0))]


def last_complete_week(today: date) -> IsoWeek:
    """The latest week that has fully ended before `today` (the week before today's)."""
    return IsoWeek.containing(today).shift(-1)


def last_complete_month(today: date) -> YearMonth:
    """The latest month that has fully ended before `today`; its weeks have all ended too."""
    return YearMonth.containing(today).shift(-1)
