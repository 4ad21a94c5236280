"""The weekly workbook read back with openpyxl: layout, typed cells, figures, formula safety,
final vs provisional, and the revision flow, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter
from sqlalchemy import Engine, insert, select, update

from clockd.domain import LeaveKind
from clockd.leave import add_leave
from clockd.ledger import verify_report
from clockd.reports.revisions import EditionStatus
from clockd.reports.weekly import write_weekly_report
from clockd.store.models import LeaveRow, Quarantine, ReportRun
from clockd.workcal import IsoWeek, WorkCalendar
from tests.cli_runner import run_clockd
from tests.report_site import (
    AFTER_W47,
    Site,
    has_formulas,
    header_row,
    make_site,
    open_workbook,
    table,
    title_text,
)

W47 = IsoWeek(2026, 47)
SHEETS = ["汇总", "明细", "打卡记录", "终端状态", "异常"]
SUMMARY = [
    "工号",
    "姓名",
    "部门",
    "驻点村",
    "类别",
    "应下村天数",
    "有效下村天数",
    "仅上午打卡天数",
    "仅下午打卡天数",
    "请假天数",
    "是否达标",
    "扣款(元)",
    "已填工作成效天数",
    "备注",
]
FORMULA_NAME = '=HYPERLINK("http://x","y")'


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    return make_site(tmp_path, engine.url.render_as_string(hide_password=False))


def hand_built_week(site: Site) -> None:
    """The week of the tests: met, failed, half days, leave, a cadre joining on Wednesday,
    an unknown user, a quarantined punch, an out-of-window punch, an unattributed serial."""
    site.store(
        "t01",
        [
            ("1001", "2026-11-16 08:00"),
            ("1001", "2026-11-16 14:00"),
            ("1001", "2026-11-16 14:02"),  # a second press in the same half counts once
            ("1001", "2026-11-18 22:30"),  # out of window
            ("1002", "2026-11-16 08:30"),
            ("1002", "2026-11-16 15:00"),
            ("1002", "2026-11-21 09:00"),  # Saturday morning only: a half day
            ("-1+1", "2026-11-16 10:00"),  # not in the roster
            ("1003", "2026-11-20 08:00"),
            ("1003", "2026-11-20 16:00"),
            ("1004", "2026-11-16 08:10"),
        ],
    )
    site.store("t02", [("1001", "2026-11-17 09:00"), ("1002", "2026-11-17 09:00")])
    site.store("t03", [("1001", "2026-11-17 15:00"), ("1002", "2026-11-17 16:00")])
    # 1004's afternoon punch arrived dated in the future of the server's clock: quarantined.
    site.store("t01", [("1004", "2026-11-16 14:00")], now_local=dt.datetime(2026, 11, 16, 12, 0))
    # A device at t02's address reporting another serial: stored, not attributed.
    site.store(
        "t02",
        [("1003", "2026-11-19 08:00"), ("1003", "2026-11-19 15:00")],
        serial="SNX",
        started=dt.datetime(2026, 11, 19, 12, 0, tzinfo=dt.UTC),
    )
    add_leave(
        site.engine, site.cadres, "1002", dt.date(2026, 11, 18), dt.date(2026, 11, 20), actor="hr"
    )
    site.poll_all()


def by_id(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {row["工号"]: row for row in rows}


def test_the_weekly_workbook_layout_and_figures(site: Site) -> None:
    hand_built_week(site)
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert outcome.written and outcome.status == EditionStatus.FINAL and outcome.revision == 0
    assert outcome.path == site.folder / "reports" / "weekly" / "2026-W47.xlsx"
    workbook = open_workbook(outcome.path)
    assert workbook.sheetnames == SHEETS

    summary = workbook["汇总"]
    top = header_row(summary, "工号")
    assert [cell.value for cell in summary[top]] == SUMMARY
    _check_layout(summary, top, "N")
    assert "测试镇" in title_text(summary, "工号") and "状态：正式" in title_text(summary, "工号")
    rows = by_id(table(summary, "工号"))
    assert list(rows) == ["1001", "1002", "1003", "1004"]
    figures = {
        uid: [row[h] for h in SUMMARY[5:12]] for uid, row in rows.items()
    }  # 应下 有效 仅上午 仅下午 请假 达标 扣款
    assert figures["1001"] == [2, 2, 0, 0, 0, "是", 0]
    assert figures["1002"] == [2, 2, 1, 0, 3, "是", 0]  # leave leaves 2 working days
    assert figures["1003"] == [2, 1, 0, 0, 0, "否", 100]  # joined Wednesday: 3 days
    assert figures["1004"] == [2, 0, 1, 0, 0, "否", 100]  # quarantined afternoon
    assert rows["1002"]["类别"] == "驻村干部" and rows["1001"]["类别"] == "机关干部"
    assert "2026-11-18起在岗" in str(rows["1003"]["备注"])
    first = summary.cell(top + 1, 6)
    assert first.data_type == "n" and isinstance(first.value, int)
    failed_fill = summary.cell(top + 3, 1).fill.fgColor.rgb
    assert failed_fill.endswith("FFC7CE") and not summary.cell(
        top + 1, 1
    ).fill.fgColor.rgb.endswith("FFC7CE")

    detail = workbook["明细"]
    top = header_row(detail, "工号")
    headers = [cell.value for cell in detail[top]]
    assert headers[:3] == ["工号", "姓名", "11-16 周一"] and headers[-1] == "11-22 周日（休）"
    days = by_id(table(detail, "工号"))
    assert days["1001"]["11-16 周一"] == "东村"
    assert days["1001"]["11-17 周二"] == "西村、南村"
    assert days["1002"]["11-18 周三"] == "假" and days["1002"]["11-21 周六（休）"] == "上午"
    assert days["1004"]["11-16 周一"] == "上午" and days["1003"]["11-19 周四"] is None

    punches = workbook["打卡记录"]
    top = header_row(punches, "工号")
    assert [c.value for c in punches[top]] == [
        "工号",
        "姓名",
        "终端",
        "村(社区)",
        "打卡时间",
        "时段",
    ]
    listed = table(punches, "工号")
    assert len(listed) == 18  # every punch, counted or not
    times = [row["打卡时间"] for row in listed]
    assert all(isinstance(t, dt.datetime) for t in times) and times == sorted(times)
    assert punches.cell(top + 1, 5).number_format == "yyyy-mm-dd hh:mm:ss"
    late = [row for row in listed if row["打卡时间"] == dt.datetime(2026, 11, 18, 22, 30)]
    assert late[0]["时段"] == "时段外"
    unattributed = [row for row in listed if row["终端"] == "SNX"]
    assert len(unattributed) == 2 and unattributed[0]["村(社区)"] is None

    terminals = table(workbook["终端状态"], "终端")
    assert [row["终端"] for row in terminals] == ["t01", "t02", "t03", "SNX"]
    assert terminals[0]["本周记录数"] == 12 and terminals[3]["本周记录数"] == 2
    assert isinstance(terminals[0]["最后成功采集"], dt.datetime)

    anomalies = table(workbook["异常"], "类型")
    kinds = {row["类型"] for row in anomalies}
    assert {"未知用户", "时钟异常(已隔离)", "时段外打卡", "终端未归属", "序列号不符"} <= kinds
    assert any(row["工号"] == "-1+1" for row in anomalies)


def _check_layout(sheet: Worksheet, top: int, last_column: str) -> None:
    assert sheet.freeze_panes == f"A{top + 1}"
    assert sheet.auto_filter.ref is not None
    assert sheet.auto_filter.ref.startswith(f"A{top}:{last_column}")
    assert sheet.print_title_rows == f"${top}:${top}"
    assert sheet.page_setup.orientation in ("portrait", "landscape")
    assert str(sheet.page_setup.paperSize) == "9"  # A4
    assert sheet.page_setup.fitToWidth == 1
    assert sheet.sheet_properties.pageSetUpPr is not None
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    assert (sheet.column_dimensions["B"].width or 0) >= 8


def test_text_from_the_roster_and_devices_is_never_a_formula(site: Site) -> None:
    hand_built_week(site)
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    workbook = open_workbook(outcome.path)
    summary = workbook["汇总"]
    name = summary.cell(header_row(summary, "工号") + 4, 2)
    assert name.value == FORMULA_NAME and name.data_type == "s" and name.quotePrefix
    anomalies = workbook["异常"]
    ids = [
        cell
        for cell in anomalies["C"]
        if cell.value == "-1+1"  # a USB or terminal user ID that looks like arithmetic
    ]
    assert ids and all(cell.data_type == "s" and cell.quotePrefix for cell in ids)
    assert not has_formulas(outcome.path)


def test_a_holiday_week_requires_fewer_days(site: Site) -> None:
    week = IsoWeek(2026, 40)  # National Day: Thursday 1 October to Sunday
    workdays = WorkCalendar().workdays(week.start, week.end)
    assert len(workdays) == 3
    site.store("t01", [("1002", "2026-09-28 08:00"), ("1002", "2026-09-28 15:00")])
    add_leave(
        site.engine,
        site.cadres,
        "1002",
        dt.date(2026, 9, 29),
        dt.date(2026, 9, 29),
        kind=LeaveKind.BUSINESS_TRIP,
        note="县里开会",
        actor="hr",
    )
    site.poll_all(started=dt.datetime(2026, 10, 5, 1, tzinfo=dt.UTC))
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, week)
    summary = open_workbook(outcome.path)["汇总"]
    rows = by_id(table(summary, "工号"))
    assert rows["1001"]["应下村天数"] == 2
    assert rows["1002"]["应下村天数"] == 2 and rows["1002"]["请假天数"] == 1
    assert rows["1002"]["有效下村天数"] == 1 and rows["1002"]["是否达标"] == "否"
    assert "本周法定工作日 3 天：09-28 周一、09-29 周二、09-30 周三" in title_text(summary, "工号")
    assert "1003" not in rows  # not yet in post


def test_a_terminal_not_collected_since_the_week_ended_makes_it_provisional(site: Site) -> None:
    site.store("t01", [("1001", "2026-11-16 08:00"), ("1001", "2026-11-16 14:00")])
    site.store("t02", [])
    site.store("t03", [], started=dt.datetime(2026, 11, 22, 15, 0, tzinfo=dt.UTC))  # Sunday 23:00
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert outcome.status == EditionStatus.PROVISIONAL and outcome.missing_villages == ("南村",)
    workbook = open_workbook(outcome.path)
    title = title_text(workbook["汇总"], "工号")
    assert "状态：临时" in title and "数据可能不完整：南村" in title and "t03" in title
    terminals = {row["终端"]: row for row in table(workbook["终端状态"], "终端")}
    assert "尚未成功采集" in str(terminals["t03"]["状态"]) and terminals["t01"]["状态"] == "正常"


def test_late_punches_make_a_correction_and_keep_the_old_file(site: Site) -> None:
    site.store("t01", [("1001", "2026-11-16 08:00"), ("1001", "2026-11-16 14:00")])
    site.store("t02", [])
    first = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert (first.status, first.revision, first.deduction_total) == ("provisional", 0, 400)
    first_bytes = first.path.read_bytes()

    # Re-running with nothing new rewrites the same revision with the same content.
    again = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert (again.revision, again.status) == (0, "provisional")
    assert _cells(again.path) == _cells_of(first_bytes, site.folder)
    assert not (first.path.parent / "history").exists()

    # The offline village comes back with 1001's second day.
    site.store("t03", [("1001", "2026-11-19 09:00"), ("1001", "2026-11-19 15:00")])
    revised = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert (revised.status, revised.revision, revised.deduction_total) == ("corrected", 1, 300)
    workbook = open_workbook(revised.path)
    assert workbook.sheetnames == [*SHEETS, "更正说明"]
    assert "状态：更正（第2版）" in title_text(workbook["汇总"], "工号")
    changes = table(workbook["更正说明"], "工号")
    assert changes == [
        {
            "工号": "1001",
            "姓名": "张三",
            "上一版类别": "机关干部",
            "本版类别": "机关干部",
            "上一版应下村天数": 2,
            "本版应下村天数": 2,
            "上一版有效下村天数": 1,
            "本版有效下村天数": 2,
            "上一版扣款(元)": 100,
            "本版扣款(元)": 0,
            "扣款变化(元)": -100,
        }
    ]
    notes = title_text(workbook["更正说明"], "工号")
    assert "补录打卡 2 条" in notes and "上一版 400 元，本版 300 元" in notes
    history = list((revised.path.parent / "history").iterdir())
    assert len(history) == 1 and history[0].name.startswith("2026-W47_")
    # The kept file is the earlier edition: the same cells (its bytes carry the second the
    # workbook was zipped in, and the rewrite above may have fallen in another second).
    assert _cells(history[0]) == _cells_of(first_bytes, site.folder)

    # Unchanged inputs: the same revision, the same content, no new history file.
    before = _cells(revised.path)
    same = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert (same.revision, same.status) == (1, "corrected")
    assert _cells(same.path) == before
    assert len(list((revised.path.parent / "history").iterdir())) == 1

    # New leave is a new input: another correction, and both old files are kept.
    add_leave(
        site.engine, site.cadres, "1002", dt.date(2026, 11, 16), dt.date(2026, 11, 22), actor="hr"
    )
    third = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert (third.revision, third.status, third.deduction_total) == (2, "corrected", 200)
    assert len(list((revised.path.parent / "history").iterdir())) == 2
    with site.engine.connect() as connection:
        runs = connection.execute(
            select(ReportRun.revision, ReportRun.status, ReportRun.deduction_total).order_by(
                ReportRun.revision
            )
        ).all()
    assert [tuple(run) for run in runs] == [
        (0, "provisional", 400),
        (1, "corrected", 300),
        (2, "corrected", 200),
    ]


def test_an_unrelated_late_punch_leaves_the_published_file_as_it_was(site: Site) -> None:
    """A punch of another week moves the chain heads, not the week's figures: the file that
    was published (and the heads printed in it, which verify --report checks) must stay."""
    week = IsoWeek(2025, 41)
    site.store("t01", [("1001", "2025-10-06 08:00"), ("1001", "2025-10-06 14:00")])
    site.poll_all()
    first = write_weekly_report(site.settings, site.cadres, site.engine, week)
    assert (first.revision, first.status, first.written) == (0, "final", True)
    published = first.path.read_bytes()

    site.store("t02", [("1001", "2025-11-03 09:00")])
    again = write_weekly_report(site.settings, site.cadres, site.engine, week)
    assert (again.revision, again.status, again.written) == (0, "final", False)
    assert "unchanged since it was published" in again.summary()
    assert first.path.read_bytes() == published
    assert not (first.path.parent / "history").exists()
    assert verify_report(site.engine, first.path).ok


def test_a_week_reported_while_in_progress_is_charged_only_once_it_is_over(site: Site) -> None:
    site.store("t01", [("1001", "2026-11-16 08:00"), ("1001", "2026-11-16 14:00")])
    wednesday_noon = dt.datetime(2026, 11, 18, 4, 0, tzinfo=dt.UTC)
    during = write_weekly_report(site.settings, site.cadres, site.engine, W47, now=wednesday_noon)
    assert (during.status, during.failed, during.deduction_total) == ("provisional", 0, 0)
    rows = table(open_workbook(during.path)["汇总"], "工号")
    assert {row["是否达标"] for row in rows} == {"进行中"}
    assert all("本周尚未结束，不扣款" in row["备注"] for row in rows)

    site.poll_all()
    over = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert (over.status, over.revision, over.failed, over.deduction_total) == (
        "corrected",
        1,
        4,
        400,
    )


def test_records_that_are_no_punch_are_listed_in_the_anomalies_of_their_week(
    site: Site,
) -> None:
    """Quarantined records without a punch row (a PIN that is not printable ASCII) are kept
    and reported: in 异常, escaped, in the week of the time they record."""
    export = site.folder / "t02.dat"
    export.write_bytes(b"10\x0199\t2026-11-18 09:00:00\t1\t0\t1\t0\n")
    config = str(site.folder / "devices.yaml")
    imported = run_clockd("--config", config, "import-usb", str(export), "--device", "t02")
    assert "1 quarantined" in imported.stdout, imported.stderr
    assert "10\\x0199" in run_clockd("--config", config, "quarantine", "list").stdout

    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    rows = table(open_workbook(outcome.path)["异常"], "类型")
    held = [row for row in rows if row["类型"] == "隔离(无法识别)"]
    assert len(held) == 1
    assert (held[0]["终端"], held[0]["工号"], held[0]["时间"]) == (
        "t02",
        "10\\x0199",
        dt.datetime(2026, 11, 18, 9, 0),
    )
    assert "不计入考勤" in held[0]["说明"] and "\x01" not in held[0]["说明"]
    assert outcome.deduction_total == 400  # kept, never counted
    other_week = write_weekly_report(site.settings, site.cadres, site.engine, W47.shift(1))
    assert "隔离(无法识别)" not in str(table(open_workbook(other_week.path)["异常"], "类型"))


def test_a_provisional_week_becomes_final_without_changes(site: Site) -> None:
    site.store("t01", [("1001", "2026-11-16 08:00"), ("1001", "2026-11-16 14:00")])
    site.store("t02", [])
    assert (
        write_weekly_report(site.settings, site.cadres, site.engine, W47).status
        == EditionStatus.PROVISIONAL
    )
    site.store("t03", [])
    final = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert (final.revision, final.status) == (1, "final")
    assert open_workbook(final.path).sheetnames == SHEETS  # nothing to correct


def test_a_released_quarantine_counts_in_the_next_revision(site: Site) -> None:
    site.store("t01", [("1001", "2026-11-16 08:00")])
    site.store("t01", [("1001", "2026-11-16 14:00")], now_local=dt.datetime(2026, 11, 16, 9))
    site.poll_all()
    assert write_weekly_report(site.settings, site.cadres, site.engine, W47).deduction_total == 400
    with site.engine.begin() as connection:
        connection.execute(
            update(Quarantine).values(decision="release", decided_at=dt.datetime.now(dt.UTC))
        )
    revised = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert revised.revision == 1 and revised.status == "corrected"
    notes = title_text(open_workbook(revised.path)["更正说明"], "工号")
    assert "隔离记录放行 1 条" in notes


def test_a_revision_claimed_by_another_process_is_skipped_quietly(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.poll_all()
    with site.engine.begin() as connection:
        connection.execute(
            insert(ReportRun).values(
                kind="weekly",
                period="2026-W47",
                revision=0,
                status="final",
                generated_at=AFTER_W47,
                path="elsewhere.xlsx",
                input_fingerprint="written by another process",
                deduction_total=0,
            )
        )
    monkeypatch.setattr("clockd.reports.period.report_editions", lambda *args: [])
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert not outcome.written and "another process" in outcome.note
    assert not outcome.path.exists()


def test_a_failed_save_leaves_the_previous_file_and_no_temporary_file(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.poll_all()
    first = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    before = first.path.read_bytes()
    site.store("t01", [("1001", "2026-11-16 08:00")])  # a change: a new revision is due

    real_save = ExcelWriter.save

    def crash(self: ExcelWriter) -> None:
        real_save(self)  # streams and closes the sheets, and writes the zip, as a save does
        raise OSError("disk full")

    monkeypatch.setattr(ExcelWriter, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert first.path.read_bytes() == before
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["2026-W47.xlsx"]
    with site.engine.connect() as connection:
        assert connection.scalars(select(ReportRun.revision)).all() == [0]
    monkeypatch.undo()
    retried = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert retried.revision == 1 and retried.written


def test_temporary_files_of_a_killed_writer_are_cleaned_up(site: Site) -> None:
    """A process killed mid-save leaves its hidden temporary file; a later save removes it
    once it is old enough that no live writer can own it."""
    site.poll_all()
    folder = site.folder / "reports" / "weekly"
    folder.mkdir(parents=True)
    abandoned = folder / ".2026-W47.xlsx.k1ll3d.tmp"
    abandoned.write_bytes(b"PK\x03\x04 half a workbook")
    hour_ago = time.time() - 3600
    os.utime(abandoned, (hour_ago, hour_ago))
    recent = folder / ".2026-W47.xlsx.wr1t1ng.tmp"
    recent.write_bytes(b"PK\x03\x04 being written right now")
    write_weekly_report(site.settings, site.cadres, site.engine, W47)
    assert not abandoned.exists() and recent.exists()


def test_leave_rows_are_read_only_while_in_force(site: Site) -> None:
    site.poll_all()
    with site.engine.begin() as connection:
        connection.execute(
            insert(LeaveRow).values(
                user_id="1001",
                start_date=dt.date(2026, 11, 16),
                end_date=dt.date(2026, 11, 22),
                kind="leave",
                created_by="hr",
                revoked_at=AFTER_W47 - dt.timedelta(days=1),
                revoked_by="hr",
            )
        )
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    rows = by_id(table(open_workbook(outcome.path)["汇总"], "工号"))
    assert rows["1001"]["请假天数"] == 0  # revoked leave does not count


def _cells(path: Path) -> dict[str, list[list[object]]]:
    workbook = open_workbook(path)
    return {
        sheet.title: [[cell.value for cell in row] for row in sheet.iter_rows()]
        for sheet in workbook.worksheets
    }


def _cells_of(data: bytes, folder: Path) -> dict[str, list[list[object]]]:
    copy = folder / "copy.xlsx"
    copy.write_bytes(data)
    return _cells(copy)
