"""The demo's story, and its reports rendered as a township would print them: LibreOffice's PDF of
the 47-cadre 汇总 is one A4 page, the 通报 sheet and the printable notice one or two.

The PDF tests need `soffice` (libreoffice-calc, libreoffice-writer, fonts-noto-cjk); they skip
without it, except under CI=true, where they must run."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from docx import Document
from openpyxl import load_workbook

from clockd.reports.revisions import EditionStatus
from clockd.sim.demo import ARTICLE, DemoResult, run_demo
from clockd.workcal import IsoWeek, YearMonth
from tests.report_site import header_row, open_workbook, table, title_text

SOFFICE = shutil.which("soffice")
needs_soffice = pytest.mark.skipif(
    SOFFICE is None and os.environ.get("CI") != "true",
    reason="LibreOffice (soffice) is not installed",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return run_demo(tmp_path_factory.mktemp("demo"), 2015, say=lambda line: None)


def test_the_demo_tells_the_seeds_story(demo: DemoResult) -> None:
    story = demo.story
    assert story.cadres == ARTICLE["cadres"] == 47
    assert story.average is not None and abs(story.average - ARTICLE["average"]) < 0.2
    assert story.change is not None and abs(story.change - ARTICLE["change"]) < 0.06
    assert (story.notified, story.deduction) == (6, 1200)
    # 湖山村's terminal was offline at the first poll: provisional, then revised.
    assert [o.status for o in demo.provisional] == [EditionStatus.PROVISIONAL] * 2
    assert all("湖山村" in o.missing_villages for o in demo.provisional)
    assert demo.weekly.status == EditionStatus.CORRECTED and demo.weekly.revision == 1
    assert demo.monthly.status == EditionStatus.CORRECTED
    assert len(list((demo.weekly.path.parent / "history").glob("*.xlsx"))) == 1
    assert len(list((demo.monthly.path.parent / "history").glob("*.docx"))) == 1
    # 15 villages polled over the ZKTeco protocol, the 16th (a 4G village) pushing over HTTP.
    assert all(outcome.ok for outcome in demo.outcomes) and len(demo.outcomes) == 15
    assert list(demo.pushed) == ["t16"] and demo.pushed["t16"] > 0

    weekly = open_workbook(demo.weekly.path)
    rows = table(weekly["汇总"], "工号")
    failed = [row for row in rows if row["是否达标"] == "否"]
    assert len(rows) == 47 and failed and all(row["备注"].startswith("有效下村") for row in failed)
    assert any(str(row["备注"] or "").startswith("请假 ") for row in rows)
    assert "未知用户" in {row["类型"] for row in table(weekly["异常"], "类型")}
    assert "更正" in title_text(weekly["汇总"], "工号")

    monthly = open_workbook(demo.monthly.path)
    notified = table(monthly["通报"], "工号")
    assert notified and all(row["未达标周次"].startswith("第") for row in notified)
    # The trip lies in the month; the leave (Monday to Wednesday of the last week) too when the
    # demo runs in a month's first days, whose last complete week still belongs to the month.
    month, week = YearMonth.parse(demo.monthly.period), IsoWeek.parse(demo.weekly.period)
    leave_in_month = (
        week.start <= month.last_day and week.start + dt.timedelta(days=2) >= month.first_day
    )
    trips = table(monthly["请假出差"], "工号")
    assert sorted(row["类型"] for row in trips) == sorted(["出差", *["请假"] * leave_in_month])
    statistics = {row["指标"]: row["数值"] for row in table(monthly["统计"], "指标")}
    assert statistics["年度累计通报人数"] == 6 and statistics["年度累计扣款(元)"] == 1200
    assert statistics["去年同期人均周下村天数"] not in (None, "—")


def pdf_pages(source: Path, folder: Path) -> int:
    """Render `source` with LibreOffice and count the PDF's pages."""
    return len(rendered_pages(source, folder))


def rendered_pages(source: Path, folder: Path) -> list[str]:
    """Render `source` with LibreOffice: the text of each page of the PDF."""
    assert SOFFICE is not None, "CI=true requires LibreOffice"
    profile = folder / "profile"
    subprocess.run(
        [
            SOFFICE,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(folder),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    pdf = (folder / source.name).with_suffix(".pdf")
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    return text.split("\f")[:-1]  # every page ends with a form feed


def first_sheet_only(path: Path, folder: Path) -> Path:
    """A copy of the workbook with only its first sheet, to render that sheet alone."""
    workbook = load_workbook(path)
    for sheet in workbook.worksheets[1:]:
        workbook.remove(sheet)
    copy = folder / f"{path.stem}-{workbook.worksheets[0].title}.xlsx"
    workbook.save(copy)
    return copy


@needs_soffice
def test_the_summary_of_47_cadres_prints_on_one_page(demo: DemoResult, tmp_path: Path) -> None:
    summary = first_sheet_only(demo.weekly.path, tmp_path)
    sheet = load_workbook(summary)["汇总"]
    assert len(table(sheet, "工号")) == 47 and header_row(sheet, "工号") > 1
    assert pdf_pages(summary, tmp_path) == 1


@needs_soffice
def test_the_notice_sheet_and_the_notice_print_on_one_or_two_pages(
    demo: DemoResult, tmp_path: Path
) -> None:
    notice_sheet = first_sheet_only(demo.monthly.path, tmp_path)
    assert 1 <= pdf_pages(notice_sheet, tmp_path) <= 2
    document = demo.monthly.path.with_name(f"{demo.monthly.period}-通报.docx")
    assert Document(str(document)).tables  # the demo's month names cadres
    # The notice on one or two pages, then its appendix of chain heads on a page of its own.
    pages = rendered_pages(document, tmp_path)
    appendix = next(number for number, page in enumerate(pages) if "链哈希" in page)
    assert 1 <= appendix <= 2 and len(pages) == appendix + 1, len(pages)
    assert "附件" in pages[appendix] and "柳塘村" in pages[appendix]
    assert "附件：本通报所依据数据的链末端" in "".join(pages[:appendix]).replace(" ", "")
