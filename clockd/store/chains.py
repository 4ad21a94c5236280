"""The ledger's SQL: chain heads, the audit ledger, and reading chains back in storage order.

Two ways to read punches back with their canonical encoding (clockd/ledger.py): `scan_punches`
streams every row through one driver cursor in a single snapshot, and the caller builds the
encoding from the columns (verify: 10 M rows); `stream_punches` pages by id (keyset) and
builds the encoding in SQL, for the few rows a writer re-links before commit and for the
migration, so no cursor is held open while the same connection writes. Python, SQLite and
PostgreSQL must give the same bytes (tests/test_ledger.py holds them to it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)

from clockd import ledger
from clockd.ledger import Head
from clockd.store.db import dialect_insert
from clockd.store.models import (
    ChainHead,
    LeaveAudit,
    LeaveRow,
    LedgerEntry,
    PollRun,
    PunchRow,
    Quarantine,
    ReportRun,
    WorkResult,
    table_of,
    utcnow,
)

PAGE = 50_000
_IDS = 500  # ids per IN (...) list

# The audited tables, each its own chain in the ledger table; the chain's name is the table's.
AUDITED: dict[str, Table] = {
    model.__tablename__: model.__table__  # type: ignore[misc]
    for model in (LeaveRow, LeaveAudit, Quarantine, ReportRun, WorkResult)
}

_SQLITE_ENCODING = """CAST(
  ifnull(punched_at, '') || char(31) || ifnull(length(CAST(user_id AS BLOB)), '') || char(31)
  || ifnull(user_id, '') || char(31) || ifnull(verify, '') || char(31) || ifnull(state, '')
  || char(31) || ifnull(workcode, '') || char(31) || ifnull(length(CAST(source AS BLOB)), '')
  || char(31) || ifnull(source, '') || char(31) || ifnull(poll_run_id, '') || char(31)
  || ifnull(ingested_at, '') AS BLOB)"""

_PG_ENCODING = """convert_to(
  coalesce(to_char(punched_at, 'YYYY-MM-DD HH24:MI:SS.US'), '') || chr(31)
  || coalesce(octet_length(user_id)::text, '') || chr(31) || coalesce(user_id, '') || chr(31)
  || coalesce(verify::text, '') || chr(31) || coalesce(state::text, '') || chr(31)
  || coalesce(workcode::text, '') || chr(31) || coalesce(octet_length(source)::text, '')
  || chr(31) || coalesce(source, '') || chr(31) || coalesce(poll_run_id::text, '') || chr(31)
  || coalesce(to_char(ingested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), ''),
  'UTF8')"""


def _encoding_sql(connection: Connection) -> str:
    return _SQLITE_ENCODING if connection.dialect.name == "sqlite" else _PG_ENCODING


# --- reading everything --------------------------------------------------------------------------


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction over which the whole ledger is seen as of one instant, so heads
    and rows agree however busy the writers are (REPEATABLE READ on PostgreSQL; an SQLite
    read transaction is a snapshot)."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def scan_punches(connection: Connection, page: int = 10_000) -> Iterator[list[Any]]:
    """Every punch in id order, a page of driver rows at a time, with one streaming cursor:
    (id, serial, chain_seq, chain_hash, punched_at text, user_id, verify, state, workcode,
    source, poll_run_id, ingested_at text). Times as ledger.time_text has them (UTC for
    ingested_at), so the rest of the encoding is built from the columns as they are."""
    if connection.dialect.name == "sqlite":
        times = "punched_at", "ingested_at"
    else:
        times = (
            "to_char(punched_at, 'YYYY-MM-DD HH24:MI:SS.US')",
            "to_char(ingested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
        )
    statement = (
        f"SELECT id, serial, chain_seq, chain_hash, {times[0]}, user_id, verify, state, "  # noqa: S608
        f"workcode, source, poll_run_id, {times[1]} FROM punches ORDER BY id"
    )
    raw: Any = connection.connection.dbapi_connection
    # A named cursor is server-side on PostgreSQL: rows come a page at a time.
    cursor = raw.cursor() if connection.dialect.name == "sqlite" else raw.cursor("clockd_scan")
    try:
        cursor.execute(statement)
        while rows := cursor.fetchmany(page):
            yield rows
    finally:
        cursor.close()


# --- heads --------------------------------------------------------------------------------------


_heads = table_of(ChainHead)
_SET_HEAD = update(_heads).where(_heads.c.chain == bindparam("head_chain"))


@cache
def _head_statements(dialect: str) -> tuple[Executable, Executable]:
    """Create-if-new and read-locked of a chain head, built once per database: every writer of
    a terminal's punches runs both."""
    create = dialect_insert(dialect, _heads).on_conflict_do_nothing(index_elements=["chain"])
    read = select(_heads.c.seq, _heads.c.hash, _heads.c.last_id).where(
        _heads.c.chain == bindparam("head_chain")
    )
    return create, read.with_for_update() if dialect == "postgresql" else read


