"""Approved leave and business trips: add, list, import and revoke, every change audited.

Leave days lower a cadre's available working days for the week (the rules engine does that),
so who entered or withdrew each entry, and when, is kept in leave_audit; an entry is never
deleted, only revoked. An import is all or nothing: one bad row and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection, Engine, Row, insert, select, update

from clockd.domain import Cadre, LeaveKind
from clockd.errors import ConfigError, UserError
from clockd.store.db import write_transaction
from clockd.store.models import LeaveAudit, LeaveRow, utcnow
from clockd.tabular import date_cell, read_rows, text_cell, validate_rows

MAX_ACTOR = 64  # leave.created_by and leave_audit.actor

LEAVE_COLUMNS = {
    "user_id": "user_id",
    "工号": "user_id",
    "pin": "user_id",
    "from": "start",
    "start": "start",
    "开始日期": "start",
    "起始日期": "start",
    "to": "end",
    "end": "end",
    "结束日期": "end",
    "截止日期": "end",
    "kind": "kind",
    "类型": "kind",
    "假别": "kind",
    "note": "note",
    "备注": "note",
    "说明": "note",
}


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


def current_user() -> str:
    """The OS user, the default author of a change."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry, e.g. in a container
        return "unknown"


def check_actor(actor: str) -> str:
    name = actor.strip()
    if not name or len(name) > MAX_ACTOR:
        raise UserError(f"--by: give a name of 1 to {MAX_ACTOR} characters")
    return name


def parse_day(text: str, what: str) -> dt.date:
    """A date from the command line: 2026-11-18, 2026/11/18 or 2026年11月18日."""
    try:
        day = date_cell(text)
    except ValueError:
        day = None
    if day is None:
        raise UserError(f"{what}: {text!r} is not a date (use YYYY-MM-DD)")
    return day


