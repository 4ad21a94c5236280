"""Serials that reached the store without a terminal of devices.yaml owning them."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, func, select

from clockd.store.facts import UnconfiguredSerial
from clockd.store.models import Quarantine, Terminal


def unconfigured_serials(
    connection: Connection, configured: Collection[str], terminal_ids: Collection[str] = ()
) -> list[UnconfiguredSerial]:
    """Known devices whose serial is not configured (a push from an unknown SN, a swapped
    terminal), with their undecided quarantine count: an operator adds them or rejects them.
    A device reached at a configured terminal's address (`terminal_ids`) that answered with
    another serial is not listed: that terminal's own row already says the serial differs, and
    its punches are kept under `<serial>@<terminal id>`, counted for no village."""
    held = (
        select(Quarantine.serial, func.count().label("n"))
        .where(Quarantine.decision.is_(None))
        .group_by(Quarantine.serial)
        .subquery()
    )
    rows = connection.execute(
        select(
            Terminal.serial, Terminal.terminal_id, Terminal.first_seen, Terminal.last_seen, held.c.n
        )
        .outerjoin(held, held.c.serial == Terminal.serial)
        .order_by(Terminal.serial)
    )
    return [
        UnconfiguredSerial(row.serial, row.first_seen, row.last_seen, int(row.n or 0))
        for row in rows
        if row.serial not in configured and row.terminal_id not in terminal_ids
    ]
