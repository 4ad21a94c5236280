"""Ledger benchmark: `clockd verify` over a large SQLite database, time and peak memory.

Builds (or reuses, with --db) a database of N punches on 100 terminals through the real insert
path (store.punches.insert_punches, which links every row), then in a fresh process runs
ledger.verify_all and reports its wall time and peak resident memory, beside the floor: the
chained sha256 alone over the same encodings (read back from the same database, only the
hashing timed). Targets for 10 M punches: under 60 s and under 300 MB.

Prints a table and exits 1 when a target is missed (or the ledger is not intact).
Usage: python scripts/bench/verify.py [--punches 10000000] [--db PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, insert, select

from clockd.domain import Punch
from clockd.store import db
from clockd.store.models import PollRun, PunchRow, Terminal
from clockd.store.punches import insert_punches
from clockd.textui import render_table

TERMINALS = 100
BATCH = 100_000
START = dt.datetime(2024, 1, 1, 7, 0)
TARGET_SECONDS = 60.0
TARGET_MB = 300.0


def build(path: Path, count: int) -> float:
    """Store `count` punches round-robin over the terminals, BATCH per insert call."""
    engine = db.make_engine(f"sqlite:///{path}")
    db.migrate(engine)
    began = time.perf_counter()
    with db.write_transaction(engine) as connection:
        for index in range(TERMINALS):
            connection.execute(insert(Terminal).values(serial=_serial(index), terminal_id="b"))
        run_id = connection.execute(
            insert(PollRun).values(terminal_id="bench").returning(PollRun.id)
        ).scalar_one()
    stored = 0
    round_ = 0
    while stored < count:
        for index in range(TERMINALS):
            size = min(BATCH, count - stored)
            if size <= 0:
                break
            with db.write_transaction(engine) as connection:
                insert_punches(
                    connection,
                    _serial(index),
                    list(_punches(index, round_, size)),
                    poll_run_id=run_id,
                    source="poll",
                )
            stored += size
        round_ += 1
    engine.dispose()
    return time.perf_counter() - began


def _serial(index: int) -> str:
    return f"BENCH{index:05d}"


def _punches(terminal: int, round_: int, size: int) -> Iterator[Punch]:
    first = START + dt.timedelta(minutes=round_ * BATCH * 2)
    for number in range(size):
        yield Punch(
            _serial(terminal),
            str(1001 + (number * 7 + terminal) % 400),
            first + dt.timedelta(minutes=2 * number, seconds=terminal % 60),
            1,
            number % 2,
        )


def count_rows(path: Path) -> int:
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(PunchRow)) or 0)
    finally:
        engine.dispose()


CHILD = """
import hashlib, json, sys, time
from clockd import ledger
from clockd.store import chains, db
engine = db.make_engine("sqlite:///" + sys.argv[1])
if sys.argv[2] == "verify":
    result = ledger.verify_all(engine)
    seconds, ok, rows = result.seconds, result.ok, result.rows
else:  # the floor: chained sha256 over the same encodings, only the hashing timed
    seconds, rows, ok = 0.0, 0, True
    sha = hashlib.sha256
    previous = {}
    with engine.connect() as connection:
        page = []
        for row in chains.stream_punches(connection):
            page.append((row[1], row[4]))
            if len(page) == 50_000:
                began = time.perf_counter()
                for serial, encoding in page:
                    previous[serial] = sha(previous.get(serial, b"") + encoding).digest()
                seconds += time.perf_counter() - began
                rows += len(page)
                page = []
        began = time.perf_counter()
        for serial, encoding in page:
            previous[serial] = sha(previous.get(serial, b"") + encoding).digest()
        seconds += time.perf_counter() - began
        rows += len(page)
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(json.dumps([seconds, rows, ok, int(peak)]))
"""


def measure(path: Path, mode: str) -> tuple[float, int, bool, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    seconds, rows, ok, peak_kb = json.loads(result.stdout)
    return seconds, rows, ok, peak_kb / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--punches", type=int, default=10_000_000, metavar="N")
    parser.add_argument("--db", type=Path, metavar="PATH", help="build here, or reuse if full")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clockd-verify-bench-") as tmp:
        path = args.db or Path(tmp) / "ledger.sqlite3"
        rows: list[list[str]] = []
        if path.exists() and count_rows(path) == args.punches:
            rows.append(["database", f"reused {path}", "", ""])
        else:
            if path.exists():
                path.unlink()
            seconds = build(path, args.punches)
            rows.append(
                [
                    f"build: {args.punches:,} punches on {TERMINALS} terminals",
                    f"{seconds:.1f} s ({args.punches / seconds:,.0f} punches/s, chained)",
                    "",
                    "",
                ]
            )
        size_mb = path.stat().st_size / 2**20
        rows.append(["database file", f"{size_mb:,.0f} MB", "", ""])
        seconds, checked, ok, peak = measure(path, "verify")
        floor, _, _, _ = measure(path, "floor")
        scale = args.punches / 10_000_000
        time_ok = ok and checked == args.punches and seconds < TARGET_SECONDS * max(scale, 0.01)
        memory_ok = peak < TARGET_MB
        rows.append(
            [
                "clockd verify (ledger.verify_all)",
                f"{seconds:.1f} s, {checked / seconds:,.0f} punches/s, "
                + ("intact" if ok else "BROKEN"),
                f"< {TARGET_SECONDS * scale:.0f} s" if scale != 1 else f"< {TARGET_SECONDS:.0f} s",
                "ok" if time_ok else "MISSED",
            ]
        )
        rows.append(
            [
                "verify peak memory (VmHWM)",
                f"{peak:.0f} MB",
                f"< {TARGET_MB:.0f} MB",
                "ok" if memory_ok else "MISSED",
            ]
        )
        rows.append(
            [
                "floor: chained sha256 over the same bytes",
                f"{floor:.1f} s (verify = {seconds / floor:.1f}x floor)",
                "",
                "",
            ]
        )
    print(render_table(["measure", "value", "target", "result"], rows))
    return 0 if time_ok and memory_ok else 1


if __name__ == "__main__":
    sys.exit(main())
