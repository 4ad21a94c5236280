"""devices.yaml: the committed sample, defaults, and readable errors for bad files."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from clockd.config import ClearWhenAbove, load_settings
from clockd.domain import Role
from clockd.errors import ConfigError, UserError
from tests.conftest import REPO

MINIMAL = """\
township: 测试镇
roster: roster.csv
terminals:
  - id: t01
    village: 东村
    host: 10.0.0.5
    serial: SN001
    installed: 2025-01-01
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    return caught.value.problems


def test_committed_sample_is_valid_and_matches_the_packaged_one() -> None:
    settings = load_settings(REPO / "devices.yaml", environ={})
    assert settings.township == "官埠桥镇"
    assert len(settings.terminals) == 16
    assert len({t.village for t in settings.terminals}) == 16
    assert all(t.is_loopback for t in settings.terminals)
    assert {t.transport for t in settings.terminals} == {"tcp", "udp"}
    assert (REPO / "devices.yaml").read_bytes() == (REPO / "clockd/data/devices.yaml").read_bytes()


def test_defaults_follow_the_spec(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={})
    assert settings.timezone == "Asia/Shanghai"
    assert settings.database_url == "sqlite:///clockd.sqlite3"
    assert settings.rules.morning.start == dt.time(5) and settings.rules.morning.end == dt.time(12)
    assert settings.rules.afternoon.start == dt.time(12)
    assert settings.rules.afternoon.end == dt.time(21)
    assert settings.rules.base_days == {Role.ORDINARY: 2, Role.RESIDENT: 3}
    assert settings.rules.deduction_yuan == 100
    assert settings.rules.same_village_required is False
    assert settings.poll.clear_policy == "never"
    assert settings.poll.max_drift_seconds == 60
    assert settings.poll.future_tolerance_minutes == 10
    assert settings.poll.capacity_warn_percent == 80
    terminal = settings.terminals[0]
    assert (terminal.port, terminal.transport, terminal.encoding) == (4370, "tcp", "gbk")
    assert settings.roster_path == tmp_path.resolve() / "roster.csv"


def test_unquoted_clock_times_are_times_not_base_60_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """\
rules:
  morning: {start: 6:00, end: 12:00}
  afternoon: {start: 12:00, end: 20:30}
  base_days: {机关干部: 2, 驻村干部: 4}
schedule:
  weekly: {weekday: tue, time: 8:15}
poll:
  clear_policy: {when_above_percent: 90}
""",
    )
    settings = load_settings(path, environ={})
    assert settings.rules.morning.start == dt.time(6)
    assert settings.rules.afternoon.end == dt.time(20, 30)
    assert settings.rules.base_days[Role.RESIDENT] == 4
    assert settings.schedule.weekly.time == dt.time(8, 15)
    assert settings.poll.clear_policy == ClearWhenAbove(when_above_percent=90)


def test_every_problem_is_reported_with_its_field_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        township: 测试镇
        timezone: Mars/Olympus
        roster: roster.csv
        poll:
          intervall_minutes: 5
          concurrency: 0
          clear_policy: sometimes
        rules:
          morning: {start: "12:00", end: "05:00"}
        terminals:
          - id: t01
            village: 东村
            host: 10.0.0.5
            port: 70000
            serial: SN001
            installed: 2025-13-01
          - id: t02
            village: 西村
            host: 10.0.0.6
            installed: 2025-01-01
            transport: sctp
            encoding: klingon
        """,
    )
    found = problems(path)
    text = "\n".join(found)
    assert "timezone (line 2): unknown time zone 'Mars/Olympus'" in text
    assert "poll.intervall_minutes (line 5): unknown setting" in text
    assert "poll.concurrency (line 6):" in text
    assert "poll.clear_policy (line 7):" in text
    assert "rules.morning (line 9): start 12:00:00 must be before end 05:00:00" in text
    assert "terminals[0].port (line 14):" in text
    assert "terminals[0].installed (line 16):" in text
    assert "terminals[1].serial (line 17): required setting is missing" in text
    assert "terminals[1].transport (line 21):" in text
    assert "terminals[1].encoding (line 22): unknown text encoding 'klingon'" in text
    # One line per problem, nothing folded together.
    assert all("\n" not in line for line in found)
    assert len(found) >= 10


def test_duplicate_terminals_and_yaml_syntax(tmp_path: Path) -> None:
    duplicate = MINIMAL + textwrap.indent(
        "- id: t01\n  village: 西村\n  host: 10.0.0.5\n  serial: SN001\n  installed: 2025-01-01\n",
        "  ",
    )
    text = "\n".join(problems(write(tmp_path, duplicate)))
    assert "terminals[1] repeats the id of terminals[0]" in text
    assert "terminals[1] repeats the serial of terminals[0]" in text
    assert "terminals[1] repeats the host/port/transport of terminals[0]" in text

    broken = write(tmp_path, "township: x\nterminals: [\n  - id: t01\n")
    assert problems(broken)[0].startswith("line ")


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="configuration file not found"):
        load_settings(tmp_path / "nope.yaml", environ={})
    assert problems(write(tmp_path, "- just\n- a list\n")) == [
        "the file must be a mapping of settings (key: value)"
    ]


def test_environment_overrides(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, MINIMAL),
        environ={"CLOCKD_DATABASE_URL": "postgresql://x@db/clockd", "CLOCKD_REPORTS_DIR": "/srv/r"},
    )
    assert settings.database_url == "postgresql://x@db/clockd"
    assert settings.reports_dir == Path("/srv/r")


def test_comm_key_comes_from_the_named_variable_only(tmp_path: Path) -> None:
    path = write(
        tmp_path, MINIMAL.replace("    installed:", "    comm_key_env: KEY_T01\n    installed:")
    )
    terminal = load_settings(path, environ={}).terminals[0]
    assert terminal.comm_key({"KEY_T01": " 123456 "}) == 123456
    with pytest.raises(UserError, match=r"terminal t01: environment variable KEY_T01 .* not set"):
        terminal.comm_key({})
    with pytest.raises(UserError, match="must hold a numeric comm key"):
        terminal.comm_key({"KEY_T01": "secret"})
    no_key = load_settings(write(tmp_path, MINIMAL), environ={}).terminals[0]
    assert no_key.comm_key({}) == 0


def test_holiday_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """\
holidays:
  - {date: 2026-12-31, workday: false, note: 镇里安排}
  - {from: 2027-01-01, to: 2027-01-03, workday: false}
  - {date: 2027-01-04, from: 2027-01-04, workday: true}
""",
    )
    found = problems(path)
    assert found == ["holidays[2] (line 12): give either date, or from and to"]
    path.write_text(path.read_text().rsplit("  - {date: 2027-01-04", 1)[0], encoding="utf-8")
    overrides = load_settings(path, environ={}).holiday_overrides()
    assert overrides == {
        dt.date(2026, 12, 31): False,
        dt.date(2027, 1, 1): False,
        dt.date(2027, 1, 2): False,
        dt.date(2027, 1, 3): False,
    }
