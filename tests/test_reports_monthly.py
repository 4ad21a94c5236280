"""The monthly notice read back: sheet order, 通报 ordering, 统计 figures and the chart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine

from clockd.reports.monthly import write_monthly_report
from clockd.reports.revisions import EditionStatus
from clockd.workcal import IsoWeek, YearMonth
from tests.report_site import Site, header_row, make_site, open_workbook, table, title_text

NOVEMBER = YearMonth(2026, 11)  # weeks 2026-W44 (Sunday 1 November) to 2026-W48
ROSTER = (
    "user_id,name,role\n1001,甲,机关干部\n1002,乙,机关干部\n1003,丙,机关干部\n1004,丁,机关干部\n"
)
AFTER_NOVEMBER = dt.datetime(2026, 11, 30, 1, tzinfo=dt.UTC)


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    return make_site(
        tmp_path,
        engine.url.render_as_string(hide_password=False),
        roster=ROSTER,
        installed="2025-06-01",
    )


def village_days(user_id: str, week: IsoWeek, days: int) -> list[tuple[str, str]]:
    """`days` valid village days (from Monday on) in a week: a morning and an afternoon punch."""
    punches = []
    for offset in range(days):
        day = week.start + dt.timedelta(days=offset)
        punches += [(user_id, f"{day} 08:00"), (user_id, f"{day} 15:00")]
    return punches


def test_the_monthly_notice(site: Site) -> None:
    punches: list[tuple[str, str]] = []
    for number in range(44, 49):
        week = IsoWeek(2026, number)
        punches += village_days("1001", week, 2)
        punches += village_days("1002", week, 2 if number == 44 else 0)
        punches += village_days("1003", week, 0 if number == 46 else 2)
        punches += village_days("1004", week, 0 if number == 47 else 2)
    punches += village_days("1001", IsoWeek(2026, 43), 2)  # October: 2 days in 16 cadre-weeks
    for week in NOVEMBER.shift(-12).weeks():  # November 2025: 1 day a week for 1001
        punches += village_days("1001", week, 1)
    site.store("t01", punches, started=AFTER_NOVEMBER)
    site.poll_all(started=AFTER_NOVEMBER)

    outcome = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER)
    assert outcome.written and outcome.status == EditionStatus.FINAL
    assert outcome.path == site.folder / "reports" / "monthly" / "2026-11.xlsx"
    assert (outcome.cadres, outcome.failed, outcome.deduction_total) == (4, 3, 600)
    workbook = open_workbook(outcome.path)
    assert workbook.sheetnames == [
        "通报",
        "月度汇总",
        "统计",
        "终端状态",
        "部门统计",
        "村(社区)统计",
        "请假出差",
        "周明细",
    ]

    notice = workbook["通报"]
    top = header_row(notice, "工号")
    assert [c.value for c in notice[top]] == [
        "工号",
        "姓名",
        "部门",
        "类别",
        "未达标周数",
        "扣款合计(元)",
        "未达标周次",
        "备注",
    ]
    assert notice.freeze_panes == f"A{top + 1}"
    title = title_text(notice, "工号")
    assert "测试镇干部下村考勤月报　通报" in title
    assert "2026年11月" in title and "第44周（10.26—11.1） 至 第48周（11.23—11.29）" in title
    assert [
        (r["工号"], r["未达标周数"], r["扣款合计(元)"], r["未达标周次"])
        for r in table(notice, "工号")
    ] == [
        (
            "1002",
            4,
            400,
            "第45周（11.2—11.8）、第46周（11.9—11.15）、第47周（11.16—11.22）、"
            "第48周（11.23—11.29）",
        ),
        ("1003", 1, 100, "第46周（11.9—11.15）"),
        ("1004", 1, 100, "第47周（11.16—11.22）"),
    ]
    assert table(notice, "工号")[1]["备注"] == "第46周（11.9—11.15）有效 0 天，应 2 天"
    assert "考核 4 人，通报 3 人，未达标 6 人周，扣款 600 元" in title

    summary = {row["工号"]: row for row in table(workbook["月度汇总"], "工号")}
    assert list(summary) == ["1001", "1002", "1003", "1004"]
    assert summary["1002"] == {
        "工号": "1002",
        "姓名": "乙",
        "部门": None,
        "驻点村": None,
        "类别": "机关干部",
        "考核周数": 5,
        "达标周数": 1,
        "未达标周数": 4,
        "应下村天数": 10,
        "有效下村天数": 2,
        "周均下村天数": pytest.approx(0.4),
        "扣款合计(元)": 400,
        "备注": "未达标：第45周（11.2—11.8）、第46周（11.9—11.15）、第47周（11.16—11.22）、"
        "第48周（11.23—11.29）",
    }

    statistics = workbook["统计"]
    figures = {row["指标"]: row["数值"] for row in table(statistics, "指标")}
    assert figures["干部人数"] == 4 and figures["通报人数"] == 3
    assert figures["扣款总额(元)"] == 600
    assert figures["人均周下村天数"] == pytest.approx(28 / 20)
    assert figures["上月人均周下村天数"] == pytest.approx(2 / 16)
    assert figures["去年同期人均周下村天数"] == pytest.approx(5 / 20)
    assert figures["同比变化"] == pytest.approx((28 / 20 - 5 / 20) / (5 / 20))
    assert figures["环比变化"] == pytest.approx((28 / 20 - 2 / 16) / (2 / 16))
    change = statistics.cell(header_row(statistics, "指标") + 7, 2)
    assert change.data_type == "n" and change.number_format == "0.0%"
    assert figures["年度累计扣款(元)"] >= 600

    series = table(statistics, "月份")
    months = [YearMonth(2025, 12).shift(n) for n in range(12)]
    assert [row["月份"] for row in series] == [f"{m.year}年{m.month}月" for m in months]
    assert series[-1]["人均周下村天数"] == pytest.approx(1.4) and series[-1]["考核人周数"] == 20
    assert (series[-1]["通报人数"], series[-1]["扣款(元)"]) == (3, 600)
    assert series[-2]["扣款(元)"] == 1500  # October: 15 of 16 cadre-weeks failed
    charts = statistics._charts  # type: ignore[attr-defined]  # openpyxl keeps charts there
    assert len(charts) == 1
    reference = charts[0].series[0].val.numRef.f
    first = header_row(statistics, "月份")
    assert reference == f"'统计'!$B${first + 1}:$B${first + 12}"

    weeks = table(workbook["周明细"], "周次")
    assert len(weeks) == 20 and {row["周次"][:5] for row in weeks} == {
        f"第{n}周（" for n in range(44, 49)
    }
    assert sum(row["扣款(元)"] for row in weeks) == 600


def test_statistics_without_last_years_data_show_a_dash(tmp_path: Path, engine: Engine) -> None:
    site = make_site(
        tmp_path,
        engine.url.render_as_string(hide_password=False),
        roster=ROSTER,
        installed="2026-06-01",  # nothing to compare with a year back
    )
    site.store("t01", village_days("1001", IsoWeek(2026, 45), 2), started=AFTER_NOVEMBER)
    site.poll_all(started=AFTER_NOVEMBER)
    outcome = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER)
    statistics = open_workbook(outcome.path)["统计"]
    figures = {row["指标"]: row["数值"] for row in table(statistics, "指标")}
    assert figures["去年同期人均周下村天数"] == "—" and figures["同比变化"] == "—"
    series = {row["月份"]: row["人均周下村天数"] for row in table(statistics, "月份")}
    assert series["2026年1月"] is None and series["2026年11月"] == pytest.approx(2 / 20)
    assert "2026-06-01 起启用" not in title_text(statistics, "指标")  # November is all after


def test_an_unknown_year_is_remarked(tmp_path: Path, engine: Engine) -> None:
    site = make_site(tmp_path, engine.url.render_as_string(hide_password=False), roster=ROSTER)
    site.poll_all(started=dt.datetime(2027, 4, 1, tzinfo=dt.UTC))
    outcome = write_monthly_report(site.settings, site.cadres, site.engine, YearMonth(2027, 3))
    title = title_text(open_workbook(outcome.path)["通报"], "工号")
    assert "节假日日历缺少2027年数据，按周一至周五计工作日" in title
