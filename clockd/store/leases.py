"""Terminal leases: how several `clockd run` processes on one database share the terminals.

Each process heartbeats; the terminals are split evenly between the processes whose heartbeat
is fresh. A process polls only the terminals it leases, renews its leases while it lives, and
gives back those above its fair share when another process joins. A process that dies stops
renewing, so its leases expire and the others take its terminals over. A terminal serves one
connection at a time, so two processes must never poll it at once: a lease is checked again
(and extended) right before each poll.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from sqlalchemy import Connection, delete, select, update

from clockd.store.db import upsert_insert
from clockd.store.models import Lease, Worker


def heartbeat(connection: Connection, worker_id: str, now: dt.datetime) -> None:
    statement = upsert_insert(connection, Worker).values(
        worker_id=worker_id, started_at=now, heartbeat_at=now
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["worker_id"], set_={"heartbeat_at": statement.excluded.heartbeat_at}
        )
    )


def retire(connection: Connection, worker_id: str) -> None:
    """A clean exit: give every lease back at once instead of letting it expire."""
    connection.execute(delete(Lease).where(Lease.worker_id == worker_id))
    connection.execute(delete(Worker).where(Worker.worker_id == worker_id))


def live_workers(connection: Connection, now: dt.datetime, ttl: dt.timedelta) -> list[str]:
    rows = connection.scalars(
        select(Worker.worker_id).where(Worker.heartbeat_at > now - ttl).order_by(Worker.worker_id)
    )
    return list(rows)


def balance(
    connection: Connection,
    worker_id: str,
    terminal_ids: Sequence[str],
    now: dt.datetime,
    ttl: dt.timedelta,
) -> list[str]:
    """Hold this worker's fair share of the terminals; returns the ones it now leases.

    Call inside a transaction after `heartbeat`. Leases above the fair share are released (the
    last ones in configuration order), free or expired ones are claimed up to it.
    """
    workers = max(1, len(live_workers(connection, now, ttl)))
    share = math.ceil(len(terminal_ids) / workers)
    mine = set(
        connection.scalars(
            select(Lease.terminal_id).where(Lease.worker_id == worker_id, Lease.expires_at > now)
        )
    )
    held = [t for t in terminal_ids if t in mine]
    if len(held) > share:
        surplus = held[share:]
        connection.execute(
            delete(Lease).where(Lease.worker_id == worker_id, Lease.terminal_id.in_(surplus))
        )
        held = held[:share]
    expires = now + ttl
    for terminal_id in terminal_ids:
        if len(held) >= share:
            break
        if terminal_id in held:
            continue
        if _claim(connection, worker_id, terminal_id, now, expires):
            held.append(terminal_id)
    connection.execute(
        update(Lease)
        .where(Lease.worker_id == worker_id, Lease.terminal_id.in_(held))
        .values(expires_at=expires)
    )
    return [t for t in terminal_ids if t in held]


def _claim(
    connection: Connection, worker_id: str, terminal_id: str, now: dt.datetime, expires: dt.datetime
) -> bool:
    """Take a terminal that is free, expired or already ours; a live lease of another wins."""
    statement = upsert_insert(connection, Lease).values(
        terminal_id=terminal_id, worker_id=worker_id, expires_at=expires
    )
    statement = statement.on_conflict_do_update(
        index_elements=["terminal_id"],
        set_={"worker_id": worker_id, "expires_at": expires},
        where=(Lease.expires_at <= now) | (Lease.worker_id == worker_id),
    )
    return connection.execute(statement.returning(Lease.terminal_id)).first() is not None


def extend(
    connection: Connection, worker_id: str, terminal_id: str, now: dt.datetime, ttl: dt.timedelta
) -> bool:
    """Extend one lease right before polling its terminal; False when it is no longer ours."""
    result = connection.execute(
        update(Lease)
        .where(
            Lease.terminal_id == terminal_id,
            Lease.worker_id == worker_id,
            Lease.expires_at > now,
        )
        .values(expires_at=now + ttl)
    )
    return result.rowcount == 1


def renew_all(connection: Connection, worker_id: str, now: dt.datetime, ttl: dt.timedelta) -> None:
    connection.execute(
        update(Lease)
        .where(Lease.worker_id == worker_id, Lease.expires_at > now)
        .values(expires_at=now + ttl)
    )
