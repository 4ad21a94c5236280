"""Benchmark: the weekly and monthly reports for a district and for the town, as cron runs them.

Builds a synthetic district (`clockd.sim.town.generate_district`: 10,000 cadres by default, the
town's share of village terminals, 56 weeks, about 5 million punches, with leave for one cadre
in twenty and one punch in a thousand quarantined, a tenth of those released) into an SQLite
file, and the 47-cadre town (a few weeks, stored through `ingest.store_collection` like a
poll), then runs `python -m clockd report ...` in fresh processes, timing each from process
start and reading its peak resident memory. `revise` brings late data (punches in the month
and in an earlier week, a leave entry, a released quarantine) so that the next run of the
monthly report writes a new revision. Prints a table and exits 1 if a target is missed.

The data is built in a child process too: a child's peak RSS starts from its parent's size at
fork, so the measuring process stays small (no numpy or pandas) to keep the figures honest.

    .venv/bin/python scripts/bench/reports.py [--cadres 10000] [--folder DIR]
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clockd.textui import render_table

if TYPE_CHECKING:
    from clockd.domain import Cadre
    from clockd.sim.town import TownTerminal

MONTH = "2026-10"  # the district's monthly notice
WEEK = "2026-W43"  # its weekly summary: the month's last week
FIRST_MONDAY = dt.date(2025, 9, 29)  # 56 weeks to 2026-10-25 cover the monthly statistics
WEEKS = 56
TOWN_WEEK = "2026-W47"
TOWN_START = dt.date(2026, 10, 26)
INSTALLED = dt.date(2025, 3, 1)
BATCH = 200_000
LEAVE_SHARE = 20  # one cadre in twenty takes leave
QUARANTINE_SHARE = 1000  # one punch in a thousand is quarantined

MONTHLY_SECONDS = 60.0
MONTHLY_BYTES = 2 * 1024**3
TOWN_WEEKLY_SECONDS = 3.0


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_bytes: int
    output: str


def compile_product() -> None:
    """Write the bytecode of clockd's modules, as `pip install` does (skipped where up to
    date). Python also writes it on first import, unless PYTHONDONTWRITEBYTECODE is set, as
    it is in some containers: every timed process would then compile clockd from source, a
    cost an installed product does not pay. Every benchmark that times a whole `clockd`
    process calls this first."""
    package = Path(__file__).resolve().parents[2] / "clockd"
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"could not compile {package}")


def run_clockd(folder: Path, *args: str) -> Run:
    """`python -m clockd ARGS` in a fresh process: wall time from start, peak RSS."""
    compile_product()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "clockd", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, unlike RUSAGE_CHILDREN
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"clockd {' '.join(args)} failed:\n{output}")
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    return Run(seconds, peak, output.strip())


def write_site(
    folder: Path, township: str, terminals: Sequence[TownTerminal], cadres: Sequence[Cadre]
) -> None:
    import pandas as pd

    lines = [
        f"township: {township}",
        f"database_url: sqlite:///{folder / 'clockd.sqlite3'}",
        "roster: roster.csv",
        "reports_dir: reports",
        "terminals:",
    ]
    for number, terminal in enumerate(terminals):
        lines += [
            f"  - id: {terminal.terminal_id}",
            f"    village: {terminal.village}",
            f"    host: 10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}",
            f"    serial: SN{terminal.terminal_id.upper()}",
            f"    installed: {INSTALLED.isoformat()}",
        ]
    (folder / "devices.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    roster = pd.DataFrame(
        {
            "user_id": [c.user_id for c in cadres],
            "name": [c.name for c in cadres],
            "role": [c.role.value for c in cadres],
            "village": [c.village or "" for c in cadres],
            "department": [c.department or "" for c in cadres],
        }
    )
    roster.to_csv(folder / "roster.csv", index=False)


def build_district(folder: Path, cadres: int) -> int:
    """The district's devices.yaml, roster and SQLite database; returns the punch count."""
    import numpy as np

    from clockd.sim.town import generate_district
    from clockd.store import db

    terminal_count = round(cadres * 16 / 47)
    district = generate_district(cadres, terminal_count, FIRST_MONDAY, WEEKS, seed=7)
    write_site(folder, "模拟区", district.terminals, district.cadres)
    engine = db.make_engine(f"sqlite:///{folder / 'clockd.sqlite3'}")
    db.migrate(engine)
    engine.dispose()
    punches = district.punches
    serials = np.array([f"SN{t.terminal_id.upper()}" for t in district.terminals], dtype=object)
    terminal_index = {t.terminal_id: n for n, t in enumerate(district.terminals)}
    codes = punches["terminal"].map(terminal_index).to_numpy()
    seconds = punches["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    finished = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    connection = sqlite3.connect(folder / "clockd.sqlite3")
    try:
        connection.execute("PRAGMA synchronous = OFF")
        connection.executemany(
            "INSERT INTO terminals (serial, terminal_id, village, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (serials[n], t.terminal_id, t.village, finished, finished)
                for n, t in enumerate(district.terminals)
            ],
        )
        connection.executemany(
            "INSERT INTO poll_runs (terminal_id, source, serial, started_at, finished_at, outcome,"
            " records_on_device, record_capacity, new_count, duplicate_count, quarantined_count,"
            " drift_seconds, clock_synced, cleared) VALUES (?, 'poll', ?, ?, ?, 'ok', 0, 100000,"
            " 0, 0, 0, 1.0, 0, 0)",
            [
                (t.terminal_id, serials[n], finished, finished)
                for n, t in enumerate(district.terminals)
            ],
        )
        statement = (
            "INSERT INTO punches (serial, user_id, punched_at, verify, state, workcode, source,"
            " ingested_at) VALUES (?, ?, datetime(?, 'unixepoch') || '.000000', 1, 0, 0, 'poll', ?)"
        )
        user_ids = punches["user_id"].to_numpy(dtype=object)
        for start in range(0, len(punches), BATCH):
            stop = min(start + BATCH, len(punches))
            connection.executemany(
                statement,
                zip(
                    serials[codes[start:stop]],
                    user_ids[start:stop],
                    seconds[start:stop].tolist(),
                    [finished] * (stop - start),
                    strict=True,
                ),
            )
        add_leave_and_quarantine(connection, [c.user_id for c in district.cadres], finished)
        connection.commit()
    finally:
        connection.close()
    return len(punches)