def lock_head(connection: Connection, chain: str) -> Head:
    """The chain's head, locked until the transaction ends, created at its genesis if new.

    The first statement writes, so on SQLite even a deferred transaction takes the write lock
    here; on PostgreSQL the head row is locked FOR UPDATE: one writer per chain at a time.
    """
    create, read = _head_statements(connection.dialect.name)
    connection.execute(
        create,
        {
            "chain": chain,
            "seq": 0,
            "hash": ledger.genesis(chain),
            "last_id": None,
            "updated_at": utcnow(),
        },
    )
    seq, hash_, last_id = connection.execute(read, {"head_chain": chain}).one()
    return Head(seq, bytes(hash_), last_id)


def set_head(connection: Connection, chain: str, head: Head) -> None:
    connection.execute(
        _SET_HEAD,
        {
            "head_chain": chain,
            "seq": head.seq,
            "hash": head.hash,
            "last_id": head.last_id,
            "updated_at": utcnow(),
        },
    )


def heads(connection: Connection) -> dict[str, Head]:
    rows = connection.execute(
        select(ChainHead.chain, ChainHead.seq, ChainHead.hash, ChainHead.last_id)
    )
    return {chain: Head(seq, bytes(hash_), last_id) for chain, seq, hash_, last_id in rows}


# --- punch chains -------------------------------------------------------------------------------


def stored_by_collections(connection: Connection) -> dict[str, int]:
    """Per terminal serial, how many punches its collections recorded storing (the poll runs'
    `new_count`; a run that stored punches is never folded away). Punches are never deleted,
    so a chain holding fewer rows lost some, even when its links and head were made to agree."""
    rows = connection.execute(
        select(PollRun.serial, func.sum(PollRun.new_count))
        .where(PollRun.new_count > 0, PollRun.serial.is_not(None))
        .group_by(PollRun.serial)
    )
    return {str(serial): int(total) for serial, total in rows}


PunchLink = tuple[int, str, int | None, bytes | None, bytes]  # id, serial, seq, hash, encoding


def stream_punches(
    connection: Connection, *, serial: str | None = None, after_id: int = 0, page: int = PAGE
) -> Iterator[PunchLink]:
    """Punch rows in id order with their chain columns and canonical encoding, page by page."""
    # On SQLite `+serial` keeps the planner on the id range: by the (serial, ...) key it would
    # read all of the terminal's rows and sort them, when a re-poll's rechain wants the few
    # rows above `after_id`.
    column = "+serial" if connection.dialect.name == "sqlite" else "serial"
    where = "id > :after" + (f" AND {column} = :serial" if serial is not None else "")
    statement = text(
        f"SELECT id, serial, chain_seq, chain_hash, {_encoding_sql(connection)} "  # noqa: S608
        f"FROM punches WHERE {where} ORDER BY id LIMIT :page"
    )
    while True:
        params: dict[str, object] = {"after": after_id, "page": page}
        if serial is not None:
            params["serial"] = serial
        rows = connection.execute(statement, params).all()
        for row in rows:
            yield (row[0], row[1], row[2], row[3], bytes(row[4]))
        if len(rows) < page:
            return
        after_id = rows[-1][0]


def rechain(connection: Connection, serial: str, head: Head, after_id: int) -> Head:
    """Give the rows of `serial` above `after_id` their links from `head`, in id order.

    The insert path computes links in bulk when it expects every row to be new; when some were
    duplicates (or it did not expect them new) this puts the chain right before commit.
    """
    seq, previous, last_id = head.seq, head.hash, head.last_id
    changes: list[dict[str, object]] = []
    for row_id, _, stored_seq, stored, encoding in stream_punches(
        connection, serial=serial, after_id=after_id
    ):
        seq += 1
        previous = ledger.link(previous, encoding)
        last_id = row_id
        if stored_seq != seq or stored is None or bytes(stored) != previous:
            changes.append({"i": row_id, "s": seq, "h": previous})
    for start in range(0, len(changes), PAGE):
        connection.execute(
            text("UPDATE punches SET chain_seq = :s, chain_hash = :h WHERE id = :i"),
            changes[start : start + PAGE],
        )
    return Head(seq, previous, last_id)


def build_punch_chains(connection: Connection) -> int:
    """Chain every stored punch from its terminal's genesis (the migration that adds chains)."""
    walks: dict[str, Head] = {}
    count = 0
    after = 0
    while True:
        rows = list(stream_punches(connection, after_id=after, page=PAGE))
        if not rows:
            break
        changes = []
        for row_id, serial, _, _, encoding in rows:
            chain = ledger.punch_chain(serial)
            head = walks.get(chain) or Head(0, ledger.genesis(chain), None)
            hashed = ledger.link(head.hash, encoding)
            walks[chain] = Head(head.seq + 1, hashed, row_id)
            changes.append({"i": row_id, "s": head.seq + 1, "h": hashed})
        connection.execute(
            text("UPDATE punches SET chain_seq = :s, chain_hash = :h WHERE id = :i"), changes
        )
        count += len(rows)
        after = rows[-1][0]
        if len(rows) < PAGE:
            break
    for chain, head in walks.items():
        lock_head(connection, chain)
        set_head(connection, chain, head)
    return count


