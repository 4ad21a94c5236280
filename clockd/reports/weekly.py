"""The weekly summary HR opens every Monday: `reports/weekly/<YYYY>-W<ww>.xlsx`
(docs/reports.md describes every sheet and column).

Sheets, in order: 汇总 (one row per active cadre, a one-line summary above and a 合计 row
below), 明细 (what each day counted as), 打卡记录 (every punch of the week), 终端状态, 异常;
then 更正说明 when this revision corrects an earlier one. Every figure in 汇总 can be traced
through 明细 to 打卡记录 and 异常.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from clockd import rules
from clockd.config import Settings
from clockd.domain import Cadre, Leave
from clockd.ledger import printable
from clockd.proxy import proxy_signals
from clockd.reports import sheets
from clockd.reports.flow import ReportKindSpec, write_edition
from clockd.reports.frames import records
from clockd.reports.period import Basis, HeldRecord, Period, ReportKind
from clockd.reports.revisions import ReportOutcome, identifier
from clockd.reports.xlsx import (
    DATETIME,
    INTEGER,
    Book,
    Column,
    Sheet,
    Stamp,
    Table,
    add_sheet,
    new_workbook,
)
from clockd.store.models import FAILED, MISMATCH, utcnow
from clockd.store.periods import FIGURE_COLUMNS, PollProblem, poll_problems
from clockd.workcal import IsoWeek

KIND: ReportKind = "weekly"
REPORT = "干部下村考勤周报"
POLL_PROBLEM_LABELS = {FAILED: "采集失败", MISMATCH: "序列号不符"}
HELD_LABEL = "隔离(无法识别)"
# 汇总's columns: the rules' week headers (docs/reports.md), with 部门 and 驻点村 read beside 姓名.
_NAMED = ("user_id", "name")
SUMMARY_HEADERS = {
    **{name: rules.WEEK_HEADERS[name] for name in _NAMED},
    "department": "部门",
    "village": "驻点村",
    **{name: header for name, header in rules.WEEK_HEADERS.items() if name not in _NAMED},
}
_COUNTS = (
    "required_days",
    "valid_days",
    "morning_only_days",
    "afternoon_only_days",
    "leave_days",
    "deduction",
    "result_days",
)


def weekly_path(settings: Settings, week: IsoWeek) -> Path:
    return settings.reports_dir / "weekly" / f"{week.label}.xlsx"


@dataclass(frozen=True)
class WeekFigures:
    results: pd.DataFrame  # summary_rows: 汇总's rows
    marks: pd.DataFrame  # rules.day_marks
    anomalies: pd.DataFrame  # rules.find_anomalies
    signals: pd.DataFrame  # proxy.proxy_signals: listed in 异常, never counted
    leave: tuple[Leave, ...]  # leave in force touching the week


def assess(
    basis: Basis,
    cadres: Sequence[Cadre],
    punches: pd.DataFrame,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]] = (),
) -> WeekFigures:
    """The week's figures from one version of its punches, leave and work results."""
    week = basis.period.weeks[0]
    return WeekFigures(
        results=summary_rows(basis, cadres, punches, leave, work_results),
        marks=rules.day_marks(punches, cadres, leave, week.start, week.end, basis.rules),
        anomalies=rules.find_anomalies(punches, cadres, basis.rules),
        signals=proxy_signals(punches, basis.rules),
        leave=week_leave(leave, week),
    )


def summary_rows(
    basis: Basis,
    cadres: Sequence[Cadre],
    punches: pd.DataFrame,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]] = (),
) -> pd.DataFrame:
    """汇总's rows: `rules.assess_weeks` for the week, with `remarks` the 备注 text the sheet
    shows ("" when none). The console and the JSON API take the week's figures from here, so
    they cannot differ from the workbook."""
    week = basis.period.weeks[0]
    weeks = [week] if week.start >= basis.since else []  # before the terminals: not assessed
    results = rules.assess_weeks(
        punches, cadres, leave, basis.calendar, weeks, basis.rules, work_results, basis.today
    )
    return results.assign(remarks=_remarks(results, week_leave(leave, week)))