def parse_kind(text: str) -> LeaveKind:
    try:
        return LeaveKind.parse(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _check_period(user_id: str, start: dt.date, end: dt.date, roster: Collection[str]) -> None:
    if user_id not in roster:
        raise UserError(f"user {user_id} is not in the roster")
    if start > end:
        raise UserError(f"from {start.isoformat()} is after to {end.isoformat()}")


def add_leave(
    engine: Engine,
    cadres: Sequence[Cadre],
    user_id: str,
    start: dt.date,
    end: dt.date,
    kind: LeaveKind,
    note: str,
    actor: str,
) -> LeaveEntry:
    """Record one approved leave entry for a cadre in the roster."""
    user_id = user_id.strip()
    _check_period(user_id, start, end, {cadre.user_id for cadre in cadres})
    actor = check_actor(actor)
    with write_transaction(engine) as connection:
        existing = _same_entry(connection, user_id, start, end, kind)
        if existing is not None:
            raise UserError(f"this leave is already recorded as #{existing}")
        leave_id = insert_leave(
            connection, user_id, start, end, kind, note.strip(), actor, "add", ""
        )
        return _entry(connection, leave_id)


def _same_entry(
    connection: Connection, user_id: str, start: dt.date, end: dt.date, kind: LeaveKind
) -> int | None:
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


def insert_leave(
    connection: Connection,
    user_id: str,
    start: dt.date,
    end: dt.date,
    kind: LeaveKind,
    note: str,
    actor: str,
    action: str,
    source: str,
) -> int:
    now = utcnow()
    leave_id: int = connection.execute(
        insert(LeaveRow)
        .values(
            user_id=user_id,
            start_date=start,
            end_date=end,
            kind=kind.value,
            note=note,
            created_at=now,
            created_by=actor,
        )
        .returning(LeaveRow.id)
    ).scalar_one()
    detail = f"{user_id} {start.isoformat()}..{end.isoformat()} {kind.label}"
    if note:
        detail += f" {note}"
    if source:
        detail += f" ({source})"
    connection.execute(
        insert(LeaveAudit).values(
            leave_id=leave_id, action=action, actor=actor, at=now, detail=detail
        )
    )
    return leave_id


def list_leave(
    engine: Engine,
    user_id: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[LeaveEntry]:
    """Entries (revoked ones too) of a user and/or touching a date range, by start date."""
    query = select(LeaveRow).order_by(LeaveRow.start_date, LeaveRow.user_id, LeaveRow.id)
    if user_id is not None:
        query = query.where(LeaveRow.user_id == user_id.strip())
    if start is not None:
        query = query.where(LeaveRow.end_date >= start)
    if end is not None:
        query = query.where(LeaveRow.start_date <= end)
    with engine.connect() as connection:
        return [_from_row(row) for row in connection.execute(query)]


def revoke_leave(engine: Engine, leave_id: int, actor: str) -> LeaveEntry:
    """Withdraw an entry; it stays in the table, marked revoked, and the audit says by whom."""
    actor = check_actor(actor)
    with write_transaction(engine) as connection:
        row = connection.execute(select(LeaveRow).where(LeaveRow.id == leave_id)).first()
        if row is None:
            raise UserError(f"no leave entry #{leave_id}")
        if row.revoked_at is not None:
            raise UserError(f"leave #{leave_id} was already revoked by {row.revoked_by}")
        now = utcnow()
        connection.execute(
            update(LeaveRow).where(LeaveRow.id == leave_id).values(revoked_at=now, revoked_by=actor)
        )
        entry = _entry(connection, leave_id)
        connection.execute(
            insert(LeaveAudit).values(
                leave_id=leave_id, action="revoke", actor=actor, at=now, detail=entry.describe()
            )
        )
        return entry


class _LeaveLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(min_length=1, max_length=24)]
    start: dt.date
    end: dt.date
    kind: LeaveKind = LeaveKind.LEAVE
    note: str = ""

    @field_validator("kind", mode="before")
    @classmethod
    def _any_kind_name(cls, value: object) -> LeaveKind:
        return value if isinstance(value, LeaveKind) else LeaveKind.parse(str(value))

    @model_validator(mode="after")
    def _ordered(self) -> _LeaveLine:
        if self.start > self.end:
            raise ValueError(f"from {self.start} is after to {self.end}")
        return self


@dataclass(frozen=True)
class LeaveImport:
    added: list[LeaveEntry]
    already_recorded: int


def import_leave(engine: Engine, cadres: Sequence[Cadre], path: Path, actor: str) -> LeaveImport:
    """Add every row of a CSV, xlsx or YAML sheet, or none if any row is wrong."""
    actor = check_actor(actor)
    rows = read_rows(path, LEAVE_COLUMNS, yaml_list_key="leave")
    validated = validate_rows(
        path, rows, _LeaveLine, {"start": date_cell, "end": date_cell, "user_id": text_cell}
    )
    roster = {cadre.user_id for cadre in cadres}
    problems = [
        f"{row.where}, column user_id: {line.user_id} is not in the roster"
        for row, line in validated
        if line.user_id not in roster
    ]
    if problems:
        raise ConfigError(str(path), problems)
    added: list[LeaveEntry] = []
    skipped = 0
    with write_transaction(engine) as connection:
        seen: set[tuple[str, dt.date, dt.date, LeaveKind]] = set()
        for row, line in validated:
            key = (line.user_id, line.start, line.end, line.kind)
            if key in seen or _same_entry(connection, *key) is not None:
                skipped += 1
                continue
            seen.add(key)
            source = f"{path.name} {row.where}"
            leave_id = insert_leave(connection, *key, line.note.strip(), actor, "import", source)
            added.append(_entry(connection, leave_id))
    return LeaveImport(added, skipped)


def _entry(connection: Connection, leave_id: int) -> LeaveEntry:
    row = connection.execute(select(LeaveRow).where(LeaveRow.id == leave_id)).one()
    return _from_row(row)


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
