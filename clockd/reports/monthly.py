"""The monthly report the party secretary reviews: `reports/monthly/<YYYY>-<MM>.xlsx`, and
beside it the printable notice `<YYYY>-<MM>-通报.docx` (notice.py); docs/reports.md describes
every sheet and column.

Sheets, in order: 通报 (cadres with a failed week, most failed first), 月度汇总 (every cadre),
统计 (the month's figures against last month and last year, with a 12-month chart), 终端状态;
then 部门统计, 村(社区)统计 (cadre-days in each village, villages nobody visited), 请假出差,
周明细 (each cadre's weeks of the month, which explain every monthly figure) and, when this
revision corrects an earlier one, 更正说明. A week belongs to the month of its Sunday.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from openpyxl.chart import LineChart, Reference
from openpyxl.chart.text import RichText
from openpyxl.drawing.text import (
    CharacterProperties,
    Paragraph,
    ParagraphProperties,
    RichTextProperties,
)
from openpyxl.drawing.text import Font as DrawingFont
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import Engine

from clockd import rules
from clockd.config import Settings
from clockd.domain import Cadre, Leave
from clockd.reports import sheets
from clockd.reports.flow import ReportKindSpec, write_edition
from clockd.reports.frames import records
from clockd.reports.period import Basis, Period, ReportKind
from clockd.reports.revisions import Output, ReportOutcome, identifier
from clockd.reports.xlsx import (
    DATE,
    DECIMAL,
    INTEGER,
    PERCENT,
    Book,
    Column,
    Formatted,
    Placement,
    Sheet,
    Stamp,
    Table,
    add_sheet,
    new_workbook,
    sheet_width_cm,
)
from clockd.store.models import utcnow
from clockd.store.periods import FIGURE_COLUMNS
from clockd.workcal import IsoWeek, YearMonth

KIND: ReportKind = "monthly"
REPORT = "干部下村考勤月报"
DASH = "—"
CHART_SHEET = "统计"
CHART_ROWS = 20  # rows the chart covers below the 12-month table
FULL_WEEK = 5  # working days of an ordinary week


def monthly_path(settings: Settings, month: YearMonth) -> Path:
    return settings.reports_dir / "monthly" / f"{month.label}.xlsx"


def notice_path(settings: Settings, month: YearMonth) -> Path:
    return settings.reports_dir / "monthly" / notice_name(month.label)


def notice_name(label: str) -> str:
    """The month's notice document, beside its workbook `<label>.xlsx`."""
    return f"{label}-通报.docx"


@dataclass(frozen=True)
class MonthFigures:
    """Everything the month's workbook and notice show."""

    month: YearMonth
    figures: rules.MonthlyFigures
    this_month: pd.DataFrame  # week results of the month's own weeks
    villages: pd.DataFrame  # rules.village_visits over the month's weeks
    leave: tuple[Leave, ...]  # leave in force touching the month's weeks
    workdays: dict[str, int]  # working days of each of the month's weeks, by label
    # The statistics weeks before the month with fewer than five working days, by label: the
    # holiday weeks that lower the averages of the earlier months the 统计 sheet shows.
    earlier_short_weeks: dict[str, int]

    @property
    def results(self) -> pd.DataFrame:
        return self.figures.month_results

    @property
    def statistics(self) -> rules.MonthStatistics:
        return self.figures.statistics

    def required_met_share(self) -> float | None:
        """Share of required village days done: sum of min(valid, required) ÷ sum of required.

        Unlike the average days per week, it does not fall in a holiday week, whose fewer
        working days lower what is required."""
        required = int(self.this_month["required_days"].sum()) if len(self.this_month) else 0
        if not required:
            return None
        done = self.this_month[["valid_days", "required_days"]].min(axis=1).sum()
        return float(done) / required

    def met_share(self) -> float | None:
        """Share of assessed cadre-weeks that met the rule (达标率)."""
        if not len(self.this_month):
            return None
        return float(self.this_month["met"].astype(bool).mean())

    def short_weeks(self) -> list[str]:
        """The month's weeks with fewer than five working days (holidays), by label."""
        return [label for label, days in self.workdays.items() if days < FULL_WEEK]


