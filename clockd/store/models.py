"""Tables. Raw punches are append-only; every correction lives in its own audited table."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Integer on SQLite so the id is the rowid (autoincrement); BIGINT elsewhere, because punches
# accumulate for years across a district.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An instant, always timezone-aware UTC in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """A model's table, for statements built once in Core: a statement named by the model
    goes through the ORM's preparation on every execution."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class Terminal(Base):
    """A physical terminal, known by the serial number it reports."""

    __tablename__ = "terminals"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(String(32), doc="config id it was reached as")
    village: Mapped[str | None] = mapped_column(
        String(64), doc="None while the serial is not the one configured for that address"
    )
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    firmware: Mapped[str | None] = mapped_column(String(64))
    platform: Mapped[str | None] = mapped_column(String(64))
    device_name: Mapped[str | None] = mapped_column(String(64))


class CadreRow(Base):
    """The roster as last loaded, so the database alone can explain a report."""

    __tablename__ = "cadres"

    user_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    village: Mapped[str | None] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    active_from: Mapped[dt.date | None] = mapped_column(Date)
    active_to: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Outcome(enum.StrEnum):
    """What a poll run's `outcome` says."""

    RUNNING = "running"  # begun, not yet finished (or its process died)
    OK = "ok"
    FAILED = "failed"
    MISMATCH = "mismatch"  # answered with another serial than configured


class Source(enum.StrEnum):
    """How punches reached the store: a network poll, a terminal's USB export, or a push."""

    POLL = "poll"
    USB = "usb"
    PUSH = "push"


# The names the report modules import, typed as the column's plain strings.
OK: str = Outcome.OK
FAILED: str = Outcome.FAILED
MISMATCH: str = Outcome.MISMATCH


class PollRun(Base):
    """One attempt to collect a terminal's log (by network or USB file), successful or not."""

    __tablename__ = "poll_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    terminal_id: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(8), default=Source.POLL)
    serial: Mapped[str | None] = mapped_column(String(64), doc="serial the device reported")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16), default=Outcome.RUNNING)
    records_on_device: Mapped[int | None] = mapped_column(Integer)
    record_capacity: Mapped[int | None] = mapped_column(Integer)
    users_on_device: Mapped[int | None] = mapped_column(Integer)
    new_count: Mapped[int] = mapped_column(Integer, default=0)
    new_from: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=False), doc="earliest local time among the punches this run added"
    )
    new_to: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=False))
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    quarantined_count: Mapped[int] = mapped_column(Integer, default=0)
    drift_seconds: Mapped[float | None] = mapped_column(Float)
    clock_synced: Mapped[bool] = mapped_column(Boolean, default=False)
    cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128), doc="host:pid that ran it")

    __table_args__ = (Index(None, "terminal_id", "finished_at"), Index(None, "finished_at"))


class PunchRow(Base):
    """A raw punch exactly as the terminal recorded it. Never updated, never deleted."""

    __tablename__ = "punches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(ForeignKey("terminals.serial"))
    user_id: Mapped[str] = mapped_column(String(24))
    punched_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=False), doc="the terminal's naive local wall-clock time"
    )
    verify: Mapped[int] = mapped_column(SmallInteger, default=0, doc="verify type (finger, card…)")
    state: Mapped[int] = mapped_column(SmallInteger, default=0, doc="punch state (in, out…)")
    workcode: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(8), default=Source.POLL)
    poll_run_id: Mapped[int | None] = mapped_column(ForeignKey("poll_runs.id"))
    ingested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The terminal's hash chain (see docs/integrity.md): position and sha256 link. NULL only on
    # a row written behind clockd's back.
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)
    chain_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    # The dedupe key, and the only index to maintain on the hot path. It leads with the
    # terminal so that each terminal's insert transaction touches few index pages; period
    # queries probe each serial's time range of it (store/periods.py).
    __table_args__ = (UniqueConstraint("serial", "punched_at", "user_id"),)


