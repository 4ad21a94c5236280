"""Files and arguments from outside: bounded memory whatever they hold, duplicate keys named,
one line of error (never a traceback), the database password never printed, the last good
roster kept by the daemon whatever breaks the file."""

from __future__ import annotations

import logging
import os
import re
import resource
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from clockd.cli import main
from clockd.config import load_settings
from clockd.errors import ConfigError, UserError
from clockd.roster import RosterFile, load_roster

CONFIG = """\
township: 测试镇
database_url: "sqlite:///{folder}/test.sqlite3"
roster: {roster}
reports_dir: "{folder}/reports"
terminals:
  - id: t01
    village: 东村
    host: 127.0.0.1
    port: 4371
    serial: SN001
    installed: 2025-01-01
"""
ROSTER = "user_id,name,role\n1001,张三,机关干部\n1002,李四,驻村干部\n"


def make(tmp_path: Path, roster: str = "roster.csv") -> Path:
    config = tmp_path / "devices.yaml"
    config.write_text(CONFIG.format(folder=tmp_path, roster=roster), encoding="utf-8")
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    return config


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, expected: str) -> None:
    """Exit 2 with exactly one `clockd: ...` line on stderr that says `expected`."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("clockd: "), err
    assert "Traceback" not in err
    assert expected in lines[0], err


# --- item 12: xlsx dimensions and YAML alias bombs ---------------------------------------------


def test_an_xlsx_with_a_far_away_cell_is_refused_without_reading_it(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["user_id", "name", "role"])
    sheet.append(["1001", "张三", "机关干部"])
    sheet["XFD1048576"] = "x"
    path = tmp_path / "roster.xlsx"
    workbook.save(path)
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="1048576 rows") as caught:
            load_roster(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "XFD1048576" in str(caught.value)
    assert peak < 20_000_000


def test_an_xlsx_without_dimensions_is_still_read_in_bounds(tmp_path: Path) -> None:
    """A workbook that does not declare its size (no <dimension>) is streamed a bounded
    number of rows and cells, whatever its stray cell says."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["user_id", "name", "role"])
    sheet.append(["1001", "张三", "机关干部"])
    sheet["XFD1048576"] = "x"
    declared = tmp_path / "declared.xlsx"
    workbook.save(declared)
    path = tmp_path / "roster.xlsx"
    with zipfile.ZipFile(declared) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = re.sub(rb"<dimension[^>]*/>", b"", data)
            target.writestr(item, data)
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="more than 100000 rows"):
            load_roster(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def alias_bomb() -> str:
    """Anchors l0..l9, each a list of ten of the one before: l9 stands for 10**10 strings."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 10)]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_in_a_text_cell_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(
        alias_bomb() + 'cadres:\n  - {user_id: "1001", name: 张三, role: ordinary, village: *l9}\n',
        encoding="utf-8",
    )
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as caught:
            load_roster(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any("aliases" in problem for problem in caught.value.problems), caught.value
    assert peak < 20_000_000


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            - &base {user_id: "1001", name: 张三, role: ordinary}
            - {<<: *base, user_id: "1002", name: 李四}
            """
        ),
        encoding="utf-8",
    )
    assert [cadre.user_id for cadre in load_roster(path)] == ["1001", "1002"]