def _assessed_weeks(basis: Basis) -> list[IsoWeek]:
    return [week for week in basis.period.weeks if week.start >= basis.since]


def assess(
    basis: Basis,
    cadres: Sequence[Cadre],
    month: YearMonth,
    punches: pd.DataFrame,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]] = (),
) -> MonthFigures:
    figures = rules.assess_month(
        punches,
        cadres,
        leave,
        basis.calendar,
        month,
        basis.rules,
        data_since=basis.since,
        work_results=work_results,
        known=basis.data.known,
        today=basis.today,
    )
    weeks = basis.period.weeks
    week_results = figures.week_results
    first, last = weeks[0].start, weeks[-1].end
    return MonthFigures(
        month=month,
        figures=figures,
        this_month=week_results[week_results["month"] == month.label],
        villages=rules.village_visits(punches, cadres, first, last, basis.rules),
        leave=tuple(e for e in leave if e.start <= last and e.end >= first),
        workdays={
            week.label: len(basis.calendar.workdays(week.start, week.end))
            for week in _assessed_weeks(basis)
        },
        earlier_short_weeks={
            week.label: days
            for week in rules.statistics_weeks(month)
            if basis.since <= week.start < weeks[0].start
            and (days := len(basis.calendar.workdays(week.start, week.end))) < FULL_WEEK
        },
    )


def published(figures: MonthFigures) -> pd.DataFrame:
    """What the month publishes per cadre (revisions.FIGURE_COLUMNS)."""
    results = figures.results
    if not len(results):
        return pd.DataFrame({column: [] for column in FIGURE_COLUMNS})
    required = figures.this_month.groupby("user_id")["required_days"].sum()
    frame = results[["user_id", "name", "category", "valid_days", "failed_weeks"]].copy()
    frame["required_days"] = [int(required.get(uid, 0)) for uid in frame["user_id"]]
    frame["deduction"] = results["deduction_total"]
    return frame[list(FIGURE_COLUMNS)]


def write_monthly_report(
    settings: Settings,
    cadres: Sequence[Cadre],
    engine: Engine,
    month: YearMonth,
    *,
    now: dt.datetime | None = None,
) -> ReportOutcome:
    """Write (or rewrite, or revise) the month's workbook and notice; see revisions.py."""
    from clockd.reports import notice  # it builds on this module's figures

    statistics_from = rules.statistics_weeks(month)[0].start
    period = Period(KIND, month.label, tuple(month.weeks()), statistics_from)

    def documents(
        basis: Basis, figures: MonthFigures, previous: pd.DataFrame | None
    ) -> list[Output]:
        document = notice.build_notice(settings, basis, cadres, figures, previous)
        return [Output(notice_path(settings, month), document.save)]

    spec = ReportKindSpec[MonthFigures](
        assess=lambda basis, punches, leave, results: assess(
            basis, cadres, month, punches, leave, results
        ),
        published=published,
        average=lambda f: f.statistics.average_valid_days,
        build=lambda basis, figures, previous: workbook(settings, basis, cadres, figures, previous),
        documents=documents,
        beside=(notice_path(settings, month),),
    )
    return write_edition(
        engine, settings, cadres, period, monthly_path(settings, month), spec, now or utcnow()
    )


def heading(settings: Settings, basis: Basis, month: YearMonth) -> sheets.Heading:
    weeks = _assessed_weeks(basis) or list(basis.period.weeks)
    span = (
        f"{sheets.month_name(month)}，考核周 {sheets.week_short(weeks[0])} 至 "
        f"{sheets.week_short(weeks[-1])}（周次按其周日所在月份归属）"
    )
    notes = tuple(sheets.calendar_notes(basis, basis.period.start, basis.period.end))
    return sheets.Heading(settings, basis, REPORT, sheets.month_name(month), span, notes)


