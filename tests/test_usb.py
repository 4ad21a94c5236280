"""USB attendance exports: tolerant parsing, bad lines by number, the poll's dedupe and clock
rules, and formula-like user IDs kept as plain text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from clockd.errors import UserError
from clockd.ingest.usb import decode, import_usb, parse_attlog
from clockd.reports.weekly import write_weekly_report
from clockd.store.models import PollRun, PunchRow, Quarantine
from clockd.workcal import IsoWeek
from tests.report_site import Site, has_formulas, make_site, open_workbook, table

EXPORT = (
    "\ufeff"
    "  1001\t2026-11-16 08:01:02\t0\t1\t0\t0\r\n"
    "  1001\t2026-11-16 15:30:00\t1\t1\t0\t0\r\n"
    "-1+1\t2026-11-16 09:00:00\t0\t1\t0\t0\r\n"
    "1002\t2026-13-01 08:00:00\t0\t1\t0\t0\r\n"  # line 4: no 13th month
    "1002 2026-11-16 08:00:00\r\n"  # line 5: not tab-separated
    "1003\t2026-11-17 08:00:00\tx\t1\r\n"  # line 6: status is not a number
    "\t2026-11-17 08:00:00\t0\r\n"  # line 7: no user ID
    "  1002\t2026-11-17 08:00:00\t0\t1\t0\t0\r\n"
    "1002\t2099-01-01 08:00:00\t0\t1\t0\t0\r\n"  # in the future: quarantined
    "\r\n"
    "\r\n"
)


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    return make_site(tmp_path, engine.url.render_as_string(hide_password=False))


def test_parsing_is_tolerant_and_reports_bad_lines_by_number() -> None:
    log = parse_attlog(decode(EXPORT.encode("utf-8")), "SN001")
    assert [(bad.number, bad.reason.split(" ")[0]) for bad in log.bad] == [
        (4, "time"),
        (5, "expected"),
        (6, "field"),
        (7, "no"),
    ]
    assert log.lines == 9
    first = log.punches[0]
    assert (first.serial, first.user_id, first.timestamp) == (
        "SN001",
        "1001",
        dt.datetime(2026, 11, 16, 8, 1, 2),
    )
    assert (first.state, first.verify) == (0, 1)  # state, then verify type
    assert [p.user_id for p in log.punches] == ["1001", "1001", "-1+1", "1002", "1002"]


def test_gbk_exports_decode() -> None:
    text = "1001\t2026-11-16 08:00:00\t0\t1\t0\t0\t张三\n"
    assert decode(text.encode("gbk")) == text
    assert parse_attlog(decode(text.encode("gbk")), "SN001").bad == ()


def test_import_stores_once_with_the_poll_rules(site: Site, tmp_path: Path) -> None:
    export = tmp_path / "1_attlog.dat"
    export.write_bytes(EXPORT.encode("utf-8"))
    result = import_usb(site.settings, site.engine, export, "t01")
    assert (result.lines, result.new, result.duplicates, result.quarantined) == (9, 5, 0, 1)
    assert [bad.number for bad in result.bad] == [4, 5, 6, 7]
    assert "9 lines read, 5 new, 0 duplicates, 1 quarantined, 4 bad" in result.line()

    again = import_usb(site.settings, site.engine, export, "t01")
    assert (again.new, again.duplicates, again.quarantined) == (0, 5, 0)
    with site.engine.connect() as connection:
        punches = connection.execute(select(PunchRow.serial, PunchRow.user_id, PunchRow.source))
        assert {tuple(row) for row in punches} == {
            ("SN001", "1001", "usb"),
            ("SN001", "-1+1", "usb"),
            ("SN001", "1002", "usb"),
        }
        runs = connection.execute(select(PollRun.source, PollRun.outcome, PollRun.new_count))
        assert [tuple(run) for run in runs] == [("usb", "ok", 5), ("usb", "ok", 0)]
        reasons = connection.scalars(select(Quarantine.reason)).all()
        assert len(reasons) == 1 and "future" in reasons[0]


def test_a_usb_import_after_a_poll_adds_nothing(site: Site, tmp_path: Path) -> None:
    site.store("t02", [("1001", "2026-11-16 08:00")])
    export = tmp_path / "attlog.dat"
    export.write_text("1001\t2026-11-16 08:00:00\t0\t1\t0\t0\n", encoding="utf-8")
    result = import_usb(site.settings, site.engine, export, "t02")
    assert (result.new, result.duplicates) == (0, 1)


def test_formula_like_ids_reach_the_report_as_text(site: Site, tmp_path: Path) -> None:
    export = tmp_path / "attlog.dat"
    export.write_text(
        "=1+2\t2026-11-16 08:00:00\t0\t1\n@SUM(A1)\t2026-11-16 09:00:00\t0\t1\n", encoding="utf-8"
    )
    import_usb(site.settings, site.engine, export, "t01")
    site.poll_all()
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, IsoWeek(2026, 47))
    punches = open_workbook(outcome.path)["打卡记录"]
    assert [row["工号"] for row in table(punches, "工号")] == ["=1+2", "@SUM(A1)"]
    cells = [cell for cell in punches["A"] if cell.value in ("=1+2", "@SUM(A1)")]
    assert len(cells) == 2 and all(c.data_type == "s" and c.quotePrefix for c in cells)
    assert not has_formulas(outcome.path)


def test_a_file_without_records_or_terminal_is_a_user_error(site: Site, tmp_path: Path) -> None:
    empty = tmp_path / "empty.dat"
    empty.write_text("\r\n\r\n", encoding="utf-8")
    with pytest.raises(UserError, match="no attendance lines"):
        import_usb(site.settings, site.engine, empty, "t01")
    with pytest.raises(UserError, match="file not found"):
        import_usb(site.settings, site.engine, tmp_path / "missing.dat", "t01")
    with pytest.raises(UserError, match="no terminal 'zz'"):
        import_usb(site.settings, site.engine, empty, "zz")
    garbage = tmp_path / "garbage.dat"
    garbage.write_text("not an export\n", encoding="utf-8")
    result = import_usb(site.settings, site.engine, garbage, "t01")
    assert result.new == 0 and [bad.number for bad in result.bad] == [1]
    with site.engine.connect() as connection:
        assert connection.scalars(select(PollRun.id)).all() == []  # not a collection at all
