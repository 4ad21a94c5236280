"""Ingestion benchmark: clockd's poll against pyzk's own reader, on emulated terminals.

The emulated terminals run in a child process (so they never compete with the poller for the
GIL) and are read over loopback TCP. Measures, side by side in one run:

1. one terminal with 100,000 40-byte records and 50 users: clockd's full poll (download,
   decode, store into a fresh SQLite file) versus pyzk's get_attendance() (download + decode)
   and versus the bare transfer (read_with_buffer);          target: clockd <= 0.25x pyzk
2. the same with 16-byte records and 3,000 users;            target: clockd >= 20x faster
3. a re-poll of the unchanged 100,000-record terminal;       target: 0 new rows
4. 16 terminals of 5,000 punches plus 2 that never answer, timeout 5 s: one poll cycle's
   wall time;                                                 target: < 1.5x the timeout
5. 200 terminals of 2,000 punches: punches stored per second and the poller's peak memory.

Prints a table and exits 1 when a target is missed. Usage: python scripts/bench/ingest.py
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zk import ZK
from zk import const as zk_const

from clockd.config import Settings
from clockd.ingest.poll import poll_cycle
from clockd.store import db
from clockd.textui import render_table

ZONE = "Asia/Shanghai"
START = dt.datetime(2025, 6, 2, 7, 0)


# --- the emulator process ---------------------------------------------------------------------


def serve(spec: list[dict[str, Any]]) -> None:
    """Child process: build the devices of `spec`, print their ports, serve until stdin closes."""
    from clockd.sim.emulator import EmulatedDevice, EmulatorServer, Faults

    with EmulatorServer() as server:
        ports = []
        for index, item in enumerate(spec):
            size = item["record_size"]
            device = EmulatedDevice(
                f"BENCH{index:05d}",
                attendance_record_size=size,
                user_record_size=28 if size in (8, 16) else 72,
                record_capacity=200_000,
                user_capacity=5_000,
                zone=ZONE,
            )
            users = item["users"]
            for number in range(users):
                device.add_user(str(10_001 + number), f"干部{number}")
            device.add_punches(_punches(users, item["punches"]))
            if item.get("hang"):
                device.faults = Faults(hang=True)
            ports.append(server.add(device, transport="tcp").port)
        print(json.dumps(ports), flush=True)
        sys.stdin.read()


class _Punch:
    __slots__ = ("state", "timestamp", "user_id", "verify", "workcode")

    def __init__(self, user_id: str, timestamp: dt.datetime) -> None:
        self.user_id, self.timestamp = user_id, timestamp
        self.verify, self.state, self.workcode = 1, 0, 0


def _punches(users: int, count: int) -> Iterator[_Punch]:
    for index in range(count):
        yield _Punch(str(10_001 + index % users), START + dt.timedelta(minutes=3 * index))


@contextmanager
def terminals(spec: list[dict[str, Any]]) -> Iterator[list[int]]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(spec) + "\n")
    child.stdin.flush()
    try:
        ports: list[int] = json.loads(child.stdout.readline())
        yield ports
    finally:
        child.stdin.close()
        child.wait(timeout=30)


# --- measurements -----------------------------------------------------------------------------


def settings_for(ports: list[int], database: Path, timeout: float = 10) -> Settings:
    return Settings.model_validate(
        {
            "township": "bench",
            "timezone": ZONE,
            "roster": "roster.csv",
            "database_url": f"sqlite:///{database}",
            "poll": {"timeout_seconds": timeout, "retries": 0, "concurrency": 16},
            "terminals": [
                {
                    "id": f"b{index:03d}",
                    "village": f"村{index:03d}",
                    "host": "127.0.0.1",
                    "port": port,
                    "serial": f"BENCH{index:05d}",
                    "installed": "2025-01-01",
                }
                for index, port in enumerate(ports)
            ],
        }
    )


def fresh_engine(folder: Path, name: str) -> Any:
    """A migrated, empty SQLite store at folder/name (whatever a reused folder held there)."""
    for leftover in (name, f"{name}-wal", f"{name}-shm"):
        (folder / leftover).unlink(missing_ok=True)
    engine = db.make_engine(f"sqlite:///{folder / name}")
    db.migrate(engine)
    return engine


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def pyzk_attendance(port: int) -> int:
    terminal = ZK("127.0.0.1", port=port, timeout=60, ommit_ping=True)
    terminal.connect()
    try:
        return len(terminal.get_attendance())
    finally:
        terminal.disconnect()


def pyzk_transfer(port: int) -> int:
    terminal = ZK("127.0.0.1", port=port, timeout=60, ommit_ping=True)
    terminal.connect()
    try:
        _data, size = terminal.read_with_buffer(zk_const.CMD_ATTLOG_RRQ)
        return int(size)
    finally:
        terminal.disconnect()


def clockd_poll(folder: Path, port: int, tag: str) -> tuple[float, int]:
    """Best of three full polls, each into a fresh SQLite file; returns (seconds, new rows)."""
    best, new = float("inf"), -1
    for attempt in range(3):
        engine = fresh_engine(folder, f"{tag}-{attempt}.sqlite3")
        settings = settings_for([port], folder / f"{tag}-{attempt}.sqlite3")
        seconds, outcomes = timed(lambda: poll_cycle(settings, engine))  # noqa: B023
        assert outcomes[0].ok, outcomes[0].line()
        best, new = min(best, seconds), outcomes[0].new
    return best, new


def single_terminal(folder: Path, record_size: int, users: int, rows: list[list[str]]) -> bool:
    label = f"{record_size}-byte records, {users} users"
    with terminals([{"record_size": record_size, "users": users, "punches": 100_000}]) as ports:
        port = ports[0]
        transfer = min(timed(lambda: pyzk_transfer(port))[0] for _ in range(3))
        pyzk_seconds, count = timed(lambda: pyzk_attendance(port))
        clockd_seconds, new = clockd_poll(folder, port, f"s{record_size}")
        engine = fresh_engine(folder, f"repoll{record_size}.sqlite3")
        settings = settings_for([port], folder / f"repoll{record_size}.sqlite3")
        poll_cycle(settings, engine)
        repoll_seconds, outcomes = timed(lambda: poll_cycle(settings, engine))
    ratio = clockd_seconds / pyzk_seconds
    if record_size == 40:
        ok = ratio <= 0.25 and new == 100_000 and count == 100_000
        target = "clockd <= 0.25x pyzk"
    else:
        ok = pyzk_seconds / clockd_seconds >= 20 and new == 100_000
        target = "clockd >= 20x faster"
    rows.append([f"{label}: bare transfer (read_with_buffer)", f"{transfer:.3f} s", "", ""])
    rows.append([f"{label}: pyzk get_attendance()", f"{pyzk_seconds:.3f} s", "", ""])
    rows.append(
        [
            f"{label}: clockd full poll (to SQLite)",
            f"{clockd_seconds:.3f} s = {ratio:.3f}x pyzk ({1 / ratio:.0f}x faster)",
            target,
            "ok" if ok else "MISSED",
        ]
    )
    repoll_ok = outcomes[0].new == 0 and outcomes[0].duplicates == 100_000
    rows.append(
        [
            f"{label}: re-poll unchanged",
            f"{outcomes[0].new} new rows, {repoll_seconds:.3f} s",
            "0 new",
            "ok" if repoll_ok else "MISSED",
        ]
    )
    return ok and repoll_ok


def hung_terminals(folder: Path, rows: list[list[str]]) -> bool:
    spec = [{"record_size": 40, "users": 40, "punches": 5_000} for _ in range(16)]
    spec += [{"record_size": 40, "users": 40, "punches": 5_000, "hang": True} for _ in range(2)]
    with terminals(spec) as ports:
        engine = fresh_engine(folder, "hung.sqlite3")
        settings = settings_for(ports, folder / "hung.sqlite3", timeout=5)
        seconds, outcomes = timed(lambda: poll_cycle(settings, engine))
    good = sum(o.ok for o in outcomes)
    ok = seconds < 1.5 * 5 and good == 16 and sum(o.new for o in outcomes) == 16 * 5_000
    rows.append(
        [
            "16 terminals x 5,000 + 2 hung (timeout 5 s): one cycle",
            f"{seconds:.2f} s = {seconds / 5:.2f}x timeout, {good}/18 ok",
            "< 1.5x timeout",
            "ok" if ok else "MISSED",
        ]
    )
    return ok


POLL_ONLY = """
import json, sys, time
from scripts.bench.ingest import settings_for, fresh_engine
from clockd.ingest.poll import poll_cycle
from pathlib import Path
folder, ports = Path(sys.argv[1]), json.loads(sys.argv[2])
engine = fresh_engine(folder, "many.sqlite3")
settings = settings_for(ports, folder / "many.sqlite3")
began = time.perf_counter()
outcomes = poll_cycle(settings, engine)
seconds = time.perf_counter() - began
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(json.dumps([seconds, sum(o.new for o in outcomes), sum(o.ok for o in outcomes), int(peak)]))
"""


def many_terminals(folder: Path, rows: list[list[str]]) -> bool:
    spec = [{"record_size": 40, "users": 30, "punches": 2_000} for _ in range(200)]
    with terminals(spec) as ports:
        result = subprocess.run(
            [sys.executable, "-c", POLL_ONLY, str(folder), json.dumps(ports)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
    seconds, new, good, peak_kb = json.loads(result.stdout)
    ok = new == 200 * 2_000 and good == 200
    rows.append(
        [
            "200 terminals x 2,000: one cycle",
            f"{seconds:.2f} s, {new / seconds:,.0f} punches/s, peak {peak_kb / 1024:.0f} MB",
            "all stored",
            "ok" if ok else "MISSED",
        ]
    )
    return ok


def main() -> int:
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="clockd-bench-") as tmp:
        folder = Path(tmp)
        results = [
            single_terminal(folder, 40, 50, rows),
            single_terminal(folder, 16, 3_000, rows),
            hung_terminals(folder, rows),
            many_terminals(folder, rows),
        ]
    print(render_table(["measure", "value", "target", "result"], rows))
    return 0 if all(results) else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve(json.loads(sys.stdin.readline()))
    else:
        sys.exit(main())