def workbook(
    settings: Settings,
    basis: Basis,
    cadres: Sequence[Cadre],
    figures: MonthFigures,
    previous: pd.DataFrame | None,
) -> Book:
    plan = basis.plan
    month = figures.month
    head = heading(settings, basis, month)
    book = new_workbook(
        Stamp(identifier(KIND, month.label, plan.revision), plan.generated_at),
        f"{settings.township}{REPORT}　{sheets.month_name(month)}",
        settings.report.font,
    )
    by_id = {cadre.user_id: cadre for cadre in cadres}
    add_sheet(book, _notice_sheet(head, figures, by_id))
    add_sheet(book, _summary_sheet(head, figures, by_id))
    _add_statistics(book, head, figures)
    add_sheet(book, sheets.terminal_sheet(head, "本月记录数"))
    add_sheet(book, _department_sheet(head, figures, by_id))
    add_sheet(book, _village_sheet(head, figures, settings, cadres))
    add_sheet(book, _leave_sheet(head, figures, by_id))
    add_sheet(book, _weeks_sheet(head, figures))
    if previous is not None:
        fields = [("failed_weeks", "未达标周数"), ("valid_days", "有效下村天数")]
        add_sheet(book, sheets.changes_sheet(head, previous, published(figures), fields))
    return book


def _texts(values: Sequence[object]) -> list[object]:
    return [str(value) if value else None for value in values]


def _integers(values: pd.Series) -> list[object]:
    return [int(value) for value in values.tolist()]


def week_names(labels: Sequence[str]) -> str:
    """`第45周（11.2—11.8）、第47周（11.16—11.22）`."""
    return "、".join(sheets.week_short(IsoWeek.parse(label)) for label in labels)


def failed_weeks(figures: MonthFigures) -> dict[str, list[tuple[str, int, int]]]:
    """Per cadre, the month's failed weeks: (label, required, valid), in week order."""
    month = figures.this_month
    failing = month[rules.failed(month)].sort_values("week", kind="stable")
    weeks: dict[str, list[tuple[str, int, int]]] = {}
    for row in records(failing):
        weeks.setdefault(str(row.user_id), []).append(
            (str(row.week), int(row.required_days), int(row.valid_days))
        )
    return weeks


def notified(figures: MonthFigures) -> pd.DataFrame:
    """Cadres with a failed week, most failed weeks first, then by 工号."""
    return notified_rows(figures.results)


def notified_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of `rules.month_results` the notice names, in its order (see `notified`)."""
    failing = results[results["failed_weeks"] > 0] if len(results) else results
    return failing.sort_values("failed_weeks", ascending=False, kind="stable")


def _notice_sheet(head: sheets.Heading, figures: MonthFigures, by_id: dict[str, Cadre]) -> Sheet:
    """通报: cadres with at least one failed week, with the weeks' dates and shortfalls."""
    failing = notified(figures)
    weeks = failed_weeks(figures)
    user_ids = [str(uid) for uid in failing["user_id"]]
    reasons = [
        "；".join(
            f"{sheets.week_short(IsoWeek.parse(label))}有效 {valid} 天，应 {required} 天"
            for label, required, valid in weeks.get(uid, [])
        )
        or None
        for uid in user_ids
    ]
    columns = [
        Column("工号", user_ids),
        Column("姓名", _texts(failing["name"].tolist())),
        Column("部门", [_department(by_id, uid) for uid in user_ids]),
        Column("类别", _texts(failing["category"].tolist())),
        Column("未达标周数", _integers(failing["failed_weeks"]), INTEGER),
        Column("扣款合计(元)", _integers(failing["deduction_total"]), INTEGER),
        Column("未达标周次", [week_names(labels) for labels in failing["failed_week_labels"]]),
        Column("备注", reasons),
    ]
    stats = figures.statistics
    summary = [
        f"考核 {stats.cadre_count} 人，通报 {stats.notified_count} 人，"
        f"未达标 {int(failing['failed_weeks'].sum()) if len(failing) else 0} 人周，"
        f"扣款 {stats.deduction_total} 元；年度累计通报 {stats.year_to_date_notified} 人，"
        f"累计扣款 {stats.year_to_date_deduction} 元"
    ]
    table = Table(columns, empty="本月全体干部均达标")
    return head.sheet("通报", [table], summary)


