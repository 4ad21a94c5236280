"""USB attendance exports: tolerant parsing, bad lines by number, the poll's dedupe and clock
rules, and formula-like user IDs kept as plain text."""

from __future__ import annotations

import datetime as dt
import io
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from clockd.cli import main
from clockd.errors import UserError
from clockd.ingest.usb import AttLog, import_usb, parse_attlog
from clockd.reports.weekly import write_weekly_report
from clockd.store.models import PollRun, PunchRow, Quarantine
from clockd.workcal import IsoWeek
from tests.report_site import Site, has_formulas, make_site, open_workbook, table

# Real order (ZKTeco's UDisk demo, exports from real terminals; docs/protocol.md): PIN, time,
# device number, state, verify type, workcode. PINs right-aligned to width 9, CRLF.
EXPORT = (
    "\ufeff"
    "     1001\t2026-11-16 08:01:02\t1\t0\t1\t0\r\n"
    "     1001\t2026-11-16 15:30:00\t1\t1\t1\t0\r\n"
    "-1+1\t2026-11-16 09:00:00\t1\t0\t1\t0\r\n"
    "1002\t2026-13-01 08:00:00\t1\t0\t1\t0\r\n"  # line 4: no 13th month
    "1002 2026-11-16 08:00:00\r\n"  # line 5: not tab-separated
    "1003\t2026-11-17 08:00:00\t1\tx\t1\r\n"  # line 6: state is not a number
    "\t2026-11-17 08:00:00\t1\r\n"  # line 7: no user ID
    "     1002\t2026-11-17 08:00:00\t1\t0\t1\t0\r\n"
    "1002\t2099-01-01 08:00:00\t1\t0\t1\t0\r\n"  # in the future: quarantined
    "\r\n"
    "\r\n"
)


def parse(data: bytes, serial: str = "SN001") -> AttLog:
    return parse_attlog(io.BytesIO(data), serial)


@pytest.fixture
def site(tmp_path: Path, engine: Engine) -> Site:
    return make_site(tmp_path, engine.url.render_as_string(hide_password=False))


def test_parsing_is_tolerant_and_reports_bad_lines_by_number() -> None:
    log = parse(EXPORT.encode("utf-8"))
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
    text = "1001\t2026-11-16 08:00:00\t1\t0\t1\t0\t张三\n"
    log = parse(text.encode("gbk"))
    assert log.bad == [] and [p.user_id for p in log.punches] == ["1001"]


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
    export.write_text("1001\t2026-11-16 08:00:00\t1\t0\t1\t0\n", encoding="utf-8")
    result = import_usb(site.settings, site.engine, export, "t02")
    assert (result.new, result.duplicates) == (0, 1)


