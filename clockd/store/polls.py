"""Poll runs, terminals and quarantine: what ingestion writes besides the punches themselves.

Every function runs inside the caller's transaction, so that one terminal's poll run, punches
and quarantined records are committed together or not at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence

from sqlalchemy import Connection, bindparam, insert, select, update

from clockd.store import chains
from clockd.store.models import (
    Outcome,
    PollRun,
    Quarantine,
    Source,
    Terminal,
    table_of,
    utcnow,
)

# Built once: every poll runs these per terminal, and building a statement costs several times
# what executing a cached one does (docs/performance.md, "Rules the code keeps").
_runs = table_of(PollRun)
_START_RUN = insert(_runs).returning(_runs.c.id)
_FINISH_RUN = update(_runs).where(_runs.c.id == bindparam("run_id"))
_terminals = table_of(Terminal)
_TOUCH_TERMINAL = update(_terminals).where(_terminals.c.serial == bindparam("terminal_serial"))
_ADD_TERMINAL = insert(_terminals)


def start_run(
    connection: Connection,
    *,
    terminal_id: str,
    source: Source,
    serial: str | None,
    started_at: dt.datetime,
    outcome: Outcome,
    worker: str,
    records_on_device: int | None = None,
    record_capacity: int | None = None,
    users_on_device: int | None = None,
    drift_seconds: float | None = None,
    error: str | None = None,
    finished_at: dt.datetime | None = None,
) -> int:
    """Insert a poll run; returns its id. A failed attempt is stored already finished."""
    run_id: int = connection.execute(
        _START_RUN,
        {
            "terminal_id": terminal_id,
            "source": source,
            "serial": serial,
            "started_at": started_at,
            "finished_at": finished_at,
            "outcome": outcome,
            "records_on_device": records_on_device,
            "record_capacity": record_capacity,
            "users_on_device": users_on_device,
            "drift_seconds": drift_seconds,
            "error": error,
            "worker": worker,
        },
    ).scalar_one()
    return run_id


def finish_run(
    connection: Connection,
    run_id: int,
    *,
    new: int,
    new_from: dt.datetime | None,
    new_to: dt.datetime | None,
    duplicates: int,
    quarantined: int,
) -> None:
    """Close a poll run with what it stored."""
    connection.execute(
        _FINISH_RUN,
        {
            "run_id": run_id,
            "finished_at": utcnow(),
            "new_count": new,
            "new_from": new_from,
            "new_to": new_to,
            "duplicate_count": duplicates,
            "quarantined_count": quarantined,
        },
    )


def note_contact(
    connection: Connection,
    serial: str,
    *,
    last_seen: dt.datetime,
    firmware: str | None = None,
) -> None:
    """A terminal called in (push): when, and the firmware it reported."""
    values: dict[str, object] = {"last_seen": last_seen}
    if firmware is not None:
        values["firmware"] = firmware
    connection.execute(update(Terminal).where(Terminal.serial == serial).values(**values))


def extend_run(
    connection: Connection,
    run_id: int,
    *,
    finished_at: dt.datetime,
    records_on_device: int | None = None,
    users_on_device: int | None = None,
) -> None:
    """Move a contact run's end on (a push terminal keeps calling within the hour)."""
    values: dict[str, object] = {"finished_at": finished_at}
    if records_on_device is not None or users_on_device is not None:
        values |= {"records_on_device": records_on_device, "users_on_device": users_on_device}
    connection.execute(update(PollRun).where(PollRun.id == run_id).values(**values))


def ledger_quarantine(connection: Connection, run_id: int, *, actor: str) -> None:
    """Enter the quarantine entries a poll run created into the integrity ledger."""
    ids = connection.scalars(select(Quarantine.id).where(Quarantine.poll_run_id == run_id))
    chains.record(connection, "quarantine", ids, "detect", actor)


def upsert_terminal(connection: Connection, serial: str, values: Mapping[str, object]) -> None:
    """Create or refresh the terminal known by `serial`, marking it seen now.

    `values` are Terminal columns: terminal_id, village, and what the device said of itself.
    """
    now = utcnow()
    changed = connection.execute(
        _TOUCH_TERMINAL, {"terminal_serial": serial, "last_seen": now, **values}
    ).rowcount
    if not changed:
        connection.execute(
            _ADD_TERMINAL, {"serial": serial, "first_seen": now, "last_seen": now, **values}
        )


def quarantine(connection: Connection, entries: Sequence[Mapping[str, object]]) -> None:
    """Keep records that are not counted; each entry holds Quarantine columns."""
    if entries:
        connection.execute(insert(Quarantine), list(entries))


def unreadable_kept(connection: Connection, serial: str) -> set[bytes]:
    """The raw bytes of the undecodable records already quarantined for a terminal."""
    return {
        raw
        for raw in connection.scalars(
            select(Quarantine.raw_record).where(
                Quarantine.serial == serial, Quarantine.raw_record.is_not(None)
            )
        )
        if raw is not None
    }


def added_since(
    connection: Connection, since: dt.datetime
) -> Iterator[tuple[dt.datetime, dt.datetime, dt.datetime]]:
    """(finish, earliest, latest local punch time) of every run finished since `since` that
    added punches: the periods whose reports late data may have changed. Led by the index on
    the finish time, so it reads only the runs since the last look; streamed, so a look over
    years of a district's runs holds one page of them at a time."""
    rows = connection.execution_options(stream_results=True, yield_per=10_000).execute(
        select(PollRun.finished_at, PollRun.new_from, PollRun.new_to).where(
            PollRun.finished_at >= since, PollRun.new_count > 0
        )
    )
    for finished, low, high in rows:
        if finished is not None and low is not None and high is not None:
            yield finished, low, high