def _department(by_id: dict[str, Cadre], user_id: str) -> str | None:
    cadre = by_id.get(user_id)
    return None if cadre is None else cadre.department


def _village(by_id: dict[str, Cadre], user_id: str) -> str | None:
    cadre = by_id.get(user_id)
    return None if cadre is None else cadre.village


def _summary_sheet(head: sheets.Heading, figures: MonthFigures, by_id: dict[str, Cadre]) -> Sheet:
    """月度汇总: every cadre assessed in the month, with a 合计 row."""
    results = figures.results
    user_ids = [str(uid) for uid in results["user_id"]]
    required = published(figures).set_index("user_id")["required_days"]
    weeks = failed_weeks(figures)
    columns = [
        Column("工号", user_ids),
        Column("姓名", _texts(results["name"].tolist())),
        Column("部门", [_department(by_id, uid) for uid in user_ids]),
        Column("驻点村", [_village(by_id, uid) for uid in user_ids]),
        Column("类别", _texts(results["category"].tolist())),
        Column("考核周数", _integers(results["assessed_weeks"]), INTEGER),
        Column("达标周数", _integers(results["met_weeks"]), INTEGER),
        Column("未达标周数", _integers(results["failed_weeks"]), INTEGER),
        Column("应下村天数", [int(required.get(uid, 0)) for uid in user_ids], INTEGER),
        Column("有效下村天数", _integers(results["valid_days"]), INTEGER),
        Column(
            "周均下村天数",
            [float(value) for value in results["average_valid_days"].tolist()],
            DECIMAL,
        ),
        Column("扣款合计(元)", _integers(results["deduction_total"]), INTEGER),
        Column(
            "备注",
            [
                "未达标：" + week_names([label for label, _, _ in weeks[uid]])
                if uid in weeks
                else None
                for uid in user_ids
            ],
        ),
    ]
    failed = [int(value) > 0 for value in results["failed_weeks"].tolist()] if len(results) else []
    person_weeks = int(results["assessed_weeks"].sum()) if len(results) else 0
    valid = int(results["valid_days"].sum()) if len(results) else 0
    totals: list[object] = [
        "合计",
        f"{len(results)} 人",
        None,
        None,
        None,
        person_weeks,
        int(results["met_weeks"].sum()) if len(results) else 0,
        int(results["failed_weeks"].sum()) if len(results) else 0,
        int(required.sum()) if len(required) else 0,
        valid,
        round(valid / person_weeks, 2) if person_weeks else None,
        int(results["deduction_total"].sum()) if len(results) else 0,
        None,
    ]
    notes = list(_holiday_notes(figures))
    table = Table(columns, failed, empty="本月无考核干部", totals=totals)
    return head.sheet("月度汇总", [table], notes=notes)


def _holiday_notes(figures: MonthFigures) -> list[str]:
    """Why a month with holiday weeks shows fewer village days, in words."""
    short = figures.short_weeks()
    if not short:
        return []
    listed = "、".join(
        f"{sheets.week_short(IsoWeek.parse(label))}工作日 {figures.workdays[label]} 天"
        for label in short
    )
    share = figures.required_met_share()
    tail = f"；按应下村天数计，本月完成 {share:.1%}" if share is not None else ""
    return [
        f"注：本月有节假日周（{listed}），应下村天数随工作日减少，周均下村天数因此偏低，"
        f"不代表干部下村减少{tail}"
    ]


