"""The leave tables: entries are added and revoked, never updated otherwise or deleted, and
every change leaves a line in leave_audit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from clockd.domain import LeaveKind
from clockd.store import chains
from clockd.store.models import LeaveAudit, LeaveRow, utcnow


@dataclass(frozen=True)
class LeaveEntry:
    """A leave row as stored."""

    id: int
    user_id: str
    start: dt.date
    end: dt.date
    kind: LeaveKind
    note: str
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None
    revoked_by: str | None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def describe(self) -> str:
        text = f"{self.user_id} {self.start.isoformat()}..{self.end.isoformat()} {self.kind.label}"
        return f"{text} {self.note}" if self.note else text


def active_entry_id(
    connection: Connection, user_id: str, start: dt.date, end: dt.date, kind: LeaveKind
) -> int | None:
    """The id of an unrevoked entry with exactly these dates and kind, if there is one."""
    found: int | None = connection.scalar(
        select(LeaveRow.id).where(
            LeaveRow.user_id == user_id,
            LeaveRow.start_date == start,
            LeaveRow.end_date == end,
            LeaveRow.kind == kind.value,
            LeaveRow.revoked_at.is_(None),
        )
    )
    return found


def insert_entry(
    connection: Connection,
    user_id: str,
    start: dt.date,
    end: dt.date,
    kind: LeaveKind,
    *,
    note: str,
    actor: str,
    action: str,
    source: str = "",
) -> int:
    """Store a new entry and its audit line (`action` add or import, from `source`, e.g. the
    file and row it was imported from); returns the entry's id."""
    at = utcnow()
    leave_id: int = connection.execute(
        insert(LeaveRow)
        .values(
            user_id=user_id,
            start_date=start,
            end_date=end,
            kind=kind.value,
            note=note,
            created_at=at,
            created_by=actor,
        )
        .returning(LeaveRow.id)
    ).scalar_one()
    detail = f"{user_id} {start.isoformat()}..{end.isoformat()} {kind.label}"
    if note:
        detail += f" {note}"
    if source:
        detail += f" ({source})"
    audit(connection, leave_id, action=action, actor=actor, at=at, detail=detail)
    return leave_id


def mark_revoked(connection: Connection, leave_id: int, *, actor: str, at: dt.datetime) -> None:
    connection.execute(
        update(LeaveRow).where(LeaveRow.id == leave_id).values(revoked_at=at, revoked_by=actor)
    )


def audit(
    connection: Connection, leave_id: int, *, action: str, actor: str, at: dt.datetime, detail: str
) -> None:
    """One line of leave_audit (`action` is add, import or revoke), and both the leave row's new
    state and the audit line in the integrity ledger (docs/integrity.md)."""
    audit_id: int = connection.execute(
        insert(LeaveAudit)
        .values(leave_id=leave_id, action=action, actor=actor, at=at, detail=detail)
        .returning(LeaveAudit.id)
    ).scalar_one()
    chains.record(connection, "leave", [leave_id], action, actor, at=at)
    chains.record(connection, "leave_audit", [audit_id], action, actor, at=at)


def get_entry(connection: Connection, leave_id: int) -> LeaveEntry | None:
    row = connection.execute(select(LeaveRow).where(LeaveRow.id == leave_id)).first()
    return None if row is None else _from_row(row)


def entries(
    connection: Connection,
    user_id: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[LeaveEntry]:
    """Entries (revoked ones too) of a user and/or touching a date range, by start date."""
    query = select(LeaveRow).order_by(LeaveRow.start_date, LeaveRow.user_id, LeaveRow.id)
    if user_id is not None:
        query = query.where(LeaveRow.user_id == user_id)
    if start is not None:
        query = query.where(LeaveRow.end_date >= start)
    if end is not None:
        query = query.where(LeaveRow.start_date <= end)
    return [_from_row(row) for row in connection.execute(query)]


def _from_row(row: Row[Any]) -> LeaveEntry:
    values = row._mapping
    return LeaveEntry(
        id=values["id"],
        user_id=values["user_id"],
        start=values["start_date"],
        end=values["end_date"],
        kind=LeaveKind(values["kind"]),
        note=values["note"],
        created_at=values["created_at"],
        created_by=values["created_by"],
        revoked_at=values["revoked_at"],
        revoked_by=values["revoked_by"],
    )
