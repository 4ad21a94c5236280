"""The monthly notice the party secretary reviews: `reports/monthly/<YYYY>-<MM>.xlsx` (SPEC §5).

Sheets, in order: 通报 (cadres with a failed week, most failed first), 月度汇总 (every cadre),
统计 (the month's figures against last month and last year, with a 12-month chart), 终端状态;
then 周明细 (each cadre's weeks of the month, which explain every monthly figure) and, when
this revision corrects an earlier one, 更正说明. A week belongs to the month of its Sunday.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.chart import LineChart, Reference
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import Engine

from clockd import rules
from clockd.config import Settings
from clockd.domain import Cadre, Leave
from clockd.reports import sheets
from clockd.reports.period import Basis, Period, ReportKind, gather
from clockd.reports.revisions import ReportOutcome, identifier, publish
from clockd.reports.xlsx import (
    DECIMAL,
    INTEGER,
    PERCENT,
    Column,
    Formatted,
    Line,
    Placement,
    Sheet,
    Stamp,
    Table,
    add_sheet,
    new_workbook,
)
from clockd.store.models import utcnow
from clockd.workcal import IsoWeek, YearMonth

KIND: ReportKind = "monthly"
DASH = "—"
CHART_SHEET = "统计"


def monthly_path(settings: Settings, month: YearMonth) -> Path:
    return settings.reports_dir / "monthly" / f"{month.label}.xlsx"


def _assessed_weeks(basis: Basis) -> list[IsoWeek]:
    return [week for week in basis.period.weeks if week.start >= basis.since]


def write_monthly_report(
    settings: Settings,
    cadres: Sequence[Cadre],
    engine: Engine,
    month: YearMonth,
    *,
    now: dt.datetime | None = None,
) -> ReportOutcome:
    """Write (or rewrite, or revise) the month's notice; see revisions.py for the rules."""
    statistics_from = rules.statistics_weeks(month)[0].start
    period = Period(KIND, month.label, tuple(month.weeks()), statistics_from)
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
    )
    previous = None
    if basis.plan.compared_era is not None:
        era = basis.plan.compared_era
        previous = _month_only(
            basis,
            cadres,
            basis.data.punches_at(era),
            basis.data.leave(era),
            basis.data.work_results(era),
        )
    results = figures.month_results
    deduction_total = int(results["deduction_total"].sum()) if len(results) else 0
    path = monthly_path(settings, month)
    published = publish(
        engine,
        kind=KIND,
        period=month.label,
        plan=basis.plan,
        path=path,
        fingerprint=basis.fingerprint,
        deduction_total=deduction_total,
        build=lambda: _workbook(settings, basis, month, figures, previous),
        zone=settings.zone,
    )
    failed = int((results["failed_weeks"] > 0).sum()) if len(results) else 0
    return ReportOutcome(
        kind=KIND,
        period=month.label,
        path=path,
        revision=basis.plan.revision,
        status=basis.plan.status,
        written=published.written,
        cadres=len(results),
        failed=failed,
        failed_weeks=int(results["failed_weeks"].sum()) if len(results) else 0,
        deduction_total=deduction_total,
        average_days=figures.statistics.average_valid_days,
        missing_villages=tuple(basis.completeness.missing_villages()),
        note=published.note,
    )


def _month_only(
    basis: Basis,
    cadres: Sequence[Cadre],
    punches: pd.DataFrame,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]],
) -> pd.DataFrame:
    """Month results of the month's own weeks, for comparing with an earlier revision."""
    weeks = rules.assess_weeks(
        punches, cadres, leave, basis.calendar, _assessed_weeks(basis), basis.rules, work_results
    )
    return rules.month_results(weeks)


