"""Leave requests (请假/出差 申请) and their workflow, every transition kept with who, when, why.

pending -> approved | rejected | withdrawn;  approved -> closed (销假, ended early).
Only an approved request has a row in `leave`, the table the rules engine reads, so only
approved leave counts. A request longer than `leave.leader_approval_above_days` is decided by
a leader (or an admin), not by HR. 销假 revokes the approved row and, when some days were
taken, records the shortened leave in its place: the week is then recomputed from `leave`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, insert, select, update

from clockd.domain import LeaveKind
from clockd.errors import UserError
from clockd.store import leave as leave_store
from clockd.store.console import audit
from clockd.store.db import write_transaction
from clockd.store.models import LeaveRequest, LeaveRequestEvent, utcnow

PENDING, APPROVED, REJECTED, WITHDRAWN, CLOSED = (
    "pending",
    "approved",
    "rejected",
    "withdrawn",
    "closed",
)
STATUS_LABELS = {
    PENDING: "待审批",
    APPROVED: "已批准",
    REJECTED: "已驳回",
    WITHDRAWN: "已撤回",
    CLOSED: "已销假",
}
ACTION_LABELS = {
    "request": "申请",
    "approve": "批准",
    "reject": "驳回",
    "withdraw": "撤回",
    "close": "销假",
}
MAX_NOTE = 500


@dataclass(frozen=True)
class RequestEvent:
    action: str
    actor: str
    at: dt.datetime
    reason: str


@dataclass(frozen=True)
class Request:
    id: int
    user_id: str
    start: dt.date
    end: dt.date
    kind: LeaveKind
    note: str
    status: str
    requested_by: str
    requested_at: dt.datetime
    closed_on: dt.date | None
    events: tuple[RequestEvent, ...] = ()

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def needs_leader(self, above_days: int) -> bool:
        return self.days > above_days


def _request(row: Row[Any], events: tuple[RequestEvent, ...] = ()) -> Request:
    v = row._mapping
    return Request(
        id=v["id"],
        user_id=v["user_id"],
        start=v["start_date"],
        end=v["end_date"],
        kind=LeaveKind(v["kind"]),
        note=v["note"],
        status=v["status"],
        requested_by=v["requested_by"],
        requested_at=v["requested_at"],
        closed_on=v["closed_on"],
        events=events,
    )


def _event(connection: Connection, request_id: int, action: str, actor: str, reason: str) -> None:
    """The request's own history, and the console's audit trail."""
    connection.execute(
        insert(LeaveRequestEvent).values(
            request_id=request_id, action=action, actor=actor, at=utcnow(), reason=reason
        )
    )
    audit(connection, actor, f"leave.{action}", f"leave-request#{request_id}", reason)


def create_request(
    engine: Engine,
    roster: Collection[str],
    user_id: str,
    start: dt.date,
    end: dt.date,
    kind: LeaveKind,
    note: str,
    actor: str,
) -> Request:
    if user_id not in roster:
        raise UserError(f"工号 {user_id} 不在花名册中")
    if start > end:
        raise UserError("开始日期晚于结束日期")
    if (end - start).days > 366:
        raise UserError("一次申请不能超过一年")
    note = note.strip()[:MAX_NOTE]
    with write_transaction(engine) as connection:
        request_id: int = connection.execute(
            insert(LeaveRequest)
            .values(
                user_id=user_id,
                start_date=start,
                end_date=end,
                kind=kind.value,
                note=note,
                status=PENDING,
                requested_by=actor,
                requested_at=utcnow(),
            )
            .returning(LeaveRequest.id)
        ).scalar_one()
        _event(connection, request_id, "request", actor, note)
        return _load(connection, request_id)


def _load(connection: Connection, request_id: int) -> Request:
    row = connection.execute(select(LeaveRequest).where(LeaveRequest.id == request_id)).first()
    if row is None:
        raise UserError(f"没有编号为 {request_id} 的请假申请")
    events = tuple(
        RequestEvent(e.action, e.actor, e.at, e.reason)
        for e in connection.execute(
            select(LeaveRequestEvent)
            .where(LeaveRequestEvent.request_id == request_id)
            .order_by(LeaveRequestEvent.at, LeaveRequestEvent.id)
        )
    )
    return _request(row, events)


def get_request(engine: Engine, request_id: int) -> Request:
    with engine.connect() as connection:
        return _load(connection, request_id)


def list_requests(
    engine: Engine, *, user_id: str | None = None, status: str | None = None, limit: int = 200
) -> list[Request]:
    """Newest first, with their events."""
    query = select(LeaveRequest).order_by(LeaveRequest.requested_at.desc(), LeaveRequest.id.desc())
    if user_id is not None:
        query = query.where(LeaveRequest.user_id == user_id)
    if status is not None:
        query = query.where(LeaveRequest.status == status)
    with engine.connect() as connection:
        rows = list(connection.execute(query.limit(limit)))
        ids = [row.id for row in rows]
        events: dict[int, list[RequestEvent]] = {}
        if ids:
            for e in connection.execute(
                select(LeaveRequestEvent)
                .where(LeaveRequestEvent.request_id.in_(ids))
                .order_by(LeaveRequestEvent.at, LeaveRequestEvent.id)
            ):
                events.setdefault(e.request_id, []).append(
                    RequestEvent(e.action, e.actor, e.at, e.reason)
                )
        return [_request(row, tuple(events.get(row.id, ()))) for row in rows]


def _pending(connection: Connection, request_id: int) -> Request:
    request = _load(connection, request_id)
    if request.status != PENDING:
        raise UserError(f"申请 #{request_id} {STATUS_LABELS[request.status]}，不能再处理")
    return request


def decide(
    engine: Engine,
    request_id: int,
    *,
    approve: bool,
    actor: str,
    may_decide_long: bool,
    above_days: int,
    reason: str,
) -> Request:
    """Approve (the leave starts counting) or reject a pending request."""
    reason = reason.strip()[:MAX_NOTE]
    with write_transaction(engine) as connection:
        request = _pending(connection, request_id)
        if request.needs_leader(above_days) and not may_decide_long:
            raise UserError(f"超过 {above_days} 天的请假须由领导审批（本申请 {request.days} 天）")
        values: dict[str, object] = {"status": APPROVED if approve else REJECTED}
        if approve:
            values["leave_id"] = leave_store.insert_entry(
                connection,
                request.user_id,
                request.start,
                request.end,
                request.kind,
                note=request.note,
                actor=actor,
                action="approve",
                source=f"申请 #{request_id}",
            )
        connection.execute(update(LeaveRequest).where(LeaveRequest.id == request_id).values(values))
        _event(connection, request_id, "approve" if approve else "reject", actor, reason)
        return _load(connection, request_id)


def withdraw(engine: Engine, request_id: int, actor: str) -> Request:
    with write_transaction(engine) as connection:
        _pending(connection, request_id)
        connection.execute(
            update(LeaveRequest).where(LeaveRequest.id == request_id).values(status=WITHDRAWN)
        )
        _event(connection, request_id, "withdraw", actor, "")
        return _load(connection, request_id)


def close_early(
    engine: Engine, request_id: int, last_day: dt.date, actor: str, reason: str
) -> Request:
    """销假: the leave ends on `last_day` (the day before `start` when none was taken)."""
    reason = reason.strip()[:MAX_NOTE]
    with write_transaction(engine) as connection:
        request = _load(connection, request_id)
        if request.status != APPROVED:
            raise UserError(
                f"只有已批准的请假可以销假（申请 #{request_id} {STATUS_LABELS[request.status]}）"
            )
        if not request.start - dt.timedelta(days=1) <= last_day < request.end:
            raise UserError(
                f"销假后的最后一天须在 {request.start - dt.timedelta(days=1)} 与 "
                f"{request.end - dt.timedelta(days=1)} 之间"
            )
        leave_id = connection.scalar(
            select(LeaveRequest.leave_id).where(LeaveRequest.id == request_id)
        )
        now = utcnow()
        approved = None if leave_id is None else leave_store.get_entry(connection, leave_id)
        if approved is not None and approved.revoked_at is None:
            leave_store.mark_revoked(connection, approved.id, actor=actor, at=now)
            leave_store.audit(
                connection,
                approved.id,
                action="revoke",
                actor=actor,
                at=now,
                detail=f"销假 申请 #{request_id}，最后一天 {last_day.isoformat()}",
            )
        new_leave = None
        if last_day >= request.start:
            new_leave = leave_store.insert_entry(
                connection,
                request.user_id,
                request.start,
                last_day,
                request.kind,
                note=request.note,
                actor=actor,
                action="close",
                source=f"销假 申请 #{request_id}",
            )
        connection.execute(
            update(LeaveRequest)
            .where(LeaveRequest.id == request_id)
            .values(status=CLOSED, closed_on=last_day, leave_id=new_leave)
        )
        _event(connection, request_id, "close", actor, f"{last_day.isoformat()} {reason}".strip())
        return _load(connection, request_id)
