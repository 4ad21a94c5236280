"""Console accounts, API tokens, the console's audit trail, quarantine decisions and the list
of report editions: the SQL behind `clockd serve` and its commands (user, token, quarantine)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Row, and_, case, func, insert, select, update

from clockd.store import chains
from clockd.store.db import write_transaction
from clockd.store.models import (
    ApiToken,
    AuditEvent,
    ConsoleUser,
    PunchRow,
    Quarantine,
    ReportRun,
    Terminal,
    utcnow,
)
from clockd.store.punches import each_terminal

# --- audit -------------------------------------------------------------------------------------


def audit(connection: Connection, actor: str, action: str, target: str, detail: str = "") -> None:
    """Record one write, inside the transaction that makes it."""
    connection.execute(
        insert(AuditEvent).values(
            at=utcnow(), actor=actor[:64], action=action[:32], target=target[:64], detail=detail
        )
    )


def record(engine: Engine, actor: str, action: str, target: str, detail: str = "") -> None:
    """Record a write whose own transaction lies elsewhere (a report being generated)."""
    with write_transaction(engine) as connection:
        audit(connection, actor, action, target, detail)


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    actor: str
    action: str
    target: str
    detail: str


def recent_audit(engine: Engine, limit: int = 100) -> list[AuditEntry]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
        )
        return [AuditEntry(r.at, r.actor, r.action, r.target, r.detail) for r in rows]


# --- accounts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    role: str
    cadre_id: str | None
    password_hash: str
    session_version: int
    failed_logins: int
    last_failed_at: dt.datetime | None
    created_at: dt.datetime
    disabled_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def _account(row: Row[Any]) -> Account:
    v = row._mapping
    return Account(
        id=v["id"],
        username=v["username"],
        role=v["role"],
        cadre_id=v["cadre_id"],
        password_hash=v["password_hash"],
        session_version=v["session_version"],
        failed_logins=v["failed_logins"],
        last_failed_at=v["last_failed_at"],
        created_at=v["created_at"],
        disabled_at=v["disabled_at"],
    )


def insert_account(
    engine: Engine, username: str, role: str, cadre_id: str | None, password_hash: str, actor: str
) -> Account | None:
    """The new account, or None when the name is taken."""
    with write_transaction(engine) as connection:
        taken = connection.scalar(select(ConsoleUser.id).where(ConsoleUser.username == username))
        if taken is not None:
            return None
        account_id = connection.execute(
            insert(ConsoleUser)
            .values(
                username=username,
                role=role,
                cadre_id=cadre_id,
                password_hash=password_hash,
                session_version=1,
                failed_logins=0,
                created_at=utcnow(),
                created_by=actor,
            )
            .returning(ConsoleUser.id)
        ).scalar_one()
        audit(connection, actor, "user.add", username, f"role={role} cadre={cadre_id or '-'}")
        row = connection.execute(select(ConsoleUser).where(ConsoleUser.id == account_id)).one()
        return _account(row)


def account_by_name(engine: Engine, username: str) -> Account | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(ConsoleUser).where(ConsoleUser.username == username)
        ).first()
    return None if row is None else _account(row)


def account_by_id(engine: Engine, account_id: int) -> Account | None:
    with engine.connect() as connection:
        row = connection.execute(select(ConsoleUser).where(ConsoleUser.id == account_id)).first()
    return None if row is None else _account(row)


def list_accounts(engine: Engine) -> list[Account]:
    with engine.connect() as connection:
        rows = connection.execute(select(ConsoleUser).order_by(ConsoleUser.username))
        return [_account(row) for row in rows]


def disable_account(engine: Engine, username: str, actor: str) -> Account | None:
    """Disable and end every session and token of the account; None when unknown."""
    with write_transaction(engine) as connection:
        row = connection.execute(
            select(ConsoleUser).where(ConsoleUser.username == username)
        ).first()
        if row is None:
            return None
        now = utcnow()
        connection.execute(
            update(ConsoleUser)
            .where(ConsoleUser.id == row.id)
            .values(
                disabled_at=func.coalesce(ConsoleUser.disabled_at, now),
                disabled_by=func.coalesce(ConsoleUser.disabled_by, actor),
                session_version=ConsoleUser.session_version + 1,
            )
        )
        connection.execute(
            update(ApiToken)
            .where(ApiToken.account_id == row.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=actor)
        )
        audit(connection, actor, "user.disable", username)
        return _account(
            connection.execute(select(ConsoleUser).where(ConsoleUser.id == row.id)).one()
        )


def end_sessions(engine: Engine, account_id: int) -> None:
    """Sign-out: every cookie issued so far for the account stops working."""
    with write_transaction(engine) as connection:
        connection.execute(
            update(ConsoleUser)
            .where(ConsoleUser.id == account_id)
            .values(session_version=ConsoleUser.session_version + 1)
        )


def record_login(engine: Engine, account_id: int, *, success: bool, password_hash: str) -> None:
    """Count failures (for slowing the next attempt); a success resets the count and may carry
    a rehashed password when the Argon2 parameters changed."""
    with write_transaction(engine) as connection:
        if success:
            values: dict[str, object] = {
                "failed_logins": 0,
                "last_failed_at": None,
                "password_hash": password_hash,
            }
        else:
            values = {"failed_logins": ConsoleUser.failed_logins + 1, "last_failed_at": utcnow()}
        connection.execute(update(ConsoleUser).where(ConsoleUser.id == account_id).values(values))


# --- API tokens --------------------------------------------------------------------------------


def insert_token(engine: Engine, account_id: int, token_hash: str, actor: str) -> int:
    with write_transaction(engine) as connection:
        token_id: int = connection.execute(
            insert(ApiToken)
            .values(
                account_id=account_id, token_hash=token_hash, created_at=utcnow(), created_by=actor
            )
            .returning(ApiToken.id)
        ).scalar_one()
        audit(connection, actor, "token.create", f"token#{token_id}", f"account#{account_id}")
        return token_id


def revoke_token(engine: Engine, token_id: int, actor: str) -> bool:
    """False when there is no such live token."""
    with write_transaction(engine) as connection:
        done = connection.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_by=actor)
        ).rowcount
        if done:
            audit(connection, actor, "token.revoke", f"token#{token_id}")
        return bool(done)


def account_for_token(engine: Engine, token_hash: str) -> Account | None:
    """The live account a live token acts for."""
    with engine.connect() as connection:
        row = connection.execute(
            select(ConsoleUser)
            .join(ApiToken, ApiToken.account_id == ConsoleUser.id)
            .where(
                ApiToken.token_hash == token_hash,
                ApiToken.revoked_at.is_(None),
                ConsoleUser.disabled_at.is_(None),
            )
        ).first()
    return None if row is None else _account(row)


# --- quarantine --------------------------------------------------------------------------------

RELEASE, REJECT = "release", "reject"


@dataclass(frozen=True)
class QuarantineEntry:
    id: int
    serial: str
    terminal_id: str | None
    village: str | None
    user_id: str | None
    punched_at: dt.datetime | None
    reason: str
    detected_at: dt.datetime
    decision: str | None
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None


def list_quarantine(
    engine: Engine,
    *,
    undecided_only: bool = False,
    offset: int = 0,
    limit: int | None = None,
) -> list[QuarantineEntry]:
    """Undecided entries first, then the decided ones; newest first within each."""
    query = (
        select(
            Quarantine,
            PunchRow.user_id,
            PunchRow.punched_at,
            Terminal.terminal_id,
            Terminal.village,
        )
        .outerjoin(PunchRow, PunchRow.id == Quarantine.punch_id)
        .outerjoin(Terminal, Terminal.serial == Quarantine.serial)
        .order_by(
            case((Quarantine.decision.is_(None), 0), else_=1),
            Quarantine.detected_at.desc(),
            Quarantine.id.desc(),
        )
        .offset(offset)
        .limit(limit)
    )
    if undecided_only:
        query = query.where(Quarantine.decision.is_(None))
    with engine.connect() as connection:
        return [
            QuarantineEntry(
                id=row.id,
                serial=row.serial,
                terminal_id=row.terminal_id,
                village=row.village,
                user_id=row.user_id,
                punched_at=row.punched_at,
                reason=row.reason,
                detected_at=row.detected_at,
                decision=row.decision,
                decided_by=row.decided_by,
                decided_at=row.decided_at,
                decision_note=row.decision_note,
            )
            for row in connection.execute(query)
        ]


def count_quarantine(engine: Engine) -> tuple[int, int]:
    """(entries, undecided entries)."""
    undecided = func.count(case((Quarantine.decision.is_(None), 1)))
    with engine.connect() as connection:
        total, open_ = connection.execute(
            select(func.count(), undecided).select_from(Quarantine)
        ).one()
    return int(total), int(open_)


@dataclass(frozen=True)
class Undecidable:
    """Why a quarantine entry cannot be decided: `str()` is the command line's English; the
    console words it in Chinese from the fields."""

    entry_id: int
    problem: Literal["missing", "decided", "undecoded"]
    decision: str | None = None  # for "decided": the decision taken, and by whom
    decided_by: str | None = None

    def __str__(self) -> str:
        if self.problem == "missing":
            return f"no quarantine entry #{self.entry_id}"
        if self.problem == "decided":
            return (
                f"entry #{self.entry_id} was already decided ({self.decision} by {self.decided_by})"
            )
        return f"entry #{self.entry_id} holds bytes that did not decode: there is no punch to count"


def decide_quarantine(
    engine: Engine, entry_id: int, decision: str, actor: str, reason: str
) -> Undecidable | None:
    """Release or reject an undecided entry; None on success, else why not."""
    if decision not in (RELEASE, REJECT):
        raise ValueError(decision)
    with write_transaction(engine) as connection:
        row = connection.execute(select(Quarantine).where(Quarantine.id == entry_id)).first()
        if row is None:
            return Undecidable(entry_id, "missing")
        if row.decision is not None:
            return Undecidable(entry_id, "decided", row.decision, row.decided_by)
        if decision == RELEASE and row.punch_id is None:
            return Undecidable(entry_id, "undecoded")
        connection.execute(
            update(Quarantine)
            .where(Quarantine.id == entry_id)
            .values(decision=decision, decided_by=actor, decided_at=utcnow(), decision_note=reason)
        )
        chains.record(connection, "quarantine", [entry_id], decision, actor)
        audit(connection, actor, f"quarantine.{decision}", f"quarantine#{entry_id}", reason)
    return None


# --- report editions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EditionFile:
    id: int
    kind: str
    period: str
    revision: int
    status: str
    generated_at: dt.datetime
    path: str
    deduction_total: int


def _edition(r: Row[Any]) -> EditionFile:
    return EditionFile(
        r.id, r.kind, r.period, r.revision, r.status, r.generated_at, r.path, r.deduction_total
    )


def all_editions(engine: Engine) -> list[EditionFile]:
    """Every report edition written, newest period first, newest revision first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(ReportRun).order_by(
                ReportRun.kind.desc(), ReportRun.period.desc(), ReportRun.revision.desc()
            )
        )
        return [_edition(row) for row in rows]


