"""The parts both reports share: names of periods and times, the title block, 终端状态, and
the 更正说明 sheet (see docs/reports.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import chinese_calendar
import numpy as np
import pandas as pd

from clockd.config import Settings
from clockd.domain import user_id_order
from clockd.reports.anchors import anchor_table
from clockd.reports.period import Basis
from clockd.reports.revisions import PROVISIONAL, EditionStatus
from clockd.reports.xlsx import INTEGER, MINUTES, PERCENT, Column, Line, Sheet, Table
from clockd.store.facts import TerminalFacts
from clockd.store.models import OK
from clockd.store.periods import NEVER
from clockd.workcal import IsoWeek, WorkCalendar, YearMonth

WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
CHANGES_SHEET = "更正说明"
TERMINAL_HEADERS = (
    "终端",
    "村(社区)",
    "序列号",
    "最后成功采集",
    "{records}",
    "时钟偏差(秒)",
    "容量使用率",
    "状态",
)
# Chinese names of the zones a Chinese deployment may configure; others print their id.
ZONE_NAMES = {
    "Asia/Shanghai": "北京时间",
    "Asia/Chongqing": "北京时间",
    "Asia/Harbin": "北京时间",
    "PRC": "北京时间",
    "Asia/Urumqi": "新疆时间",
    "Asia/Hong_Kong": "香港时间",
    "Asia/Macau": "澳门时间",
    "Asia/Taipei": "台北时间",
}
HOLIDAY_NAMES = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午",
    "National Day": "国庆",
    "Mid-autumn Festival": "中秋",
}


def zone_name(settings: Settings) -> str:
    """`北京时间` for Asia/Shanghai: how a Chinese reader names the report's clock."""
    return ZONE_NAMES.get(settings.timezone, settings.timezone)


def local_time(instant: dt.datetime, settings: Settings) -> dt.datetime:
    """An instant as the township's naive wall-clock time, as Excel shows dates."""
    return instant.astimezone(settings.zone).replace(tzinfo=None, microsecond=0)


def stamp_text(instant: dt.datetime, settings: Settings, seconds: bool = False) -> str:
    """`2026年11月23日 07:30（北京时间）`."""
    local = local_time(instant, settings)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    return f"{chinese_date(local.date())} {clock}（{zone_name(settings)}）"


def chinese_date(day: dt.date) -> str:
    """`2026年11月2日`, the way a notice dates itself."""
    return f"{day.year}年{day.month}月{day.day}日"


def week_name(week: IsoWeek) -> str:
    """`2026年第47周（11月16日—11月22日）`: the ISO label's year, number and dates."""
    start, end = week.start, week.end
    return f"{week.year}年第{week.week}周（{start.month}月{start.day}日—{end.month}月{end.day}日）"


def week_short(week: IsoWeek) -> str:
    """`第47周（11.16—11.22）`, for lists of weeks."""
    start, end = week.start, week.end
    return f"第{week.week}周（{start.month}.{start.day}—{end.month}.{end.day}）"


def month_name(month: YearMonth) -> str:
    """`2026年10月`."""
    return f"{month.year}年{month.month}月"


def day_label(day: dt.date) -> str:
    """`11-16 周一`: the 明细 column header of a day."""
    return f"{day:%m-%d} {WEEKDAYS[day.weekday()]}"


def day_header(day: dt.date, calendar: WorkCalendar) -> str:
    """The 明细 header of a day, marking days off and 调休 working days:
    `11-16 周一`, `11-22 周日（休）`, `10-01 周四（国庆）`, `10-10 周六（调休上班）`."""
    label = day_label(day)
    workday = calendar.is_workday(day)
    weekend = day.weekday() >= 5
    if workday and weekend:
        return f"{label}（调休上班）"
    if workday:
        return label
    if not weekend:
        return f"{label}（{_holiday_name(day)}）"
    return f"{label}（休）"


def _holiday_name(day: dt.date) -> str:
    try:
        _, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        name = None
    return HOLIDAY_NAMES.get(str(name), "放假") if name else "放假"


