"""The append-only punch store: insert-or-ignore on (serial, time, user ID), batched."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter

from sqlalchemy import ColumnElement, Connection, any_, bindparam, func, select

from clockd import ledger
from clockd.domain import PunchFields, TimeTexts
from clockd.ledger import Head
from clockd.store import chains
from clockd.store.models import PunchRow, Terminal, utcnow

BATCH = 5_000
_ROWS = 250  # rows per multi-row INSERT on SQLite: 2,750 bound values, well within its limit
_FIELDS = "serial, user_id, punched_at, verify, state, workcode, source, poll_run_id, ingested_at"
_LINKS = ", chain_seq, chain_hash"

Key = tuple[str, dt.datetime]  # (user ID, time) within one terminal


@dataclass(frozen=True)
class StoreResult:
    new: int
    duplicates: int
    new_from: dt.datetime | None = None  # earliest and latest time among the new punches
    new_to: dt.datetime | None = None
    flagged_ids: dict[Key, int] = field(default_factory=dict)  # ids of new flagged punches


def insert_punches(
    connection: Connection,
    serial: str,
    punches: Sequence[PunchFields],
    *,
    poll_run_id: int,
    source: str,
    flagged: Collection[Key] = (),
) -> StoreResult:
    """Store each punch of terminal `serial` unless its (serial, time, user ID) is there, and
    extend the terminal's hash chain over the new rows (docs/integrity.md).

    The ingestion hot path (100,000 records per terminal is normal): parameter rows go
    straight to the driver (`_Insert`) with ON CONFLICT DO NOTHING, and the driver's row
    count says exactly how many were new. Values are always bound, never formatted into SQL.
    Every writer of a terminal first locks its chain head, so poll, push and USB import of one
    terminal take turns and the chain cannot fork; on PostgreSQL rows also go in key order.
    When the chain is empty, or the first and last punches are not stored yet (a first poll),
    the links are computed in the same pass that builds the rows; otherwise (a re-poll: mostly
    duplicates) rows go in unlinked and only the new ones are linked afterwards. Either way
    the chain is put right before commit if some rows turned out to be duplicates. The rows
    this call added are then found by id: they are above the highest id before it and carry
    this poll run. `flagged` punches that turn out new get their ids back, to be quarantined.
    """
    if not punches:
        return StoreResult(new=0, duplicates=0)
    chain = ledger.punch_chain(serial)
    head = chains.lock_head(connection, chain)
    before = connection.scalar(_LAST_ID) or 0
    sqlite = connection.dialect.name == "sqlite"
    ordered = punches if sqlite else sorted(punches, key=lambda p: (p.timestamp, p.user_id))
    moment = utcnow()
    now_text = ledger.utc_text(moment)
    now: object = now_text if sqlite else moment
    linked = head.seq == 0 or not _any_stored(connection, serial, (ordered[0], ordered[-1]))
    links = _Links(serial, source, poll_run_id, now, now_text, head) if linked else None
    # Unlinked rows leave the chain columns to their NULL default rather than binding None:
    # sqlite3 binds None (like bytes) through its adapter lookup, a cost per value.
    columns = _FIELDS + _LINKS if linked else _FIELDS
    insert = _Insert(sqlite, columns, 11 if linked else 9)
    new = 0
    earliest: list[dt.datetime] = []  # each batch's earliest and latest time
    latest: list[dt.datetime] = []
    # A decoded log formats its times in bulk; SQLite stores them as that text.
    texts = ordered.time_texts if sqlite and isinstance(ordered, TimeTexts) else None
    for start in range(0, len(ordered), BATCH):  # rows built a batch at a time: bounded memory
        # A slice, not a walk of `ordered`: a decoded log builds only the records asked for
        # (wire.RecordColumns), so every record is built once, a batch at a time.
        chunk = ordered[start : start + BATCH]
        if sqlite:
            earliest.append(min(map(_TIME, chunk)))
            latest.append(max(map(_TIME, chunk)))
        stamps = texts(start, start + len(chunk)) if texts is not None else None
        rows: list[tuple[object, ...]]
        if links is not None:
            rows = links.rows(chunk, stamps)
        else:
            times = stamps if stamps is not None else _column_times(chunk, sqlite)
            rows = [
                (serial, p.user_id, time, p.verify, p.state, p.workcode, source, poll_run_id, now)
                for p, time in zip(chunk, times, strict=True)
            ]
        new += insert.run(connection, rows)
    if not new:
        return StoreResult(new=0, duplicates=len(ordered))
    added = (PunchRow.id > before) & (PunchRow.poll_run_id == poll_run_id)
    if sqlite and new == len(ordered):
        # Every row is new and this transaction is the only writer: no need to read them back.
        new_from, new_to = min(earliest), max(latest)
        last_id = connection.scalar(_LAST_ID)
    else:
        new_from, new_to, last_id = connection.execute(
            select(
                func.min(PunchRow.punched_at), func.max(PunchRow.punched_at), func.max(PunchRow.id)
            ).where(added)
        ).one()
    if links is not None and new == len(ordered):
        chains.set_head(connection, chain, Head(head.seq + new, links.previous, last_id))
    else:
        chains.set_head(connection, chain, chains.rechain(connection, serial, head, before))
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
    return StoreResult(new, len(ordered) - new, new_from, new_to, flagged_ids)


class _Insert:
    """The INSERT .. ON CONFLICT DO NOTHING of punch rows, counting those that were new.

    On SQLite the rows go `_ROWS` to a statement (one multi-row VALUES list) rather than one
    by one through executemany: each statement step is a round of the sqlite3 module's
    machinery and a release and re-take of the GIL, which other polling threads then hold;
    a multi-row statement took about half the time of executemany for the same rows.
    """

    def __init__(self, sqlite: bool, columns: str, width: int) -> None:
        self.sqlite = sqlite
        marks = "(" + ", ".join(["?" if sqlite else "%s"] * width) + ")"
        self.single = self._statement(columns, marks)
        self.multi = self._statement(columns, ", ".join([marks] * _ROWS))

    @staticmethod
    def _statement(columns: str, values: str) -> str:
        return (
            f"INSERT INTO punches ({columns}) VALUES {values} "  # noqa: S608 - constants only
            "ON CONFLICT (serial, punched_at, user_id) DO NOTHING"
        )

    def run(self, connection: Connection, rows: Sequence[tuple[object, ...]]) -> int:
        """Insert `rows`; how many were new."""
        whole = len(rows) - len(rows) % _ROWS if self.sqlite else 0
        new = 0
        for start in range(0, whole, _ROWS):
            flat = tuple(itertools.chain.from_iterable(rows[start : start + _ROWS]))
            new += connection.exec_driver_sql(self.multi, flat).rowcount
        if whole < len(rows):
            new += connection.exec_driver_sql(self.single, list(rows[whole:])).rowcount
        return new


class _Links:
    """Insert rows with their chain position and link, computed in the pass that builds them.

    The hot path, built column by column so that no Python runs per row: a link hashes the
    time's text and the rest of the encoding, which is the same for every punch of a user with
    the same verify type, state and workcode and so is looked up, not built
    (ledger.encode_punch is the same encoding spelled out). A batch's links are made in one
    call (`ledger.chain_links`, in C where it was built, which hashes the times' text as it
    is), and the rows are zipped from the columns. The links come as bytearrays, which
    sqlite3 binds directly (bytes go through its adapter lookup first, which costs more than
    the sha256 itself).
    """

    def __init__(
        self, serial: str, source: str, poll_run_id: int, now: object, now_text: str, head: Head
    ) -> None:
        self.serial, self.source, self.poll_run_id = serial, source, poll_run_id
        self.now, self.now_text = now, now_text
        self.previous, self.seq = head.hash, head.seq  # the last link made, and its position
        self.tails = _Tails(source, poll_run_id, now_text)

    def rows(
        self, punches: Sequence[PunchFields], stamps: list[str] | None = None
    ) -> list[tuple[object, ...]]:
        """The next rows of the chain, one per punch, in order; `stamps` are the punches'
        times as `ledger.time_text` writes them, when the caller has them already."""
        sqlite = isinstance(self.now, str)
        if stamps is None:
            stamps = [p.timestamp.isoformat(" ", "microseconds") for p in punches]
        keys = list(map(_TAIL_KEY, punches))
        links = ledger.chain_links(self.previous, stamps, keys, self.tails)
        users, verifies, states, workcodes = zip(*keys, strict=True)
        first = self.seq + 1
        self.previous, self.seq = bytes(links[-1]), self.seq + len(punches)
        return list(
            zip(
                repeat(self.serial),
                users,
                stamps if sqlite else [p.timestamp for p in punches],
                verifies,
                states,
                workcodes,
                repeat(self.source),
                repeat(self.poll_run_id),
                repeat(self.now),
                range(first, self.seq + 1),
                links,
                strict=False,  # the repeats are endless; the columns are as long as `punches`
            )
        )


def _column_times(punches: Sequence[PunchFields], sqlite: bool) -> Sequence[object]:
    """The punches' times as the `punched_at` column takes them: SQLite keeps the text of
    `ledger.time_text`, PostgreSQL a timestamp."""
    if sqlite:
        return [ledger.time_text(p.timestamp) for p in punches]
    return [p.timestamp for p in punches]


_TAIL_KEY = attrgetter("user_id", "verify", "state", "workcode")
_TIME = attrgetter("timestamp")


class _Tails(dict[tuple[str, int, int, int], bytes]):
    """A punch's encoding after its time, by (user ID, verify, state, workcode), for one batch
    of one source and poll run: few distinct values, each encoded once."""

    def __init__(self, source: str, poll_run_id: int, now_text: str) -> None:
        super().__init__()
        self.rest = (source, poll_run_id, now_text)

    def __missing__(self, key: tuple[str, int, int, int]) -> bytes:
        value = self[key] = ledger.punch_tail(*key, *self.rest).encode()
        return value


_LAST_ID = select(func.max(PunchRow.id))  # statements built once: see store/polls.py
_STORED_AT = select(PunchRow.user_id, PunchRow.punched_at).where(
    PunchRow.serial == bindparam("stored_serial"),
    PunchRow.punched_at.in_(bindparam("stored_times", expanding=True)),
)


def _any_stored(connection: Connection, serial: str, punches: Sequence[PunchFields]) -> bool:
    """Whether any of a few punches is stored already (one index probe per time)."""
    found = connection.execute(
        _STORED_AT,
        {"stored_serial": serial, "stored_times": sorted({p.timestamp for p in punches})},
    )
    return not {(p.user_id, p.timestamp) for p in punches}.isdisjoint(
        (row.user_id, row.punched_at) for row in found
    )


def stored_keys(connection: Connection, serial: str, punches: Sequence[PunchFields]) -> set[Key]:
    """Which of `punches` are in the store, by (user ID, time): the clear policy's count-back."""
    if not punches:
        return set()
    lo = min(p.timestamp for p in punches)
    hi = max(p.timestamp for p in punches)
    result = connection.execute(
        select(PunchRow.user_id, PunchRow.punched_at).where(
            PunchRow.serial == serial, PunchRow.punched_at.between(lo, hi)
        )
    )
    wanted = {(p.user_id, p.timestamp) for p in punches}
    return {(row.user_id, row.punched_at) for row in result} & wanted