def edition_by_id(engine: Engine, edition_id: int) -> EditionFile | None:
    with engine.connect() as connection:
        row = connection.execute(select(ReportRun).where(ReportRun.id == edition_id)).first()
    return None if row is None else _edition(row)


# --- punches for the API -----------------------------------------------------------------------


@dataclass(frozen=True)
class PunchListing:
    id: int
    serial: str
    terminal_id: str | None
    village: str | None
    user_id: str
    punched_at: dt.datetime
    verify: int
    state: int
    source: str
    quarantined: bool


def punch_page(
    engine: Engine,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    user_id: str | None,
    serials: list[str] | None,
    after_id: int,
    limit: int,
) -> list[PunchListing]:
    """Punches in id order after `after_id` (keyset paging), local times in [start, end)."""
    query = (
        select(
            PunchRow,
            Terminal.terminal_id,
            Terminal.village,
            case(
                (
                    and_(
                        Quarantine.id.is_not(None),
                        func.coalesce(Quarantine.decision, "") != RELEASE,
                    ),
                    1,
                ),
                else_=0,
            ).label("held"),
        )
        .outerjoin(Terminal, Terminal.serial == PunchRow.serial)
        .outerjoin(Quarantine, Quarantine.punch_id == PunchRow.id)
        .where(PunchRow.id > after_id)
        .order_by(PunchRow.id)
        .limit(limit)
    )
    if start is not None:
        query = query.where(PunchRow.punched_at >= start)
    if end is not None:
        query = query.where(PunchRow.punched_at < end)
    if user_id is not None:
        query = query.where(PunchRow.user_id == user_id)
    with engine.connect() as connection:
        if serials is not None:
            query = query.where(PunchRow.serial.in_(serials))
        elif start is not None or end is not None:
            query = query.where(each_terminal(connection))  # a time range: probe the key
        return [
            PunchListing(
                id=row.id,
                serial=row.serial,
                terminal_id=row.terminal_id,
                village=row.village,
                user_id=row.user_id,
                punched_at=row.punched_at,
                verify=row.verify,
                state=row.state,
                source=row.source,
                quarantined=bool(row.held),
            )
            for row in connection.execute(query)
        ]


