"""The monthly report's kept week totals (reports/earlier.py) against assessing the whole year.

A monthly report reads only its own month and takes the year before it from kept per-week
totals. Its workbook must be, cell for cell, the one assessing every week from the punches
gives, on a first edition and on a revision after late punches, leave and a quarantine
release; and only the weeks those touched are assessed again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, text

from clockd.leave import add_leave
from clockd.reports import monthly
from clockd.reports.earlier import PunchDigest, weeks_before
from clockd.reports.period import Period, fingerprint, gather
from clockd.reports.revisions import ReportOutcome
from clockd.rules import statistics_weeks
from clockd.store.console import decide_quarantine, list_quarantine
from clockd.store.periods import edition_figures, load_punches
from clockd.store.week_totals import Arrivals, StoredWeek, stored_weeks
from clockd.workcal import IsoWeek, YearMonth
from tests.report_site import Site, make_site, title_text

NOVEMBER = YearMonth(2026, 11)
AFTER_NOVEMBER = dt.datetime(2026, 11, 30, 1, tzinfo=dt.UTC)
LATER = AFTER_NOVEMBER + dt.timedelta(days=1)
PERIOD = Period(
    monthly.KIND, NOVEMBER.label, tuple(NOVEMBER.weeks()), statistics_weeks(NOVEMBER)[0].start
)


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    return make_site(
        tmp_path, engine.url.render_as_string(hide_password=False), installed="2025-06-01"
    )


def village_day(user_id: str, day: dt.date) -> list[tuple[str, str]]:
    return [(user_id, f"{day} 08:30"), (user_id, f"{day} 15:10")]


def a_year_of_punches(site: Site) -> None:
    """Four cadres over the statistics weeks, unevenly; a cadre's punch at an unknown
    terminal time (quarantined); an unknown user; leave in an earlier week and in the month."""
    for terminal, user_id, every in (("t01", "1001", 1), ("t02", "1002", 2), ("t03", "1004", 3)):
        punches: list[tuple[str, str]] = []
        for number, week in enumerate(statistics_weeks(NOVEMBER)):
            for offset in range((number // every) % 4):
                punches += village_day(user_id, week.start + dt.timedelta(days=offset))
        punches += village_day("1003", dt.date(2026, 11, 19)) if user_id == "1001" else []
        punches += [("9999", "2026-04-01 09:00")] if user_id == "1002" else []
        site.store(terminal, punches, started=AFTER_NOVEMBER - dt.timedelta(hours=2))
    # Dated after the terminal's "now": quarantined as a clock fault.
    site.store(
        "t01",
        village_day("1002", dt.date(2026, 3, 10)) + village_day("1002", dt.date(2026, 11, 11)),
        started=AFTER_NOVEMBER - dt.timedelta(hours=1),
        now_local=dt.datetime(2026, 3, 1),
    )
    add_leave(site.engine, site.cadres, "1002", dt.date(2026, 2, 2), dt.date(2026, 2, 6), actor="t")
    add_leave(
        site.engine, site.cadres, "1001", dt.date(2026, 11, 9), dt.date(2026, 11, 10), actor="t"
    )
    site.poll_all(started=AFTER_NOVEMBER)


def late_data(site: Site) -> set[str]:
    """Late punches in an earlier week and in the month, leave in an earlier week, a release;
    returns the earlier weeks they touch."""
    started = AFTER_NOVEMBER + dt.timedelta(hours=3)
    site.store("t02", village_day("1004", dt.date(2026, 6, 3)), started=started)
    site.store("t02", village_day("1004", dt.date(2026, 11, 24)), started=started)
    add_leave(
        site.engine, site.cadres, "1004", dt.date(2026, 5, 11), dt.date(2026, 5, 13), actor="t"
    )
    march = next(
        entry
        for entry in list_quarantine(site.engine)
        if entry.punched_at is not None and entry.punched_at.date() == dt.date(2026, 3, 10)
    )
    assert decide_quarantine(site.engine, march.id, "release", "t", "clock checked") is None
    return {
        IsoWeek.containing(day).label
        for day in (dt.date(2026, 6, 3), dt.date(2026, 5, 11), dt.date(2026, 3, 10))
    }


def assessed_whole(site: Site, outcome: ReportOutcome, now: dt.datetime, out: Path) -> Path:
    """The same edition's workbook with every statistics week assessed from its punches."""
    basis = gather(site.engine, site.settings, site.cadres, PERIOD, now)
    assert basis.plan.revision == outcome.revision and not basis.plan.new
    with site.engine.connect() as connection:
        punches = load_punches(
            connection, PERIOD.data_from, PERIOD.end, site.settings.terminals, basis.data.cuts
        )
        previous = (
            None
            if basis.plan.compared is None
            else edition_figures(
                connection, PERIOD.kind, PERIOD.label, basis.plan.compared.revision
            )
        )
    data = basis.data
    leave, results = data.leave(), data.work_results()
    assert basis.fingerprint == fingerprint(
        site.settings, site.cadres, PERIOD, PunchDigest.of(punches), leave, basis.calendar, results
    )
    year = dataclasses.replace(data, punches=punches, known=None, known_arrivals=Arrivals())
    whole = dataclasses.replace(basis, data=year)
    figures = monthly.assess(whole, site.cadres, NOVEMBER, punches, leave, results)
    assert len(set(figures.figures.week_results["week"])) == len(statistics_weeks(NOVEMBER))
    book = monthly.workbook(site.settings, whole, site.cadres, figures, previous)
    book.workbook.save(out)
    return out


