"""The console's HTML pages (SPEC §7): 首页, 干部, 请假, 工作记录, 异常, 报表, 账户, login.

Every form posts a CSRF token that must equal the one in the signed session cookie; a POST
without it is refused with 403. A page for a cadre's records is open to that cadre and to the
roles that read everything; any other request is refused, not redirected.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clockd import rules
from clockd.domain import Cadre, LeaveKind, user_id_order
from clockd.errors import UserError
from clockd.leave import list_leave
from clockd.reports import live
from clockd.reports.revisions import identifier
from clockd.reports.xlsx import read_stamp
from clockd.store import console as store
from clockd.store import leave_requests as requests_store
from clockd.store import worklog
from clockd.store.facts import TerminalFacts
from clockd.store.models import OK, utcnow
from clockd.textui import escape_control
from clockd.web import auth
from clockd.web.app import Console, redirect
from clockd.web.auth import SESSION_COOKIE, Session
from clockd.web.figures import FIRST_YEAR, LAST_YEAR, supported
from clockd.workcal import IsoWeek, YearMonth

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 100
REPORT_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pdf": "application/pdf",
}
TERMINAL_ROWS = 40  # on 首页, the stalest; a district has thousands
DONE_MESSAGES = {
    "requested": "请假申请已提交。",
    "approved": "已批准。",
    "rejected": "已驳回。",
    "withdrawn": "申请已撤回。",
    "closed": "已销假，本周考勤已重新计算。",
    "filed": "工作成效已保存。",
    "released": "已放行，该打卡将计入相关报表的下一版。",
    "quarantine_rejected": "已驳回该打卡。",
    "generated": "报表已生成。",
    "user_added": "账户已创建。",
    "user_disabled": "账户已停用，其会话已结束。",
}


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login form."""


class Refused(Exception):
    """Signed in, but the role lacks the right (or the CSRF token is missing)."""

    def __init__(self, message: str = "无权访问") -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Viewer:
    account: store.Account
    session: Session

    @property
    def role(self) -> str:
        return self.account.role

    @property
    def reads_all(self) -> bool:
        return self.role in auth.READ_ALL

    @property
    def manages(self) -> bool:
        return self.role in auth.MANAGE

    def may_see(self, user_id: str) -> bool:
        return self.reads_all or self.account.cadre_id == user_id

    def may_file_for(self, user_id: str) -> bool:
        return self.manages or self.account.cadre_id == user_id


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _session(request: Request) -> Session:
    """The signed session, or a fresh anonymous one (set on the response) with a CSRF token."""
    console = _console(request)
    session = console.codec.load(request.cookies.get(SESSION_COOKIE))
    if session is None:
        session = Session(auth.new_csrf())
        request.state.new_cookie = console.codec.dump(session)
    return session


def viewer(request: Request) -> Viewer:
    """The signed-in account; ends here when the account was disabled or signed out since."""
    console = _console(request)
    session = _session(request)
    if session.account_id is None:
        raise LoginRequired
    account = store.account_by_id(console.engine, session.account_id)
    if account is None or not account.active or account.session_version != session.version:
        request.state.new_cookie = console.codec.dump(Session(auth.new_csrf()))
        raise LoginRequired
    request.state.user = account.username
    return Viewer(account, session)


def checked(request: Request, csrf: str) -> Viewer:
    """The viewer of a form post, after checking its CSRF token."""
    session = _session(request)
    if not auth.same_secret(csrf or None, session.csrf):
        raise Refused("表单已过期或来源不明（CSRF 校验失败），请返回刷新后重试")
    return viewer(request)