# --- change detection --------------------------------------------------------------------------


def data_version(engine: Engine) -> tuple[object, ...]:
    """A value that changes whenever anything a week's figures or status depend on changes:
    punches, quarantine decisions, leave, work results, poll runs and report editions. One
    cheap query (index lookups, and scans of small tables only), so a cached figure can be
    checked on every request."""
    from clockd.store.models import LeaveRow, PollRun, WorkResult

    parts = (
        select(func.max(PunchRow.id)).scalar_subquery(),
        select(func.max(Quarantine.decided_at)).scalar_subquery(),
        select(func.count(Quarantine.decided_at)).scalar_subquery(),
        select(func.max(Quarantine.id)).scalar_subquery(),
        select(func.max(LeaveRow.id)).scalar_subquery(),
        select(func.max(LeaveRow.revoked_at)).scalar_subquery(),
        select(func.max(PollRun.id)).scalar_subquery(),
        select(func.max(PollRun.finished_at)).scalar_subquery(),
        select(func.max(ReportRun.id)).scalar_subquery(),
        select(func.max(ReportRun.generated_at)).scalar_subquery(),
        select(func.max(WorkResult.id)).scalar_subquery(),  # filing time is never changed
    )
    with engine.connect() as connection:
        return tuple(connection.execute(select(*parts)).one())