def _workbook(
    settings: Settings,
    basis: Basis,
    month: YearMonth,
    figures: rules.MonthlyFigures,
    previous: pd.DataFrame | None,
) -> Workbook:
    plan = basis.plan
    weeks = basis.period.weeks
    heading = f"干部下村考勤月度通报　{month.label}"
    span = (
        f"{month.year}年{month.month}月，考核周 {weeks[0].label} 至 {weeks[-1].label}"
        f"（{basis.period.start.isoformat()} 至 {basis.period.end.isoformat()}，"
        "周次按其周日所在月份归属）"
    )
    notes = sheets.calendar_notes(basis, basis.period.start, basis.period.end)
    title = sheets.title_block(settings, basis, heading, span, notes)
    workbook = new_workbook(
        Stamp(identifier(KIND, month.label, plan.revision), plan.generated_at), heading
    )
    results = figures.month_results
    week_results = figures.week_results
    this_month = week_results[week_results["month"] == month.label]
    add_sheet(workbook, _notice_sheet(title, results))
    add_sheet(workbook, _summary_sheet(title, results))
    _add_statistics(workbook, title, figures, week_results)
    add_sheet(workbook, sheets.terminal_sheet(settings, basis, title, "本月记录数"))
    add_sheet(workbook, _weeks_sheet(title, this_month))
    if previous is not None:
        add_sheet(
            workbook,
            sheets.changes_sheet(
                settings,
                basis,
                title[:1],
                previous,
                results,
                [("failed_weeks", "未达标周数"), ("deduction_total", "扣款合计(元)")],
                "deduction_total",
            ),
        )
    return workbook


def _texts(values: pd.Series) -> list[object]:
    return [str(value) if value else None for value in values.tolist()]


def _integers(values: pd.Series) -> list[object]:
    return [int(value) for value in values.tolist()]


def _notice_sheet(title: Sequence[Line], results: pd.DataFrame) -> Sheet:
    """通报: cadres with at least one failed week, most failed weeks first, then by 工号."""
    failing = results[results["failed_weeks"] > 0] if len(results) else results
    failing = failing.sort_values("failed_weeks", ascending=False, kind="stable")
    columns = []
    for name, header in rules.NOTICE_HEADERS.items():
        if name == "failed_week_labels":
            labels = ["、".join(value) for value in failing[name].tolist()]
            columns.append(Column(header, labels))
        elif name in ("failed_weeks", "deduction_total"):
            columns.append(Column(header, _integers(failing[name]), INTEGER))
        else:
            columns.append(Column(header, _texts(failing[name])))
    return Sheet("通报", title, [Table(columns)])


def _summary_sheet(title: Sequence[Line], results: pd.DataFrame) -> Sheet:
    """月度汇总: every cadre assessed in the month."""
    columns = []
    for name, header in rules.MONTH_HEADERS.items():
        if name == "average_valid_days":
            values = [float(value) for value in results[name].tolist()]
            columns.append(Column(header, values, DECIMAL))
        elif name in ("user_id", "name", "category"):
            columns.append(Column(header, _texts(results[name])))
        else:
            columns.append(Column(header, _integers(results[name]), INTEGER))
    failed = [int(value) > 0 for value in results["failed_weeks"].tolist()] if len(results) else []
    return Sheet("月度汇总", title, [Table(columns, failed)])


def _weeks_sheet(title: Sequence[Line], week_results: pd.DataFrame) -> Sheet:
    """周明细: each cadre's weeks of the month, the detail behind 月度汇总 and 通报."""
    columns = [Column("周次", _texts(week_results["week"]))]
    met = week_results["met"].astype(bool).tolist()
    for name, header in rules.WEEK_HEADERS.items():
        if name == "met":
            columns.append(Column(header, ["是" if ok else "否" for ok in met]))
        elif name in ("user_id", "name", "category", "remarks"):
            columns.append(Column(header, _texts(week_results[name])))
        else:
            columns.append(Column(header, _integers(week_results[name]), INTEGER))
    return Sheet("周明细", title, [Table(columns, [not ok for ok in met])])


def _average(value: float | None) -> object:
    return DASH if value is None else Formatted(round(value, 4), DECIMAL)


def _ratio(value: float | None) -> object:
    return DASH if value is None else Formatted(value, PERCENT)


