"""The command line as a user runs it: real files, real databases; in this process through
`main(argv)`, and once as a real process through `python -m clockd`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clockd.cli import build_parser
from tests.cli_runner import run_clockd, run_clockd_process
from tests.conftest import REPO

CONFIG = """\
township: 测试镇
database_url: sqlite:///test.sqlite3
roster: roster.csv
terminals:
  - id: t01
    village: 东村
    host: 127.0.0.1
    port: 4371
    serial: SN001
    installed: 2025-01-01
  - id: t02
    village: 西村
    host: 127.0.0.1
    port: 4372
    transport: udp
    serial: SN002
    installed: 2025-01-01
"""
ROSTER = "user_id,name,role,village\n1001,张三,机关干部,\n1002,李四,驻村干部,东村\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "devices.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    return tmp_path


def subcommand_paths() -> list[list[str]]:
    parser = build_parser()
    paths: list[list[str]] = []

    def walk(p: object, prefix: list[str]) -> None:
        for action in getattr(p, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(parser, [])
    return paths


@pytest.mark.parametrize("command", subcommand_paths(), ids=" ".join)
def test_every_command_has_help_and_the_common_options(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "--config PATH" in text
    assert "--verbose" in text


def test_init_then_devices_on_sqlite(site: Path) -> None:
    first = run_clockd("init", cwd=site)
    assert first.returncode == 0, first.stderr
    assert "created database sqlite:///test.sqlite3" in first.stdout
    assert "roster: 2 cadres" in first.stdout
    assert (site / "test.sqlite3").exists()
    again = run_clockd("init", cwd=site)
    assert again.returncode == 0
    assert "is up to date" in again.stdout

    devices = run_clockd("devices", cwd=site)
    assert devices.returncode == 0, devices.stderr
    lines = devices.stdout.splitlines()
    assert lines[0].split()[:3] == ["terminal", "village", "serial"]
    assert lines[2].split()[:4] == ["t01", "东村", "SN001", "never"]
    assert lines[3].split()[:4] == ["t02", "西村", "SN002", "never"]


@pytest.mark.postgres
def test_init_then_devices_on_postgresql(site: Path, pg_url: str) -> None:
    env = {"CLOCKD_DATABASE_URL": pg_url}
    first = run_clockd("init", cwd=site, env=env)
    assert first.returncode == 0, first.stderr
    assert "created database postgresql+psycopg://postgres@127.0.0.1" in first.stdout
    assert not (site / "test.sqlite3").exists()
    assert run_clockd("init", cwd=site, env=env).returncode == 0
    devices = run_clockd("--config", str(site / "devices.yaml"), "devices", cwd=REPO, env=env)
    assert devices.returncode == 0, devices.stderr
    assert "SN002" in devices.stdout


def test_a_broken_config_names_every_field_and_touches_nothing(site: Path) -> None:
    (site / "devices.yaml").write_text(
        CONFIG.replace("port: 4372", "port: 99999").replace("    serial: SN001\n", ""),
        encoding="utf-8",
    )
    result = run_clockd("init", cwd=site)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert any("terminals[0].serial" in line and "(line 5)" in line for line in errors)
    assert any("terminals[1].port (line 13)" in line for line in errors)
    assert all(line.startswith("clockd: ") for line in errors)
    assert not (site / "test.sqlite3").exists()


def test_a_broken_roster_stops_init_before_the_database(site: Path) -> None:
    (site / "roster.csv").write_text(ROSTER + "1002,王五,boss,\n", encoding="utf-8")
    result = run_clockd("init", cwd=site)
    assert result.returncode == 2
    assert "row 4, column user_id: 1002 repeats row 3" not in result.stderr  # row-level first
    assert "row 4, column role: unknown role 'boss'" in result.stderr
    assert not (site / "test.sqlite3").exists()


def test_user_mistakes_are_one_line_without_traceback(site: Path, tmp_path: Path) -> None:
    missing = run_clockd("--config", str(tmp_path / "nope.yaml"), "devices", cwd=site)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "configuration file not found" in missing.stderr

    not_initialised = run_clockd("devices", cwd=site)
    assert not_initialised.returncode == 1
    assert "not initialised: run `clockd init`" in not_initialised.stderr
    assert "Traceback" not in not_initialised.stderr

    bad_url = run_clockd("devices", cwd=site, env={"CLOCKD_DATABASE_URL": "nonsense"})
    assert bad_url.returncode == 2 and "database URL 'nonsense' is not valid" in bad_url.stderr

    unknown = run_clockd("frobnicate", cwd=site)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_init_in_an_empty_folder_writes_working_samples(tmp_path: Path) -> None:
    result = run_clockd_process("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "devices.yaml").read_bytes() == (REPO / "devices.yaml").read_bytes()
    assert (tmp_path / "roster.csv").read_bytes() == (REPO / "roster.csv").read_bytes()
    assert "roster: 47 cadres" in result.stdout
    assert (tmp_path / "clockd.sqlite3").exists()


def test_init_beside_an_own_config_writes_an_empty_roster_for_its_villages(site: Path) -> None:
    """The sample roster names the sample town's villages: beside a config of one's own it
    would fail at once, so init writes the roster's header and says what to fill in."""
    (site / "roster.csv").unlink()
    result = run_clockd("init", cwd=site)
    assert result.returncode == 0, result.stderr
    assert (site / "roster.csv").read_text(encoding="utf-8-sig") == (
        "user_id,name,role,village,department,active_from,active_to\n"
    )
    assert "wrote an empty roster (its header only)" in result.stdout
    assert "then run `clockd init` again" in result.stdout
    (site / "roster.csv").write_text(ROSTER, encoding="utf-8")
    again = run_clockd("init", cwd=site)
    assert again.returncode == 0 and "roster: 2 cadres" in again.stdout, again.stderr

    # A roster kept as YAML or as a workbook gets the same, in its own format.
    for name in ("roster.yaml", "roster.xlsx"):
        config = CONFIG.replace("roster: roster.csv", f"roster: {name}")
        (site / "devices.yaml").write_text(config, encoding="utf-8")
        result = run_clockd("init", cwd=site)
        assert result.returncode == 0 and "wrote an empty roster" in result.stdout, result.stderr
        again = run_clockd("init", cwd=site)  # read as a roster, it lists nobody yet
        assert again.returncode == 2 and "the roster lists no cadres" in again.stderr


def test_postgresql_without_its_driver_names_the_extra(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` meets when absent
    url = {"CLOCKD_DATABASE_URL": "postgresql://clockd@127.0.0.1/clockd"}
    result = run_clockd("devices", cwd=site, env=url)
    assert result.returncode == 2
    assert result.stderr == (
        "clockd: PostgreSQL needs the psycopg driver: pip install 'clockd[postgres]'\n"
    )
