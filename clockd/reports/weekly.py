"""The weekly summary HR opens every Monday: `reports/weekly/<YYYY>-W<ww>.xlsx` (SPEC §5).

Sheets, in order: 汇总 (one row per active cadre), 明细 (what each day counted as), 打卡记录
(every punch of the week), 终端状态, 异常; then 更正说明 when this revision corrects an
earlier one. Every figure in 汇总 can be traced through 明细 to 打卡记录 and 异常.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from sqlalchemy import Engine

from clockd import rules
from clockd.config import Settings
from clockd.domain import Cadre, Leave
from clockd.reports import sheets
from clockd.reports.period import Basis, Period, ReportKind, gather
from clockd.reports.revisions import ReportOutcome, identifier, publish
from clockd.reports.xlsx import (
    DATETIME,
    INTEGER,
    Column,
    Line,
    Sheet,
    Stamp,
    Table,
    add_sheet,
    new_workbook,
)
from clockd.store.models import FAILED, MISMATCH, utcnow
from clockd.store.periods import PollProblem, poll_problems
from clockd.workcal import IsoWeek

KIND: ReportKind = "weekly"
POLL_PROBLEM_LABELS = {FAILED: "采集失败", MISMATCH: "序列号不符"}


def weekly_path(settings: Settings, week: IsoWeek) -> Path:
    return settings.reports_dir / "weekly" / f"{week.label}.xlsx"


@dataclass(frozen=True)
class WeekFigures:
    results: pd.DataFrame  # rules.assess_weeks for the week
    marks: pd.DataFrame  # rules.day_marks
    anomalies: pd.DataFrame  # rules.find_anomalies


def assess(
    basis: Basis,
    cadres: Sequence[Cadre],
    punches: pd.DataFrame,
    leave: Sequence[Leave],
    work_results: Sequence[tuple[str, dt.date]] = (),
) -> WeekFigures:
    """The week's figures from one version of its punches, leave and work results."""
    week = basis.period.weeks[0]
    weeks = [week] if week.start >= basis.since else []
    return WeekFigures(
        results=rules.assess_weeks(
            punches, cadres, leave, basis.calendar, weeks, basis.rules, work_results
        ),
        marks=rules.day_marks(punches, cadres, leave, week.start, week.end, basis.rules),
        anomalies=rules.find_anomalies(punches, cadres, basis.rules),
    )


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
    basis = gather(engine, settings, cadres, period, now or utcnow())
    data = basis.data
    figures = assess(basis, cadres, data.punches, data.leave(), data.work_results())
    previous = None
    if basis.plan.compared_era is not None:
        era = basis.plan.compared_era
        previous = assess(
            basis, cadres, data.punches_at(era), data.leave(era), data.work_results(era)
        )
    with engine.connect() as connection:
        problems = poll_problems(
            connection,
            settings.terminals,
            period.starts_at(settings),
            period.ends_at(settings),
            basis.plan.generated_at,
        )
    results = figures.results
    deduction_total = int(results["deduction"].sum())
    failed = int((~results["met"].astype(bool)).sum())
    path = weekly_path(settings, week)
    published = publish(
        engine,
        kind=KIND,
        period=week.label,
        plan=basis.plan,
        path=path,
        fingerprint=basis.fingerprint,
        deduction_total=deduction_total,
        build=lambda: _workbook(settings, basis, cadres, figures, previous, problems),
        zone=settings.zone,
    )
    return ReportOutcome(
        kind=KIND,
        period=week.label,
        path=path,
        revision=basis.plan.revision,
        status=basis.plan.status,
        written=published.written,
        cadres=len(results),
        failed=failed,
        failed_weeks=failed,
        deduction_total=deduction_total,
        average_days=float(results["valid_days"].mean()) if len(results) else None,
        missing_villages=tuple(basis.completeness.missing_villages()),
        note=published.note,
    )