def week_leave(leave: Sequence[Leave], week: IsoWeek) -> tuple[Leave, ...]:
    """The entries of `leave` that touch `week`."""
    return tuple(e for e in leave if e.start <= week.end and e.end >= week.start)


def published(figures: WeekFigures) -> pd.DataFrame:
    """What the week publishes per cadre (revisions.FIGURE_COLUMNS)."""
    results = figures.results
    frame = results[["user_id", "name", "category", "required_days", "valid_days"]].copy()
    frame["failed_weeks"] = rules.failed(results).astype(int)
    frame["deduction"] = results["deduction"]
    return frame[list(FIGURE_COLUMNS)]


def write_weekly_report(
    settings: Settings,
    cadres: Sequence[Cadre],
    engine: Engine,
    week: IsoWeek,
    *,
    now: dt.datetime | None = None,
) -> ReportOutcome:
    """Write (or rewrite, or revise) the week's workbook; see revisions.py for the rules."""
    period = Period(KIND, week.label, (week,), week.start)

    def build(basis: Basis, figures: WeekFigures, previous: pd.DataFrame | None) -> Book:
        with engine.connect() as connection:
            problems = poll_problems(
                connection,
                settings.terminals,
                period.starts_at(settings),
                period.ends_at(settings),
                basis.plan.generated_at,
            )
        return _workbook(settings, basis, cadres, figures, previous, problems)

    spec = ReportKindSpec[WeekFigures](
        assess=lambda basis, punches, leave, results: assess(
            basis, cadres, punches, leave, results
        ),
        published=published,
        average=lambda f: float(f.results["valid_days"].mean()) if len(f.results) else None,
        build=build,
    )
    return write_edition(
        engine, settings, cadres, period, weekly_path(settings, week), spec, now or utcnow()
    )


def heading(settings: Settings, basis: Basis) -> sheets.Heading:
    week = basis.period.weeks[0]
    span = f"{sheets.week_name(week)}，周一至周日"
    notes = (_workday_note(basis, week), *sheets.calendar_notes(basis, week.start, week.end))
    return sheets.Heading(settings, basis, REPORT, sheets.week_name(week), span, notes)


def _workbook(
    settings: Settings,
    basis: Basis,
    cadres: Sequence[Cadre],
    figures: WeekFigures,
    previous: pd.DataFrame | None,
    problems: Sequence[PollProblem],
) -> Book:
    week = basis.period.weeks[0]
    plan = basis.plan
    head = heading(settings, basis)
    book = new_workbook(
        Stamp(identifier(KIND, week.label, plan.revision), plan.generated_at),
        f"{settings.township}{REPORT}　{sheets.week_name(week)}",
        settings.report.font,
    )
    names = {cadre.user_id: cadre.name for cadre in cadres}
    add_sheet(book, summary_sheet(head, figures, cadres, basis.rules.deduction_yuan))
    add_sheet(book, _detail_sheet(head, figures, week, basis))
    add_sheet(book, _punch_sheet(head, basis, names))
    add_sheet(book, sheets.terminal_sheet(head, "本周记录数"))
    listed = pd.concat([figures.anomalies, figures.signals], ignore_index=True)
    add_sheet(book, _anomaly_sheet(head, listed, problems, basis.data.held))
    if previous is not None:
        fields = [("required_days", "应下村天数"), ("valid_days", "有效下村天数")]
        add_sheet(book, sheets.changes_sheet(head, previous, published(figures), fields))
    return book


def _workday_note(basis: Basis, week: IsoWeek) -> str:
    workdays = basis.calendar.workdays(week.start, week.end)
    listed = "、".join(sheets.day_label(day) for day in workdays) or "无"
    note = f"本周法定工作日 {len(workdays)} 天：{listed}"
    if len(workdays) < 5:
        note += "。应下村天数不超过本周工作日数（节假日周要求相应减少）"
    return note