def test_formula_like_ids_reach_the_report_as_text(site: Site, tmp_path: Path) -> None:
    export = tmp_path / "attlog.dat"
    export.write_text(
        "=1+2\t2026-11-16 08:00:00\t1\t0\n@SUM(A1)\t2026-11-16 09:00:00\t1\t0\n", encoding="utf-8"
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


# --- exports shaped like real ones (see docs/protocol.md, "USB export files") ----------------


BOM = b"\xef\xbb\xbf"


def real_line(pin: str, stamp: str, state: int = 0, verify: int = 1, workcode: int = 0) -> bytes:
    """One line as a terminal writes it: PIN right-aligned to width 9, device number 1, CRLF."""
    return f"{pin:>9}\t{stamp}\t1\t{state}\t{verify}\t{workcode}\r\n".encode()


def real_export() -> bytes:
    head = [
        real_line("1001", "2026-11-16 08:01:02", state=0, verify=1),
        real_line("1001", "2026-11-16 17:30:00", state=1, verify=1),
        real_line("1002", "2026-11-16 08:10:00", state=255, verify=1),  # state 255 is real
        real_line("1003", "2026-11-16 08:20:00", state=0, verify=15, workcode=7),
    ]
    odd = [
        b"        7\t1990-00--8 -16:-29:-40\t1\t0\t1\t0\r\n",  # negative fields
        real_line("1004", "2047-02-30 08:00:00"),  # no 30 February
        b"         \t2026-11-16 09:00:00\t1\t0\t1\t0\r\n",  # empty PIN
        b"  10\x1b[2J\t2026-11-16 09:01:00\t1\t0\t1\t0\r\n",  # control bytes in the PIN
        "张三".encode("gbk") + b"\t2026-11-16 09:02:00\t1\t0\t1\t0\r\n",  # GBK PIN
        b"  \x07\x90\xfe1\t2026-11-16 09:03:00\t1\t0\t1\t0\r\n",  # garbage bytes
    ]
    tail = head[-2:]  # after the NUL run the terminal repeats the end of the log
    return b"".join(
        [BOM, *head, *odd, b"\0" * 300_000, *tail, real_line("1005", "2026-11-17 08:00:00")]
    )


def test_real_exports_are_read_in_the_terminals_column_order() -> None:
    log = parse(real_export())
    got = {
        (p.user_id, p.timestamp.isoformat(" ")): (p.state, p.verify, p.workcode)
        for p in log.punches
    }
    assert got == {
        ("1001", "2026-11-16 08:01:02"): (0, 1, 0),
        ("1001", "2026-11-16 17:30:00"): (1, 1, 0),
        ("1002", "2026-11-16 08:10:00"): (255, 1, 0),
        ("1003", "2026-11-16 08:20:00"): (0, 15, 7),
        ("1005", "2026-11-17 08:00:00"): (0, 1, 0),
    }
    assert len(log.punches) == 7  # the repeated tail is read again; storing dedupes it
    assert [(bad.number, bad.kind) for bad in log.bad] == [
        (5, "bad time"),
        (6, "impossible date"),
        (7, "no PIN"),
    ]
    # PINs that are not printable ASCII are kept as raw records, never as users
    assert [problem.raw[:4] for problem in log.problems] == [
        b"  10",
        "张三".encode("gbk")[:4],
        b"  \x07\x90",
    ]
    assert all("printable ASCII" in problem.reason for problem in log.problems)


def test_a_nul_run_that_interrupts_a_record_ends_it() -> None:
    data = (
        real_line("1001", "2026-11-16 08:00:00")
        + real_line("1002", "2026-11-16 08:05:00")[:20]  # cut short by the run
        + b"\0" * 200_000
        + real_line("1002", "2026-11-16 08:05:00")
        + b"\0" * 1000
    )
    log = parse(data)
    assert [p.user_id for p in log.punches] == ["1001", "1002"]
    assert [(bad.number, bad.kind) for bad in log.bad] == [(2, "bad time")]


def test_a_bom_and_one_gbk_line_do_not_turn_the_first_pin_into_mojibake() -> None:
    data = BOM + real_line("1001", "2026-11-16 08:00:00") + "王五\t备注\r\n".encode("gbk")
    log = parse(data)
    assert [p.user_id for p in log.punches] == ["1001"]
    assert [bad.number for bad in log.bad] == [2]


def test_a_real_export_imports_once_with_garbage_pins_quarantined(
    site: Site, tmp_path: Path
) -> None:
    export = tmp_path / "1_attlog.dat"
    export.write_bytes(real_export())
    result = import_usb(site.settings, site.engine, export, "t01")
    assert (result.new, result.duplicates, result.quarantined) == (5, 2, 3)
    assert result.bad_count == 3
    with site.engine.connect() as connection:
        users = set(connection.scalars(select(PunchRow.user_id)))
        raws = connection.scalars(select(Quarantine.raw_record)).all()
    assert users == {"1001", "1002", "1003", "1005"}
    assert len(raws) == 3 and all(raw is not None for raw in raws)
    again = import_usb(site.settings, site.engine, export, "t01")
    assert (again.new, again.quarantined) == (0, 0)


def test_bad_lines_after_the_first_twenty_are_summarised(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "1_attlog.dat"
    lines = [real_line("1001", "2026-11-16 08:00:00")]
    lines += [real_line(str(2000 + n), "2026-02-30 08:00:00") for n in range(300)]
    lines += [b"garbage\r\n"] * 200
    export.write_bytes(b"".join(lines))
    code = main(
        [
            "--config",
            str(site.folder / "devices.yaml"),
            "import-usb",
            str(export),
            "--device",
            "t01",
        ]
    )
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert len(err) == 21
    assert err[0].endswith("line 2: time '2026-02-30 08:00:00' is not a real date and time")
    assert "480 more bad lines" in err[-1]
    assert "impossible date 300" in err[-1] and "not tab-separated 200" in err[-1]


def test_a_large_export_imports_in_bounded_memory(sqlite_url: str, tmp_path: Path) -> None:
    """20 MB: NUL runs, very long garbage lines and 25,000 records (more than one batch); the
    import holds a batch at a time, never the file."""
    site = make_site(tmp_path, sqlite_url)
    export = tmp_path / "1_attlog.dat"
    start = dt.datetime(2026, 1, 5, 7, 0)
    with export.open("wb") as handle:
        for block in range(5):
            records = b"".join(
                real_line(
                    str(1000 + n % 50),
                    f"{start + dt.timedelta(minutes=block * 5_000 + n):%Y-%m-%d %H:%M:%S}",
                )
                for n in range(5_000)
            )
            handle.write(records)
            handle.write(b"\0" * 2_000_000)  # a run of unwritten flash
            handle.write(b"x" * 2_000_000 + b"\r\n")  # one absurdly long line
    size = export.stat().st_size
    assert size > 18_000_000
    tracemalloc.start()
    try:
        result = import_usb(site.settings, site.engine, export, "t01")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.new, result.bad_count) == (25_000, 5)
    assert peak < size / 2, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_an_endless_device_is_refused(site: Site, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a regular file"):
        import_usb(site.settings, site.engine, Path("/dev/zero"), "t01")
    with pytest.raises(UserError, match="folder"):
        import_usb(site.settings, site.engine, tmp_path, "t01")