def add_leave_and_quarantine(
    connection: sqlite3.Connection, user_ids: Sequence[str], finished: str
) -> None:
    """Leave of two to five days for one cadre in twenty, spread over the weeks; one punch in a
    thousand quarantined (a clock fault), a tenth of those released by an operator."""
    days = WEEKS * 7
    leave = [
        (
            user_id,
            (FIRST_MONDAY + dt.timedelta(days=number * 37 % days)).isoformat(),
            (FIRST_MONDAY + dt.timedelta(days=number * 37 % days + 1 + number % 4)).isoformat(),
            "leave" if number % 3 else "business_trip",
            finished,
        )
        for number, user_id in enumerate(user_ids)
        if number % LEAVE_SHARE == 0
    ]
    connection.executemany(
        "INSERT INTO leave (user_id, start_date, end_date, kind, note, created_at, created_by)"
        " VALUES (?, ?, ?, ?, '', ?, 'bench')",
        leave,
    )
    connection.execute(
        "INSERT INTO quarantine (punch_id, serial, reason, detected_at, decision, decided_by,"
        " decided_at) SELECT id, serial, 'clock fault', ingested_at,"
        f" CASE WHEN id % {QUARANTINE_SHARE * 10} = 0 THEN 'release' END,"
        f" CASE WHEN id % {QUARANTINE_SHARE * 10} = 0 THEN 'bench' END,"
        f" CASE WHEN id % {QUARANTINE_SHARE * 10} = 0 THEN ingested_at END"
        f" FROM punches WHERE id % {QUARANTINE_SHARE} = 0"
    )


