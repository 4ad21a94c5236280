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
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection, Engine

from clockd.domain import Cadre, LeaveKind
from clockd.errors import ConfigError, UserError
from clockd.store import leave as store
from clockd.store.db import write_transaction
from clockd.store.leave import LeaveEntry
from clockd.store.models import utcnow
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
    *,
    kind: LeaveKind = LeaveKind.LEAVE,
    note: str = "",
    actor: str,
) -> LeaveEntry:
    """Record one approved leave entry for a cadre in the roster."""
    user_id = user_id.strip()
    _check_period(user_id, start, end, {cadre.user_id for cadre in cadres})
    actor = check_actor(actor)
    with write_transaction(engine) as connection:
        existing = store.active_entry_id(connection, user_id, start, end, kind)
        if existing is not None:
            raise UserError(f"this leave is already recorded as #{existing}")
        leave_id = store.insert_entry(
            connection, user_id, start, end, kind, note=note.strip(), actor=actor, action="add"
        )
        return _entry(connection, leave_id)


def list_leave(
    engine: Engine,
    user_id: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[LeaveEntry]:
    """Entries (revoked ones too) of a user and/or touching a date range, by start date."""
    with engine.connect() as connection:
        return store.entries(connection, None if user_id is None else user_id.strip(), start, end)


def revoke_leave(engine: Engine, leave_id: int, actor: str) -> LeaveEntry:
    """Withdraw an entry; it stays in the table, marked revoked, and the audit says by whom."""
    actor = check_actor(actor)
    if not 0 < leave_id < 2**63:  # beyond any id the database can hold
        raise UserError(f"no leave entry #{leave_id}")
    with write_transaction(engine) as connection:
        found = store.get_entry(connection, leave_id)
        if found is None:
            raise UserError(f"no leave entry #{leave_id}")
        if found.revoked_at is not None:
            raise UserError(f"leave #{leave_id} was already revoked by {found.revoked_by}")
        now = utcnow()
        store.mark_revoked(connection, leave_id, actor=actor, at=now)
        entry = _entry(connection, leave_id)
        store.audit(
            connection, leave_id, action="revoke", actor=actor, at=now, detail=entry.describe()
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
        path,
        rows,
        _LeaveLine,
        {"start": date_cell, "end": date_cell, "user_id": text_cell},
        LEAVE_COLUMNS,
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
            if key in seen or store.active_entry_id(connection, *key) is not None:
                skipped += 1
                continue
            seen.add(key)
            source = f"{path.name} {row.where}"
            leave_id = store.insert_entry(
                connection,
                *key,
                note=line.note.strip(),
                actor=actor,
                action="import",
                source=source,
            )
            added.append(_entry(connection, leave_id))
    return LeaveImport(added, skipped)


def _entry(connection: Connection, leave_id: int) -> LeaveEntry:
    entry = store.get_entry(connection, leave_id)
    assert entry is not None, "read back in the transaction that wrote it"
    return entry