@dataclass(frozen=True)
class Heading:
    """What every sheet of one report edition says above its table, and on each page.

    `lines(sheet)` is the title block of one sheet: the technical line (generation time and
    the edition's identifier, above the print area), the title naming the sheet, the period,
    the status, banners and notes.
    """

    settings: Settings
    basis: Basis
    report: str  # 干部下村考勤周报
    period: str  # 2026年第47周（11月16日—11月22日）
    span: str  # the 考核期间 line
    notes: tuple[str, ...] = ()

    @property
    def township(self) -> str:
        return self.settings.township

    def status_text(self) -> str:
        plan = self.basis.plan
        status = f"状态：{plan.status.label}（第{plan.revision + 1}版）"
        if plan.status == PROVISIONAL:
            status += "　数据尚不完整，数字可能变化；全部终端采集后将重新生成"
        return status

    def lines(
        self, sheet: str, summary: Sequence[str] = (), notes: Sequence[str] = ()
    ) -> list[Line]:
        plan = self.basis.plan
        lines = [
            Line(
                f"生成时间：{stamp_text(plan.generated_at, self.settings, seconds=True)}"
                f"　{self.report}第{plan.revision + 1}版",
                "technical",
            ),
            Line(f"{self.township}{self.report}　{sheet}", "title"),
            Line(f"考核期间：{self.span}"),
            Line(self.status_text()),
        ]
        if not self.basis.completeness.final:
            lines.append(
                Line(incomplete_banner(self.settings, self.basis.completeness.missing), "banner")
            )
        if plan.compared is not None:
            lines.append(
                Line(
                    f"更正：本版更正第{plan.compared.revision + 1}版（生成于 "
                    f"{stamp_text(plan.compared.generated_at, self.settings)}），"
                    f"变化见“{CHANGES_SHEET}”工作表",
                    "banner",
                )
            )
        lines.extend(Line(text, "summary") for text in summary)
        lines.extend(Line(note, "note") for note in (*self.notes, *notes))
        return lines

    def sheet(
        self,
        name: str,
        tables: Sequence[Table],
        summary: Sequence[str] = (),
        notes: Sequence[str] = (),
    ) -> Sheet:
        """A sheet of this edition, its title naming it, with page header and footer."""
        plan = self.basis.plan
        status = plan.status.label
        return Sheet(
            name,
            self.lines(name, summary, notes),
            tables,
            page_header=f"{self.township}{self.report}（{status}）　{self.period}　{name}",
            page_footer=(
                f"第{plan.revision + 1}版　生成于 {stamp_text(plan.generated_at, self.settings)}"
            ),
        )


def incomplete_banner(settings: Settings, missing: Sequence[TerminalFacts]) -> str:
    villages = "、".join(dict.fromkeys(fact.terminal.village for fact in missing))
    terminals = "、".join(
        f"{fact.terminal.id}（{fact.terminal.village}，"
        + (
            f"最后成功采集 {local_time(fact.last_success, settings):%Y-%m-%d %H:%M}"
            if fact.last_success is not None
            else "从未成功采集"
        )
        + "）"
        for fact in missing
    )
    return (
        f"数据可能不完整：{villages}的考勤终端在考核期结束后尚未成功采集，这些村(社区)的打卡"
        f"可能尚未全部入库，相关干部的下村天数可能偏少。未采集终端：{terminals}"
    )


