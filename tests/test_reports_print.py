"""The reports as printed and published: print set-up, fonts, borders, page header and footer,
the summary line, reasons in 备注, empty tables, 明细's day marks and split-village days, the
revision note against the archived edition, the 12-month chart, and the printable notice."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import Engine, delete

from clockd.config import load_settings
from clockd.domain import LeaveKind
from clockd.leave import add_leave
from clockd.reports.anchors import HEADERS as ANCHOR_HEADERS
from clockd.reports.monthly import notice_path, write_monthly_report
from clockd.reports.revisions import EditionStatus
from clockd.reports.weekly import write_weekly_report
from clockd.roster import load_roster
from clockd.store.models import PollRun
from clockd.workcal import IsoWeek, YearMonth
from tests.report_site import (
    Site,
    header_row,
    make_site,
    open_workbook,
    table,
    title_text,
)

W47 = IsoWeek(2026, 47)  # 16 to 22 November 2026, five working days
NOVEMBER = YearMonth(2026, 11)  # weeks W44 (Sunday 1 November) to W48
AFTER_NOVEMBER = dt.datetime(2026, 11, 30, 1, tzinfo=dt.UTC)
FONT = "微软雅黑"  # the default report.font, on every Chinese Windows


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    return make_site(tmp_path, engine.url.render_as_string(hide_password=False))


def header_text(item: Any, part: str) -> str:
    """The text of one part (left/center/right) of a sheet's page header or footer."""
    assert item is not None
    text = getattr(item, part).text
    return str(text or "")


def days(
    user_id: str, *dates: str, morning: bool = True, afternoon: bool = True
) -> list[tuple[str, str]]:
    """Punches of a cadre on the given days (`2026-11-16`), morning and/or afternoon."""
    punches = []
    for day in dates:
        if morning:
            punches.append((user_id, f"{day} 08:30"))
        if afternoon:
            punches.append((user_id, f"{day} 15:00"))
    return punches


def reasons_week(site: Site) -> None:
    """1001 never goes (0 of 2); 1002 on leave Wednesday to Friday meets the reduced 2 days;
    1003 joins on Wednesday and does one day and a morning; 1004 meets; a stranger punches."""
    site.store(
        "t01",
        days("1002", "2026-11-16", "2026-11-17")
        + days("1003", "2026-11-18")
        + days("1003", "2026-11-19", afternoon=False)
        + days("1004", "2026-11-16", "2026-11-17")
        + [("8888", "2026-11-16 09:00")],
    )
    add_leave(
        site.engine,
        site.cadres,
        "1002",
        dt.date(2026, 11, 18),
        dt.date(2026, 11, 20),
        kind=LeaveKind.LEAVE,
        note="探亲",
        actor="hr",
    )
    site.poll_all()


def cells(sheet: Worksheet, first: int, last: int, columns: int) -> list[Any]:
    return [
        sheet.cell(row, column)
        for row in range(first, last + 1)
        for column in range(1, columns + 1)
    ]


