"""The report, USB and leave commands as cron and HR run them: real files, real databases, and
real processes where several race."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from clockd.store.db import make_engine
from clockd.store.models import ReportRun
from clockd.workcal import IsoWeek, YearMonth
from tests.cli_runner import Result, run_clockd, spawn_clockd
from tests.report_site import CONFIG, ROSTER, open_workbook, table


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "devices.yaml").write_text(
        CONFIG.format(
            url=f"sqlite:///{tmp_path / 'clockd.sqlite3'}",
            reports=tmp_path / "reports",
            installed="2025-01-01",
        ),
        encoding="utf-8",
    )
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    assert run_clockd("init", cwd=tmp_path).returncode == 0
    return tmp_path


def one_error_line(result: Result, text: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("clockd: ") and result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr


def test_usb_leave_and_reports_end_to_end(folder: Path) -> None:
    export = folder / "1_attlog.dat"
    export.write_bytes(
        (
            "\ufeff 1001\t2026-11-16 08:00:00\t0\t1\t0\t0\r\n"
            " 1001\t2026-11-16 15:00:00\t1\t1\t0\t0\r\n"
            "1001\t2026-11-16 25:00:00\t1\t1\t0\t0\r\n"
            "-1+1\t2026-11-17 09:00:00\t0\t1\t0\t0\r\n"
            "garbage\r\n\r\n"
        ).encode()
    )
    usb = run_clockd("import-usb", str(export), "--device", "t01", cwd=folder)
    assert usb.returncode == 1 and "Traceback" not in usb.stderr
    assert usb.stderr.splitlines() == [
        f"clockd: {export}: line 3: time '2026-11-16 25:00:00' is not a real date and time",
        f"clockd: {export}: line 5: expected tab-separated user ID and time",
    ]
    assert "5 lines read, 3 new, 0 duplicates, 0 quarantined, 2 bad" in usb.stdout
    again = run_clockd("import-usb", str(export), "--device", "t01", cwd=folder)
    assert "3 new" not in again.stdout and "0 new, 3 duplicates" in again.stdout
    one_error_line(
        run_clockd("import-usb", str(export), "--device", "t99", cwd=folder), "no terminal 't99'"
    )
    one_error_line(
        run_clockd("import-usb", "nope.dat", "--device", "t01", cwd=folder), "file not found"
    )

    added = run_clockd(
        "leave",
        "add",
        "1002",
        "2026-11-16",
        "2026-11-20",
        "--kind",
        "出差",
        "--by",
        "hr",
        cwd=folder,
    )
    assert (
        added.returncode == 0 and "added leave #1: 1002 2026-11-16..2026-11-20 出差" in added.stdout
    )
    one_error_line(
        run_clockd("leave", "add", "7777", "2026-11-16", "2026-11-17", cwd=folder),
        "user 7777 is not in the roster",
    )
    one_error_line(
        run_clockd("leave", "add", "1001", "2026-11-18", "2026-11-17", cwd=folder),
        "from 2026-11-18 is after to 2026-11-17",
    )
    one_error_line(
        run_clockd("leave", "add", "1001", "2026-11-16", "2026-11-17", "--kind", "nap", cwd=folder),
        "unknown leave kind 'nap'",
    )
    sheet = folder / "leave.csv"
    sheet.write_text("user_id,from,to,kind,note\n1001,2026-11-19,2026-11-19,leave,\n")
    imported = run_clockd("leave", "import", str(sheet), "--by", "hr", cwd=folder)
    assert imported.returncode == 0 and "imported 1 leave entries" in imported.stdout
    listed = run_clockd("leave", "list", "--user", "1001", cwd=folder)
    assert listed.returncode == 0 and "2026-11-19" in listed.stdout and "1002" not in listed.stdout
    revoked = run_clockd("leave", "revoke", "2", "--by", "主任", cwd=folder)
    assert revoked.returncode == 0 and "revoked leave #2" in revoked.stdout
    assert "revoked by 主任" in run_clockd("leave", "list", cwd=folder).stdout

    weekly = run_clockd("report", "weekly", "--week", "2026-W47", cwd=folder)
    assert weekly.returncode == 0, weekly.stderr
    path, summary = weekly.stdout.splitlines()
    assert path == str(folder / "reports" / "weekly" / "2026-W47.xlsx")
    assert summary.startswith(
        "2026-W47: 4 cadres, 3 failed, deductions 300 yuan, status provisional"
    )
    assert "not yet collected: 西村、南村" in summary
    rows = {row["工号"]: row for row in table(open_workbook(Path(path))["汇总"], "工号")}
    assert rows["1002"]["请假天数"] == 5 and rows["1002"]["应下村天数"] == 0
    assert rows["1001"]["有效下村天数"] == 1

    monthly = run_clockd("report", "monthly", "--month", "2026-11", cwd=folder)
    assert monthly.returncode == 0, monthly.stderr
    assert monthly.stdout.splitlines()[0] == str(folder / "reports" / "monthly" / "2026-11.xlsx")
    notice = run_clockd("report", "notice", "--month", "2026-11", cwd=folder)
    assert notice.returncode == 0, notice.stderr
    document = folder / "reports" / "monthly" / "2026-11-通报.docx"
    assert notice.stdout.splitlines()[0] == str(document) and document.stat().st_size > 0
    assert "2026-11: 4 cadres" in notice.stdout.splitlines()[1]
    one_error_line(run_clockd("report", "notice", "--month", "11/2026", cwd=folder), "--month")
    default = run_clockd("report", "weekly", cwd=folder)
    assert default.returncode == 0 and "/reports/weekly/" in default.stdout

    one_error_line(
        run_clockd("report", "weekly", "--week", "2026-47", cwd=folder), "--week: bad week"
    )
    one_error_line(run_clockd("report", "weekly", "--week", "2026-W54", cwd=folder), "no such week")
    one_error_line(
        run_clockd("report", "monthly", "--month", "2026-13", cwd=folder), "no such month"
    )


def test_a_period_that_has_not_begun_is_refused(folder: Path) -> None:
    """It could only say that every cadre failed: a user mistake, exit 2, nothing written."""
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    week = IsoWeek.containing(today).shift(2)
    refused = run_clockd("report", "weekly", "--week", week.label, cwd=folder)
    one_error_line(refused, f"--week: {week.label} has not begun yet")
    assert refused.returncode == 2
    month = YearMonth(today.year, today.month).shift(2)
    for command in ("monthly", "notice"):
        refused = run_clockd("report", command, "--month", month.label, cwd=folder)
        one_error_line(refused, f"--month: {month.label} has not begun yet")
        assert refused.returncode == 2
    assert not (folder / "reports").exists()


@pytest.mark.postgres
def test_processes_racing_for_one_report_write_it_once(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "devices.yaml").write_text(
        CONFIG.format(url=pg_url, reports=tmp_path / "reports", installed="2025-01-01"),
        encoding="utf-8",
    )
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    assert run_clockd("init", cwd=tmp_path).returncode == 0
    racers = [
        spawn_clockd("report", "weekly", "--week", "2026-W47", cwd=tmp_path) for _ in range(4)
    ]
    results = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0, 0], results
    assert all("Traceback" not in err for _, err in results)
    engine = make_engine(pg_url)
    try:
        with engine.connect() as connection:
            runs = connection.execute(select(ReportRun.kind, ReportRun.revision)).all()
    finally:
        engine.dispose()
    assert [tuple(run) for run in runs] == [("weekly", 0)]
    folder = tmp_path / "reports" / "weekly"
    assert sorted(p.name for p in folder.iterdir()) == ["2026-W47.xlsx"]
    assert open_workbook(folder / "2026-W47.xlsx").sheetnames[0] == "汇总"
