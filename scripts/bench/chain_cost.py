"""What the punch hash chain adds to a full poll (target: under 15%).

Measures, side by side and interleaved (each run into a fresh SQLite file, the order of the
variants rotating from run to run, best of N each since the machine may be busy):

1. the full poll of scripts/bench/ingest.py (one emulated terminal, 100,000 40-byte records:
   download, decode, store) as clockd does it, and the same poll with its store step swapped
   for clockd's insert without the chain (the same batches, rows and statement without the
   two chain columns, no chain head: the insert clockd did before the ledger, as fast as the
   chained one in everything else, so that only the chain differs);
2. the store step alone, both ways, on the same decoded records: the chain's cost without the
   network and decoding noise around it;
3. where the store step's difference goes: building the parameter rows with their links and
   without (the Python side: one sha256 per row), and writing the same prebuilt rows with the
   two chain columns and without (the SQLite side: 36 more bytes in every table row);
4. for reference, the full poll with the insert exactly as it was before the ledger (every
   row built at once), against which the original target was first measured.

The target is judged on the full poll's wall-clock time measured both ways, as ingest.py runs
it (Python's cyclic garbage collector on). Beside it: the same poll as `clockd poll` and the
daemon run it, with the collector paused (a faster poll, so the chain's share is larger), the
store step's difference over the poll without the chain, and both again in CPU time of this
process (the poller; the terminals run in a child process), which a busy machine disturbs less
than the wall clock.

Prints a table; exits 1 when the target is missed. Usage: python scripts/bench/chain_cost.py
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from operator import attrgetter
from pathlib import Path

from sqlalchemy import Connection, func, insert, select

from clockd import ledger
from clockd.domain import PunchFields, TimeTexts
from clockd.gcpause import gc_paused
from clockd.ingest import poll
from clockd.ledger import Head
from clockd.store import db
from clockd.store import punches as punches_module
from clockd.store.models import PollRun, PunchRow, Terminal, utcnow
from clockd.store.punches import BATCH, Key, StoreResult, insert_punches
from clockd.textui import render_table
from clockd.zk.wire import AttendanceRecord
from scripts.bench.ingest import START, fresh_engine, settings_for, terminals

TARGET = 0.15
COUNT = 100_000
USERS = 50
SERIAL = "BENCH00000"
_TAIL_KEY = attrgetter("user_id", "verify", "state", "workcode")
_TIME = attrgetter("timestamp")


def unchained_rows(
    chunk: Sequence[PunchFields],
    serial: str,
    source: str,
    poll_run_id: int,
    now: str,
    stamps: list[str] | None = None,
) -> list[tuple[object, ...]]:
    """One batch's parameter rows without the chain columns, built column by column as
    `_Links.rows` builds them (with the times' text given when the punches came with it)."""
    if stamps is None:
        stamps = [p.timestamp.isoformat(" ", "microseconds") for p in chunk]
    users, verifies, states, workcodes = zip(*map(_TAIL_KEY, chunk), strict=True)
    return list(
        zip(
            repeat(serial),
            users,
            stamps,
            verifies,
            states,
            workcodes,
            repeat(source),
            repeat(poll_run_id),
            repeat(now),
            strict=False,
        )
    )


def unchained_insert(
    connection: Connection,
    serial: str,
    punches: Sequence[PunchFields],
    *,
    poll_run_id: int,
    source: str,
    flagged: Collection[Key] = (),
) -> StoreResult:
    """`insert_punches` without the chain (SQLite only): the same batches, rows and statement
    without the two chain columns, no chain head to lock or move, no link to compute."""
    if not punches:
        return StoreResult(new=0, duplicates=0)
    before = connection.scalar(select(func.max(PunchRow.id))) or 0
    now = ledger.utc_text(utcnow())
    # The statements clockd's insert sends (multi-row VALUES lists), without the chain columns.
    statement = punches_module._Insert(True, punches_module._FIELDS, 9)
    texts = punches.time_texts if isinstance(punches, TimeTexts) else None  # as clockd's insert
    new = 0
    earliest: list[dt.datetime] = []
    latest: list[dt.datetime] = []
    for start in range(0, len(punches), BATCH):
        chunk = punches[start : start + BATCH]
        earliest.append(min(map(_TIME, chunk)))
        latest.append(max(map(_TIME, chunk)))
        stamps = texts(start, start + len(chunk)) if texts is not None else None
        rows = unchained_rows(chunk, serial, source, poll_run_id, now, stamps)
        new += statement.run(connection, rows)
    if not new:
        return StoreResult(new=0, duplicates=len(punches))
    added = (PunchRow.id > before) & (PunchRow.poll_run_id == poll_run_id)
    if new == len(punches):
        new_from, new_to = min(earliest), max(latest)
    else:
        new_from, new_to = connection.execute(
            select(func.min(PunchRow.punched_at), func.max(PunchRow.punched_at)).where(added)
        ).one()
    flagged_ids: dict[Key, int] = {}
    if flagged:
        wanted = set(flagged)
        for punch_id, user_id, moment in connection.execute(
            select(PunchRow.id, PunchRow.user_id, PunchRow.punched_at).where(
                added, PunchRow.punched_at.in_(sorted({moment for _, moment in wanted}))
            )
        ):
            if (user_id, moment) in wanted:
                flagged_ids[(user_id, moment)] = punch_id
    return StoreResult(new, len(punches) - new, new_from, new_to, flagged_ids)


def pre_ledger_insert(
    connection: Connection,
    serial: str,
    punches: Sequence[PunchFields],
    *,
    poll_run_id: int,
    source: str,
    flagged: Collection[Key] = (),
) -> StoreResult:
    """The insert as clockd had it just before the ledger (SQLite branch, commit 36b27ef): every
    row built at once, then the same statement batch by batch. For reference only: the target
    is judged against `unchained_insert`, which is as fast as today's insert in all else."""
    if not punches:
        return StoreResult(new=0, duplicates=0)
    before = connection.scalar(select(func.max(PunchRow.id))) or 0
    now = ledger.time_text(utcnow().replace(tzinfo=None))
    rows = [
        (
            serial,
            p.user_id,
            ledger.time_text(p.timestamp),
            p.verify,
            p.state,
            p.workcode,
            source,
            poll_run_id,
            now,
        )
        for p in punches
    ]
    statement = (
        "INSERT INTO punches (serial, user_id, punched_at, verify, state, workcode, source, "
        "poll_run_id, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (serial, punched_at, user_id) DO NOTHING"
    )
    new = 0
    for start in range(0, len(rows), BATCH):
        new += connection.exec_driver_sql(statement, rows[start : start + BATCH]).rowcount
    added = (PunchRow.id > before) & (PunchRow.poll_run_id == poll_run_id)
    new_from, new_to = connection.execute(
        select(func.min(PunchRow.punched_at), func.max(PunchRow.punched_at)).where(added)
    ).one()
    assert not flagged, "the benchmark's records are all well dated"
    return StoreResult(new, len(rows) - new, new_from, new_to)


INSERTS: dict[str, Callable[..., StoreResult]] = {
    "chained": insert_punches,
    "unchained": unchained_insert,
    "before": pre_ledger_insert,
}


@contextmanager
def store_step(kind: str) -> Iterator[None]:
    """The poll with its store step swapped for one of INSERTS."""
    saved = poll.insert_punches
    poll.insert_punches = INSERTS[kind]
    try:
        yield
    finally:
        poll.insert_punches = saved


Timing = tuple[float, float]  # wall-clock seconds, CPU seconds of this process


@contextmanager
def timed(into: list[Timing]) -> Iterator[None]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append((time.perf_counter() - wall, time.process_time() - cpu))


def poll_once(
    ports: list[int], database: Path, count: int, kind: str, paused: bool, into: list[Timing]
) -> None:
    """One full poll cycle into a fresh file, timed; `paused`: with the cyclic collector paused,
    as clockd runs a poll."""
    engine = fresh_engine(database.parent, database.name)
    settings = settings_for(ports, database)
    with store_step(kind), timed(into), gc_paused() if paused else contextlib.nullcontext():
        outcome = poll.poll_cycle(settings, engine)[0]
    assert outcome.ok and outcome.new == count, outcome.line()
    engine.dispose()


def store_once(
    database: Path, count: int, step: Callable[[Connection, int], StoreResult], into: list[Timing]
) -> None:
    """The store step alone into a fresh file (terminal and poll run already there), timed."""
    engine = fresh_engine(database.parent, database.name)
    with db.write_transaction(engine) as connection:
        connection.execute(insert(Terminal).values(serial=SERIAL, terminal_id="b000"))
        run = connection.execute(
            insert(PollRun).values(terminal_id="b000").returning(PollRun.id)
        ).scalar_one()
    with timed(into), db.write_transaction(engine) as connection:
        assert step(connection, run).new == count
    engine.dispose()


Batches = list[list[tuple[object, ...]]]


def build_once(records: Sequence[AttendanceRecord], chained: bool, into: list[Timing]) -> Batches:
    """The insert's parameter rows alone, batch by batch, with their links or without, timed:
    the part of the chain's cost that is Python's (one sha256 per row)."""
    now = ledger.utc_text(utcnow())
    start = Head(0, ledger.genesis(ledger.punch_chain(SERIAL)), None)
    links = punches_module._Links(SERIAL, "poll", 1, now, now, start)
    with timed(into):
        return [
            links.rows(records[at : at + BATCH])
            if chained
            else unchained_rows(records[at : at + BATCH], SERIAL, "poll", 1, now)
            for at in range(0, len(records), BATCH)
        ]


def write_once(database: Path, batches: Batches, chained: bool, into: list[Timing]) -> None:
    """Rows built beforehand into a fresh file through clockd's statement, with the two chain
    columns or without, timed: the part of the chain's cost that is SQLite's."""
    engine = fresh_engine(database.parent, database.name)
    with db.write_transaction(engine) as connection:
        connection.execute(insert(Terminal).values(serial=SERIAL, terminal_id="b000"))
        run = connection.execute(
            insert(PollRun).values(terminal_id="b000").returning(PollRun.id)
        ).scalar_one()
    assert run == 1, "the rows were built for poll run 1"
    columns = punches_module._FIELDS + (punches_module._LINKS if chained else "")
    statement = punches_module._Insert(True, columns, 11 if chained else 9)
    with timed(into), db.write_transaction(engine) as connection:
        assert sum(statement.run(connection, rows) for rows in batches) == sum(map(len, batches))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, metavar="N", help="best of N (5)")
    parser.add_argument(
        "--records", type=int, default=COUNT, metavar="N", help=f"records ({COUNT:,})"
    )
    args = parser.parse_args()
    count: int = args.records
    records = [
        AttendanceRecord(
            None, str(10_001 + i % USERS), START + dt.timedelta(minutes=3 * i), 1, 0, 0
        )
        for i in range(count)
    ]
    steps: dict[bool, Callable[[Connection, int], StoreResult]] = {
        True: lambda c, run: insert_punches(c, SERIAL, records, poll_run_id=run, source="poll"),
        False: lambda c, run: unchained_insert(c, SERIAL, records, poll_run_id=run, source="poll"),
    }
    polls: dict[tuple[str, bool], list[Timing]] = {
        (kind, paused): [] for kind in INSERTS for paused in (False, True)
    }
    stores: dict[bool, list[Timing]] = {True: [], False: []}
    builds: dict[bool, list[Timing]] = {True: [], False: []}
    writes: dict[bool, list[Timing]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="clockd-chain-bench-") as tmp:
        folder = Path(tmp)
        with terminals([{"record_size": 40, "users": USERS, "punches": count}]) as ports:
            kinds = list(INSERTS)
            for attempt in range(args.runs):
                for kind in kinds[attempt % 3 :] + kinds[: attempt % 3]:
                    for paused in (False, True) if kind != "before" else (False,):
                        database = folder / f"poll-{kind}{attempt}{paused}.sqlite3"
                        poll_once(ports, database, count, kind, paused, polls[kind, paused])
                for chained in (True, False) if attempt % 2 == 0 else (False, True):
                    name = f"{'chained' if chained else 'bare'}{attempt}.sqlite3"
                    store_once(folder / f"store-{name}", count, steps[chained], stores[chained])
                    batches = build_once(records, chained, builds[chained])
                    write_once(folder / f"write-{name}", batches, chained, writes[chained])
    best = {
        (kind, chained, clock): min(t[clock] for t in runs[chained])
        for kind, runs in (
            ("poll", {True: polls["chained", False], False: polls["unchained", False]}),
            ("paused", {True: polls["chained", True], False: polls["unchained", True]}),
            ("store", stores),
        )
        for chained in (True, False)
        for clock in (0, 1)
    }
    before = min(wall for wall, _ in polls["before", False])
    share = (best["poll", True, 0] - best["poll", False, 0]) / best["poll", False, 0]
    rows = []
    for kind, clock, label in (
        ("poll", 0, f"full poll, {count:,} 40-byte records (ingest.py)"),
        ("paused", 0, "the same, collector paused (as clockd polls)"),
        ("store", 0, "store step alone, over the poll without"),
        ("poll", 1, "full poll, CPU of the poller (not the terminals)"),
        ("store", 1, "store step alone, CPU, over the poller's CPU"),
    ):
        with_chain, without = best[kind, True, clock], best[kind, False, clock]
        verdict = ["", ""]
        if (kind, clock) == ("poll", 0):
            verdict = [f"< {TARGET:.0%}", "ok" if share < TARGET else "MISSED"]
        base = best["paused" if kind == "paused" else "poll", False, clock]
        rows.append(
            [
                label,
                f"{with_chain:.3f} s",
                f"{without:.3f} s",
                f"{with_chain - without:+.3f} s = {(with_chain - without) / base:+.1%}",
                *verdict,
            ]
        )
    for label, runs, clock in (
        ("of which building the rows (the links' sha256), CPU", builds, 1),
        ("of which writing the rows (the two columns)", writes, 0),
    ):
        with_chain, without = (min(t[clock] for t in runs[chained]) for chained in (True, False))
        base = best["poll", False, clock]
        share_of_poll = (with_chain - without) / base
        rows.append(
            [
                label,
                f"{with_chain:.3f} s",
                f"{without:.3f} s",
                f"{with_chain - without:+.3f} s = {share_of_poll:+.1%}",
                "",
                "",
            ]
        )
    with_chain = best["poll", True, 0]
    rows.append(
        [
            "full poll, with the insert as before the ledger",
            f"{with_chain:.3f} s",
            f"{before:.3f} s",
            f"{with_chain - before:+.3f} s = {(with_chain - before) / before:+.1%}",
            "",
            "",
        ]
    )
    print(f"best of {args.runs} interleaved runs each")
    print(
        render_table(
            ["measure", "with the chain", "without", "the chain adds", "target", "result"], rows
        )
    )
    return 0 if share < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