def _workbook(
    settings: Settings,
    basis: Basis,
    cadres: Sequence[Cadre],
    figures: WeekFigures,
    previous: WeekFigures | None,
    problems: Sequence[PollProblem],
) -> Workbook:
    week = basis.period.weeks[0]
    plan = basis.plan
    heading = f"干部下村考勤周汇总　{week.label}"
    span = f"{week.start.isoformat()}（周一）至 {week.end.isoformat()}（周日）"
    notes = [_workday_note(basis, week), *sheets.calendar_notes(basis, week.start, week.end)]
    title = sheets.title_block(settings, basis, heading, span, notes)
    workbook = new_workbook(
        Stamp(identifier(KIND, week.label, plan.revision), plan.generated_at), heading
    )
    names = {cadre.user_id: cadre.name for cadre in cadres}
    add_sheet(workbook, _summary_sheet(title, figures.results))
    add_sheet(workbook, _detail_sheet(title, figures, week))
    add_sheet(workbook, _punch_sheet(title, basis, names))
    add_sheet(workbook, sheets.terminal_sheet(settings, basis, title, "本周记录数"))
    add_sheet(workbook, _anomaly_sheet(settings, title, figures.anomalies, problems))
    if previous is not None:
        add_sheet(
            workbook,
            sheets.changes_sheet(
                settings,
                basis,
                title[:1],
                previous.results,
                figures.results,
                [
                    ("required_days", "应下村天数"),
                    ("valid_days", "有效下村天数"),
                    ("deduction", "扣款(元)"),
                ],
                "deduction",
            ),
        )
    return workbook


def _workday_note(basis: Basis, week: IsoWeek) -> str:
    workdays = basis.calendar.workdays(week.start, week.end)
    listed = "、".join(sheets.day_label(day) for day in workdays) or "无"
    return f"本周法定工作日 {len(workdays)} 天：{listed}"


def _summary_sheet(title: Sequence[Line], results: pd.DataFrame) -> Sheet:
    met = results["met"].astype(bool).tolist()
    columns = []
    for name, header in rules.WEEK_HEADERS.items():
        if name == "met":
            columns.append(Column(header, ["是" if ok else "否" for ok in met]))
        elif name in ("user_id", "name", "category", "remarks"):
            columns.append(Column(header, [str(v) if v else None for v in results[name]]))
        else:
            columns.append(Column(header, [int(v) for v in results[name]], INTEGER))
    return Sheet("汇总", title, [Table(columns, [not ok for ok in met])])


def _day_text(
    morning: bool, afternoon: bool, valid: bool, villages: tuple[str, ...], leave: bool
) -> str:
    if valid:
        text = "、".join(villages)
    elif morning:
        text = "上午"
    elif afternoon:
        text = "下午"
    else:
        return "假" if leave else ""
    return f"{text}（假）" if leave else text


def _detail_sheet(title: Sequence[Line], figures: WeekFigures, week: IsoWeek) -> Sheet:
    """明细: per cadre and day, the village(s) of a valid day, 上午/下午, or 假."""
    days = week.days()
    texts: dict[tuple[str, dt.date], str] = {}
    marks = figures.marks
    for user_id, day, morning, afternoon, valid, villages, leave in zip(
        marks["user_id"],
        marks["date"],
        marks["morning"],
        marks["afternoon"],
        marks["valid"],
        marks["villages"],
        marks["leave"],
        strict=True,
    ):
        texts[(str(user_id), day)] = _day_text(
            bool(morning), bool(afternoon), bool(valid), tuple(villages), bool(leave)
        )
    results = figures.results
    user_ids = [str(v) for v in results["user_id"]]
    columns = [Column("工号", user_ids), Column("姓名", [str(v) for v in results["name"]])]
    for day in days:
        columns.append(
            Column(sheets.day_label(day), [texts.get((uid, day)) or None for uid in user_ids])
        )
    failed = [not ok for ok in results["met"].astype(bool).tolist()]
    return Sheet("明细", title, [Table(columns, failed)])


def _punch_sheet(title: Sequence[Line], basis: Basis, names: dict[str, str]) -> Sheet:
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
    return Sheet("打卡记录", title, [Table(columns)])


def _anomaly_sheet(
    settings: Settings,
    title: Sequence[Line],
    anomalies: pd.DataFrame,
    problems: Sequence[PollProblem],
) -> Sheet:
    """异常: punches not counted, and the week's failed polls and serial mismatches."""
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
    rows.extend(_poll_rows(settings, problems))
    rows.sort(key=lambda row: (row[0], row[1], row[2], row[3] or ""))
    columns = [
        Column("类型", [row[1] for row in rows]),
        Column("终端", [row[2] for row in rows]),
        Column("工号", [row[3] for row in rows]),
        Column("时间", [row[0] for row in rows], DATETIME),
        Column("说明", [row[4] for row in rows]),
    ]
    return Sheet("异常", title, [Table(columns)])


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