class TerminalLog(Base):
    """What clockd last stored of a terminal's log, to skip the unchanged part on a re-poll.

    `digest` is the sha256 of the first `records` raw records (`record_size` bytes each) of
    the log as downloaded; `users_digest` covers the uid -> user ID table for layouts whose
    records hold only the uid. A later download whose first `records` records hash the same
    holds exactly those records, all stored already (docs/performance.md, "Re-polls").
    """

    __tablename__ = "terminal_logs"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)  # as punches are stored
    record_size: Mapped[int] = mapped_column(SmallInteger)
    records: Mapped[int] = mapped_column(Integer)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    users_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Quarantine(Base):
    """A record kept but not counted: a clock fault, or bytes that did not decode."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    punch_id: Mapped[int | None] = mapped_column(ForeignKey("punches.id"), unique=True)
    serial: Mapped[str] = mapped_column(String(64), index=True)
    raw_record: Mapped[bytes | None] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(200))
    detected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    poll_run_id: Mapped[int | None] = mapped_column(ForeignKey("poll_runs.id"))
    decision: Mapped[str | None] = mapped_column(String(16), doc="release | reject, by an operator")
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(Text)


class LeaveRow(Base):
    """Approved leave or business trip, inclusive dates. Revoked, never deleted."""

    __tablename__ = "leave"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(24), index=True)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class LeaveAudit(Base):
    """Who changed which leave entry, when, and how."""

    __tablename__ = "leave_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    leave_id: Mapped[int] = mapped_column(ForeignKey("leave.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # add | import | revoke
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")


class ReportRun(Base):
    """A workbook written. The unique key lets exactly one process write each revision."""

    __tablename__ = "report_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # weekly | monthly
    period: Mapped[str] = mapped_column(String(16))  # 2026-W47 | 2026-11
    revision: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # final | provisional | corrected
    generated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    path: Mapped[str] = mapped_column(Text)
    input_fingerprint: Mapped[str] = mapped_column(String(128))
    deduction_total: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128))
    # Whether report_figures holds what this edition published (not for editions written
    # before migration 0005).
    figures_recorded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (UniqueConstraint("kind", "period", "revision"),)


class Worker(Base):
    """A running `clockd run` process, known by its heartbeat (district deployments)."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lease(Base):
    """Which process polls a terminal; a lease that is not renewed expires and is taken over."""

    __tablename__ = "leases"

    terminal_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


# --- alerts and reminders (docs/alerts.md) ------------------------------------------------------


class AlertState(Base):
    """One watched condition (a stale terminal, a provisional report, ...) or one-off event.

    A condition fires when `active` turns true and again when it turns false; the flip is one
    conditional statement, so of several processes exactly one sees it happen. `changes`
    counts the flips and names each message. Rows of kind `cursor` keep a position in
    another table in `position`.
    """

    __tablename__ = "alert_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    changes: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    position: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text, default="")


class OutboxMessage(Base):
    """A message for one channel, kept until delivered (or given up after notify.give_up_hours)."""

    __tablename__ = "notify_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_key: Mapped[str] = mapped_column(String(240))
    channel: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    gave_up_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("message_key", "channel"),
        Index(None, "sent_at", "next_attempt_at"),
    )


# --- the integrity ledger (docs/integrity.md) ---------------------------------------------------


class ChainHead(Base):
    """The last link of one hash chain: a terminal's punches, or one audited table.

    Its row is locked by every writer of the chain, so concurrent sources cannot fork it, and
    `clockd verify` compares each chain's end with it, so a truncated tail is noticed.
    """

    __tablename__ = "chain_heads"

    chain: Mapped[str] = mapped_column(String(100), primary_key=True)  # punches/SERIAL | leave
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    last_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(Base):
    """One change to an audited row (leave, quarantine, report editions…), with the row's state
    after it, chained per table."""

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(100))  # the audited table's name
    seq: Mapped[int] = mapped_column(BigInteger)
    row_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str | None] = mapped_column(Text, doc="canonical JSON; None once deleted")
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (Index(None, "chain", "row_id"),)


# --- report editions as published (migration 0005) --------------------------------------