def first_punch_at(connection: Connection) -> dt.datetime | None:
    """The local time of the earliest punch stored, None while there is none: the earliest of
    each terminal's earliest, one probe of the key per terminal."""
    earliest = (
        select(func.min(PunchRow.punched_at))
        .where(PunchRow.serial == Terminal.serial)
        .scalar_subquery()
    )
    first: dt.datetime | None = connection.scalar(select(func.min(earliest)))
    return first


def each_terminal(connection: Connection) -> ColumnElement[bool]:
    """A condition naming every serial, for queries on punches by time: the key leads with the
    serial, and with this the database probes each terminal's time range of it instead of
    scanning the table. It drops no punch: every punch's serial is a terminal's (foreign key).
    PostgreSQL gets the serials as one array (= ANY), which its index scan takes as a list of
    probes; for an IN subquery it plans a hash join over the whole table instead."""
    serials = select(Terminal.serial)
    if connection.dialect.name == "postgresql":
        return PunchRow.serial == any_(func.array(serials.scalar_subquery()))
    return PunchRow.serial.in_(serials)


def count_stored(connection: Connection, serial: str) -> int:
    """How many punches a terminal has stored."""
    count = connection.scalar(
        select(func.count()).select_from(PunchRow).where(PunchRow.serial == serial)
    )
    return int(count or 0)