def shortfall(valid: int, required: int) -> str:
    """Why a week failed, in words: `有效下村 1 天，应 3 天，差 2 天`."""
    return f"有效下村 {valid} 天，应 {required} 天，差 {required - valid} 天"


def in_progress_note(valid: int, required: int) -> str:
    """A week not over yet: what it holds so far, and that nothing is charged."""
    return f"本周尚未结束，不扣款；目前有效下村 {valid} 天，应 {required} 天"


def leave_note(entry: Leave) -> str:
    """`请假 11-18至11-20（探亲）`: one leave entry as 备注 shows it."""
    span = (
        f"{entry.start:%m-%d}"
        if entry.start == entry.end
        else f"{entry.start:%m-%d}至{entry.end:%m-%d}"
    )
    note = f"（{entry.note}）" if entry.note else ""
    return f"{entry.kind.label} {span}{note}"


def _remarks(results: pd.DataFrame, leave: Sequence[Leave]) -> list[str]:
    """备注: why a failed week failed, half days that did not count, leave, then the rules'
    remarks (active period, calendar, split villages)."""
    by_cadre: dict[str, list[Leave]] = {}
    for entry in sorted(leave, key=lambda e: (e.start, e.end)):
        by_cadre.setdefault(entry.user_id, []).append(entry)
    remarks: list[str] = []
    for row in records(results):
        notes: list[str] = []
        if bool(row.in_progress):
            notes.append(in_progress_note(int(row.valid_days), int(row.required_days)))
        elif not bool(row.met):
            notes.append(shortfall(int(row.valid_days), int(row.required_days)))
            halves = []
            if int(row.morning_only_days):
                halves.append(f"仅上午打卡 {int(row.morning_only_days)} 天")
            if int(row.afternoon_only_days):
                halves.append(f"仅下午打卡 {int(row.afternoon_only_days)} 天")
            if halves:
                notes.append("、".join(halves) + "（半天不计）")
        notes.extend(leave_note(entry) for entry in by_cadre.get(str(row.user_id), []))
        if row.remarks:
            notes.append(str(row.remarks))
        remarks.append("；".join(notes))
    return remarks


def summary_line(results: pd.DataFrame, leave: Sequence[Leave]) -> str:
    """`考核 47 人，未达标 3 人，扣款 300 元，请假 2 人`: the sentence above 汇总."""
    assessed = set(results["user_id"].astype(str))
    on_leave = {entry.user_id for entry in leave if entry.user_id in assessed}
    failed = int(rules.failed(results).sum())
    deduction = int(results["deduction"].sum())
    line = (
        f"考核 {len(results)} 人，未达标 {failed} 人，扣款 {deduction} 元，请假 {len(on_leave)} 人"
    )
    if len(results):
        line += f"；人均有效下村 {float(results['valid_days'].mean()):.1f} 天"
    return line