class ReportFigure(Base):
    """One cadre's figures as a report edition published them, so that a later revision's
    更正说明 compares with what was printed, not with a recomputation under today's roster
    and rules (see docs/editions.md). Weekly rows hold the week's days; monthly rows the
    month's failed weeks; both the deduction in yuan."""

    __tablename__ = "report_figures"

    run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("report_runs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    required_days: Mapped[int | None] = mapped_column(Integer)
    valid_days: Mapped[int] = mapped_column(Integer)
    failed_weeks: Mapped[int] = mapped_column(Integer)
    deduction: Mapped[int] = mapped_column(Integer)


# --- monthly statistics' week totals (migration 0011) ------------------------------------


class WeekTotal(Base):
    """One week's totals for the monthly statistics (rules.week_totals), kept so that a monthly
    report reads and assesses only its own month (reports/earlier.py). `inputs` digests
    everything the totals were computed from, the week's punch state included: a row whose
    digest no longer matches is computed again. The punch_* columns are the week's share of
    the report fingerprint's punch digest (count, and wrapping sum and xor of 64-bit row
    hashes, stored as signed integers)."""

    __tablename__ = "week_totals"

    week: Mapped[str] = mapped_column(String(8), primary_key=True, doc="2026-W47")
    inputs: Mapped[str] = mapped_column(String(64))
    punch_count: Mapped[int] = mapped_column(BigInteger)
    punch_sum: Mapped[int] = mapped_column(BigInteger)
    punch_xor: Mapped[int] = mapped_column(BigInteger)
    person_weeks: Mapped[int] = mapped_column(Integer)
    valid_days: Mapped[int] = mapped_column(Integer)
    deduction: Mapped[int] = mapped_column(BigInteger)
    failing: Mapped[str] = mapped_column(Text, doc="JSON list of the user IDs that failed the week")
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- web console (migration 0007) ------------------------------------------------------


class ConsoleUser(Base):
    """A person who signs in to the web console. Disabled, never deleted (the audit names them).

    `session_version` is part of every session cookie: raising it (on disable, on sign-out)
    ends every session of the account at once.
    """

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | hr | leader | cadre
    cadre_id: Mapped[str | None] = mapped_column(String(24), doc="roster user ID of a cadre")
    password_hash: Mapped[str] = mapped_column(Text)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    disabled_by: Mapped[str | None] = mapped_column(String(64))


class ApiToken(Base):
    """A bearer token for scripts, acting as its account. Only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class LeaveRequest(Base):
    """A leave or business-trip request and its state; `leave_id` is the approved leave row."""

    __tablename__ = "leave_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(24), index=True)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))  # pending|approved|rejected|withdrawn|closed
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    leave_id: Mapped[int | None] = mapped_column(ForeignKey("leave.id"))
    closed_on: Mapped[dt.date | None] = mapped_column(Date, doc="last day of leave after 销假")


class LeaveRequestEvent(Base):
    """Every state change of a leave request: who, when, why."""

    __tablename__ = "leave_request_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("leave_requests.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # request|approve|reject|withdraw|close
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")


class WorkResult(Base):
    """工作清单: what a cadre achieved on one valid village day (SPEC §3)."""

    __tablename__ = "work_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(24))
    day: Mapped[dt.date] = mapped_column(Date)
    village: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    entered_by: Mapped[str] = mapped_column(String(64))
    entered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "day"), Index(None, "day"))


class AuditEvent(Base):
    """Every write made through the console, the API or the console's commands."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class PollRunDay(Base):
    """One terminal's poll runs of one local day, folded together once they are older than
    `retention.poll_runs_days` (store/retention.py): what the terminal facts of old periods
    need, at one row per terminal per day instead of dozens. It covers every run of the day;
    the runs that stored punches or quarantined records stay in poll_runs as well, since those
    rows point at them."""

    __tablename__ = "poll_run_days"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True, doc="local day the runs began")
    terminal_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    runs: Mapped[int] = mapped_column(Integer)
    ok_runs: Mapped[int] = mapped_column(Integer)
    failed_runs: Mapped[int] = mapped_column(Integer)
    mismatch_runs: Mapped[int] = mapped_column(Integer)
    new_count: Mapped[int] = mapped_column(Integer)
    duplicate_count: Mapped[int] = mapped_column(Integer)
    quarantined_count: Mapped[int] = mapped_column(Integer)
    new_from: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=False))
    new_to: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=False))
    first_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    first_ok_finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_ok_finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_outcome: Mapped[str] = mapped_column(String(16), doc="of the day's last run")
    last_error: Mapped[str | None] = mapped_column(Text)
    serial: Mapped[str | None] = mapped_column(String(64), doc="of the last run that read the log")
    records_on_device: Mapped[int | None] = mapped_column(Integer)
    record_capacity: Mapped[int | None] = mapped_column(Integer)
    drift_seconds: Mapped[float | None] = mapped_column(Float)
    last_run_id: Mapped[int] = mapped_column(BigInteger, doc="the newest run folded in")


# Retention folds runs by their start (store/retention.py), and the period queries select runs
# started in a period (store/periods.py): both range over started_at.
Index("ix_poll_runs_started_at", PollRun.started_at)
# The runs retention may delete, by start: its search for the oldest of them would otherwise walk
# past every run kept for the punches it stored, a number that grows for as long as clockd runs.
_FOLDABLE = (PollRun.new_count == 0) & (PollRun.quarantined_count == 0)
Index(
    "ix_poll_runs_foldable",
    PollRun.started_at,
    sqlite_where=_FOLDABLE,
    postgresql_where=_FOLDABLE,
)
Index("ix_poll_run_days_terminal_id_day", PollRunDay.terminal_id, PollRunDay.day)