def punch_links(connection: Connection, ids: Sequence[int]) -> dict[int, tuple[str, int, bytes]]:
    """(chain, position, hash) of the given punch ids, for report anchors."""
    found: dict[int, tuple[str, int, bytes]] = {}
    for start in range(0, len(ids), _IDS):
        rows = connection.execute(
            select(PunchRow.id, PunchRow.serial, PunchRow.chain_seq, PunchRow.chain_hash).where(
                PunchRow.id.in_(ids[start : start + _IDS])
            )
        )
        for row_id, serial, seq, hash_ in rows:
            found[row_id] = (ledger.punch_chain(serial), seq or 0, bytes(hash_ or b""))
    return found


# --- the audit ledger ---------------------------------------------------------------------------


def record(
    connection: Connection,
    table: str,
    row_ids: Iterable[int],
    action: str,
    actor: str,
    *,
    source: Table | None = None,
    at: dt.datetime | None = None,
) -> None:
    """Append the current state of rows of an audited table to its chain in the ledger.

    Call in the transaction that changed them, after the change. `source` is the table to
    read (the migration passes a reflected one; by default the model's).
    """
    ids = sorted(set(row_ids))
    if not ids:
        return
    table_ = source if source is not None else AUDITED[table]
    states: dict[int, str | None] = {}
    for start in range(0, len(ids), _IDS):
        chunk = ids[start : start + _IDS]
        for row in connection.execute(select(table_).where(table_.c.id.in_(chunk))):
            states[row.id] = ledger.row_state(row._mapping)
    _append(connection, table, [(row_id, states.get(row_id)) for row_id in ids], action, actor, at)


def record_deleted(
    connection: Connection, table: str, row_id: int, action: str, actor: str
) -> None:
    """Append that a row of an audited table was deleted (by clockd, on purpose)."""
    _append(connection, table, [(row_id, None)], action, actor, None)


def _append(
    connection: Connection,
    table: str,
    states: Sequence[tuple[int, str | None]],
    action: str,
    actor: str,
    at: dt.datetime | None,
) -> None:
    head = lock_head(connection, table)
    when = at or utcnow()
    seq, previous = head.seq, head.hash
    entries = []
    for row_id, state in states:
        seq += 1
        previous = ledger.link(
            previous, ledger.encode_entry(table, row_id, action, actor, when, state)
        )
        entries.append(
            {
                "chain": table,
                "seq": seq,
                "row_id": row_id,
                "action": action,
                "actor": actor,
                "at": when,
                "state": state,
                "hash": previous,
            }
        )
    connection.execute(insert(LedgerEntry), entries)
    last_id = connection.scalar(select(func.max(LedgerEntry.id)).where(LedgerEntry.chain == table))
    set_head(connection, table, Head(seq, previous, last_id))


@dataclass(frozen=True)
class Entry:
    id: int
    chain: str
    seq: int | None
    row_id: int
    action: str
    actor: str
    at: dt.datetime
    state: str | None
    hash: bytes | None


def stream_entries(connection: Connection, page: int = PAGE) -> Iterator[Entry]:
    """Every ledger entry in id order, page by page."""
    after = 0
    while True:
        rows = connection.execute(
            select(LedgerEntry).where(LedgerEntry.id > after).order_by(LedgerEntry.id).limit(page)
        ).all()
        for row in rows:
            yield Entry(
                row.id,
                row.chain,
                row.seq,
                row.row_id,
                row.action,
                row.actor,
                row.at,
                row.state,
                None if row.hash is None else bytes(row.hash),
            )
        if len(rows) < page:
            return
        after = rows[-1].id


def stream_audited(
    connection: Connection, table: str, page: int = 10_000
) -> Iterator[tuple[int, str]]:
    """(id, canonical state) of every row of an audited table, in id order."""
    table_ = AUDITED[table]
    after = 0
    while True:
        rows = connection.execute(
            select(table_).where(table_.c.id > after).order_by(table_.c.id).limit(page)
        ).all()
        for row in rows:
            yield row.id, ledger.row_state(row._mapping)
        if len(rows) < page:
            return
        after = rows[-1].id


def entry_links(connection: Connection, ids: Sequence[int]) -> dict[int, tuple[str, int, bytes]]:
    """(chain, position, hash) of the given ledger entries, for report anchors."""
    found: dict[int, tuple[str, int, bytes]] = {}
    for start in range(0, len(ids), _IDS):
        rows = connection.execute(
            select(LedgerEntry.id, LedgerEntry.chain, LedgerEntry.seq, LedgerEntry.hash).where(
                LedgerEntry.id.in_(ids[start : start + _IDS])
            )
        )
        for row_id, chain, seq, hash_ in rows:
            found[row_id] = (chain, seq, bytes(hash_))
    return found