def cells(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every cell of every sheet: value, number format, fill, bold, alignment."""
    book = load_workbook(path)
    return {
        sheet.title: [
            (
                cell.coordinate,
                cell.value,
                cell.number_format,
                cell.fill.fgColor.rgb,
                cell.font.b,
                cell.alignment.horizontal,
            )
            for row in sheet.iter_rows()
            for cell in row
        ]
        + [("merged", *sorted(str(r) for r in sheet.merged_cells.ranges))]
        for sheet in book.worksheets
    }


def kept(site: Site) -> dict[str, StoredWeek]:
    labels = [week.label for week in weeks_before(PERIOD.data_from, PERIOD.start)]
    with site.engine.connect() as connection:
        return stored_weeks(connection, labels)


def test_kept_weeks_give_the_workbook_assessing_the_whole_year_gives(
    site: Site, tmp_path: Path
) -> None:
    a_year_of_punches(site)
    first = monthly.write_monthly_report(
        site.settings, site.cadres, site.engine, NOVEMBER, now=AFTER_NOVEMBER
    )
    assert first.revision == 0
    before = kept(site)
    assert len(before) == len(statistics_weeks(NOVEMBER)) - len(NOVEMBER.weeks())
    whole = assessed_whole(site, first, AFTER_NOVEMBER, tmp_path / "whole-r0.xlsx")
    assert cells(first.path) == cells(whole)
    # Earlier months' holiday weeks, which lower the averages shown beside November's, named.
    statistics = "\n".join(
        str(row[0]) for row in load_workbook(first.path)["统计"].iter_rows(values_only=True)
    )
    assert "2026年10月（第40周（9.28—10.4）工作日 3 天、第41周（10.5—10.11）工作日 3 天）" in (
        statistics
    )
    assert "2026年2月（第8周（2.16—2.22）工作日 0 天）" in statistics
    assert "注：上月有节假日周，上月人均周下村天数偏低，环比变化因此偏高" in statistics

    touched = late_data(site)
    second = monthly.write_monthly_report(
        site.settings, site.cadres, site.engine, NOVEMBER, now=LATER
    )
    assert second.revision == 1 and second.written
    after = kept(site)
    assert {label for label in after if after[label] != before[label]} == touched
    whole = assessed_whole(site, second, LATER, tmp_path / "whole-r1.xlsx")
    revised = cells(second.path)
    assert "更正说明" in revised
    # The month's own late punches, and apart what the statistics' earlier weeks received.
    notes = title_text(load_workbook(second.path)["更正说明"], "工号")
    counts = re.search(r"补录打卡 (\d+) 条，.*；统计所及此前各周另有补录打卡 (\d+) 条", notes)
    assert counts is not None, notes
    assert 0 < int(counts[1]) < int(counts[2])  # the month's own, then the year before it
    assert "隔离记录放行 0 条；" in notes and "隔离记录放行 1 条（" in notes  # March's
    assert revised == cells(whole)

    # A third run with nothing new rewrites revision 1 from the kept weeks alone.
    third = monthly.write_monthly_report(
        site.settings, site.cadres, site.engine, NOVEMBER, now=LATER + dt.timedelta(hours=1)
    )
    assert third.revision == 1
    assert kept(site) == after
    assert cells(third.path) == revised


def test_kept_totals_edited_behind_clockds_back_are_computed_again(
    site: Site, tmp_path: Path
) -> None:
    """The kept totals are a cache, not a record: editing them (a deduction zeroed, a failing
    cadre struck out) must not reach a report."""
    a_year_of_punches(site)
    first = monthly.write_monthly_report(
        site.settings, site.cadres, site.engine, NOVEMBER, now=AFTER_NOVEMBER
    )
    published, before = cells(first.path), kept(site)
    assert any(row.deduction for row in before.values())
    with site.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE week_totals SET deduction = 0, failing = '[]', valid_days = valid_days + 9"
            )
        )
    first.path.unlink()  # written again, from the store
    again = monthly.write_monthly_report(
        site.settings, site.cadres, site.engine, NOVEMBER, now=AFTER_NOVEMBER
    )
    assert again.revision == 0
    assert cells(again.path) == published
    assert kept(site) == before
