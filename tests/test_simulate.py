"""`clockd simulate` as a user runs it: a process serving the config's terminals, read with
the real pyzk client over TCP and UDP."""

from __future__ import annotations

import datetime as dt
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zk import ZK
from zk import const as zk_const

from clockd.zk import wire
from tests.cli_runner import environment, run_clockd, spawn_clockd

ROSTER = "user_id,name,role\n1001,张三,机关干部\n1002,李四,驻村干部\n1003,王五,ordinary\n"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_site(folder: Path) -> dict[str, int]:
    ports = {"t01": free_port(socket.SOCK_STREAM), "t02": free_port(socket.SOCK_DGRAM)}
    (folder / "roster.csv").write_text(ROSTER, encoding="utf-8")
    (folder / "devices.yaml").write_text(
        f"""\
township: 测试镇
roster: roster.csv
terminals:
  - {{id: t01, village: 东村, host: 127.0.0.1, port: {ports["t01"]}, serial: SIM001,
     installed: 2025-01-01, record_size: 16, comm_key_env: SIM_KEY}}
  - {{id: t02, village: 西村, host: 127.0.0.1, port: {ports["t02"]}, transport: udp,
     serial: SIM002, installed: 2025-01-01, record_size: 49}}
  - {{id: t03, village: 远村, host: 10.20.30.40, serial: REAL003, installed: 2025-01-01}}
""",
        encoding="utf-8",
    )
    return ports


@contextmanager
def simulate(folder: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = spawn_clockd("simulate", *args, cwd=folder, env={"SIM_KEY": "4242"})
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if first != "ready\n":
            process.kill()
            raise AssertionError(f"simulate did not get ready: {first!r} {process.stderr.read()}")  # type: ignore[union-attr]
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


def read_log(port: int, *, udp: bool, key: int = 0) -> tuple[str, list[wire.AttendanceRecord]]:
    terminal = ZK("127.0.0.1", port=port, timeout=5, password=key, force_udp=udp, ommit_ping=True)
    terminal.connect()
    try:
        serial = terminal.get_serialnumber()
        terminal.read_sizes()
        users, _ = terminal.read_with_buffer(zk_const.CMD_USERTEMP_RRQ, zk_const.FCT_USER)
        uid_map = {
            u.uid: u.user_id for u in wire.decode_users_buffer(users, terminal.users, "gbk").records
        }
        data, _ = terminal.read_with_buffer(zk_const.CMD_ATTLOG_RRQ)
        records = wire.decode_attendance_buffer(data, terminal.records, uid_map).records
        return serial, list(records)
    finally:
        terminal.disconnect()


def test_simulate_serves_the_csv_punches_until_sigterm(tmp_path: Path) -> None:
    ports = write_site(tmp_path)
    (tmp_path / "punches.csv").write_text(
        "device,user_id,timestamp\n"
        "t01,1001,2026-11-16 08:01:00\n"
        "t01,1002,2026-11-16 14:30:00\n"
        "t02,1003,2026-11-17 09:00:05\n",
        encoding="utf-8",
    )
    with simulate(tmp_path, "--punches", "punches.csv") as process:
        serial, records = read_log(ports["t01"], udp=False, key=4242)
        assert serial == "SIM001"
        assert [(r.user_id, r.timestamp) for r in records] == [
            ("1001", dt.datetime(2026, 11, 16, 8, 1)),
            ("1002", dt.datetime(2026, 11, 16, 14, 30)),
        ]
        serial, records = read_log(ports["t02"], udp=True)
        assert serial == "SIM002"
        assert [(r.user_id, r.timestamp) for r in records] == [
            ("1003", dt.datetime(2026, 11, 17, 9, 0, 5))
        ]
        # Users are enrolled from the roster, names in the terminal's encoding.
        terminal = ZK(
            "127.0.0.1",
            port=ports["t02"],
            timeout=5,
            force_udp=True,
            ommit_ping=True,
            encoding="gbk",
        )
        terminal.connect()
        names = {u.user_id: u.name for u in terminal.get_users()}
        terminal.disconnect()
        assert names == {"1001": "张三", "1002": "李四", "1003": "王五"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert "serving 2 emulated terminals (3 cadres enrolled, 3 punches)" in process.stderr.read()  # type: ignore[union-attr]


def test_simulate_synthetic_town_is_reproducible(tmp_path: Path) -> None:
    ports = write_site(tmp_path)
    logs = []
    for _ in range(2):
        with simulate(tmp_path, "--weeks", "2", "--seed", "7"):
            logs.append(read_log(ports["t01"], udp=False, key=4242)[1])
    assert logs[0] == logs[1]
    assert len(logs[0]) > 5
    days = {r.timestamp.date() for r in logs[0]}
    today = dt.date.today()
    assert max(days) < today - dt.timedelta(days=today.weekday())  # complete weeks only


def test_simulate_rejects_bad_punch_files_line_by_line(tmp_path: Path) -> None:
    write_site(tmp_path)
    (tmp_path / "bad.csv").write_text(
        "device,user_id,timestamp\nt01,1001,yesterday\nt09,1001,2026-11-16 08:00:00\n"
        "t03,1001,2026-11-16 08:00:00\nt01,1001\n",
        encoding="utf-8",
    )
    result = run_clockd("simulate", "--punches", "bad.csv", cwd=tmp_path, env={"SIM_KEY": "1"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "clockd: bad.csv: line 2: 'yesterday' is not a time (YYYY-MM-DD HH:MM:SS)",
        "clockd: bad.csv: line 3: unknown or non-loopback terminal 't09'",
        "clockd: bad.csv: line 4: unknown or non-loopback terminal 't03'",
        "clockd: bad.csv: line 5: expected 3 fields, found 2",
    ]


def test_simulate_needs_the_comm_key_variable(tmp_path: Path) -> None:
    write_site(tmp_path)
    assert "SIM_KEY" not in environment()
    result = run_clockd("simulate", cwd=tmp_path)
    assert result.returncode == 1
    assert "terminal t01: environment variable SIM_KEY (its comm key) is not set" in result.stderr


def test_simulate_reports_a_port_in_use(tmp_path: Path) -> None:
    ports = write_site(tmp_path)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", ports["t01"]))
        holder.listen()
        result = run_clockd("simulate", cwd=tmp_path, env={"SIM_KEY": "1"})
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr
