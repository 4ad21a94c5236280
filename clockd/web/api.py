"""JSON API under /api/v1 (SPEC §7), for scripts holding a token from `clockd token create`.

401 without a valid bearer token, 403 when the token's role lacks the right. A cadre's token
sees only that cadre's rows. Week and month figures are the workbooks' own (reports/live.py).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from clockd.domain import LeaveKind
from clockd.errors import UserError
from clockd.leave import add_leave
from clockd.reports import live
from clockd.store import console as store
from clockd.store import leave_requests as requests_store
from clockd.store.leave import LeaveEntry
from clockd.store.models import OK
from clockd.web import auth
from clockd.web.app import Console
from clockd.web.figures import FIRST_YEAR, LAST_YEAR, supported
from clockd.workcal import IsoWeek, YearMonth

router = APIRouter(prefix="/api/v1", tags=["clockd"])
_bearer = HTTPBearer(auto_error=False)
MAX_PAGE = 1000


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def token_account(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> store.Account:
    """The account a valid, unrevoked bearer token acts for."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    token = credentials.credentials
    account = (
        store.account_for_token(_console(request).engine, auth.token_hash(token))
        if len(token) <= 200
        else None
    )
    if account is None:
        raise HTTPException(401, "invalid or revoked token", {"WWW-Authenticate": "Bearer"})
    request.state.user = account.username
    return account


Caller = Annotated[store.Account, Depends(token_account)]


def _own_filter(account: store.Account) -> str | None:
    """None for roles that read everything, else the cadre's own user ID."""
    if account.role in auth.READ_ALL:
        return None
    if not account.cadre_id:
        raise HTTPException(403, "this account is linked to no cadre")
    return account.cadre_id


class WeekCadre(BaseModel):
    user_id: str
    name: str
    role: str
    required_days: int
    valid_days: int
    morning_only_days: int
    afternoon_only_days: int
    leave_days: int
    passed: bool  # reached the required days; false too while the week is still in progress
    in_progress: bool  # the week has not ended: nothing is charged yet
    deduction_yuan: int
    result_days: int
    remarks: str


class WeekReport(BaseModel):
    week: str
    status: Literal["final", "provisional", "revised"]
    cadres: list[WeekCadre]


_Period = TypeVar("_Period", IsoWeek, YearMonth)