def _earlier_holiday_notes(figures: MonthFigures) -> list[str]:
    """Which earlier months shown (last month, the 12-month series and its chart) had holiday
    weeks, so that a low average there, or a month-on-month rise, is not misread."""
    by_month: dict[YearMonth, list[str]] = {}
    for label, days in sorted(figures.earlier_short_weeks.items()):
        week = IsoWeek.parse(label)
        by_month.setdefault(week.month, []).append(f"{sheets.week_short(week)}工作日 {days} 天")
    shown = {month for month, average in figures.statistics.monthly_averages if average is not None}
    listed = [
        f"{sheets.month_name(month)}（{'、'.join(weeks)}）"
        for month, weeks in by_month.items()
        if month in shown
    ]
    if not listed:
        return []
    notes = [
        f"注：{'；'.join(listed)}有节假日周，应下村天数随工作日减少，这些月份的人均周下村天数"
        "因此偏低，不代表干部下村减少"
    ]
    if figures.month.shift(-1) in by_month:
        notes.append("注：上月有节假日周，上月人均周下村天数偏低，环比变化因此偏高")
    return notes


def _average(value: float | None) -> object:
    return DASH if value is None else Formatted(round(value, 4), DECIMAL)


def _ratio(value: float | None) -> object:
    return DASH if value is None else Formatted(value, PERCENT)