def test_every_sheet_is_set_up_for_a4_with_one_font_borders_and_page_numbers(
    site: Site,
) -> None:
    reasons_week(site)
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    workbook = open_workbook(outcome.path)
    for sheet in workbook.worksheets:
        first = {"终端状态": "终端", "异常": "类型"}.get(sheet.title, "工号")
        top = header_row(sheet, first)
        setup = sheet.page_setup
        assert str(setup.paperSize) == "9" and setup.fitToWidth == 1, sheet.title
        assert setup.orientation in ("portrait", "landscape")
        properties = sheet.sheet_properties.pageSetUpPr
        assert properties is not None and properties.fitToPage
        assert sheet.print_options.horizontalCentered
        assert sheet.page_margins.left <= 0.5 and sheet.page_margins.top <= 0.7
        # The technical line (generation time) is row 1, above the print area.
        assert str(sheet.cell(1, 1).value).startswith("生成时间：")
        assert "北京时间" in str(sheet.cell(1, 1).value)
        area = sheet.print_area
        assert area is not None and "$A$2:" in area, (sheet.title, area)
        assert sheet.print_title_rows == f"${top}:${top}"
        header = header_text(sheet.oddHeader, "center")
        assert "2026年第47周（11月16日—11月22日）" in header and sheet.title in header
        assert "第 &P 页 共 &N 页" in header_text(sheet.oddFooter, "center")
        assert "北京时间" in header_text(sheet.oddFooter, "left")
        title = title_text(sheet, first)
        assert f"测试镇干部下村考勤周报　{sheet.title}" in title  # each title names its sheet
        assert "Asia/Shanghai" not in title and "2026-W47" not in title
        if sheet.title in ("打卡记录", "终端状态", "异常"):  # sheets whose table holds times
            assert "北京时间" in title.split("\n", 1)[1], (sheet.title, title)  # not only 生成时间
        # One named font for every written cell, Chinese and digits alike.
        fonts = {c.font.name for row in sheet.iter_rows() for c in row if c.value is not None}
        assert fonts == {FONT}, (sheet.title, fonts)
        rows = table(sheet, first)
        width = len([c for c in sheet[top] if c.value is not None])
        for cell in cells(sheet, top, top + len(rows), width):
            assert cell.border.left.style == "thin" and cell.border.bottom.style == "thin"

    # The stylesheet knows no other face: the Normal style (empty cells, the unit of column
    # widths) is in the report's font too, not Calibri.
    with zipfile.ZipFile(outcome.path) as archive:
        styles = archive.read("xl/styles.xml").decode()
    assert set(re.findall(r'<name val="([^"]+)"/>', styles)) == {FONT}

    summary = workbook["汇总"]
    top = header_row(summary, "工号")
    number = summary.cell(top + 1, 6)  # 应下村天数
    assert number.data_type == "n"
    assert number.alignment.horizontal == "right" and number.alignment.indent >= 1
    assert summary.page_setup.fitToHeight == 1  # a town's 汇总 prints on one page


def test_the_summary_line_the_totals_and_the_reasons_in_remarks(site: Site) -> None:
    reasons_week(site)
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    summary = open_workbook(outcome.path)["汇总"]
    title = title_text(summary, "工号")
    assert "考核 4 人，未达标 2 人，扣款 200 元，请假 1 人" in title
    rows = {row["工号"]: row for row in table(summary, "工号")}
    assert list(rows) == ["1001", "1002", "1003", "1004"]
    assert rows["1001"]["备注"] == "有效下村 0 天，应 2 天，差 2 天"
    assert rows["1002"]["是否达标"] == "是" and rows["1002"]["备注"] == "请假 11-18至11-20（探亲）"
    assert rows["1003"]["备注"] == (
        "有效下村 1 天，应 2 天，差 1 天；仅上午打卡 1 天（半天不计）；2026-11-18起在岗"
    )
    assert rows["1002"]["驻点村"] == "东村" and rows["1001"]["驻点村"] is None
    # The 合计 row sits after one blank row, so the table read up to a blank row is cadres only.
    top = header_row(summary, "工号")
    totals_row = top + len(rows) + 2
    assert summary.cell(top + len(rows) + 1, 1).value is None
    totals = [c.value for c in summary[totals_row]]
    assert totals[0] == "合计" and totals[1] == "4 人"
    assert totals[6] == 5 and totals[11] == 200  # 有效下村天数, 扣款(元)
    assert summary.cell(totals_row, 1).font.bold


def test_empty_tables_say_so(site: Site) -> None:
    site.store("t01", days("1001", "2026-11-16", "2026-11-17"))
    site.poll_all()
    workbook = open_workbook(write_weekly_report(site.settings, site.cadres, site.engine, W47).path)
    anomalies = workbook["异常"]
    assert table(anomalies, "类型") == []
    top = header_row(anomalies, "类型")
    assert anomalies.cell(top + 2, 1).value == "本周无异常"


