"""What the punch hash chain adds to a full poll (target: under 15%).

The full poll of scripts/bench/ingest.py (one emulated terminal, 100,000 40-byte records, into
a fresh SQLite file) is timed as it is; then the store step alone is timed both ways on the
same decoded records, interleaved, each into a fresh file: `insert_punches` (rows linked into
the terminal's chain, its head locked and moved) and the bare insert clockd did before the
ledger (the same rows and statement without the two chain columns). The difference, over the
full poll's time less that difference, is what the chain adds. Best of N runs each, since the
machine may be busy.

Prints a table; exits 1 when the target is missed. Usage: python scripts/bench/chain_cost.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Connection, func, insert, select

from clockd import ledger
from clockd.domain import PunchFields
from clockd.ingest.poll import poll_cycle
from clockd.store import db
from clockd.store.models import PollRun, PunchRow, Terminal, utcnow
from clockd.store.punches import BATCH, insert_punches
from clockd.textui import render_table
from clockd.zk.wire import AttendanceRecord
from scripts.bench.ingest import START, fresh_engine, settings_for, terminals

TARGET = 0.15
COUNT = 100_000
USERS = 50


def bare_insert(
    connection: Connection, serial: str, punches: Sequence[PunchFields], run: int
) -> int:
    """The pre-ledger store step: the same rows and statement without chain columns."""
    now = ledger.utc_text(utcnow())
    rows = [
        (
            serial,
            p.user_id,
            ledger.time_text(p.timestamp),
            p.verify,
            p.state,
            p.workcode,
            "poll",
            run,
            now,
        )
        for p in punches
    ]
    statement = (
        "INSERT INTO punches (serial, user_id, punched_at, verify, state, workcode, source, "
        "poll_run_id, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (punched_at, serial, user_id) DO NOTHING"
    )
    new = 0
    for start in range(0, len(rows), BATCH):
        new += connection.exec_driver_sql(statement, rows[start : start + BATCH]).rowcount
    connection.execute(
        select(func.min(PunchRow.punched_at), func.max(PunchRow.punched_at)).where(
            PunchRow.poll_run_id == run
        )
    ).one()
    return new


def store_once(folder: Path, name: str, step: Callable[[Connection, int], int]) -> float:
    engine = fresh_engine(folder, f"{name}.sqlite3")
    with db.write_transaction(engine) as connection:
        connection.execute(insert(Terminal).values(serial="BENCH00000", terminal_id="b000"))
        run = connection.execute(
            insert(PollRun).values(terminal_id="b000").returning(PollRun.id)
        ).scalar_one()
    gc.collect()
    began = time.perf_counter()
    with db.write_transaction(engine) as connection:
        assert step(connection, run) == COUNT
    seconds = time.perf_counter() - began
    engine.dispose()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, metavar="N", help="best of N (5)")
    args = parser.parse_args()
    records = [
        AttendanceRecord(
            None, str(10_001 + i % USERS), START + dt.timedelta(minutes=3 * i), 1, 0, 0
        )
        for i in range(COUNT)
    ]
    chained: list[float] = []
    bare: list[float] = []
    polls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="clockd-chain-bench-") as tmp:
        folder = Path(tmp)
        with terminals([{"record_size": 40, "users": USERS, "punches": COUNT}]) as ports:
            for attempt in range(args.runs):
                engine = fresh_engine(folder, f"poll{attempt}.sqlite3")
                settings = settings_for(ports, folder / f"poll{attempt}.sqlite3")
                began = time.perf_counter()
                outcome = poll_cycle(settings, engine)[0]
                polls.append(time.perf_counter() - began)
                assert outcome.ok and outcome.new == COUNT, outcome.line()
                engine.dispose()
        for attempt in range(args.runs):
            chained.append(
                store_once(
                    folder,
                    f"chained{attempt}",
                    lambda c, run: (
                        insert_punches(c, "BENCH00000", records, poll_run_id=run, source="poll").new
                    ),
                )
            )
            bare.append(
                store_once(
                    folder,
                    f"bare{attempt}",
                    lambda c, run: bare_insert(c, "BENCH00000", records, run),
                )
            )
    poll, with_chain, without = min(polls), min(chained), min(bare)
    share = (with_chain - without) / (poll - (with_chain - without))  # over a poll without it
    rows = [
        ["full poll, 100,000 40-byte records (ingest.py)", f"{poll:.3f} s", "", ""],
        ["store step with the chain (insert_punches)", f"{with_chain:.3f} s", "", ""],
        ["store step without (pre-ledger insert)", f"{without:.3f} s", "", ""],
        [
            "the chain adds to the full poll",
            f"+{with_chain - without:.3f} s = +{share:.1%}",
            f"< {TARGET:.0%}",
            "ok" if share < TARGET else "MISSED",
        ],
    ]
    print(render_table(["measure", "value", "target", "result"], rows))
    return 0 if share < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
