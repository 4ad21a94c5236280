"""Serials that reached the store without a terminal of devices.yaml owning them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from clockd.store.models import Quarantine, Terminal


@dataclass(frozen=True)
class UnconfiguredSerial:
    serial: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    quarantined: int  # punches and records kept in quarantine, undecided


def unconfigured_serials(
    connection: Connection, configured: Collection[str]
) -> list[UnconfiguredSerial]:
    """Known devices whose serial is not configured (a push from an unknown SN, a swapped
    terminal), with their undecided quarantine count: an operator adds them or rejects them."""
    held = (
        select(Quarantine.serial, func.count().label("n"))
        .where(Quarantine.decision.is_(None))
        .group_by(Quarantine.serial)
        .subquery()
    )
    rows = connection.execute(
        select(Terminal.serial, Terminal.first_seen, Terminal.last_seen, held.c.n)
        .outerjoin(held, held.c.serial == Terminal.serial)
        .order_by(Terminal.serial)
    )
    return [
        UnconfiguredSerial(row.serial, row.first_seen, row.last_seen, int(row.n or 0))
        for row in rows
        if row.serial not in configured
    ]
