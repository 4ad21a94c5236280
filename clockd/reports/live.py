"""The figures of a week or month as they stand now, for the console and the JSON API.

They come from exactly the code the workbooks use (`period.gather`, `weekly.summary_rows`,
`weekly.assess`, `rules.assess_month`, `monthly.notified`), so a page, the API and the xlsx
never disagree. Nothing is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
from sqlalchemy import Engine

from clockd import rules
from clockd.config import Settings
from clockd.domain import Cadre
from clockd.reports import monthly, weekly
from clockd.reports.period import Basis, Period, gather
from clockd.store.models import utcnow
from clockd.workcal import IsoWeek, YearMonth

# Edition status as the API names it, whichever spelling report_runs holds.
API_STATUS = {
    "正式": "final",
    "临时": "provisional",
    "更正": "revised",
    "final": "final",
    "provisional": "provisional",
    "corrected": "revised",
    "revised": "revised",
}
STATUS_LABELS = {"final": "正式", "provisional": "临时", "revised": "更正"}


def api_status(stored: str) -> str:
    return API_STATUS.get(stored, stored)


class WeekStanding:
    """A week's figures at one instant. `results` are the 汇总 rows, 备注 included, from
    `weekly.summary_rows` as the workbook has them; the day marks and anomalies (slow for a
    district) only when a page asks, and for one cadre from that cadre's punches alone."""

    def __init__(self, week: IsoWeek, status: str, basis: Basis, cadres: Sequence[Cadre]) -> None:
        self.week = week
        self.status = status  # final | provisional | revised
        self.basis = basis
        self.cadres = list(cadres)
        data = basis.data
        self.results = weekly.summary_rows(
            basis, self.cadres, data.punches, data.leave(), data.work_results()
        )

    @property
    def missing_villages(self) -> list[str]:
        return self.basis.completeness.missing_villages()

    @cached_property
    def figures(self) -> weekly.WeekFigures:
        """Everything the weekly workbook shows: results, day marks, anomalies."""
        data = self.basis.data
        return weekly.assess(
            self.basis, self.cadres, data.punches, data.leave(), data.work_results()
        )

    def marks_of(self, cadre: Cadre) -> pd.DataFrame:
        """`rules.day_marks` rows of one cadre (a cadre's marks depend on their punches only)."""
        punches = self.punches_of(cadre.user_id)
        leave = [entry for entry in self.basis.data.leave() if entry.user_id == cadre.user_id]
        return rules.day_marks(
            punches, [cadre], leave, self.week.start, self.week.end, self.basis.rules
        )

    def punches_of(self, user_id: str) -> pd.DataFrame:
        punches = self.basis.data.punches
        return punches[punches["user_id"] == user_id]


def week_standing(
    engine: Engine,
    settings: Settings,
    cadres: Sequence[Cadre],
    week: IsoWeek,
    now: dt.datetime | None = None,
) -> WeekStanding:
    """The week's 汇总/明细 figures as the weekly report would compute them at `now`."""
    period = Period(weekly.KIND, week.label, (week,), week.start)
    basis = gather(engine, settings, cadres, period, now or utcnow())
    return WeekStanding(week, api_status(basis.plan.status), basis, cadres)


@dataclass(frozen=True)
class MonthStanding:
    month: YearMonth
    status: str
    figures: rules.MonthlyFigures

    @property
    def month_weeks(self) -> pd.DataFrame:
        results = self.figures.week_results
        return results[results["month"] == self.month.label]

    @property
    def notified(self) -> pd.DataFrame:
        """The 通报 rows, in the workbook's and the notice's order."""
        return monthly.notified_rows(self.figures.month_results)


def month_standing(
    engine: Engine,
    settings: Settings,
    cadres: Sequence[Cadre],
    month: YearMonth,
    now: dt.datetime | None = None,
) -> MonthStanding:
    """The monthly notice's figures (通报, 月度汇总, 统计) as they stand at `now`."""
    statistics_from = rules.statistics_weeks(month)[0].start
    period = Period(monthly.KIND, month.label, tuple(month.weeks()), statistics_from)
    basis = gather(engine, settings, cadres, period, now or utcnow())
    figures = rules.assess_month(
        basis.data.punches,
        cadres,
        basis.data.leave(),
        basis.calendar,
        month,
        basis.rules,
        data_since=basis.since,
        work_results=basis.data.work_results(),
        known=basis.data.known,
        today=basis.today,
    )
    return MonthStanding(month, api_status(basis.plan.status), figures)