def summary_sheet(
    head: sheets.Heading, figures: WeekFigures, cadres: Sequence[Cadre], deduction: int
) -> Sheet:
    """汇总: one row per assessed cadre; the summary line above, the 合计 row below."""
    results = figures.results
    by_id = {cadre.user_id: cadre for cadre in cadres}
    failing = rules.failed(results).tolist()
    user_ids = [str(v) for v in results["user_id"]]
    columns = []
    for name, header in SUMMARY_HEADERS.items():
        if name == "met":
            columns.append(Column(header, rules.met_labels(results)))
        elif name == "department":
            columns.append(
                Column(
                    header, [by_id[uid].department if uid in by_id else None for uid in user_ids]
                )
            )
        elif name == "village":
            columns.append(
                Column(header, [by_id[uid].village if uid in by_id else None for uid in user_ids])
            )
        elif name == "remarks":
            columns.append(Column(header, [str(v) or None for v in results[name]]))
        elif name in ("user_id", "name", "category"):
            columns.append(Column(header, [str(v) if v else None for v in results[name]]))
        else:
            columns.append(Column(header, [int(v) for v in results[name]], INTEGER))
    failed = sum(failing)
    totals: list[object] = []
    for name in SUMMARY_HEADERS:
        if name == "user_id":
            totals.append("合计")
        elif name == "name":
            totals.append(f"{len(results)} 人")
        elif name == "met":
            totals.append(f"否 {failed} 人")
        elif name in _COUNTS:
            totals.append(int(results[name].sum()))
        else:
            totals.append(None)
    notes = [
        f"未达标的周扣岗位补贴 {deduction} 元；红底为未达标。有效下村天：同一天上午、下午"
        "均在村(社区)终端打卡；仅上午或仅下午打卡的半天不计。"
    ]
    table = Table(columns, failing, empty="本周无考核干部", totals=totals)
    return head.sheet("汇总", [table], [summary_line(results, figures.leave)], notes)


def day_text(
    morning: bool,
    afternoon: bool,
    valid: bool,
    villages: tuple[str, ...],
    leave: bool,
    morning_villages: tuple[str, ...] = (),
    afternoon_villages: tuple[str, ...] = (),
) -> str:
    """A 明细 cell: the village(s) of a valid day; a day with both halves that is not valid
    (same_village_required, halves at different villages) as such; 上午/下午; 假."""
    if valid:
        text = "、".join(villages)
    elif morning and afternoon:
        text = f"上午{'、'.join(morning_villages)}/下午{'、'.join(afternoon_villages)}（不同村）"
    elif morning:
        text = "上午"
    elif afternoon:
        text = "下午"
    else:
        return "假" if leave else ""
    return f"{text}（假）" if leave else text


def _detail_sheet(head: sheets.Heading, figures: WeekFigures, week: IsoWeek, basis: Basis) -> Sheet:
    """明细: per cadre and day, the village(s) of a valid day, 上午/下午, or 假."""
    days = week.days()
    texts: dict[tuple[str, dt.date], str] = {}
    for mark in records(figures.marks):
        texts[(str(mark.user_id), mark.date)] = day_text(
            bool(mark.morning),
            bool(mark.afternoon),
            bool(mark.valid),
            tuple(mark.villages),
            bool(mark.leave),
            tuple(mark.morning_villages),
            tuple(mark.afternoon_villages),
        )
    results = figures.results
    user_ids = [str(v) for v in results["user_id"]]
    columns = [Column("工号", user_ids), Column("姓名", [str(v) for v in results["name"]])]
    for day in days:
        columns.append(
            Column(
                sheets.day_header(day, basis.calendar),
                [texts.get((uid, day)) or None for uid in user_ids],
            )
        )
    failed = rules.failed(results).tolist()
    notes = [
        "村名：有效下村天；上午/下午：只有半天打卡，不计；（不同村）：上午、下午在不同村，按规则不计；"
        "假：请假或出差；（休）周末，（国庆）等法定节假日，（调休上班）调休工作日"
    ]
    return head.sheet("明细", [Table(columns, failed, empty="本周无考核干部")], notes=notes)


def _punch_sheet(head: sheets.Heading, basis: Basis, names: dict[str, str]) -> Sheet:
    """打卡记录: every punch of the week, counted or not, in time order."""
    punches = basis.data.punches.sort_values(
        ["timestamp", "terminal", "user_id"], kind="stable", ignore_index=True
    )
    halves = rules.classify_halves(punches, basis.rules)
    user_ids = [str(v) for v in punches["user_id"]]
    villages = punches["village"].astype(object).where(punches["village"].notna(), None)
    columns = [
        Column("工号", user_ids),
        Column("姓名", [names.get(uid) for uid in user_ids]),
        Column("终端", [str(v) for v in punches["terminal"]]),
        Column("村(社区)", villages.tolist()),
        Column("打卡时间", punches["timestamp"].dt.to_pydatetime().tolist(), DATETIME),
        Column("时段", [half.label for half in halves]),
    ]
    return head.sheet(
        "打卡记录",
        [Table(columns, empty="本周无打卡记录")],
        notes=[f"打卡时间为打卡机记录的{sheets.zone_name(head.settings)}"],
    )