def test_detail_marks_holidays_weekends_and_make_up_working_days(site: Site) -> None:
    site.poll_all(started=dt.datetime(2026, 10, 13, 1, tzinfo=dt.UTC))
    for week in (IsoWeek(2026, 40), IsoWeek(2026, 41)):
        outcome = write_weekly_report(
            site.settings,
            site.cadres,
            site.engine,
            week,
            now=dt.datetime(2026, 10, 13, 2, tzinfo=dt.UTC),
        )
        detail = open_workbook(outcome.path)["明细"]
        headers = [c.value for c in detail[header_row(detail, "工号")]]
        if week.week == 40:  # 28 September to 4 October: National Day from 1 October
            assert headers[2:] == [
                "09-28 周一",
                "09-29 周二",
                "09-30 周三",
                "10-01 周四（国庆）",
                "10-02 周五（国庆）",
                "10-03 周六（休）",
                "10-04 周日（休）",
            ]
            note = title_text(open_workbook(outcome.path)["汇总"], "工号")
            assert "本周法定工作日 3 天" in note and "节假日周要求相应减少" in note
        else:  # Saturday 10 October is a make-up working day (调休)
            assert "10-10 周六（调休上班）" in headers


def test_a_split_village_day_is_shown_as_such_when_one_village_is_required(
    tmp_path: Path, engine: Engine
) -> None:
    site = make_site(tmp_path, engine.url.render_as_string(hide_password=False))
    config = site.folder / "devices.yaml"
    config.write_text(
        config.read_text(encoding="utf-8") + "rules:\n  same_village_required: true\n",
        encoding="utf-8",
    )
    site.settings = load_settings(config, environ={})
    site.store("t01", [("1001", "2026-11-16 08:30"), *days("1004", "2026-11-16", "2026-11-17")])
    site.store("t02", [("1001", "2026-11-16 15:00")])
    site.poll_all()
    workbook = open_workbook(write_weekly_report(site.settings, site.cadres, site.engine, W47).path)
    detail = {row["工号"]: row for row in table(workbook["明细"], "工号")}
    assert detail["1001"]["11-16 周一"] == "上午东村/下午西村（不同村）"
    summary = {row["工号"]: row for row in table(workbook["汇总"], "工号")}
    # 明细 and 汇总 agree: neither a valid day nor a half day.
    assert (summary["1001"]["有效下村天数"], summary["1001"]["仅上午打卡天数"]) == (0, 0)
    assert summary["1001"]["仅下午打卡天数"] == 0
    assert "1天上午下午不在同一村，不计为有效天" in summary["1001"]["备注"]


def test_the_revision_note_states_the_archived_editions_figures_after_a_roster_change(
    site: Site,
) -> None:
    week = IsoWeek(2026, 48)
    after = dt.datetime(2026, 11, 30, 1, tzinfo=dt.UTC)
    site.store("t01", days("1003", "2026-11-23", "2026-11-24"), started=after)
    site.poll_all(started=after)
    first = write_weekly_report(site.settings, site.cadres, site.engine, week)
    assert first.status == EditionStatus.FINAL

    # HR reclassifies 1003 as a village-resident cadre: 3 days are required from now on.
    roster = site.folder / "roster.csv"
    roster.write_text(
        roster.read_text(encoding="utf-8").replace("1003,王五,机关干部", "1003,王五,驻村干部"),
        encoding="utf-8",
    )
    cadres = load_roster(site.settings.roster_path)
    revised = write_weekly_report(site.settings, cadres, site.engine, week)
    assert (revised.status, revised.revision) == (EditionStatus.CORRECTED, 1)
    assert revised.deduction_total == first.deduction_total + 100

    archived = sorted((revised.path.parent / "history").glob("2026-W48_*.xlsx"))
    assert len(archived) == 1
    old = {row["工号"]: row for row in table(open_workbook(archived[0])["汇总"], "工号")}
    assert (old["1003"]["扣款(元)"], old["1003"]["是否达标"]) == (0, "是")

    changes_sheet = open_workbook(revised.path)["更正说明"]
    changes = table(changes_sheet, "工号")
    assert [row["工号"] for row in changes] == ["1003"]
    row = changes[0]
    # The note's "previous" figures are the archived edition's, not today's recomputation.
    assert (row["上一版类别"], row["本版类别"]) == ("机关干部", "驻村干部")
    assert (row["上一版应下村天数"], row["本版应下村天数"]) == (2, 3)
    assert (row["上一版扣款(元)"], row["本版扣款(元)"]) == (old["1003"]["扣款(元)"], 100)
    assert row["扣款变化(元)"] == 100
    note = title_text(changes_sheet, "工号")
    previous_total = sum(r["扣款(元)"] for r in old.values())
    assert f"扣款合计：上一版 {previous_total} 元，本版 {previous_total + 100} 元" in note
    assert "（变化 +100 元）" in note and "均无变化" not in note


