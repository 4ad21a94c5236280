"""The parts both reports share: the title block, 终端状态, and the 更正说明 sheet."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from clockd.config import Settings
from clockd.domain import user_id_order
from clockd.reports.anchors import anchor_table
from clockd.reports.period import Basis
from clockd.reports.revisions import PROVISIONAL
from clockd.reports.xlsx import INTEGER, MINUTES, PERCENT, Column, Line, Sheet, Table
from clockd.store.models import OK
from clockd.store.periods import NEVER, TerminalFacts

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


def local_time(instant: dt.datetime, settings: Settings) -> dt.datetime:
    """An instant as the township's naive wall-clock time, as Excel shows dates."""
    return instant.astimezone(settings.zone).replace(tzinfo=None, microsecond=0)


def day_label(day: dt.date) -> str:
    """`11-16 周一`: the 明细 column header of a day."""
    return f"{day:%m-%d} {WEEKDAYS[day.weekday()]}"


def title_block(
    settings: Settings, basis: Basis, heading: str, span: str, notes: Sequence[str] = ()
) -> list[Line]:
    """Township and report, period, status and revision, generation time, banners, notes."""
    plan = basis.plan
    status = f"状态：{plan.status}"
    if plan.revision:
        status += f"（第{plan.revision + 1}版）"
    if plan.status == PROVISIONAL:
        status += "　数据尚不完整，数字可能变化；全部终端采集后将重新生成"
    lines = [
        Line(f"{settings.township}　{heading}", "title"),
        Line(f"考核期间：{span}"),
        Line(status),
        Line(
            f"生成时间：{local_time(plan.generated_at, settings):%Y-%m-%d %H:%M:%S}"
            f"（{settings.timezone}）"
        ),
    ]
    if not basis.completeness.final:
        lines.append(Line(incomplete_banner(settings, basis.completeness.missing), "banner"))
    if plan.compared is not None:
        lines.append(
            Line(
                f"更正：与第{plan.compared.revision + 1}版（生成于 "
                f"{local_time(plan.compared.generated_at, settings):%Y-%m-%d %H:%M}）相比，"
                f"考核依据的数据有变化，变化见“{CHANGES_SHEET}”工作表",
                "banner",
            )
        )
    lines.extend(Line(note, "note") for note in notes)
    return lines


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


def terminal_sheet(settings: Settings, basis: Basis, title: Sequence[Line], records: str) -> Sheet:
    """终端状态: every configured terminal, then any unconfigured serial seen in the period.

    `records` is the header of the per-period record count (本周记录数 / 本月记录数).
    """
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
    return Sheet("终端状态", title, [Table(columns, failed), anchor_table(settings, basis.anchors)])


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
    settings: Settings,
    basis: Basis,
    title: Sequence[Line],
    previous: pd.DataFrame,
    current: pd.DataFrame,
    fields: Sequence[tuple[str, str]],
    deduction: str,
) -> Sheet:
    """更正说明: each cadre whose figures differ from the compared revision, and why.

    `previous` and `current` have user_id, name and the `fields` (column, label); `deduction`
    is the field holding the deduction in yuan.
    """
    plan = basis.plan
    assert plan.compared is not None and plan.compared_era is not None
    keys = ["user_id", *[name for name, _ in fields]]
    merged = previous[keys].merge(
        current[["name", *keys]], on="user_id", how="outer", suffixes=("_before", "_now")
    )
    before = merged[[f"{name}_before" for name, _ in fields]].to_numpy(dtype=object)
    after = merged[[f"{name}_now" for name, _ in fields]].to_numpy(dtype=object)
    differs = [
        any(_value(a) != _value(b) for a, b in zip(row_before, row_after, strict=True))
        for row_before, row_after in zip(before, after, strict=True)
    ]
    merged = merged[differs]
    merged = merged.iloc[_id_order(merged["user_id"])]
    old_total = int(pd.to_numeric(previous[deduction]).sum())
    new_total = int(pd.to_numeric(current[deduction]).sum())
    columns = [
        Column("工号", _texts(merged["user_id"])),
        Column("姓名", _texts(merged["name"])),
    ]
    for name, label in fields:
        columns.append(Column(f"上一版{label}", _numbers(merged[f"{name}_before"]), INTEGER))
        columns.append(Column(f"本版{label}", _numbers(merged[f"{name}_now"]), INTEGER))
    change = [
        _value(now) - _value(old)
        for old, now in zip(merged[f"{deduction}_before"], merged[f"{deduction}_now"], strict=True)
    ]
    columns.append(Column("扣款变化(元)", change, INTEGER))
    notes = [
        f"对比对象：第{plan.compared.revision + 1}版（状态 {plan.compared.status}，生成于 "
        f"{local_time(plan.compared.generated_at, settings):%Y-%m-%d %H:%M}）",
        "此后新入库的数据：" + input_changes(basis),
        f"扣款合计：上一版 {old_total} 元，本版 {new_total} 元"
        f"（变化 {new_total - old_total:+d} 元）",
    ]
    if merged.empty:
        notes.append("各干部的考核结果与扣款均无变化（变化只在打卡记录或异常清单中）")
    sheet_title = [*title, *(Line(note) for note in notes)]
    return Sheet(CHANGES_SHEET, sheet_title, [Table(columns, [c != 0 for c in change])])


def input_changes(basis: Basis) -> str:
    """What arrived after the compared revision: late punches, leave changes, releases."""
    era = basis.plan.compared_era
    assert era is not None
    punches = basis.data.punches
    late = int((punches["arrival"].to_numpy() > era).sum())
    released = int(
        (
            punches["kept"].to_numpy()
            & (punches["release"].to_numpy() > era)
            & (punches["release"].to_numpy() != NEVER)
        ).sum()
    )
    cut = basis.data.cuts[era]
    added = sum(1 for record in basis.data.leave_records if record.created_at > cut)
    revoked = sum(
        1
        for record in basis.data.leave_records
        if record.revoked_at is not None and record.revoked_at > cut and record.created_at <= cut
    )
    return (
        f"补录打卡 {late} 条，新增请假/出差 {added} 条，撤销请假/出差 {revoked} 条，"
        f"隔离记录放行 {released} 条（花名册或配置的变化也会改变结果）"
    )


def _value(value: object) -> int:
    """A merged figure as a whole number; a cadre missing on one side counts as 0."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not np.isnan(value):
        return int(value)
    return 0


def _texts(values: pd.Series) -> list[object]:
    return [None if isinstance(v, float) else str(v) for v in values.tolist()]


def _numbers(values: pd.Series) -> list[object]:
    return [
        None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)
        for v in values.tolist()
    ]


def _id_order(user_ids: pd.Series) -> list[int]:
    keys = [user_id_order(str(uid)) for uid in user_ids.tolist()]
    return sorted(range(len(keys)), key=keys.__getitem__)
