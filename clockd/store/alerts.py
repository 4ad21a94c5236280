"""Alert state and the outbox: the SQL behind notify (docs/alerts.md).

Exactly-once across processes rests on single conditional statements: a condition turns on
with an upsert that only updates an inactive row, and off with an update that only matches an
active one, so when several daemons see the same change only one statement reports a row.
Messages are claimed for sending with `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has a
single writer), and a claim lapses if its sender dies, so a message is sent by one process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, update

from clockd.store.db import upsert_insert
from clockd.store.models import OK, AlertState, OutboxMessage, PollRun, ReportRun

CURSOR = "cursor"


@dataclass(frozen=True)
class Flip:
    """A condition that just changed, at `at`: `changes` numbers the change, `started_at` is
    when the condition began."""

    key: str
    changes: int
    started_at: dt.datetime | None
    detail: str
    at: dt.datetime

    @property
    def message_key(self) -> str:
        """Names the message about this change (unique even if alert_state were emptied)."""
        return f"{self.key}#{self.changes}@{self.at.astimezone(dt.UTC):%Y%m%dT%H%M%S}"


def turn_on(
    connection: Connection, key: str, kind: str, now: dt.datetime, detail: str = ""
) -> Flip | None:
    """Mark the condition active; a Flip only if it was not already (this caller fires it)."""
    statement = upsert_insert(connection, AlertState).values(
        key=key, kind=kind, active=True, changes=1, started_at=now, detail=detail
    )
    statement = statement.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "active": True,
            "changes": AlertState.changes + 1,
            "started_at": now,
            "ended_at": None,
            "detail": detail,
        },
        where=AlertState.active.is_(False),
    )
    row = connection.execute(statement.returning(AlertState.changes, AlertState.started_at)).first()
    return None if row is None else Flip(key, int(row[0]), row[1], detail, now)


def turn_off(connection: Connection, key: str, now: dt.datetime) -> Flip | None:
    """Mark the condition over; a Flip (with the start time and detail) only if it was active."""
    row = connection.execute(
        update(AlertState)
        .where(AlertState.key == key, AlertState.active.is_(True))
        .values(active=False, changes=AlertState.changes + 1, ended_at=now)
        .returning(AlertState.changes, AlertState.started_at, AlertState.detail)
    ).first()
    return None if row is None else Flip(key, int(row[0]), row[1], str(row[2]), now)


def once(connection: Connection, key: str, kind: str, now: dt.datetime, detail: str = "") -> bool:
    """Record a one-off event (a week's reminder); True only for the first caller ever."""
    statement = upsert_insert(connection, AlertState).values(
        key=key, kind=kind, active=False, changes=1, started_at=now, ended_at=now, detail=detail
    )
    row = connection.execute(
        statement.on_conflict_do_nothing(index_elements=["key"]).returning(AlertState.key)
    ).first()
    return row is not None


def active(connection: Connection, kind: str) -> dict[str, str]:
    """Active conditions of a kind: key -> detail."""
    rows = connection.execute(
        select(AlertState.key, AlertState.detail).where(
            AlertState.kind == kind, AlertState.active.is_(True)
        )
    )
    return {str(key): str(detail) for key, detail in rows}


def cursor(connection: Connection, name: str, start: int) -> int:
    """A stored position (created at `start` the first time it is asked for)."""
    key = f"{CURSOR}:{name}"
    statement = upsert_insert(connection, AlertState).values(
        key=key, kind=CURSOR, active=False, changes=0, position=start, detail=""
    )
    connection.execute(statement.on_conflict_do_nothing(index_elements=["key"]))
    value = connection.scalar(select(AlertState.position).where(AlertState.key == key))
    return int(value if value is not None else start)


def move_cursor(connection: Connection, name: str, old: int, new: int) -> bool:
    """Advance a cursor from `old`; False when another process moved it first."""
    result = connection.execute(
        update(AlertState)
        .where(AlertState.key == f"{CURSOR}:{name}", AlertState.position == old)
        .values(position=new)
    )
    return result.rowcount == 1


# --- the outbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A claimed outbox row."""

    id: int
    message_key: str
    channel: str
    kind: str
    title: str
    body: str
    created_at: dt.datetime
    attempts: int


def enqueue(
    connection: Connection,
    message_key: str,
    channels: Iterable[str],
    kind: str,
    title: str,
    body: str,
    now: dt.datetime,
) -> int:
    """One row per channel; a message key already queued for a channel is not queued again."""
    added = 0
    for channel in channels:
        statement = upsert_insert(connection, OutboxMessage).values(
            message_key=message_key,
            channel=channel,
            kind=kind,
            title=title,
            body=body,
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
        row = connection.execute(
            statement.on_conflict_do_nothing(index_elements=["message_key", "channel"]).returning(
                OutboxMessage.id
            )
        ).first()
        added += row is not None
    return added


def claim(
    connection: Connection,
    worker: str,
    channels: Sequence[str],
    now: dt.datetime,
    hold: dt.timedelta,
    limit: int,
) -> list[Outgoing]:
    """Take up to `limit` due messages for these channels, oldest first, for `hold`."""
    box = OutboxMessage
    due = (
        select(box)
        .where(
            box.sent_at.is_(None),
            box.gave_up_at.is_(None),
            box.channel.in_(channels),
            box.next_attempt_at <= now,
            or_(box.claimed_until.is_(None), box.claimed_until < now),
        )
        .order_by(box.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = connection.execute(due).all()
    if not rows:
        return []
    connection.execute(
        update(box)
        .where(box.id.in_([row.id for row in rows]))
        .values(claimed_by=worker, claimed_until=now + hold)
    )
    return [
        Outgoing(
            row.id,
            row.message_key,
            row.channel,
            row.kind,
            row.title,
            row.body,
            row.created_at,
            row.attempts,
        )
        for row in rows
    ]


def delivered(connection: Connection, message_id: int, worker: str, now: dt.datetime) -> None:
    connection.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == worker)
        .values(
            sent_at=now,
            attempts=OutboxMessage.attempts + 1,
            claimed_until=None,
            last_error=None,
        )
    )


def failed(
    connection: Connection,
    message_id: int,
    worker: str,
    error: str,
    retry_at: dt.datetime | None,
    now: dt.datetime,
) -> None:
    """Record a failed attempt: retry at `retry_at`, or give up when it is None."""
    values: dict[str, object] = {
        "attempts": OutboxMessage.attempts + 1,
        "claimed_until": None,
        "last_error": error[:1000],
    }
    if retry_at is None:
        values["gave_up_at"] = now
    else:
        values["next_attempt_at"] = retry_at
    connection.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == worker)
        .values(**values)
    )