def month_with_failures(site: Site) -> None:
    """November 2026: 1001 meets every week; 1002 fails W45 and W46; 1003 fails W47."""
    punches = []
    for number in range(44, 49):
        week = IsoWeek(2026, number)
        monday, tuesday = week.start.isoformat(), (week.start + dt.timedelta(days=1)).isoformat()
        punches += days("1001", monday, tuesday) + days("1004", monday, tuesday)
        if number not in (45, 46):
            punches += days(
                "1002", monday, tuesday, (week.start + dt.timedelta(days=2)).isoformat()
            )
        elif number == 46:
            punches += days("1002", monday)
        if number != 47:
            punches += days("1003", monday, tuesday)
    site.store("t01", punches, started=AFTER_NOVEMBER)
    site.poll_all(started=AFTER_NOVEMBER)


def notice_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The notice's paragraphs before its appendix of chain heads, and the rows of its table
    of notified cadres (none when nobody is notified)."""
    document = Document(str(path))
    paragraphs = [paragraph.text for paragraph in document.paragraphs]
    tables = [
        [[cell.text for cell in row.cells] for row in table.rows] for table in document.tables
    ]
    assert tables[-1][0] == list(ANCHOR_HEADERS)  # the appendix, always last
    notified = [rows for rows in tables[:-1] if rows[0][0] == "序号"]
    return paragraphs[: paragraphs.index("附件")], notified[0] if notified else []


def test_the_notice_lists_the_cadres_of_the_notice_sheet(site: Site) -> None:
    month_with_failures(site)
    now = dt.datetime.now(dt.UTC)
    outcome = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER, now=now)
    sheet = table(open_workbook(outcome.path)["通报"], "工号")
    paragraphs, rows = notice_rows(notice_path(site.settings, NOVEMBER))
    assert paragraphs[0] == "考勤通〔2026〕11号"
    assert paragraphs[1] == "关于2026年11月干部下村考勤情况的通报"
    assert paragraphs[2] == "各村（社区），镇直各单位："
    body = "\n".join(paragraphs)
    assert "机关干部每周下村（社区）或企业不少于 2 天，驻村干部不少于 3 天" in body
    assert "共考核干部 4 人" in body and "达标率" in body
    assert rows[0] == ["序号", "工号", "姓名", "部门", "未达标周次", "应/实下村天数", "扣款(元)"]
    listed = [(r[1], r[2], int(r[6])) for r in rows[1:-1]]
    assert listed == [(r["工号"], r["姓名"], r["扣款合计(元)"]) for r in sheet]
    assert listed == [("1002", "李四", 200), ("1003", "王五", 100)]
    assert rows[1][4] == "第45周（11.2—11.8）\n第46周（11.9—11.15）"
    assert rows[1][5] == "3/0\n3/1"  # 李四 is a resident cadre: 3 required each week
    assert rows[-1][0] == "合计" and rows[-1][6] == "300"
    assert "共计扣发 300 元" in body
    issued = now.astimezone(site.settings.zone).date()
    assert paragraphs[-4] == "附件：本通报所依据数据的链末端"
    assert paragraphs[-2] == "测试镇人民政府"
    assert paragraphs[-1] == f"{issued.year}年{issued.month}月{issued.day}日"


def test_a_provisional_notice_says_so_and_a_revision_cites_the_one_it_corrects(
    site: Site,
) -> None:
    month_with_failures(site)
    # 南村's terminal has not been collected since November ended: provisional.
    for terminal in ("t01", "t02"):
        site.store(terminal, [], started=AFTER_NOVEMBER)
    with site.engine.begin() as connection:
        connection.execute(delete(PollRun).where(PollRun.terminal_id == "t03"))
    first = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER)
    assert first.status == EditionStatus.PROVISIONAL
    paragraphs, _ = notice_rows(notice_path(site.settings, NOVEMBER))
    assert paragraphs[1].endswith("（临时）")
    assert any("本通报为临时通报：南村" in text for text in paragraphs)

    issued = dt.datetime.now(site.settings.zone).date()
    site.store("t03", days("1003", "2026-11-18"), started=AFTER_NOVEMBER)
    revised = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER)
    assert revised.status == EditionStatus.CORRECTED
    paragraphs, _ = notice_rows(notice_path(site.settings, NOVEMBER))
    assert paragraphs[1].endswith("（更正）")
    body = "\n".join(paragraphs)
    assert (
        f"本通报更正{issued.year}年{issued.month}月{issued.day}日印发的"
        "《关于2026年11月干部下村考勤情况的通报》"
    ) in body
    assert "（考勤通〔2026〕11号，第1版）" in body
    archived = sorted((revised.path.parent / "history").glob("2026-11-通报_*.docx"))
    assert len(archived) == 1
    old, _ = notice_rows(archived[0])
    assert old[1].endswith("（临时）")


def test_an_empty_month_says_every_cadre_met_the_rule(site: Site) -> None:
    punches = []
    for number in range(44, 49):
        week = IsoWeek(2026, number)
        monday, tuesday = week.start.isoformat(), (week.start + dt.timedelta(days=1)).isoformat()
        wednesday = (week.start + dt.timedelta(days=2)).isoformat()
        thursday = (week.start + dt.timedelta(days=3)).isoformat()
        for user_id in ("1001", "1004"):
            punches += days(user_id, monday, tuesday)
        punches += days("1003", wednesday, thursday)  # 1003 starts on Wednesday 18 November
        punches += days("1002", monday, tuesday, wednesday)
    site.store("t01", punches, started=AFTER_NOVEMBER)
    site.poll_all(started=AFTER_NOVEMBER)
    outcome = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER)
    notice = open_workbook(outcome.path)["通报"]
    assert table(notice, "工号") == []
    assert notice.cell(header_row(notice, "工号") + 2, 1).value == "本月全体干部均达标"
    paragraphs, rows = notice_rows(notice_path(site.settings, NOVEMBER))
    assert rows == []
    assert "2026年11月，全体干部均达到下村要求，无通报人员。" in paragraphs


def test_the_chart_reads_with_one_month_of_data(tmp_path: Path, engine: Engine) -> None:
    site = make_site(
        tmp_path, engine.url.render_as_string(hide_password=False), installed="2026-10-26"
    )
    month_with_failures(site)
    outcome = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER)
    workbook = open_workbook(outcome.path)
    statistics = workbook["统计"]
    assert str(next(c.value for c in statistics[1])).startswith("生成时间")
    assert "2026年11月" in header_text(statistics.oddHeader, "center")
    series = table(statistics, "月份")
    assert series[-1]["月份"] == "2026年11月" and series[-2]["人均周下村天数"] is None
    chart = statistics._charts[0]  # type: ignore[attr-defined]  # openpyxl keeps charts there
    line = chart.series[0]
    assert line.smooth is False and line.marker.symbol == "circle"  # one month: a visible point
    assert chart.y_axis.scaling.min == 0
    assert chart.x_axis.txPr.bodyPr.rot == -45 * 60000  # slanted labels on one line
    anchor = chart.anchor._from
    last_series_row = header_row(statistics, "月份") + len(series)
    assert anchor.row + 1 > last_series_row and anchor.col == 0  # below the tables, not on them
    area_end = int(statistics.print_area.rsplit("$", 1)[1])
    assert area_end >= anchor.row + 1 + 15  # the chart prints too
    measures = {row["指标"]: row["数值"] for row in table(statistics, "指标")}
    assert measures["达标率(达标人周÷考核人周)"] == pytest.approx(14 / 17)
    months = [sheet.title for sheet in workbook.worksheets]
    assert {"部门统计", "村(社区)统计", "请假出差"} <= set(months)
    villages = {row["村(社区)"]: row for row in table(workbook["村(社区)统计"], "村(社区)")}
    # 1001 and 1004 two days a week, 1002 3+0+1+3+3 days, 1003 two days in W48: all at 东村.
    assert villages["东村"]["下村干部人数"] == 4 and villages["东村"]["下村人天"] == 32
    assert villages["西村"]["下村人天"] == 0 and villages["东村"]["半天打卡人次"] == 0
    assert "本月无人下村的村(社区)：西村、南村" in title_text(workbook["村(社区)统计"], "村(社区)")
    assert "本月无请假、出差" in [
        c.value for row in workbook["请假出差"].iter_rows() for c in row if c.value
    ]


def test_a_notice_number_format_with_unknown_fields_is_refused(tmp_path: Path) -> None:
    from clockd.errors import ConfigError

    site_yaml = tmp_path / "devices.yaml"
    site_yaml.write_text(
        "township: 测试镇\nroster: roster.csv\nnotice:\n  number_format: '{town}通〔{year}〕'\n"
        "terminals:\n  - {id: t01, village: 东村, host: 127.0.0.1, serial: SN1, "
        "installed: 2026-01-01}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=r"notice\.number_format.*\{year\}, \{month\} and \{seq\}"
    ):
        load_settings(site_yaml, environ={})


def test_notice_table_rows_copied_from_their_shape_read_as_if_each_was_made_alone() -> None:
    """The notice's tables make one row per shape through python-docx and copy the rest; every
    row reads back with its own text, boldness and alignment, whatever the text holds."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm, Pt

    from clockd.reports.notice import _grid

    rows = [
        ["1", "张三", "3"],
        ["2", "李四", "4"],
        ["3", "", "5"],  # an empty cell: a shape of its own
        ["4", "王五", ""],
        ["5", " 前后空格 ", "6"],  # kept as written
        ["6", "制表\t换行\n", "7"],  # python-docx's own tab and break
        ["7", "<b>&amp;\x07", "8"],  # markup is text; a control character is dropped
        ["x", "非数字序号", "9"],  # not a number: left-aligned
        ["合计", "", "33"],
        ["8", "赵六", "10"],
    ]
    document = Document()
    widths = [Cm(2), Cm(4), Cm(2)]
    _grid(document, ["序号", "姓名", "次数"], widths, rows, size=Pt(10), numeric=(2,))
    buffer = io.BytesIO()
    document.save(buffer)
    table = Document(buffer).tables[-1]
    assert len(table.rows) == len(rows) + 1
    for values, row in zip(rows, table.rows[1:], strict=True):
        expected = [value.replace("\x07", "").replace("\r", "\n") for value in values]
        assert [cell.text for cell in row.cells] == expected
        for position, cell in enumerate(row.cells):
            paragraph = cell.paragraphs[0]
            centred = position == 2 or (position == 0 and values[0].isdigit())
            assert paragraph.alignment == (
                WD_ALIGN_PARAGRAPH.CENTER if centred else WD_ALIGN_PARAGRAPH.LEFT
            )
            for run in paragraph.runs:
                assert run.bold == (values[0] == "合计")
                assert run.font.size == Pt(10)