def calendar_notes(basis: Basis, start: dt.date, end: dt.date) -> list[str]:
    """Remarks on the working-day calendar and on weeks before the terminals' service."""
    notes = []
    if basis.calendar.falls_back(start, end):
        years = sorted(
            {day.year for day in _days(start, end) if not basis.calendar.knows_year(day.year)}
        )
        listed = "、".join(f"{year}年" for year in years)
        notes.append(
            f"注：节假日日历缺少{listed}数据，按周一至周五计工作日"
            "（可在 devices.yaml 的 holidays 中补充当年放假与调休安排）"
        )
    if start < basis.since:
        notes.append(f"注：考勤终端自 {basis.since.isoformat()} 起启用，此前开始的周次不作考核")
    return notes


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def terminal_sheet(heading: Heading, records: str) -> Sheet:
    """终端状态: every configured terminal, then any unconfigured serial seen in the period.

    `records` is the header of the per-period record count (本周记录数 / 本月记录数).
    """
    settings, basis = heading.settings, heading.basis
    period = basis.period
    punches = basis.data.punches
    stamps = punches["timestamp"].to_numpy()
    in_period = (stamps >= np.datetime64(period.start, "s")) & (
        stamps < np.datetime64(period.end + dt.timedelta(days=1), "s")
    )
    counts = punches.loc[in_period, "serial"].value_counts()
    counted = {str(serial): int(count) for serial, count in counts.items() if count}
    missing = {fact.terminal.id for fact in basis.completeness.missing}
    warn = settings.poll.capacity_warn_percent / 100
    rows: list[tuple[object, ...]] = []
    failed: list[bool] = []
    for fact in basis.completeness.facts:
        terminal = fact.terminal
        problems = _terminal_problems(settings, fact, terminal.id in missing, warn, period.end)
        rows.append(
            (
                terminal.id,
                terminal.village,
                terminal.serial,
                None if fact.last_success is None else local_time(fact.last_success, settings),
                counted.get(terminal.serial, 0),
                None if fact.drift_seconds is None else round(fact.drift_seconds),
                fact.capacity_ratio,
                "；".join(problems) or "正常",
            )
        )
        failed.append(bool(problems) and terminal.installed <= period.end)
    configured = {terminal.serial for terminal in settings.terminals}
    for serial in sorted(set(counted) - configured):
        rows.append(
            (
                serial,
                None,
                serial,
                None,
                counted[serial],
                None,
                None,
                "未在 devices.yaml 中配置的序列号：其打卡不归属任何村(社区)，不计入考勤",
            )
        )
        failed.append(True)
    headers = [header.format(records=records) for header in TERMINAL_HEADERS]
    formats: list[str | None] = [None, None, None, MINUTES, INTEGER, INTEGER, PERCENT, None]
    columns = [
        Column(header, [row[index] for row in rows], fmt)
        for index, (header, fmt) in enumerate(zip(headers, formats, strict=True))
    ]
    return heading.sheet(
        "终端状态",
        [Table(columns, failed, empty="未配置考勤终端"), anchor_table(settings, basis.anchors)],
        notes=[
            f"最后成功采集为{zone_name(settings)}；下方第二张表为本报表所依据数据的链末端，"
            "可用 clockd verify --report 核验"
        ],
    )


def _terminal_problems(
    settings: Settings, fact: TerminalFacts, missing: bool, warn: float, period_end: dt.date
) -> list[str]:
    terminal = fact.terminal
    if terminal.installed > period_end:
        return [f"考核期内尚未启用（{terminal.installed.isoformat()} 启用）"]
    problems = []
    if missing:
        problems.append("考核期结束后尚未成功采集，本期数据可能不完整")
    if fact.serial_mismatch:
        problems.append(f"序列号不符：设备报告 {fact.reported_serial}，其打卡在确认前不归属本村")
    if fact.last_outcome not in (None, OK) and fact.last_error:
        problems.append(f"最近一次采集失败：{fact.last_error}")
    ratio = fact.capacity_ratio
    if ratio is not None and ratio > warn:
        problems.append(f"记录容量已用 {ratio:.0%}")
    drift = fact.drift_seconds
    if drift is not None and abs(drift) > settings.poll.max_drift_seconds:
        problems.append(f"时钟偏差 {drift:+.0f} 秒")
    return problems