def _path_period(parse: Callable[[str], _Period], text: str) -> _Period:
    """A week or month named in the path; a malformed one, or one outside the years the API
    computes, is the client's error (422)."""
    try:
        period = parse(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if not supported(period):
        raise HTTPException(
            422, f"{period.label} is outside the years served ({FIRST_YEAR} to {LAST_YEAR})"
        )
    return period


@router.get("/weeks/{week}", response_model=WeekReport)
def get_week(request: Request, week: str, caller: Caller) -> Response:
    """The week's 汇总 figures, as the weekly workbook has (or would have) them."""
    iso_week = _path_period(IsoWeek.parse, week)
    own = _own_filter(caller)
    console = _console(request)

    standing = console.figures.week(iso_week)

    def body() -> bytes:
        results = standing.results
        if own is not None:
            results = results[results["user_id"] == own]
        cadres = [
            WeekCadre(
                user_id=str(row["user_id"]),
                name=str(row["name"]),
                role=str(row["role"]),
                required_days=int(row["required_days"]),
                valid_days=int(row["valid_days"]),
                morning_only_days=int(row["morning_only_days"]),
                afternoon_only_days=int(row["afternoon_only_days"]),
                leave_days=int(row["leave_days"]),
                passed=bool(row["met"]),
                in_progress=bool(row["in_progress"]),
                deduction_yuan=int(row["deduction"]),
                result_days=int(row["result_days"]),
                remarks=str(row["remarks"] or ""),
            )
            for row in results.to_dict("records")
        ]
        report = WeekReport(week=iso_week.label, status=standing.status, cadres=cadres)
        return report.model_dump_json().encode()

    # Serialising 10,000 rows costs more than computing them: the body is kept while the
    # figures are the same (their fingerprint also moves when the week ends).
    content = console.figures.derived(("api-week", iso_week, own, standing.basis.fingerprint), body)
    return Response(content, media_type="application/json")


class NotifiedCadre(BaseModel):
    user_id: str
    name: str
    failed_weeks: list[str] = Field(
        description="ISO weeks (2026-W47); the workbook writes them 第47周（11.16—11.22）"
    )
    deduction_yuan: int


class MonthCadre(BaseModel):
    user_id: str
    name: str
    role: str
    assessed_weeks: int
    met_weeks: int
    failed_weeks: int
    valid_days: int
    average_valid_days: float | None
    deduction_yuan: int


class MonthStatistics(BaseModel):
    cadre_count: int
    notified_count: int
    deduction_total: int
    average_valid_days: float | None
    previous_month_average: float | None
    last_year_average: float | None
    year_on_year_change: float | None
    year_to_date_notified: int
    year_to_date_deduction: int


class MonthReport(BaseModel):
    month: str
    status: Literal["final", "provisional", "revised"]
    notified: list[NotifiedCadre]
    cadres: list[MonthCadre]
    statistics: MonthStatistics | None = Field(
        description="the 统计 sheet's figures; null for a cadre's token"
    )


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(str(value))
    return None if math.isnan(number) else number


@router.get("/months/{month}", response_model=MonthReport)
def get_month(request: Request, month: str, caller: Caller) -> MonthReport:
    """The monthly notice's 通报, 月度汇总 and 统计 figures."""
    year_month = _path_period(YearMonth.parse, month)
    own = _own_filter(caller)
    console = _console(request)
    standing = live.month_standing(console.engine, console.settings, console.cadres, year_month)
    results = standing.figures.month_results
    if own is not None:
        results = results[results["user_id"] == own]
    cadres = [
        MonthCadre(
            user_id=str(row["user_id"]),
            name=str(row["name"]),
            role=str(row["role"]),
            assessed_weeks=int(row["assessed_weeks"]),
            met_weeks=int(row["met_weeks"]),
            failed_weeks=int(row["failed_weeks"]),
            valid_days=int(row["valid_days"]),
            average_valid_days=_finite(row["average_valid_days"]),
            deduction_yuan=int(row["deduction_total"]),
        )
        for row in results.to_dict("records")
    ]
    failing = standing.notified
    if own is not None:
        failing = failing[failing["user_id"] == own]
    notified = [
        NotifiedCadre(
            user_id=str(row["user_id"]),
            name=str(row["name"]),
            failed_weeks=[str(label) for label in row["failed_week_labels"]],
            deduction_yuan=int(row["deduction_total"]),
        )
        for row in failing.to_dict("records")
    ]
    stats = standing.figures.statistics
    statistics = (
        None
        if own is not None
        else MonthStatistics(
            cadre_count=stats.cadre_count,
            notified_count=stats.notified_count,
            deduction_total=stats.deduction_total,
            average_valid_days=stats.average_valid_days,
            previous_month_average=stats.previous_month_average,
            last_year_average=stats.last_year_average,
            year_on_year_change=stats.year_on_year_change,
            year_to_date_notified=stats.year_to_date_notified,
            year_to_date_deduction=stats.year_to_date_deduction,
        )
    )
    return MonthReport(
        month=year_month.label,
        status=standing.status,
        notified=notified,
        cadres=cadres,
        statistics=statistics,
    )


class TerminalStatus(BaseModel):
    id: str
    village: str
    serial: str
    source: Literal["pull", "push"]
    last_good_contact: dt.datetime | None
    records: int | None
    capacity: int | None
    drift_seconds: float | None
    last_error: str | None


@router.get("/terminals", response_model=list[TerminalStatus])
def get_terminals(request: Request, caller: Caller) -> list[TerminalStatus]:
    """Every configured terminal's health as of now."""
    console = _console(request)
    _, facts = console.figures.terminals()
    return [
        TerminalStatus(
            id=fact.terminal.id,
            village=fact.terminal.village,
            serial=fact.terminal.serial,
            source="pull" if console.settings.terminal(fact.terminal.id).polled else "push",
            last_good_contact=fact.last_success,
            records=fact.records_on_device,
            capacity=fact.record_capacity,
            drift_seconds=fact.drift_seconds,
            last_error=fact.last_error if fact.last_outcome not in (None, OK) else None,
        )
        for fact in facts
    ]


class PunchOut(BaseModel):
    id: int
    user_id: str
    terminal: str | None
    serial: str
    village: str | None
    time: dt.datetime = Field(description="the terminal's local wall-clock time, no zone")
    verify: int
    state: int
    source: str
    quarantined: bool


class PunchPage(BaseModel):
    punches: list[PunchOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at end")


@router.get("/punches", response_model=PunchPage)
def get_punches(
    request: Request,
    caller: Caller,
    from_: Annotated[dt.date | None, Query(alias="from")] = None,
    to: dt.date | None = None,
    user_id: Annotated[str | None, Query(max_length=24)] = None,
    terminal: Annotated[str | None, Query(max_length=32)] = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 500,
) -> PunchPage:
    """Raw punches dated `from`..`to` (inclusive), in storage order, `limit` at a time."""
    own = _own_filter(caller)
    if own is not None:
        if user_id is not None and user_id != own:
            raise HTTPException(403, "a cadre's token reads only that cadre's punches")
        user_id = own
    console = _console(request)
    serials = None
    if terminal is not None:
        serials = [t.serial for t in console.settings.terminals if t.id == terminal] or [terminal]
    rows = store.punch_page(
        console.engine,
        start=None if from_ is None else dt.datetime.combine(from_, dt.time()),
        # Up to and including `to`; the last date there is (9999-12-31) leaves no bound.
        end=(
            None
            if to is None or to == dt.date.max
            else dt.datetime.combine(to + dt.timedelta(days=1), dt.time())
        ),
        user_id=user_id,
        serials=serials,
        after_id=after,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return PunchPage(
        punches=[
            PunchOut(
                id=row.id,
                user_id=row.user_id,
                terminal=row.terminal_id,
                serial=row.serial,
                village=row.village,
                time=row.punched_at,
                verify=row.verify,
                state=row.state,
                source=row.source,
                quarantined=row.quarantined,
            )
            for row in rows
        ],
        next_after=rows[-1].id if more and rows else None,
    )


class LeaveIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    user_id: Annotated[str, Field(min_length=1, max_length=24)]
    from_: Annotated[dt.date, Field(alias="from")]
    to: dt.date
    kind: Literal["leave", "business_trip", "other"] = "leave"
    note: Annotated[str, Field(max_length=500)] = ""


class LeaveOut(BaseModel):
    id: int
    status: Literal["approved", "pending"]
    user_id: str
    from_: Annotated[dt.date, Field(serialization_alias="from")]
    to: dt.date
    kind: str
    note: str


def _leave_out(
    leave: LeaveEntry | requests_store.Request, status: Literal["approved", "pending"]
) -> LeaveOut:
    """An approved entry and a pending request answer in the same shape."""
    return LeaveOut(
        id=leave.id,
        status=status,
        user_id=leave.user_id,
        from_=leave.start,
        to=leave.end,
        kind=leave.kind.value,
        note=leave.note,
    )


@router.post(
    "/leave",
    status_code=201,
    response_model=LeaveOut,
    response_model_by_alias=True,
    responses={202: {"model": LeaveOut, "description": "a cadre's request, awaiting approval"}},
)
def post_leave(request: Request, body: LeaveIn, caller: Caller) -> JSONResponse:
    """An approved leave from an hr/admin token (201), or a cadre's own request (202)."""
    console = _console(request)
    kind = LeaveKind(body.kind)
    try:
        if caller.role in auth.MANAGE:
            entry = add_leave(
                console.engine,
                console.cadres,
                body.user_id,
                body.from_,
                body.to,
                kind=kind,
                note=body.note,
                actor=caller.username,
            )
            out = _leave_out(entry, "approved")
            code = 201
        elif caller.role == auth.CADRE:
            if body.user_id != caller.cadre_id:
                raise HTTPException(403, "a cadre requests leave only for themselves")
            made = requests_store.create_request(
                console.engine,
                console.roster.keys(),
                body.user_id,
                body.from_,
                body.to,
                kind=kind,
                note=body.note,
                actor=caller.username,
            )
            out = _leave_out(made, "pending")
            code = 202
        else:
            raise HTTPException(403, "this role does not enter leave")
    except UserError as exc:
        raise HTTPException(422, str(exc)) from None
    return JSONResponse(out.model_dump(mode="json", by_alias=True), status_code=code)