def _add_statistics(book: Book, head: sheets.Heading, figures: MonthFigures) -> None:
    """统计: the 指标 | 数值 table, the 12-month series below it, and a chart of it below."""
    stats = figures.statistics
    previous, current = stats.previous_month_average, stats.average_valid_days
    month_on_month = (
        (current - previous) / previous
        if current is not None and previous is not None and previous > 0
        else None
    )
    labels = sorted(figures.workdays)
    measures: list[tuple[str, object]] = [
        ("干部人数", stats.cadre_count),
        ("通报人数", stats.notified_count),
        ("扣款总额(元)", stats.deduction_total),
        ("人均周下村天数", _average(current)),
        ("上月人均周下村天数", _average(previous)),
        ("去年同期人均周下村天数", _average(stats.last_year_average)),
        ("同比变化", _ratio(stats.year_on_year_change)),
        ("环比变化", _ratio(month_on_month)),
        ("达标率(达标人周÷考核人周)", _ratio(figures.met_share())),
        ("应下村天数完成率", _ratio(figures.required_met_share())),
        ("年度累计通报人数", stats.year_to_date_notified),
        ("年度累计扣款(元)", stats.year_to_date_deduction),
        ("考核周数", len(labels)),
    ]
    measure_table = Table(
        [
            Column("指标", [name for name, _ in measures]),
            Column("数值", [value for _, value in measures], INTEGER),
        ]
    )
    months = [month for month, _ in stats.monthly_averages]
    per_month = _per_month(figures.figures.week_totals)
    series = Table(
        [
            Column("月份", [sheets.month_name(month) for month in months]),
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
        "考核周次："
        + (
            "、".join(
                f"{sheets.week_short(IsoWeek.parse(label))}工作日 {figures.workdays[label]} 天"
                for label in labels
            )
            or DASH
        ),
        "人均周下村天数 = 有效下村天数合计 ÷ 考核人周数（每名干部每个考核周计一人周）",
        "同比、环比变化 = (本月 − 对比月) ÷ 对比月；对比月无考核数据时显示 —",
        "应下村天数完成率 = Σ min(有效下村天数, 应下村天数) ÷ Σ 应下村天数；"
        "不受节假日周工作日减少的影响",
        *_holiday_notes(figures),
        *_earlier_holiday_notes(figures),
    ]
    sheet = replace(
        head.sheet(CHART_SHEET, [measure_table, series], notes=notes), extra_rows=CHART_ROWS
    )
    written = add_sheet(book, sheet)
    width = min(max(sheet_width_cm(sheet.tables), 14.0), 25.0)
    _add_chart(written.worksheet, written.placements[1], book.font_name, width)


def _department_sheet(
    head: sheets.Heading, figures: MonthFigures, by_id: dict[str, Cadre]
) -> Sheet:
    """部门统计: per department, the month's cadres, village days and shortfalls."""
    weeks = figures.this_month
    rows: list[tuple[object, ...]] = []
    if len(weeks):
        frame = weeks.assign(
            department=[_department(by_id, str(uid)) or "（未填部门）" for uid in weeks["user_id"]],
            failed=rules.failed(weeks),
        )
        for department, group in frame.groupby("department", sort=True):
            person_weeks = len(group)
            valid = int(group["valid_days"].sum())
            rows.append(
                (
                    str(department),
                    int(group["user_id"].nunique()),
                    person_weeks,
                    int(group["required_days"].sum()),
                    valid,
                    round(valid / person_weeks, 2) if person_weeks else None,
                    int(group.loc[group["failed"], "user_id"].nunique()),
                    int(group["failed"].sum()),
                    int(group["deduction"].sum()),
                )
            )
    headers = [
        ("部门", None),
        ("干部人数", INTEGER),
        ("考核人周数", INTEGER),
        ("应下村天数", INTEGER),
        ("有效下村天数", INTEGER),
        ("人均周下村天数", DECIMAL),
        ("未达标人数", INTEGER),
        ("未达标人周", INTEGER),
        ("扣款(元)", INTEGER),
    ]
    columns = [
        Column(header, [row[index] for row in rows], fmt)
        for index, (header, fmt) in enumerate(headers)
    ]
    failed = [bool(row[6]) for row in rows]
    return head.sheet("部门统计", [Table(columns, failed, empty="本月无考核干部")])


def _village_sheet(
    head: sheets.Heading, figures: MonthFigures, settings: Settings, cadres: Sequence[Cadre]
) -> Sheet:
    """村(社区)统计: cadre-days spent in each village in the month's weeks; villages nobody
    visited are highlighted and named above the table."""
    villages = list(dict.fromkeys(terminal.village for terminal in settings.terminals))
    visits = {
        column: figures.villages[column].to_dict()
        for column in ("cadres", "cadre_days", "half_days")
    }

    def count(village: str, column: str) -> int:
        return int(str(visits[column].get(village, 0)))

    days = {village: count(village, "cadre_days") for village in villages}
    residents: dict[str, list[str]] = {village: [] for village in villages}
    for cadre in cadres:
        if cadre.village in residents:
            residents[cadre.village].append(cadre.name)
    columns = [
        Column("村(社区)", villages),
        Column("驻村干部", ["、".join(residents[v]) or None for v in villages]),
        Column("下村干部人数", [count(v, "cadres") for v in villages], INTEGER),
        Column("下村人天", [days[v] for v in villages], INTEGER),
        Column("半天打卡人次", [count(v, "half_days") for v in villages], INTEGER),
    ]
    unvisited = [village for village in villages if not days[village]]
    summary = [
        "本月无人下村的村(社区)：" + "、".join(unvisited)
        if unvisited
        else "本月每个村(社区)都有干部有效下村"
    ]
    notes = ["下村人天：在该村有效下村的干部天数；一天上午、下午在两个村的，两村各计一人天"]
    table = Table(columns, [not days[v] for v in villages], empty="未配置村(社区)终端")
    return head.sheet("村(社区)统计", [table], summary, notes)


def _leave_sheet(head: sheets.Heading, figures: MonthFigures, by_id: dict[str, Cadre]) -> Sheet:
    """请假出差: the approved leave and business trips touching the month's weeks."""
    entries = sorted(figures.leave, key=lambda e: (e.start, e.user_id, e.end))
    first, last = head.basis.period.start, head.basis.period.end
    columns = [
        Column("工号", [entry.user_id for entry in entries]),
        Column("姓名", [by_id[e.user_id].name if e.user_id in by_id else None for e in entries]),
        Column("部门", [_department(by_id, entry.user_id) for entry in entries]),
        Column("类型", [entry.kind.label for entry in entries]),
        Column("开始日期", [entry.start for entry in entries], DATE),
        Column("结束日期", [entry.end for entry in entries], DATE),
        Column(
            "本月考核期内天数",
            [(min(e.end, last) - max(e.start, first)).days + 1 for e in entries],
            INTEGER,
        ),
        Column("说明", [entry.note or None for entry in entries]),
    ]
    people = len({entry.user_id for entry in entries})
    summary = [f"本月请假、出差 {len(entries)} 人次，{people} 人"] if entries else []
    table = Table(columns, empty="本月无请假、出差")
    return head.sheet("请假出差", [table], summary)


def _weeks_sheet(head: sheets.Heading, figures: MonthFigures) -> Sheet:
    """周明细: each cadre's weeks of the month, the detail behind 月度汇总 and 通报."""
    week_results = figures.this_month
    labels = week_results["week"].tolist()
    short = {label: sheets.week_short(IsoWeek.parse(str(label))) for label in set(labels)}
    columns = [Column("周次", [short[label] for label in labels])]
    for name, header in rules.WEEK_HEADERS.items():
        if name == "met":
            columns.append(Column(header, rules.met_labels(week_results)))
        elif name in ("user_id", "name", "category", "remarks"):
            columns.append(Column(header, _texts(week_results[name].tolist())))
        else:
            columns.append(Column(header, _integers(week_results[name]), INTEGER))
    table = Table(columns, rules.failed(week_results).tolist(), empty="本月无考核周")
    return head.sheet("周明细", [table])


# The per-month columns beside the chart's series: they explain 统计's averages and totals.
MONTH_SERIES = {
    "person_weeks": "考核人周数",
    "valid_days": "有效下村天数合计",
    "notified": "通报人数",
    "deduction": "扣款(元)",
}


def _per_month(totals: pd.DataFrame) -> dict[str, dict[object, object]]:
    """The MONTH_SERIES of each month with an assessed week, from `rules.week_totals`."""
    if not len(totals):
        return {name: {} for name in MONTH_SERIES}
    grouped = totals.groupby("month")
    failing = grouped["failing"].agg(lambda weeks: len(set().union(*weeks)))
    return {
        "person_weeks": grouped["person_weeks"].sum().to_dict(),
        "valid_days": grouped["valid_days"].sum().to_dict(),
        "notified": failing.to_dict(),
        "deduction": grouped["deduction"].sum().to_dict(),
    }


def _whole(value: object) -> int | None:
    return None if value is None else int(str(value))


def _axis_text(font_name: str, rotation: int = 0) -> RichText:
    """Axis labels in the workbook's font, optionally rotated (degrees), on one line."""
    face = DrawingFont(typeface=font_name)
    properties = CharacterProperties(latin=face, ea=face, sz=900)
    return RichText(
        bodyPr=RichTextProperties(rot=rotation * 60000, vert="horz", wrap="none"),
        p=[Paragraph(pPr=ParagraphProperties(defRPr=properties), endParaRPr=properties)],
    )


def _add_chart(worksheet: Worksheet, series: Placement, font_name: str, width: float) -> None:
    """The 12 months' average, below the series table: straight lines with markers (a single
    month still shows as a point), the y axis from 0, month labels slanted on one line."""
    chart = LineChart()
    chart.title = "近12个月人均周下村天数"
    chart.y_axis.title = "天/人周"
    chart.x_axis.title = "月份"
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.y_axis.scaling.min = 0
    chart.y_axis.majorUnit = 1
    chart.y_axis.number_format = "0.0"
    chart.x_axis.txPr = _axis_text(font_name, -45)
    chart.legend = None
    chart.height = 9
    chart.width = width  # type: ignore[assignment]  # centimetres; the stub says int
    values = Reference(worksheet, min_col=2, min_row=series.header_row, max_row=series.last_row)
    months = Reference(worksheet, min_col=1, min_row=series.header_row + 1, max_row=series.last_row)
    chart.add_data(values, titles_from_data=True)
    chart.set_categories(months)
    for line in chart.series:
        line.smooth = False
        line.marker.symbol = "circle"
        line.marker.size = 7
    worksheet.add_chart(chart, f"A{series.last_row + 3}")
