"""Report files on disk: the edition record and the file agree after any crash, files follow
the umask, and operational failures are one log line."""

from __future__ import annotations

import errno
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from openpyxl.writer.excel import ExcelWriter
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from clockd.reports import revisions
from clockd.reports.monthly import notice_path, write_monthly_report
from clockd.reports.weekly import write_weekly_report
from clockd.reports.xlsx import read_stamp, save_atomically
from clockd.scheduler import Daemon
from clockd.store.models import ReportRun
from clockd.workcal import IsoWeek, YearMonth
from tests.conftest import REPO
from tests.report_site import AFTER_W47, Site, make_site

W47 = IsoWeek(2026, 47)
NOVEMBER = YearMonth(2026, 11)


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    site = make_site(tmp_path, engine.url.render_as_string(hide_password=False))
    site.store("t01", [("1001", "2026-11-16 08:00"), ("1001", "2026-11-16 14:00")])
    site.poll_all()
    return site


def daemon(site: Site) -> Daemon:
    return Daemon(site.settings, site.engine, lambda: site.cadres, clock=lambda: AFTER_W47)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even the give-back of a claim."""


def kill_before_rename(monkeypatch: pytest.MonkeyPatch, after: int = 0) -> None:
    """The next report write claims its revision (committed) and dies before a file is in
    place (after `after` files of the edition are), leaving its temporary file behind."""
    placed: list[Path] = []

    def die(write: Callable[[BinaryIO], None], path: Path, before_replace: Any = None) -> None:
        if len(placed) < after:
            placed.append(path)
            save_atomically(write, path, before_replace)
            return
        (path.parent / f".{path.name}.k1ll3d.tmp").write_bytes(b"PK\x03\x04 half a file")
        raise Killed

    monkeypatch.setattr(revisions, "save_atomically", die)
    monkeypatch.setattr(revisions, "_unclaim", lambda *args: None)


def revisions_recorded(site: Site) -> list[int]:
    with site.engine.connect() as connection:
        return sorted(connection.scalars(select(ReportRun.revision)))


def test_a_crash_before_the_first_file_is_repaired_at_the_next_catch_up(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    kill_before_rename(monkeypatch)
    with pytest.raises(Killed):
        write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    monkeypatch.undo()
    path = site.folder / "reports" / "weekly" / "2026-W47.xlsx"
    assert not path.exists() and revisions_recorded(site) == [0]

    assert daemon(site).reports() == ["weekly 2026-W47"]
    stamp = read_stamp(path)
    assert stamp is not None and stamp.identifier == "clockd weekly 2026-W47 r0"
    assert revisions_recorded(site) == [0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["2026-W47.xlsx"]  # temp removed
    assert daemon(site).reports() == []  # now they agree: nothing to do


def test_a_crash_before_a_correction_replaces_the_older_file(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    site.store("t02", [("1002", "2026-11-17 09:00")])  # a change: revision 1 is due
    kill_before_rename(monkeypatch)
    with pytest.raises(Killed):
        write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    monkeypatch.undo()
    stamp = read_stamp(first.path)
    assert stamp is not None and stamp.identifier.endswith(" r0")
    assert revisions_recorded(site) == [0, 1]

    assert daemon(site).reports() == ["weekly 2026-W47"]
    stamp = read_stamp(first.path)
    assert stamp is not None and stamp.identifier == "clockd weekly 2026-W47 r1"
    assert revisions_recorded(site) == [0, 1]  # the recorded edition, not a new one
    history = list((first.path.parent / "history").iterdir())
    assert len(history) == 1  # r0 kept, as after an uninterrupted correction
    assert not list(first.path.parent.glob(".*.tmp"))


def test_a_file_deleted_by_hand_is_written_again(site: Site) -> None:
    first = write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    first.path.unlink()
    assert daemon(site).reports() == ["weekly 2026-W47"]
    assert first.path.exists() and revisions_recorded(site) == [0]


def test_a_missing_notice_is_written_again(site: Site) -> None:
    write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    outcome = write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER, now=AFTER_W47)
    notice = notice_path(site.settings, NOVEMBER)
    notice.unlink()
    assert daemon(site).reports() == ["monthly 2026-11"]
    stamp = read_stamp(notice)
    assert stamp is not None and stamp.identifier == "clockd monthly 2026-11 r0"
    assert revisions_recorded(site) == [0, 0]
    assert sorted(p.name for p in outcome.path.parent.iterdir()) == [
        "2026-11-通报.docx",
        "2026-11.xlsx",
    ]
    assert daemon(site).reports() == []


@pytest.mark.parametrize("placed", [0, 1], ids=["before the notice", "after the notice"])
def test_a_crash_writing_a_monthly_edition_is_repaired(
    site: Site, monkeypatch: pytest.MonkeyPatch, unraisable: list[str], placed: int
) -> None:
    write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    kill_before_rename(monkeypatch, after=placed)
    with pytest.raises(Killed):
        write_monthly_report(site.settings, site.cadres, site.engine, NOVEMBER, now=AFTER_W47)
    monkeypatch.undo()
    gc.collect()
    assert unraisable == []  # the workbook never saved was discarded cleanly
    folder = site.folder / "reports" / "monthly"
    assert notice_path(site.settings, NOVEMBER).exists() == bool(placed)
    assert not (folder / "2026-11.xlsx").exists()

    assert daemon(site).reports() == ["monthly 2026-11"]
    for name in ["2026-11.xlsx", "2026-11-通报.docx"]:
        stamp = read_stamp(folder / name)
        assert stamp is not None and stamp.identifier == "clockd monthly 2026-11 r0"
    assert revisions_recorded(site) == [0, 0]
    assert sorted(p.name for p in folder.iterdir()) == ["2026-11-通报.docx", "2026-11.xlsx"]
    assert daemon(site).reports() == []


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_reports_follow_the_umask(site: Site, umask: int) -> None:
    previous = os.umask(umask)
    try:
        outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47, now=AFTER_W47)
    finally:
        os.umask(previous)
    assert outcome.path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_systemd_unit_sets_a_umask_and_a_memory_cap() -> None:
    unit = (REPO / "scripts" / "deploy" / "clockd.service").read_text(encoding="utf-8")
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["UMask"] == "0027"
    assert settings["MemoryMax"].endswith("M") and int(settings["MemoryMax"][:-1]) >= 256


@pytest.fixture
def unraisable() -> Iterator[list[str]]:
    """What Python would print as "Exception ignored in ..." while the test runs."""
    seen: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: seen.append(f"{info.object!r}: {info.exc_value!r}")
    try:
        yield seen
    finally:
        gc.collect()
        sys.unraisablehook = previous


def test_a_full_disk_is_one_log_line_per_cycle(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    unraisable: list[str],
) -> None:
    def full(self: ExcelWriter) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ExcelWriter, "save", full)
    with caplog.at_level(logging.INFO):
        assert daemon(site).reports() == []
        gc.collect()
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "No space left on device" in errors[0].getMessage()
    assert unraisable == []
    assert revisions_recorded(site) == []  # the claim was given back


def test_a_database_error_after_building_leaves_no_lxml_noise(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    unraisable: list[str],
) -> None:
    def down(*args: object) -> None:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(revisions, "_newest_revision", down)
    monkeypatch.setattr(revisions, "_unclaim", lambda *args: None)
    with caplog.at_level(logging.INFO):
        assert daemon(site).reports() == []
        gc.collect()
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "database unavailable" in errors[0].getMessage()
    assert unraisable == []


def test_log_lines_stay_one_line_with_an_exception(capsys: pytest.CaptureFixture[str]) -> None:
    from clockd.logs import setup_logging

    previous = sys.unraisablehook
    setup_logging(0, default=logging.INFO)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device\nsecond line")
        except OSError:
            logging.getLogger("clockd.daemon").exception("job failed")

        class Noisy:
            def __del__(self) -> None:
                raise RuntimeError("inconsistent exit action")

        Noisy()
        gc.collect()
    finally:
        sys.unraisablehook = previous
        logging.getLogger().handlers.clear()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert "job failed | OSError: [Errno 28] No space left on device second line (at " in lines[0]
    assert "ignored RuntimeError in" in lines[1] and "inconsistent exit action" in lines[1]