def _anomaly_sheet(
    head: sheets.Heading,
    anomalies: pd.DataFrame,
    problems: Sequence[PollProblem],
    held: Sequence[HeldRecord] = (),
) -> Sheet:
    """异常: punches not counted, records kept that are no punch at all, and the week's failed
    polls and serial mismatches."""
    rows: list[tuple[dt.datetime, str, str, str | None, str]] = [
        (stamp.to_pydatetime(), str(kind), str(terminal), str(user_id), str(explanation))
        for kind, terminal, user_id, stamp, explanation in zip(
            anomalies["type"],
            anomalies["terminal"],
            anomalies["user_id"],
            anomalies["timestamp"],
            anomalies["explanation"],
            strict=True,
        )
    ]
    rows.extend(_poll_rows(head.settings, problems))
    rows.extend(_held_rows(head.settings, held))
    rows.sort(key=lambda row: (row[0], row[1], row[2], row[3] or ""))
    columns = [
        Column("类型", [row[1] for row in rows]),
        Column("终端", [row[2] for row in rows]),
        Column("工号", [row[3] for row in rows]),
        Column("时间", [row[0] for row in rows], DATETIME),
        Column("说明", [row[4] for row in rows]),
    ]
    return head.sheet(
        "异常",
        [Table(columns, empty="本周无异常")],
        notes=[f"时间均为{sheets.zone_name(head.settings)}"],
    )


def _held_rows(
    settings: Settings, held: Sequence[HeldRecord]
) -> list[tuple[dt.datetime, str, str, str | None, str]]:
    """One row per quarantined record that has no punch row: kept, reported, never counted."""
    names = {terminal.serial: terminal.id for terminal in settings.terminals}
    rows: list[tuple[dt.datetime, str, str, str | None, str]] = []
    for record in held:
        text = f"无法识别为打卡记录，已隔离保留，不计入考勤（{printable(record.reason)}）"
        if not record.recorded:
            text += "；记录时间无法读取，按发现时间列出"
        rows.append(
            (record.at, HELD_LABEL, names.get(record.serial, record.serial), record.user_id, text)
        )
    return rows


def _poll_rows(
    settings: Settings, problems: Sequence[PollProblem]
) -> list[tuple[dt.datetime, str, str, str | None, str]]:
    """One row per run of consecutive identical failures of a terminal, not one per poll."""
    runs: list[list[PollProblem]] = []
    last_of: dict[str, list[PollProblem]] = {}
    for problem in problems:
        current = last_of.get(problem.terminal_id)
        if current is not None and (current[-1].outcome, current[-1].error) == (
            problem.outcome,
            problem.error,
        ):
            current.append(problem)
            continue
        fresh = [problem]
        runs.append(fresh)
        last_of[problem.terminal_id] = fresh
    rows: list[tuple[dt.datetime, str, str, str | None, str]] = []
    for run in runs:
        first, last = run[0], run[-1]
        start = sheets.local_time(first.started_at, settings)
        text = first.error or POLL_PROBLEM_LABELS[first.outcome]
        if len(run) > 1:
            end = sheets.local_time(last.started_at, settings)
            text += f"（连续 {len(run)} 次，{start:%m-%d %H:%M} 至 {end:%m-%d %H:%M}）"
        rows.append(
            (
                start,
                POLL_PROBLEM_LABELS.get(first.outcome, first.outcome),
                first.terminal_id,
                None,
                text,
            )
        )
    return rows