def _add_statistics(
    workbook: Workbook,
    title: Sequence[Line],
    figures: rules.MonthlyFigures,
    week_results: pd.DataFrame,
) -> None:
    """统计: the 指标 | 数值 table, the 12-month series below it, and a line chart of it."""
    stats = figures.statistics
    previous, current = stats.previous_month_average, stats.average_valid_days
    month_on_month = (
        (current - previous) / previous
        if current is not None and previous is not None and previous > 0
        else None
    )
    month_weeks = sorted(
        set(week_results.loc[week_results["month"] == stats.month.label, "week"].tolist())
    )
    measures: list[tuple[str, object]] = [
        ("干部人数", stats.cadre_count),
        ("通报人数", stats.notified_count),
        ("扣款总额(元)", stats.deduction_total),
        ("人均周下村天数", _average(current)),
        ("上月人均周下村天数", _average(previous)),
        ("去年同期人均周下村天数", _average(stats.last_year_average)),
        ("同比变化", _ratio(stats.year_on_year_change)),
        ("环比变化", _ratio(month_on_month)),
        ("年度累计通报人数", stats.year_to_date_notified),
        ("年度累计扣款(元)", stats.year_to_date_deduction),
        ("考核周数", len(month_weeks)),
        ("考核周次", "、".join(month_weeks) or DASH),
    ]
    measure_table = Table(
        [
            Column("指标", [name for name, _ in measures]),
            Column("数值", [value for _, value in measures], INTEGER),
        ]
    )
    months = [month for month, _ in stats.monthly_averages]
    per_month = _per_month(week_results)
    series = Table(
        [
            Column("月份", [month.label for month in months]),
            Column(
                "人均周下村天数",
                [
                    None if average is None else round(average, 4)
                    for _, average in stats.monthly_averages
                ],
                DECIMAL,
            ),
            *(
                Column(header, [_whole(per_month[name].get(m.label)) for m in months], INTEGER)
                for name, header in MONTH_SERIES.items()
            ),
        ]
    )
    notes = [
        Line(
            "人均周下村天数 = 有效下村天数合计 ÷ 考核人周数（每名干部每个考核周计一人周）", "note"
        ),
        Line("同比、环比变化 = (本月 − 对比月) ÷ 对比月；对比月无考核数据时显示 —", "note"),
    ]
    sheet = Sheet(CHART_SHEET, [*title, *notes], [measure_table, series])
    written = add_sheet(workbook, sheet)
    _add_chart(written.worksheet, written.placements[1], written.placements[0])


# The per-month columns beside the chart's series: they explain 统计's averages and totals.
MONTH_SERIES = {
    "person_weeks": "考核人周数",
    "valid_days": "有效下村天数合计",
    "notified": "通报人数",
    "deduction": "扣款(元)",
}


def _per_month(week_results: pd.DataFrame) -> dict[str, dict[object, object]]:
    if not len(week_results):
        return {name: {} for name in MONTH_SERIES}
    failing = week_results[~week_results["met"].astype(bool)]
    grouped = week_results.groupby("month")
    failing_cadres = failing.groupby("month")["user_id"].nunique().to_dict()
    return {
        "person_weeks": grouped["valid_days"].size().to_dict(),
        "valid_days": grouped["valid_days"].sum().to_dict(),
        "notified": {month: failing_cadres.get(month, 0) for month in grouped.groups},
        "deduction": grouped["deduction"].sum().to_dict(),
    }


def _whole(value: object) -> int | None:
    return None if value is None else int(str(value))


def _add_chart(worksheet: Worksheet, series: Placement, measures: Placement) -> None:
    chart = LineChart()
    chart.title = "近12个月人均周下村天数"
    chart.y_axis.title = "天/人周"
    chart.x_axis.title = "月份"
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.height = 8
    chart.width = 18
    values = Reference(worksheet, min_col=2, min_row=series.header_row, max_row=series.last_row)
    months = Reference(worksheet, min_col=1, min_row=series.header_row + 1, max_row=series.last_row)
    chart.add_data(values, titles_from_data=True)
    chart.set_categories(months)
    worksheet.add_chart(chart, f"F{measures.header_row}")