def revise(folder: Path, number: int) -> None:
    """Late data for the district's month and an earlier week, as a late upload and an
    operator bring it: the next monthly report is a new revision. `number` keeps each call's
    punches new."""
    connection = sqlite3.connect(folder / "clockd.sqlite3")
    try:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        serial = connection.execute("SELECT serial FROM terminals ORDER BY serial").fetchone()[0]
        user_ids = [row[0] for row in connection.execute("SELECT DISTINCT user_id FROM leave")]
        days = (dt.date(2026, 10, 7), dt.date(2026, 3, 11))  # in the month; in an earlier week
        punches = [
            (serial, user_id, f"{day} {hour:02d}:{number % 60:02d}:{second:02d}.000000", now)
            for day in days
            for user_id in user_ids[:200]
            for hour, second in ((9, number // 60 % 60), (15, number // 60 % 60))
        ]
        connection.executemany(
            "INSERT OR IGNORE INTO punches (serial, user_id, punched_at, verify, state, workcode,"
            " source, ingested_at) VALUES (?, ?, ?, 1, 0, 0, 'usb', ?)",
            punches,
        )
        connection.execute(
            "INSERT INTO leave (user_id, start_date, end_date, kind, note, created_at,"
            " created_by) VALUES (?, '2026-10-13', '2026-10-14', 'business_trip', '', ?, 'bench')",
            (user_ids[number % len(user_ids)], now),
        )
        connection.execute(
            "UPDATE quarantine SET decision = 'release', decided_by = 'bench', decided_at = ?"
            " WHERE id = (SELECT min(id) FROM quarantine WHERE decision IS NULL)",
            (now,),
        )
        connection.commit()
    finally:
        connection.close()


def build_town(folder: Path) -> int:
    """The 47-cadre town, four weeks, stored one terminal collection at a time like a poll."""
    from clockd.config import load_settings
    from clockd.domain import Punch
    from clockd.ingest.poll import Collection, store_collection
    from clockd.sim.town import CADRES, TERMINALS, generate_punches
    from clockd.store import db
    from clockd.store.models import Outcome

    write_site(folder, "官埠桥镇", TERMINALS, CADRES)
    settings = load_settings(folder / "devices.yaml")
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    punches = generate_punches(CADRES, TERMINALS, TOWN_START, 4, seed=3)
    by_terminal: dict[str, list[Punch]] = {}
    for punch in punches:
        serial = f"SN{punch.terminal_id.upper()}"
        by_terminal.setdefault(punch.terminal_id, []).append(
            Punch(serial, punch.user_id, punch.timestamp, 1, 0)
        )
    for terminal in settings.terminals:
        with db.write_transaction(engine) as connection:
            store_collection(
                connection,
                Collection(
                    terminal=terminal,
                    serial=terminal.serial,
                    source="poll",
                    punches=by_terminal.get(terminal.id, []),
                ),
                now_local=dt.datetime(2026, 12, 31),
                future_tolerance=dt.timedelta(minutes=10),
                outcome=Outcome.OK,
            )
    engine.dispose()
    return len(punches)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cadres", type=int, default=10_000)
    parser.add_argument(
        "--folder", type=Path, help="build here, or reuse what an earlier run built there"
    )
    parser.add_argument("--build", choices=("district", "town"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build == "district":
        print(f"district: {args.cadres} cadres, {build_district(args.folder, args.cadres)} punches")
        return 0
    if args.build == "town":
        print(f"town: {build_town(args.folder)} punches")
        return 0
    with tempfile.TemporaryDirectory(prefix="clockd-bench-") as temporary:
        root = args.folder or Path(temporary)
        for kind in ("district", "town"):
            place = root / kind
            place.mkdir(parents=True, exist_ok=True)
            if not (place / "clockd.sqlite3").exists():
                began = time.perf_counter()
                build = ["--build", kind, "--folder", str(place), "--cadres", str(args.cadres)]
                subprocess.run([sys.executable, __file__, *build], check=True)
                print(f"  built in {time.perf_counter() - began:.0f}s", flush=True)
        weekly = run_clockd(root / "district", "report", "weekly", "--week", WEEK)
        monthly = run_clockd(root / "district", "report", "monthly", "--month", MONTH)
        town_weekly = run_clockd(root / "town", "report", "weekly", "--week", TOWN_WEEK)
        for run in (weekly, monthly, town_weekly):
            print(run.output.splitlines()[-1])

    measures = [
        ("district weekly report (s)", weekly.seconds, None),
        ("district weekly peak memory (MB)", weekly.peak_bytes / 2**20, None),
        ("district monthly report (s)", monthly.seconds, MONTHLY_SECONDS),
        ("district monthly peak memory (MB)", monthly.peak_bytes / 2**20, MONTHLY_BYTES / 2**20),
        ("town weekly report incl. start (s)", town_weekly.seconds, TOWN_WEEKLY_SECONDS),
    ]
    rows = []
    missed = False
    for name, value, target in measures:
        ok = target is None or value < target
        missed |= not ok
        rows.append(
            [
                name,
                f"{value:.2f}",
                "" if target is None else f"< {target:g}",
                "ok" if ok else "MISSED",
            ]
        )
    print(render_table(["measure", "value", "target", "ok"], rows))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