def release(connection: Connection, message_ids: Sequence[int], worker: str) -> None:
    """Hand back claimed messages that were not tried (shutdown, or a channel already down)."""
    if message_ids:
        connection.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(message_ids), OutboxMessage.claimed_by == worker)
            .values(claimed_until=None)
        )


def waiting(connection: Connection) -> int:
    """Messages not yet delivered and not given up."""
    count = connection.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.gave_up_at.is_(None))
    )
    return int(count or 0)


# --- facts the watcher reads -----------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """When a terminal last answered well, and when anyone first tried it."""

    last_good: dt.datetime | None
    first_attempt: dt.datetime | None


def contacts(connection: Connection, terminal_ids: Sequence[str]) -> dict[str, Contact]:
    runs = PollRun
    finished = runs.finished_at.is_not(None)
    good = dict(
        connection.execute(
            select(runs.terminal_id, func.max(runs.finished_at))
            .where(runs.terminal_id.in_(terminal_ids), finished, runs.outcome == OK)
            .group_by(runs.terminal_id)
        ).all()
    )
    first = dict(
        connection.execute(
            select(runs.terminal_id, func.min(runs.started_at))
            .where(runs.terminal_id.in_(terminal_ids), finished)
            .group_by(runs.terminal_id)
        ).all()
    )
    return {
        terminal_id: Contact(_aware(good.get(terminal_id)), _aware(first.get(terminal_id)))
        for terminal_id in terminal_ids
    }


@dataclass(frozen=True)
class EditionFacts:
    """A report_runs row, with the deduction total of the revision before it."""

    id: int
    kind: str
    period: str
    revision: int
    status: str
    generated_at: dt.datetime
    deduction_total: int
    previous_deduction: int | None


def latest_editions(connection: Connection) -> list[EditionFacts]:
    """The newest revision of every report."""
    newest = (
        select(ReportRun.kind, ReportRun.period, func.max(ReportRun.revision).label("revision"))
        .group_by(ReportRun.kind, ReportRun.period)
        .subquery()
    )
    rows = connection.execute(
        select(ReportRun).join(
            newest,
            and_(
                ReportRun.kind == newest.c.kind,
                ReportRun.period == newest.c.period,
                ReportRun.revision == newest.c.revision,
            ),
        )
    )
    return [_edition(row, None) for row in rows]


def editions_after(connection: Connection, after_id: int) -> list[EditionFacts]:
    """report_runs rows with an id above `after_id`, in id order, with their predecessors'
    deduction totals."""
    rows = connection.execute(
        select(ReportRun).where(ReportRun.id > after_id).order_by(ReportRun.id)
    )
    facts = []
    for row in rows:
        previous = connection.scalar(
            select(ReportRun.deduction_total).where(
                ReportRun.kind == row.kind,
                ReportRun.period == row.period,
                ReportRun.revision == row.revision - 1,
            )
        )
        facts.append(_edition(row, None if previous is None else int(previous)))
    return facts


def last_edition_id(connection: Connection) -> int:
    return int(connection.scalar(select(func.coalesce(func.max(ReportRun.id), 0))) or 0)


def _edition(row: Row[Any], previous: int | None) -> EditionFacts:
    return EditionFacts(
        row.id,
        row.kind,
        row.period,
        row.revision,
        row.status,
        row.generated_at,
        row.deduction_total,
        previous,
    )


def _aware(value: object) -> dt.datetime | None:
    if value is None:
        return None
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