def _render(
    request: Request,
    template: str,
    who: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    console = _console(request)
    session = who.session if who is not None else _session(request)
    done = request.query_params.get("done")
    html = console.templates.get_template(template).render(
        township=console.settings.township,
        viewer=who,
        csrf=session.csrf,
        path=request.url.path,
        done=DONE_MESSAGES.get(done or ""),
        role_labels=auth.ROLE_LABELS,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


async def login_required(request: Request, exc: Exception) -> Response:
    if request.method == "GET":
        target = request.url.path
        return redirect(f"/login?next={quote(target)}")
    return redirect("/login")


async def refused(request: Request, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, Refused) else "无权访问"
    return _render(
        request, "message.html", None, status_code=403, title="无权访问", message=message
    )


async def user_error(request: Request, exc: Exception) -> Response:
    return _render(
        request, "message.html", None, status_code=400, title="无法完成", message=str(exc)
    )


_HTTP_ERRORS = {
    404: ("页面不存在", "没有这个页面，请检查地址。"),
    405: ("请求方式不对", "这个地址不接受这种请求方式。"),
    413: ("请求内容过大", "提交的内容过大。"),
}
_FIELDS = {
    "username": "用户名",
    "password": "密码",
    "csrf": "表单校验码",
    "page": "页码",
    "week": "周次",
    "reason": "理由",
    "note": "备注",
    "text": "工作成效",
    "start": "开始日期",
    "end": "结束日期",
    "last_day": "最后一天",
    "user_id": "工号",
    "day": "日期",
    "kind": "类型",
    "period": "期次",
    "role": "角色",
    "request_id": "申请编号",
    "entry_id": "编号",
}
_PROBLEMS = {"missing": "未填写", "string_too_long": "过长"}


def _signed_in(request: Request) -> Viewer | None:
    """The viewer when there is one, for an error page's navigation; never a redirect."""
    try:
        return viewer(request)
    except LoginRequired:
        return None


async def http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and other HTTP errors: the API keeps FastAPI's JSON, pages get a page."""
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith("/api/"):
        return await http_exception_handler(request, exc)
    title, message = _HTTP_ERRORS.get(exc.status_code, ("无法完成", "请求无法处理。"))
    response = _render(
        request,
        "message.html",
        _signed_in(request),
        status_code=exc.status_code,
        title=title,
        message=message,
    )
    response.headers.update(exc.headers or {})
    return response


async def invalid_request(request: Request, exc: Exception) -> Response:
    """A form or query field that does not validate: which field and why, in Chinese, and
    never the submitted value (it may be a password)."""
    assert isinstance(exc, RequestValidationError)
    if request.url.path.startswith("/api/"):
        return await request_validation_exception_handler(request, exc)
    problems = []
    for error in exc.errors():
        field = str(error["loc"][-1]) if error.get("loc") else ""
        problem = _PROBLEMS.get(str(error.get("type")), "格式不对")
        problems.append(f"{_FIELDS.get(field, field)}{problem}")
    return _render(
        request,
        "message.html",
        _signed_in(request),
        status_code=422,
        title="提交的内容不符合要求",
        message="；".join(dict.fromkeys(problems)) or "请求格式不对",
    )


def _today(console: Console) -> dt.date:
    return dt.datetime.now(console.settings.zone).date()


def _week(console: Console, text: str | None) -> IsoWeek:
    if not text:
        return IsoWeek.containing(_today(console))
    try:
        week = IsoWeek.parse(text)
    except ValueError:
        raise UserError(f"周次 {text} 格式不对（例：2026-W47）") from None
    if not supported(week):
        raise UserError(f"周次 {week.label} {_OUT_OF_RANGE}")
    return week


def _day(text: str, what: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"{what}：{text} 不是日期（例：2026-11-18）") from None
    if not supported(day):
        raise UserError(f"{what}：{day.isoformat()} {_OUT_OF_RANGE}")
    return day


_OUT_OF_RANGE = f"超出可查询的范围（{FIRST_YEAR}年至{LAST_YEAR}年）"


_REASONS = (
    (
        re.compile(r"^dated before the terminal was installed \((.+)\)$"),
        "打卡时间早于终端启用日期（{0}）",
    ),
    (
        re.compile(r"^dated more than (\d+) minutes in the future$"),
        "打卡时间超前服务器时钟 {0} 分钟以上",
    ),
    (re.compile(r"^unreadable record: (.*)$"), "记录无法解码：{0}"),
    (
        re.compile(r"^terminal serial not in devices\.yaml \(push from an unknown device\)$"),
        "推送的终端序列号不在 devices.yaml 中（未登记的终端）",
    ),
)


def quarantine_reason(reason: str) -> str:
    """The ingest's reason for quarantine (stored in English), in the console's Chinese."""
    for pattern, text in _REASONS:
        found = pattern.match(reason)
        if found:
            return text.format(*found.groups())
    return reason


def _local(console: Console, instant: dt.datetime | None) -> str:
    if instant is None:
        return ""
    return instant.astimezone(console.settings.zone).strftime("%Y-%m-%d %H:%M")


# --- sign in and out ---------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=auth.MAX_PASSWORD)] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    console = _console(request)
    session = _session(request)
    if not auth.same_secret(csrf or None, session.csrf):
        raise Refused("表单已过期或来源不明（CSRF 校验失败），请返回刷新后重试")
    client = request.client.host if request.client else "-"
    now = utcnow()
    account = store.account_by_name(console.engine, username.strip())
    wait = console.throttle.retry_in(client, now)
    if account is not None and account.last_failed_at is not None:
        since = (now - account.last_failed_at).total_seconds()
        wait = max(wait, auth.wait_after(account.failed_logins) - since)
    if wait > 0:
        return _render(
            request,
            "login.html",
            None,
            status_code=429,
            next=_safe_next(next),
            error=f"登录失败次数过多，请 {int(wait) + 1} 秒后再试",
        )
    stored = account.password_hash if account is not None and account.active else None
    ok, rehashed = auth.verify_password(stored, password)
    if not ok or account is None:
        console.throttle.failed(client, now)
        if account is not None:
            store.record_login(console.engine, account.id, success=False, password_hash="")
        return _render(
            request,
            "login.html",
            None,
            status_code=401,
            next=_safe_next(next),
            error="用户名或密码不正确",
        )
    console.throttle.succeeded(client)
    store.record_login(
        console.engine, account.id, success=True, password_hash=rehashed or account.password_hash
    )
    request.state.user = account.username
    request.state.new_cookie = console.codec.dump(
        Session(auth.new_csrf(), account.id, account.session_version)
    )
    return redirect(_safe_next(next))


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    who = checked(request, csrf)
    console = _console(request)
    store.end_sessions(console.engine, who.account.id)
    request.state.new_cookie = console.codec.dump(Session(auth.new_csrf()))
    return redirect("/login")


# --- 首页 --------------------------------------------------------------------------------------


def _terminal_rows(console: Console) -> list[dict[str, object]]:
    """Terminal health, the stalest first (never collected, then oldest last success)."""
    _, facts = console.figures.terminals()
    now = utcnow()
    warn = console.settings.poll.capacity_warn_percent
    stale_after = dt.timedelta(hours=console.settings.notify.stale_hours)

    def staleness(fact: TerminalFacts) -> tuple[int, dt.datetime]:
        return (
            (0, dt.datetime.min.replace(tzinfo=dt.UTC))
            if fact.last_success is None
            else (
                1,
                fact.last_success,
            )
        )

    rows: list[dict[str, object]] = []
    for fact in sorted(facts, key=staleness):
        ratio = fact.capacity_ratio
        age = None if fact.last_success is None else now - fact.last_success
        rows.append(
            {
                "id": fact.terminal.id,
                "village": fact.terminal.village,
                "serial": fact.terminal.serial,
                "reported_serial": fact.reported_serial if fact.serial_mismatch else None,
                "last_success": _local(console, fact.last_success) or "从未",
                "stale": age is None or age > stale_after,
                "records": fact.records_on_device,
                "capacity": fact.record_capacity,
                "percent": None if ratio is None else round(100 * ratio),
                "full_soon": ratio is not None and 100 * ratio > warn,
                "drift": None if fact.drift_seconds is None else round(fact.drift_seconds),
                "error": fact.last_error if fact.last_outcome not in (None, OK) else "",
            }
        )
    return rows


def _week_rows(standing: live.WeekStanding) -> list[dict[str, object]]:
    results = standing.results
    rows = []
    for row in results.to_dict("records"):
        required, valid = int(row["required_days"]), int(row["valid_days"])
        rows.append(
            {
                "user_id": str(row["user_id"]),
                "name": str(row["name"]),
                "category": str(row["category"]),
                "required": required,
                "valid": valid,
                "morning_only": int(row["morning_only_days"]),
                "afternoon_only": int(row["afternoon_only_days"]),
                "leave": int(row["leave_days"]),
                "still": max(required - valid, 0),
                "met": bool(row["met"]),
                "in_progress": bool(row["in_progress"]),
                "remarks": str(row["remarks"] or ""),
            }
        )
    return rows


def _latest_editions(console: Console, count: int = 6) -> list[dict[str, object]]:
    editions = sorted(store.all_editions(console.engine), key=lambda e: e.generated_at)
    latest: dict[tuple[str, str], store.EditionFile] = {}
    for edition in editions:
        latest[(edition.kind, edition.period)] = edition
    newest = sorted(latest.values(), key=lambda e: (e.kind, e.period), reverse=True)
    by_kind = [e for e in newest if e.kind == "weekly"][: count // 2] + [
        e for e in newest if e.kind != "weekly"
    ][: count // 2]
    return [_edition_row(console, e) for e in by_kind]


def _edition_row(console: Console, edition: store.EditionFile) -> dict[str, object]:
    status = live.api_status(edition.status)
    return {
        "id": edition.id,
        "kind": {"weekly": "周汇总", "monthly": "月度通报"}.get(edition.kind, edition.kind),
        "period": edition.period,
        "revision": edition.revision,
        "status": live.STATUS_LABELS.get(status, status),
        "final": status != "provisional",
        "generated_at": _local(console, edition.generated_at),
        "name": Path(edition.path).name,
        "deduction_total": edition.deduction_total,
        "history": Path(edition.path).parent.name == "history",
    }


@router.get("/")
def home(
    request: Request,
    week: str | None = None,
    behind: int = 0,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    who = viewer(request)
    if not who.reads_all:
        return redirect(f"/cadres/{quote(who.account.cadre_id or '')}")
    console = _console(request)
    chosen = _week(console, week)
    standing = console.figures.week(chosen)

    def ordered() -> list[dict[str, object]]:
        """Furthest behind first, then by 工号."""
        rows = _week_rows(standing)
        rows.sort(key=lambda row: (-int(str(row["still"])), user_id_order(str(row["user_id"]))))
        return rows

    rows = console.figures.derived(("home-rows", chosen, standing.basis.fingerprint), ordered)
    behind_rows = [row for row in rows if not row["met"]]
    shown = behind_rows if behind else rows
    pages = max(1, -(-len(shown) // PAGE_SIZE))
    page = min(page, pages)
    terminals = _terminal_rows(console)
    return _render(
        request,
        "home.html",
        who,
        week=chosen,
        previous_week=chosen.shift(-1),
        next_week=chosen.shift(1),
        status=live.STATUS_LABELS.get(standing.status, standing.status),
        missing=standing.missing_villages,
        total=len(rows),
        met=len(rows) - len(behind_rows),
        behind_count=len(behind_rows),
        in_progress=chosen.end >= _today(console),
        rows=shown[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        behind=bool(behind),
        page=page,
        pages=pages,
        terminals=terminals[:TERMINAL_ROWS],
        terminal_count=len(terminals),
        stale_count=sum(1 for row in terminals if row["stale"]),
        stale_hours=f"{console.settings.notify.stale_hours:g}",
        editions=_latest_editions(console),
        today=_today(console),
    )


# --- 干部 --------------------------------------------------------------------------------------


def _cadre(console: Console, user_id: str) -> Cadre:
    cadre = console.roster.get(user_id)
    if cadre is None:
        raise UserError(f"花名册中没有工号 {user_id}")
    return cadre


@router.get("/cadres/{user_id}")
def cadre_page(request: Request, user_id: str, week: str | None = None) -> Response:
    who = viewer(request)
    if not who.may_see(user_id):
        raise Refused("干部只能查看本人的记录")
    console = _console(request)
    cadre = _cadre(console, user_id)
    chosen = _week(console, week)
    standing = console.figures.week(chosen)
    mine = [row for row in _week_rows(standing) if row["user_id"] == user_id]
    marks = standing.marks_of(cadre)
    results = {
        r.day: r for r in worklog.results_between(console.engine, chosen.start, chosen.end, user_id)
    }
    days = []
    for day in chosen.days():
        mark = marks[marks["date"] == day]
        valid = bool(mark["valid"].iloc[0]) if len(mark) else False
        villages = "、".join(mark["villages"].iloc[0]) if len(mark) else ""
        days.append(
            {
                "date": day,
                "weekday": "一二三四五六日"[day.weekday()],
                "morning": bool(mark["morning"].iloc[0]) if len(mark) else False,
                "afternoon": bool(mark["afternoon"].iloc[0]) if len(mark) else False,
                "valid": valid,
                "villages": villages,
                "leave": bool(mark["leave"].iloc[0]) if len(mark) else False,
                "result": results.get(day),
            }
        )
    punches = standing.punches_of(user_id).sort_values("timestamp", kind="stable")
    halves = rules.classify_halves(punches, console.settings.rules)
    punch_rows = [
        {
            "time": stamp.to_pydatetime().strftime("%Y-%m-%d %H:%M:%S"),
            "terminal": str(terminal),
            "village": "" if village != village or village is None else str(village),
            "half": half.label,
            "quarantined": bool(held),
        }
        for stamp, terminal, village, held, half in zip(
            punches["timestamp"],
            punches["terminal"],
            punches["village"].astype(object),
            punches["quarantined"],
            halves,
            strict=True,
        )
    ]
    month = chosen.month
    # The month's weeks from the shared per-week figures: every cadre's page reuses them.
    week_rows = []
    for each in month.weeks():
        assessed = console.figures.week(each).results
        for row in assessed[assessed["user_id"] == user_id].to_dict("records"):
            week_rows.append(
                {
                    "week": str(row["week"]),
                    "required": int(row["required_days"]),
                    "valid": int(row["valid_days"]),
                    "leave": int(row["leave_days"]),
                    "met": bool(row["met"]),
                    "in_progress": bool(row["in_progress"]),
                    "deduction": int(row["deduction"]),
                }
            )
    leave = list_leave(console.engine, user_id)
    return _render(
        request,
        "cadre.html",
        who,
        cadre=cadre,
        week=chosen,
        month=month,
        summary=mine[0] if mine else None,
        status=live.STATUS_LABELS.get(standing.status, standing.status),
        days=days,
        punches=punch_rows,
        weeks=week_rows,
        month_deduction=sum(int(str(row["deduction"])) for row in week_rows),
        leave=leave[-20:],
        requests=requests_store.list_requests(console.engine, user_id=user_id, limit=20),
        may_file=who.may_file_for(user_id),
        status_labels=requests_store.STATUS_LABELS,
    )


# --- 工作记录 ----------------------------------------------------------------------------------


@router.get("/worklog")
def worklog_page(
    request: Request,
    week: str | None = None,
    missing: int = 0,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    who = viewer(request)
    console = _console(request)
    chosen = _week(console, week)
    if not who.reads_all:
        return redirect(f"/cadres/{quote(who.account.cadre_id or '')}?week={chosen.label}#worklog")
    standing = console.figures.week(chosen)
    marks = standing.figures.marks
    marks = marks[marks["valid"].astype(bool)]
    results = {
        (r.user_id, r.day): r
        for r in worklog.results_between(console.engine, chosen.start, chosen.end)
    }
    names = {cadre.user_id: cadre.name for cadre in console.cadres}
    rows = []
    for user_id, day, villages in zip(
        marks["user_id"], marks["date"], marks["villages"], strict=True
    ):
        result = results.get((str(user_id), day))
        if missing and result is not None:
            continue
        rows.append(
            {
                "user_id": str(user_id),
                "name": names.get(str(user_id), ""),
                "date": day,
                "villages": "、".join(villages),
                "result": result,
            }
        )
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(page, pages)
    return _render(
        request,
        "worklog.html",
        who,
        week=chosen,
        rows=rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        total=len(rows),
        missing=bool(missing),
        page=page,
        pages=pages,
    )


@router.post("/worklog")
def file_work_result(
    request: Request,
    user_id: Annotated[str, Form(max_length=24)],
    day: Annotated[str, Form(max_length=20)],
    text: Annotated[str, Form(max_length=worklog.MAX_TEXT * 4)] = "",
    back: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    who = checked(request, csrf)
    if not who.may_file_for(user_id):
        raise Refused("只能填写本人的工作成效")
    console = _console(request)
    cadre = _cadre(console, user_id)
    date = _day(day, "日期")
    if date > _today(console):
        raise UserError("不能为将来的日期填写工作成效")
    marks = console.figures.week(IsoWeek.containing(date)).marks_of(cadre)
    mark = marks[marks["date"] == date]
    if not len(mark) or not bool(mark["valid"].iloc[0]):
        raise UserError(f"{date.isoformat()} 不是该干部的有效下村日，不能填写工作成效")
    worklog.file_result(
        console.engine,
        user_id,
        date,
        "、".join(mark["villages"].iloc[0]),
        text,
        who.account.username,
    )
    target = _safe_next(back) if back else f"/cadres/{quote(user_id)}"
    joiner = "&" if "?" in target.split("#")[0] else "?"
    base, _, anchor = target.partition("#")
    return redirect(f"{base}{joiner}done=filed" + (f"#{anchor}" if anchor else ""))


# --- 请假 --------------------------------------------------------------------------------------


@router.get("/leave")
def leave_page(request: Request) -> Response:
    who = viewer(request)
    console = _console(request)
    own = None if who.reads_all else who.account.cadre_id
    requests = requests_store.list_requests(console.engine, user_id=own)
    if own is None and not who.reads_all:
        requests = []
    names = {cadre.user_id: cadre.name for cadre in console.cadres}
    above = console.settings.leave.leader_approval_above_days
    return _render(
        request,
        "leave.html",
        who,
        pending=[r for r in requests if r.status == requests_store.PENDING],
        others=[r for r in requests if r.status != requests_store.PENDING],
        names=names,
        above=above,
        kinds=[(kind.value, kind.label) for kind in LeaveKind],
        status_labels=requests_store.STATUS_LABELS,
        action_labels=requests_store.ACTION_LABELS,
        may_decide=who.role in auth.DECIDE_LEAVE,
        may_decide_long=who.role in auth.DECIDE_LONG_LEAVE,
        today=_today(console),
        local=lambda instant: _local(console, instant),
    )


@router.post("/leave/request")
def request_leave(
    request: Request,
    start: Annotated[str, Form(max_length=20)],
    end: Annotated[str, Form(max_length=20)],
    kind: Annotated[str, Form(max_length=20)] = "leave",
    note: Annotated[str, Form(max_length=2000)] = "",
    user_id: Annotated[str, Form(max_length=24)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    who = checked(request, csrf)
    console = _console(request)
    if who.manages and user_id.strip():
        target = user_id.strip()
    elif who.account.cadre_id:
        target = who.account.cadre_id
    else:
        raise Refused("请填写要请假干部的工号")
    try:
        leave_kind = LeaveKind.parse(kind)
    except ValueError:
        raise UserError(f"未知的类型 {kind}") from None
    requests_store.create_request(
        console.engine,
        console.roster.keys(),
        target,
        _day(start, "开始日期"),
        _day(end, "结束日期"),
        leave_kind,
        note,
        who.account.username,
    )
    return redirect("/leave?done=requested")


def _decide(request: Request, request_id: int, csrf: str, reason: str, approve: bool) -> Response:
    who = checked(request, csrf)
    if who.role not in auth.DECIDE_LEAVE:
        raise Refused("无权审批请假")
    console = _console(request)
    requests_store.decide(
        console.engine,
        request_id,
        approve=approve,
        actor=who.account.username,
        may_decide_long=who.role in auth.DECIDE_LONG_LEAVE,
        above_days=console.settings.leave.leader_approval_above_days,
        reason=reason,
    )
    return redirect(f"/leave?done={'approved' if approve else 'rejected'}")


@router.post("/leave/{request_id}/approve")
def approve_leave(
    request: Request,
    request_id: int,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return _decide(request, request_id, csrf, reason, True)


@router.post("/leave/{request_id}/reject")
def reject_leave(
    request: Request,
    request_id: int,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return _decide(request, request_id, csrf, reason, False)


@router.post("/leave/{request_id}/withdraw")
def withdraw_leave(
    request: Request, request_id: int, csrf: Annotated[str, Form()] = ""
) -> Response:
    who = checked(request, csrf)
    console = _console(request)
    existing = requests_store.get_request(console.engine, request_id)
    if not (who.manages or existing.user_id == who.account.cadre_id):
        raise Refused("只能撤回本人的申请")
    requests_store.withdraw(console.engine, request_id, who.account.username)
    return redirect("/leave?done=withdrawn")


@router.post("/leave/{request_id}/close")
def close_leave(
    request: Request,
    request_id: int,
    last_day: Annotated[str, Form(max_length=20)],
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    who = checked(request, csrf)
    if who.role not in auth.DECIDE_LEAVE:
        raise Refused("销假由人事或领导办理")
    console = _console(request)
    requests_store.close_early(
        console.engine, request_id, _day(last_day, "最后一天"), who.account.username, reason
    )
    return redirect("/leave?done=closed")


# --- 异常 --------------------------------------------------------------------------------------


@router.get("/anomalies")
def anomalies_page(
    request: Request,
    week: str | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    who = viewer(request)
    if not who.reads_all:
        raise Refused()
    console = _console(request)
    chosen = _week(console, week)
    total, undecided = store.count_quarantine(console.engine)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    standing = console.figures.week(chosen)
    anomalies = standing.figures.anomalies
    listed = anomalies[anomalies["kind"] != rules.AnomalyKind.QUARANTINED.value]
    others = [
        {
            "type": str(kind),
            "terminal": str(terminal),
            "user_id": str(user_id),
            "time": stamp.to_pydatetime().strftime("%Y-%m-%d %H:%M"),
            "explanation": str(explanation),
        }
        for kind, terminal, user_id, stamp, explanation in zip(
            listed["type"],
            listed["terminal"],
            listed["user_id"],
            listed["timestamp"],
            listed["explanation"],
            strict=True,
        )
    ][:500]
    mismatches = [row for row in _terminal_rows(console) if row["reported_serial"]]
    return _render(
        request,
        "anomalies.html",
        who,
        week=chosen,
        quarantine=store.list_quarantine(
            console.engine, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        ),
        quarantine_count=total,
        undecided_count=undecided,
        page=page,
        pages=pages,
        others=others,
        other_count=len(listed),
        mismatches=mismatches,
        local=lambda instant: _local(console, instant),
        reason=quarantine_reason,
        configured={terminal.id for terminal in console.settings.terminals},
        shown=escape_control,
        names={cadre.user_id: cadre.name for cadre in console.cadres},
    )


def undecidable(problem: store.Undecidable) -> str:
    """Why a quarantine entry cannot be decided, in the console's Chinese."""
    entry = f"隔离打卡 #{problem.entry_id}"
    if problem.problem == "missing":
        return f"没有{entry}"
    if problem.problem == "decided":
        done = "放行" if problem.decision == store.RELEASE else "驳回"
        return f"{entry} 已由 {problem.decided_by} {done}，不能再处理"
    return f"{entry} 是无法解码的记录，没有可计入的打卡，只能驳回"


@router.post("/anomalies/{entry_id}/{decision}")
def decide_quarantine(
    request: Request,
    entry_id: int,
    decision: str,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    who = checked(request, csrf)
    if not who.manages:
        raise Refused("放行或驳回由人事或管理员办理")
    if decision not in (store.RELEASE, store.REJECT):
        raise UserError("未知的处理方式")
    if not reason.strip():
        raise UserError("请填写理由")
    console = _console(request)
    problem = store.decide_quarantine(
        console.engine, entry_id, decision, who.account.username, reason.strip()
    )
    if problem is not None:
        raise UserError(undecidable(problem))
    return redirect(
        "/anomalies?done=" + ("released" if decision == store.RELEASE else "quarantine_rejected")
    )


# --- 报表 --------------------------------------------------------------------------------------


def _notices(console: Console) -> dict[str, Path]:
    """The monthly notices (.docx) in the reports folder and its history/, by the edition
    identifier each carries; only files that really lie inside the reports folder."""
    root = console.settings.reports_dir.resolve()
    folder = root / "monthly"
    found: dict[str, Path] = {}
    # History first, so that a file in place wins over a copy of it in history/.
    for path in [*sorted(folder.glob("history/*.docx")), *sorted(folder.glob("*.docx"))]:
        real = path.resolve()
        if not real.is_relative_to(root) or not real.is_file():
            continue
        stamp = read_stamp(real)
        if stamp is not None:
            found[stamp.identifier] = real
    return found


def _notice_of(notices: dict[str, Path], edition: store.EditionFile) -> Path | None:
    return notices.get(identifier(edition.kind, edition.period, edition.revision))


@router.get("/reports")
def reports_page(request: Request) -> Response:
    who = viewer(request)
    if not who.reads_all:
        raise Refused()
    console = _console(request)
    notices = _notices(console)
    editions = []
    for edition in store.all_editions(console.engine):
        notice = _notice_of(notices, edition)
        row = _edition_row(console, edition)
        row["notice"] = None if notice is None else notice.name
        editions.append(row)
    today = _today(console)
    return _render(
        request,
        "reports.html",
        who,
        editions=editions,
        last_week=IsoWeek.containing(today - dt.timedelta(days=7)).label,
        last_month=YearMonth.containing(today.replace(day=1) - dt.timedelta(days=1)).label,
    )


def _edition_to_download(request: Request, edition_id: int) -> tuple[Console, store.EditionFile]:
    """The console and the edition a download asks for: HR, leaders and admins only."""
    if not viewer(request).reads_all:
        raise Refused()
    console = _console(request)
    edition = store.edition_by_id(console.engine, edition_id)
    if edition is None:
        raise UserError("没有这一版报表")
    return console, edition


@router.get("/reports/{edition_id}/file")
def download_report(request: Request, edition_id: int) -> Response:
    console, edition = _edition_to_download(request, edition_id)
    root = console.settings.reports_dir.resolve()
    path = Path(edition.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise UserError("这一版报表的文件已不在报表目录中")
    return FileResponse(
        path,
        media_type=REPORT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
        filename=path.name,
    )


@router.get("/reports/{edition_id}/notice")
def download_notice(request: Request, edition_id: int) -> Response:
    """The monthly notice written with an edition, wherever it now lies (in place or in
    history/), found by the edition identifier it carries."""
    console, edition = _edition_to_download(request, edition_id)
    path = _notice_of(_notices(console), edition)
    if path is None:
        raise UserError("这一版报表没有通报文件，或文件已不在报表目录中")
    return FileResponse(path, media_type=REPORT_TYPES[".docx"], filename=path.name)


@router.post("/reports/generate")
def generate_report(
    request: Request,
    kind: Annotated[str, Form(max_length=10)],
    period: Annotated[str, Form(max_length=10)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    from clockd.reports.monthly import write_monthly_report
    from clockd.reports.weekly import write_weekly_report

    who = checked(request, csrf)
    if not who.manages:
        raise Refused("生成报表由人事或管理员办理")
    console = _console(request)
    today = _today(console)
    try:
        if kind == "weekly":
            week = IsoWeek.parse(period.strip())
            if not supported(week):
                raise UserError(f"{week.label} {_OUT_OF_RANGE}")
            if week.end >= today:
                raise UserError(f"{week.label} 尚未结束，不能生成周汇总")
            write_weekly_report(console.settings, console.cadres, console.engine, week)
        elif kind == "monthly":
            month = YearMonth.parse(period.strip())
            if not supported(month):
                raise UserError(f"{month.label} {_OUT_OF_RANGE}")
            if month.weeks()[-1].end >= today:
                raise UserError(f"{month.label} 尚未结束，不能生成月度通报")
            write_monthly_report(console.settings, console.cadres, console.engine, month)
        else:
            raise UserError("未知的报表类型")
    except ValueError as exc:
        raise UserError(f"期次格式不对：{exc}") from None
    store.record(console.engine, who.account.username, "report.generate", f"{kind} {period}")
    return redirect("/reports?done=generated")


# --- 账户 --------------------------------------------------------------------------------------


@router.get("/accounts")
def accounts_page(request: Request) -> Response:
    who = viewer(request)
    if who.role != auth.ADMIN:
        raise Refused("账户由管理员管理")
    console = _console(request)
    return _render(
        request,
        "accounts.html",
        who,
        accounts=store.list_accounts(console.engine),
        audit=store.recent_audit(console.engine, 50),
        roles=(auth.CADRE, auth.HR, auth.LEADER, auth.ADMIN),  # the least powerful first
        local=lambda instant: _local(console, instant),
    )


@router.post("/accounts")
def add_account(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    role: Annotated[str, Form(max_length=16)],
    password: Annotated[str, Form(max_length=auth.MAX_PASSWORD)],
    user_id: Annotated[str, Form(max_length=24)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    who = checked(request, csrf)
    if who.role != auth.ADMIN:
        raise Refused("账户由管理员管理")
    console = _console(request)
    auth.add_user(
        console.engine,
        username.strip(),
        role,
        password,
        user_id.strip() or None,
        set(console.roster),
        who.account.username,
    )
    return redirect("/accounts?done=user_added")


@router.post("/accounts/{username}/disable")
def disable_account(request: Request, username: str, csrf: Annotated[str, Form()] = "") -> Response:
    who = checked(request, csrf)
    if who.role != auth.ADMIN:
        raise Refused("账户由管理员管理")
    console = _console(request)
    if store.disable_account(console.engine, username, who.account.username) is None:
        raise UserError(f"没有账户 {username}")
    return redirect("/accounts?done=user_disabled")