def changes_sheet(
    heading: Heading,
    previous: pd.DataFrame,
    current: pd.DataFrame,
    fields: Sequence[tuple[str, str]],
) -> Sheet:
    """更正说明: each cadre whose figures differ from the edition this one corrects, and why.

    `previous` holds the figures that edition published (report_figures, as printed then:
    a later roster or rule change does not alter them), `current` this edition's; both in
    revisions.FIGURE_COLUMNS. `fields` are the (column, label) pairs compared besides the
    deduction.
    """
    basis, settings = heading.basis, heading.settings
    plan = basis.plan
    assert plan.compared is not None
    compared = [*(name for name, _ in fields), "deduction"]
    keys = ["user_id", "category", *compared]
    merged = previous[["name", *keys]].merge(
        current[["name", *keys]], on="user_id", how="outer", suffixes=("_before", "_now")
    )
    differs = [
        any(
            _value(getattr(row, f"{name}_before")) != _value(getattr(row, f"{name}_now"))
            for name in compared
        )
        or _text(row.category_before) != _text(row.category_now)
        for row in merged.itertuples(index=False)
    ]
    merged = merged[differs]
    merged = merged.iloc[_id_order(merged["user_id"])]
    old_total = int(pd.to_numeric(previous["deduction"]).sum())
    new_total = int(pd.to_numeric(current["deduction"]).sum())
    names = [
        _text(now) or _text(before)
        for before, now in zip(merged["name_before"], merged["name_now"], strict=True)
    ]
    columns = [
        Column("工号", _texts(merged["user_id"])),
        Column("姓名", names),
        Column("上一版类别", _texts(merged["category_before"])),
        Column("本版类别", _texts(merged["category_now"])),
    ]
    for name, label in [*fields, ("deduction", "扣款(元)")]:
        columns.append(Column(f"上一版{label}", _numbers(merged[f"{name}_before"]), INTEGER))
        columns.append(Column(f"本版{label}", _numbers(merged[f"{name}_now"]), INTEGER))
    change = [
        _value(now) - _value(old)
        for old, now in zip(merged["deduction_before"], merged["deduction_now"], strict=True)
    ]
    columns.append(Column("扣款变化(元)", change, INTEGER))
    summary = [
        f"本版更正第{plan.compared.revision + 1}版（{EditionStatus(plan.compared.status).label}，"
        f"生成于 {stamp_text(plan.compared.generated_at, settings)}）。上一版数字按其发布时的"
        "记录列出，不按现在的花名册或规则重算。",
        f"扣款合计：上一版 {old_total} 元，本版 {new_total} 元"
        f"（变化 {new_total - old_total:+d} 元）",
    ]
    notes = ["此后新入库的数据：" + input_changes(basis)]
    return heading.sheet(
        CHANGES_SHEET,
        [
            Table(
                columns,
                [c != 0 for c in change],
                empty="各干部的考核结果与扣款均无变化（变化只在打卡记录或异常清单中）",
            )
        ],
        summary,
        notes,
    )


def input_changes(basis: Basis) -> str:
    """What arrived after the compared revision: late punches, leave changes, releases in the
    period's own weeks, and apart, what arrived in the weeks before it that its statistics
    reach back over (a month's), so the period's own count is not read as a year's."""
    era = basis.plan.compared_era
    assert era is not None
    punches = basis.data.punches
    earlier = basis.data.known_arrivals
    period = basis.period
    times = punches["timestamp"]
    own = (
        (times >= pd.Timestamp(period.start))
        & (times < pd.Timestamp(period.end) + pd.Timedelta(days=1))
    ).to_numpy()
    arrived = punches["arrival"].to_numpy() > era
    freed = (
        punches["kept"].to_numpy()
        & (punches["release"].to_numpy() > era)
        & (punches["release"].to_numpy() != NEVER)
    )
    late, released = int((arrived & own).sum()), int((freed & own).sum())
    # Earlier weeks' arrivals: counted from the kept weeks, or from the frame when it holds them.
    earlier_late = earlier.late + int((arrived & ~own).sum())
    earlier_released = earlier.released + int((freed & ~own).sum())
    cut = basis.data.cuts[era]
    added = sum(1 for record in basis.data.leave_records if record.created_at > cut)
    revoked = sum(
        1
        for record in basis.data.leave_records
        if record.revoked_at is not None and record.revoked_at > cut and record.created_at <= cut
    )
    text = (
        f"补录打卡 {late} 条，新增请假/出差 {added} 条，撤销请假/出差 {revoked} 条，"
        f"隔离记录放行 {released} 条"
    )
    if earlier_late or earlier_released:  # a month's statistics reach back a year
        text += (
            f"；统计所及此前各周另有补录打卡 {earlier_late} 条、隔离记录放行 {earlier_released} 条"
        )
    return text + "（花名册或配置的变化也会改变结果）"


def _value(value: object) -> int:
    """A merged figure as a whole number; a cadre missing on one side counts as 0."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not np.isnan(value):
        return int(value)
    return 0


def _text(value: object) -> str | None:
    """A merged text cell; a cadre missing on one side has NaN there."""
    return None if value is None or isinstance(value, float) else str(value)


def _texts(values: pd.Series) -> list[object]:
    return [_text(v) for v in values.tolist()]


def _numbers(values: pd.Series) -> list[object]:
    return [
        None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)
        for v in values.tolist()
    ]


def _id_order(user_ids: pd.Series) -> list[int]:
    keys = [user_id_order(str(uid)) for uid in user_ids.tolist()]
    return sorted(range(len(keys)), key=keys.__getitem__)