def test_a_config_alias_bomb_is_refused(tmp_path: Path) -> None:
    config = make(tmp_path)
    config.write_text(alias_bomb() + config.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert any("aliases" in problem for problem in caught.value.problems), caught.value


# --- item 14: duplicate keys ------------------------------------------------------------------


def test_duplicate_keys_in_devices_yaml_name_both_lines(tmp_path: Path) -> None:
    config = make(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8")
        + textwrap.dedent(
            """\
            terminals:
              - id: t02
                village: 西村
                host: 127.0.0.1
                serial: SN002
                installed: 2025-01-01
                serial: SN003
            """
        ),
        encoding="utf-8",
    )
    # Without an anchor (no `&`) only repeated keys are looked for; with one, the alias check
    # walks the tree as well: both find the same repeats.
    plain = config.read_text(encoding="utf-8")
    for text in (plain, plain.replace("village: 东村", "village: &home 东村")):
        config.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(config, environ={})
        assert caught.value.problems == [
            "line 12: key 'terminals' repeats line 5",
            "line 18: key 'serial' repeats line 16",
        ]


# --- item 13: the daemon keeps the last good roster -----------------------------------------


@pytest.mark.parametrize("breakage", ["directory", "gbk yaml", "permission", "binary"])
def test_any_roster_breakage_keeps_the_last_good_roster_and_logs_once(
    tmp_path: Path, breakage: str, caplog: pytest.LogCaptureFixture
) -> None:
    if breakage == "permission" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "roster.yaml"
    path.write_text('- {user_id: "1001", name: 张三, role: ordinary}\n', encoding="utf-8")
    roster = RosterFile(path)
    assert [c.user_id for c in roster()] == ["1001"]
    if breakage == "directory":
        path.unlink()
        path.mkdir()
    elif breakage == "gbk yaml":
        path.write_bytes('- {user_id: "1001", name: 张三丰, role: ordinary}\n'.encode("gbk"))
    elif breakage == "permission":
        path.write_text('- {user_id: "1002", name: 李四, role: ordinary}\n', encoding="utf-8")
        path.chmod(0)
    else:
        path.write_bytes(b"\xff\xfe\x00garbage\x00" * 10)
    with caplog.at_level(logging.ERROR, logger="clockd.roster"):
        for _ in range(3):
            assert [c.user_id for c in roster()] == ["1001"]
    assert len(caplog.records) == 1
    assert "keeping the last good one" in caplog.records[0].getMessage()


# --- item 15: one line, never a traceback -----------------------------------------------------


@pytest.fixture
def initialised(tmp_path: Path) -> Path:
    config = make(tmp_path)
    assert run(config, "init") == 0
    return config


def test_a_roster_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make(tmp_path, roster="folder.csv")
    (tmp_path / "folder.csv").mkdir()
    one_line_error(capsys, run(config, "init"), "folder.csv: is a folder")


def test_an_unreadable_roster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    config = make(tmp_path)
    (tmp_path / "roster.csv").chmod(0)
    one_line_error(capsys, run(config, "init"), "roster.csv: cannot read")


def test_a_gbk_yaml_roster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make(tmp_path, roster="roster.yaml")
    (tmp_path / "roster.yaml").write_bytes(
        '- {user_id: "1001", name: 张三, role: ordinary}\n'.encode("gbk")
    )
    one_line_error(capsys, run(config, "init"), "roster.yaml: line 1: not UTF-8 text")


def test_a_gbk_devices_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make(tmp_path)
    config.write_bytes(config.read_text(encoding="utf-8").encode("gbk"))
    one_line_error(capsys, run(config, "devices"), "devices.yaml: line 1: not UTF-8 text")


def test_a_leave_file_that_is_a_folder(
    initialised: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "leave.csv").mkdir()
    capsys.readouterr()
    code = run(initialised, "leave", "import", str(tmp_path / "leave.csv"), "--by", "hr")
    one_line_error(capsys, code, "leave.csv: is a folder")


def test_a_reports_folder_that_is_a_file(
    initialised: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "reports").write_text("not a folder", encoding="utf-8")
    capsys.readouterr()
    code = run(initialised, "report", "weekly", "--week", "2026-W47")
    one_line_error(capsys, code, "reports")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["report", "weekly", "--week", "9999-W52"], "--week: 9999-W52 is out of range"),
        (["report", "monthly", "--month", "9999-12"], "--month: 9999-12 is out of range"),
        (["leave", "revoke", "99999999999999999999999"], "no leave entry #99999999999999999999999"),
    ],
)
def test_arguments_out_of_range(
    initialised: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    capsys.readouterr()
    code = run(initialised, *args)
    if args[0] == "leave":  # a number no entry can have is "no such entry", as for 5
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and expected in err, err
        return
    one_line_error(capsys, code, expected)


def test_demo_refuses_a_file_or_a_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine", encoding="utf-8")
    one_line_error(capsys, main(["demo", "--dir", str(afile)]), "is not a folder")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    one_line_error(capsys, main(["demo", "--dir", str(tmp_path / "link")]), "symbolic link")
    assert afile.read_text(encoding="utf-8") == "mine"
    assert not any((tmp_path / "real").iterdir())


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://clerk:s3cret@localhost:notaport/clockd",
        "mysql://clerk:s3cret@localhost/clockd",
        "oracle+nosuch://clerk:s3cret@localhost/clockd",
        "postgresql://clerk:s3cret@[::1/clockd",
    ],
)
def test_bad_database_urls_are_one_line_and_hide_the_password(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
) -> None:
    config = make(tmp_path)
    monkeypatch.setenv("CLOCKD_DATABASE_URL", url)
    code = run(config, "devices")
    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("clockd: database URL"), err


def test_endless_files_do_not_exhaust_memory(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_line_error(capsys, main(["--config", "/dev/zero", "devices"]), "not a regular file")
    code = run(initialised, "import-usb", "/dev/zero", "--device", "t01")
    err = capsys.readouterr().err
    assert code == 1 and "not a regular file" in err and err.count("\n") == 1
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 100_000


def test_a_huge_config_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make(tmp_path)
    with config.open("a", encoding="utf-8") as handle:
        handle.write("# " + "x" * 2_000_000 + "\n")
    one_line_error(capsys, run(config, "devices"), "larger than")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://clerk:s3cret@localhost:notaport/clockd",
        "postgresql+psycopg://clerk:s3cret@[::1/clockd",
        "postgresql://clerk:s3cret@db.example:5432/clockd",
    ],
)
def test_mask_url_hides_the_password_of_any_url(url: str) -> None:
    from clockd.store.db import mask_url

    masked = mask_url(url)
    assert "s3cret" not in masked and "clerk:***@" in masked
