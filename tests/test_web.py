"""The console and JSON API through the real app (HTTP via TestClient), on SQLite and
PostgreSQL: sign-in, sessions, CSRF, roles, the leave workflow, work results, quarantine,
reports, and the API's figures against the weekly workbook's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update

from clockd.config import NotifySettings
from clockd.reports import live
from clockd.reports.weekly import write_weekly_report
from clockd.store import console as store
from clockd.store.leave_requests import Request, list_requests
from clockd.store.models import AuditEvent, ConsoleUser, LeaveRequestEvent, WorkResult
from clockd.web.auth import ClientThrottle
from clockd.workcal import IsoWeek
from tests.report_site import open_workbook, table
from tests.web_site import (
    PASSWORD,
    Console,
    make_console,
    post_form,
    pushing,
    reconfigured,
    sign_in,
    week_of_punches,
)

W47 = IsoWeek(2026, 47)


@pytest.fixture
def console(tmp_path: Path, engine: Engine) -> Console:
    made = make_console(tmp_path, engine.url.render_as_string(hide_password=False))
    week_of_punches(made.site)
    return made


def week_row(console: Console, headers: dict[str, str], user_id: str) -> dict[str, object]:
    response = console.client().get(f"/api/v1/weeks/{W47.label}", headers=headers)
    assert response.status_code == 200, response.text
    rows: dict[str, dict[str, object]] = {row["user_id"]: row for row in response.json()["cadres"]}
    return rows[user_id]


def test_hr_signs_in_and_sees_the_week(console: Console) -> None:
    client = console.client()
    assert client.get("/").status_code == 303  # to the login form
    client = console.login("hr1")
    page = client.get(f"/?week={W47.label}")
    assert page.status_code == 200
    text = page.text
    assert "张三" in text and "2 / 2" in text  # 1001 met
    assert "李四" in text and "1 / 3" in text  # 1002 behind by 2
    assert "终端状态" in text and "t01" in text
    behind = client.get(f"/?week={W47.label}&behind=1").text
    assert "李四" in behind and "张三" not in behind


def test_a_wrong_password_is_refused_and_repeated_failures_are_slowed(console: Console) -> None:
    client = console.client()
    for _ in range(3):
        assert sign_in(client, "hr1", "wrong password").status_code == 401
    # From here on another address, so that only the account's own delay applies.
    elsewhere = TestClient(console.app, follow_redirects=False, client=("192.0.2.7", 40000))
    account = store.account_by_name(console.site.engine, "hr1")
    assert account is not None and account.failed_logins == 3
    # Five more failures since: the next attempt waits 32 s, whatever the password.
    with console.site.engine.begin() as connection:
        connection.execute(
            update(ConsoleUser).where(ConsoleUser.id == account.id).values(failed_logins=8)
        )
    slowed = sign_in(elsewhere, "hr1", PASSWORD)
    assert slowed.status_code == 429 and "秒后再试" in slowed.text
    # A success after the wait resets the count.
    with console.site.engine.begin() as connection:
        connection.execute(
            update(ConsoleUser)
            .where(ConsoleUser.id == account.id)
            .values(last_failed_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    assert sign_in(elsewhere, "hr1", PASSWORD).status_code == 303
    again = store.account_by_name(console.site.engine, "hr1")
    assert again is not None and again.failed_logins == 0


def test_failures_from_one_address_slow_that_address_across_user_names() -> None:
    throttle = ClientThrottle()
    start = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    for n in range(3):
        throttle.failed("192.0.2.1", start + dt.timedelta(seconds=n))
    assert throttle.retry_in("192.0.2.1", start + dt.timedelta(seconds=2.5)) == 0.5
    assert throttle.retry_in("192.0.2.2", start) == 0
    for n in range(3, 20):
        throttle.failed("192.0.2.1", start + dt.timedelta(seconds=n))
    assert throttle.retry_in("192.0.2.1", start + dt.timedelta(seconds=19)) == 300
    throttle.succeeded("192.0.2.1")
    assert throttle.retry_in("192.0.2.1", start + dt.timedelta(seconds=19)) == 0
    small = ClientThrottle(capacity=2)
    for address in ("a", "b", "c"):
        for _ in range(5):
            small.failed(address, start)
    assert small.retry_in("a", start) == 0 and small.retry_in("c", start) > 0


def test_a_form_without_its_csrf_token_is_refused(console: Console) -> None:
    client = console.login("zhang")
    response = client.post(
        "/leave/request", data={"start": "2026-11-18", "end": "2026-11-18", "kind": "leave"}
    )
    assert response.status_code == 403
    forged = client.post(
        "/leave/request",
        data={"start": "2026-11-18", "end": "2026-11-18", "kind": "leave", "csrf": "forged"},
    )
    assert forged.status_code == 403
    login = console.client().post("/login", data={"username": "hr1", "password": PASSWORD})
    assert login.status_code == 403


def test_a_cadre_sees_only_their_own_records(console: Console) -> None:
    client = console.login("zhang")
    home = client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/cadres/1001"
    own = client.get(f"/cadres/1001?week={W47.label}")
    assert own.status_code == 200 and "张三" in own.text and "东村" in own.text
    assert client.get(f"/cadres/1002?week={W47.label}").status_code == 403
    for page in ("/anomalies", "/reports", "/accounts"):
        assert client.get(page).status_code == 403, page
    headers = console.token("zhang")
    week = console.client().get(f"/api/v1/weeks/{W47.label}", headers=headers).json()
    assert [row["user_id"] for row in week["cadres"]] == ["1001"]
    other = console.client().get("/api/v1/punches?user_id=1002", headers=headers)
    assert other.status_code == 403
    mine = console.client().get("/api/v1/punches", headers=headers).json()
    assert {p["user_id"] for p in mine["punches"]} == {"1001"}


def test_a_disabled_account_loses_its_session_and_tokens(console: Console) -> None:
    client = console.login("hr1")
    headers = console.token("hr1")
    assert client.get(f"/?week={W47.label}").status_code == 200
    store.disable_account(console.site.engine, "hr1", "admin1")
    response = client.get(f"/?week={W47.label}")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert console.client().get("/api/v1/terminals", headers=headers).status_code == 401
    assert sign_in(console.client(), "hr1", PASSWORD).status_code == 401


def test_signing_out_ends_the_session(console: Console) -> None:
    client = console.login("hr1")
    stolen = dict(client.cookies)
    assert post_form(client, "/leave", "/logout", {}).status_code == 303
    replay = console.client()
    replay.cookies.update(stolen)
    assert replay.get("/leave").status_code == 303


def test_leave_workflow_changes_the_week(console: Console) -> None:
    cadre = console.login("li")
    hr = console.login("hr1")
    leader = console.login("leader1")
    before = week_row(console, console.token("hr1"), "1002")
    assert before["required_days"] == 3 and before["passed"] is False

    # A five-day leave: HR may not decide it, the leader may.
    response = post_form(
        cadre,
        "/leave",
        "/leave/request",
        {"start": "2026-11-17", "end": "2026-11-21", "kind": "leave", "note": "<b>家事</b>"},
    )
    assert response.status_code == 303
    requests = store_requests(console)
    assert [r.status for r in requests] == ["pending"]
    request_id = requests[0].id
    page = hr.get("/leave").text
    assert "&lt;b&gt;家事&lt;/b&gt;" in page and "<b>家事</b>" not in page
    refused = post_form(hr, "/leave", f"/leave/{request_id}/approve", {"reason": "同意"})
    assert refused.status_code == 400 and "须由领导审批" in refused.text
    assert week_row(console, console.token("hr1"), "1002")["required_days"] == 3

    approved = post_form(leader, "/leave", f"/leave/{request_id}/approve", {"reason": "同意"})
    assert approved.status_code == 303
    after = week_row(console, console.token("hr1"), "1002")
    assert after["leave_days"] == 5 and after["required_days"] == 1 and after["passed"] is True

    # 销假: back at work from Thursday 11-19, so the leave ends on Wednesday 11-18.
    closed = post_form(hr, "/leave", f"/leave/{request_id}/close", {"last_day": "2026-11-18"})
    assert closed.status_code == 303
    shortened = week_row(console, console.token("hr1"), "1002")
    assert shortened["leave_days"] == 2 and shortened["required_days"] == 3
    assert shortened["passed"] is False

    with console.site.engine.connect() as connection:
        actions = connection.execute(
            select(LeaveRequestEvent.action, LeaveRequestEvent.actor).order_by(LeaveRequestEvent.id)
        ).all()
    assert [tuple(row) for row in actions] == [
        ("request", "li"),
        ("approve", "leader1"),
        ("close", "hr1"),
    ]
    admin = console.login("admin1")
    trail = admin.get("/accounts").text
    assert "leave.approve" in trail and "leave-request#" in trail


def store_requests(console: Console) -> list[Request]:
    return list_requests(console.site.engine)


def test_a_pending_or_rejected_request_does_not_count(console: Console) -> None:
    cadre = console.login("li")
    hr = console.login("hr1")
    post_form(cadre, "/leave", "/leave/request", {"start": "2026-11-17", "end": "2026-11-18"})
    assert week_row(console, console.token("hr1"), "1002")["leave_days"] == 0
    (request,) = store_requests(console)
    rejected = post_form(hr, "/leave", f"/leave/{request.id}/reject", {"reason": "人手不足"})
    assert rejected.status_code == 303
    assert week_row(console, console.token("hr1"), "1002")["leave_days"] == 0
    again = post_form(hr, "/leave", f"/leave/{request.id}/approve", {})
    assert again.status_code == 400
    assert f"申请 #{request.id} 已驳回，不能再处理" in again.text


def test_a_cadre_files_work_results_only_for_valid_days(console: Console) -> None:
    client = console.login("zhang")
    page = f"/cadres/1001?week={W47.label}"
    filed = post_form(
        client,
        page,
        "/worklog",
        {"user_id": "1001", "day": "2026-11-16", "text": "走访贫困户 3 户", "back": page},
    )
    assert filed.status_code == 303
    assert "走访贫困户 3 户" in client.get(page).text
    invalid = post_form(
        client, page, "/worklog", {"user_id": "1001", "day": "2026-11-18", "text": "x"}
    )
    assert invalid.status_code == 400 and "不是该干部的有效下村日" in invalid.text
    others = post_form(
        client, page, "/worklog", {"user_id": "1002", "day": "2026-11-16", "text": "x"}
    )
    assert others.status_code == 403
    hr = console.login("hr1")
    listing = hr.get(f"/worklog?week={W47.label}").text
    assert "走访贫困户 3 户" in listing and "李四" in listing
    assert "走访贫困户 3 户" not in hr.get(f"/worklog?week={W47.label}&missing=1").text


def test_releasing_a_quarantined_punch_revises_the_report(console: Console) -> None:
    site = console.site
    # 1003's afternoon punch on Friday arrived dated ahead of the server's clock: quarantined.
    site.store("t01", [("1003", "2026-11-20 08:00")])
    site.store("t01", [("1003", "2026-11-20 15:00")], now_local=dt.datetime(2026, 11, 20, 9))
    site.poll_all()
    first = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    hr = console.login("hr1")
    page = hr.get("/anomalies").text
    (entry,) = store.list_quarantine(site.engine, undecided_only=True)
    assert f"#{entry.id}" in page
    no_reason = post_form(hr, "/anomalies", f"/anomalies/{entry.id}/release", {"reason": " "})
    assert no_reason.status_code == 400
    released = post_form(
        hr, "/anomalies", f"/anomalies/{entry.id}/release", {"reason": "终端时钟快了，已核实"}
    )
    assert released.status_code == 303
    again = post_form(hr, "/anomalies", f"/anomalies/{entry.id}/reject", {"reason": "重复"})
    assert again.status_code == 400
    assert f"隔离打卡 #{entry.id} 已由 hr1 放行，不能再处理" in again.text
    missing = post_form(hr, "/anomalies", "/anomalies/999999/release", {"reason": "核实"})
    assert missing.status_code == 400 and "没有隔离打卡 #999999" in missing.text
    assert week_row(console, console.token("hr1"), "1003")["valid_days"] == 1
    generated = post_form(
        hr, "/reports", "/reports/generate", {"kind": "weekly", "period": W47.label}
    )
    assert generated.status_code == 303
    editions = [e for e in store.all_editions(site.engine) if e.period == W47.label]
    assert [e.revision for e in editions] == [1, 0]
    assert editions[0].status in ("更正", "corrected")
    assert first.revision == 0
    with site.engine.connect() as connection:
        audited = connection.execute(select(AuditEvent.action, AuditEvent.actor)).all()
    assert ("quarantine.release", "hr1") in [tuple(row) for row in audited]
    assert ("report.generate", "hr1") in [tuple(row) for row in audited]


def test_the_quarantine_is_paged_so_every_entry_can_be_reached(console: Console) -> None:
    site = console.site
    first = dt.datetime(2027, 1, 1, 8, 0)  # after the site's clock: every punch is quarantined
    site.store(
        "t01",
        [("1001", str(first + dt.timedelta(minutes=n))) for n in range(150)],
    )
    entries = store.list_quarantine(site.engine)
    decided = entries[0]
    assert store.decide_quarantine(site.engine, decided.id, "reject", "hr1", "核实") is None
    hr = console.login("hr1")
    first_page = hr.get("/anomalies").text
    second_page = hr.get("/anomalies?page=2").text
    assert "共 150 条，待处理 149 条" in first_page and "第 1 / 2 页" in first_page
    assert first_page.count("/release") == 100 and second_page.count("/release") == 49
    oldest = min(entry.id for entry in entries)
    assert f"/anomalies/{oldest}/release" in second_page
    assert f"#{decided.id}<" in second_page and "已驳回" in second_page  # decided ones last


def test_punches_from_an_unknown_push_terminal_show_its_serial(console: Console) -> None:
    from clockd.ingest.push import PushReceiver

    receiver = PushReceiver(console.site.settings, console.site.engine)
    receiver.touch("ZZX0000000999")
    receiver.store_attlog("ZZX0000000999", b"1001\t2026-11-16 08:00:00\t0\t1\t0\n")
    page = console.login("hr1").get("/anomalies").text
    assert "ZZX0000000999" in page and "未登记" in page
    assert "unconfigured" not in page and "未登记的终端" in page


def test_reports_are_listed_and_downloadable(console: Console) -> None:
    site = console.site
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    hr = console.login("hr1")
    page = hr.get("/reports")
    assert page.status_code == 200 and f"{W47.label}.xlsx" in page.text
    (edition,) = store.all_editions(site.engine)
    download = hr.get(f"/reports/{edition.id}/file")
    assert download.status_code == 200
    assert download.content == outcome.path.read_bytes()
    assert "正式" in hr.get(f"/?week={W47.label}").text
    leader = console.login("leader1")
    refused = post_form(
        leader, "/reports", "/reports/generate", {"kind": "weekly", "period": W47.label}
    )
    assert refused.status_code == 403
    unfinished = post_form(
        hr, "/reports", "/reports/generate", {"kind": "weekly", "period": "2099-W01"}
    )
    assert unfinished.status_code == 400


def test_monthly_notices_and_their_history_are_listed_and_downloadable(
    console: Console, tmp_path: Path
) -> None:
    from clockd.reports.monthly import notice_path, write_monthly_report
    from clockd.workcal import YearMonth

    site = console.site
    november = YearMonth(2026, 11)
    write_monthly_report(site.settings, site.cadres, site.engine, november)  # provisional
    site.poll_all(started=dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC))
    write_monthly_report(site.settings, site.cadres, site.engine, november)  # final
    current = notice_path(site.settings, november)
    (kept,) = (current.parent / "history").glob("*.docx")
    hr = console.login("hr1")
    page = hr.get("/reports").text
    assert current.name in page and kept.name in page
    final, provisional = (e for e in store.all_editions(site.engine) if e.kind == "monthly")
    for edition, path in ((final, current), (provisional, kept)):
        download = hr.get(f"/reports/{edition.id}/notice")
        assert download.status_code == 200 and download.content == path.read_bytes()
        assert download.headers["content-type"] == (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        )
        assert quote(path.name) in download.headers["content-disposition"]
    # A notice that points outside the reports folder is neither listed nor served.
    outside = tmp_path / "elsewhere.docx"
    outside.write_bytes(kept.read_bytes())
    kept.unlink()
    kept.symlink_to(outside)
    assert kept.name not in hr.get("/reports").text
    refused = hr.get(f"/reports/{provisional.id}/notice")
    assert refused.status_code == 400 and "不在报表目录中" in refused.text
    assert hr.get(f"/reports/{final.id + 1000}/notice").status_code == 400


def test_the_api_week_equals_the_workbook(console: Console) -> None:
    site = console.site
    outcome = write_weekly_report(site.settings, site.cadres, site.engine, W47)
    summary = {row["工号"]: row for row in table(open_workbook(outcome.path)["汇总"], "工号")}
    week = console.client().get(f"/api/v1/weeks/{W47.label}", headers=console.token("leader1"))
    body = week.json()
    assert body["week"] == W47.label and body["status"] == "final"
    assert len(body["cadres"]) == len(summary)
    for row in body["cadres"]:
        sheet = summary[row["user_id"]]
        assert row["name"] == sheet["姓名"]
        assert row["required_days"] == sheet["应下村天数"]
        assert row["valid_days"] == sheet["有效下村天数"]
        assert row["morning_only_days"] == sheet["仅上午打卡天数"]
        assert row["afternoon_only_days"] == sheet["仅下午打卡天数"]
        assert row["leave_days"] == sheet["请假天数"]
        assert row["passed"] == (sheet["是否达标"] == "是")
        assert row["deduction_yuan"] == sheet["扣款(元)"]
        assert row["result_days"] == sheet["已填工作成效天数"]
        assert row["remarks"] == (sheet["备注"] or "")


def test_the_api_month_terminals_and_openapi(console: Console) -> None:
    client = console.client()
    headers = console.token("hr1")
    assert client.get("/api/v1/weeks/2026-W47").status_code == 401
    bad = {"Authorization": "Bearer clk_not-a-token"}
    assert client.get("/api/v1/weeks/2026-W47", headers=bad).status_code == 401
    assert client.get("/api/v1/weeks/2026-W99", headers=headers).status_code == 422
    month = client.get("/api/v1/months/2026-11", headers=headers).json()
    assert month["month"] == "2026-11"
    notified = {row["user_id"]: row for row in month["notified"]}
    assert "2026-W47" in notified["1002"]["failed_weeks"]
    assert month["statistics"]["cadre_count"] == len(month["cadres"])
    terminals = client.get("/api/v1/terminals", headers=headers).json()
    assert [t["id"] for t in terminals] == ["t01", "t02", "t03"]
    assert terminals[0]["source"] == "pull" and terminals[0]["last_good_contact"]
    spec = client.get("/api/v1/openapi.json").json()
    assert set(spec["paths"]) == {
        "/api/v1/weeks/{week}",
        "/api/v1/months/{month}",
        "/api/v1/terminals",
        "/api/v1/punches",
        "/api/v1/leave",
    }


def test_the_api_tells_push_terminals_from_polled_ones(console: Console) -> None:
    """A terminal that calls in is `push`, with its last call as its last good contact."""
    from clockd.ingest.push import PushReceiver

    town = pushing(console, "t03")
    receiver = PushReceiver(town.site.settings, town.site.engine)
    receiver.touch("SN003")
    receiver.flush_contacts()
    terminals = town.client().get("/api/v1/terminals", headers=town.token("hr1")).json()
    by_id = {t["id"]: t for t in terminals}
    assert (by_id["t01"]["source"], by_id["t03"]["source"]) == ("pull", "push")
    assert by_id["t03"]["last_good_contact"] is not None


def test_home_counts_a_terminal_stale_after_the_configured_hours(console: Console) -> None:
    # The fixture polled every terminal just now; t01 and t02 are polled again later.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=10)
    for terminal_id, hours_before in (("t01", 3), ("t02", 0.5)):
        with time_machine.travel(later - dt.timedelta(hours=hours_before), tick=False):
            console.site.store(terminal_id, [], started=dt.datetime.now(dt.UTC))
    settings = console.site.settings
    notify = NotifySettings.model_validate({"stale_hours": 2})
    town = reconfigured(console, settings.model_copy(update={"notify": notify}))
    with time_machine.travel(later, tick=False):
        page = town.login("hr1").get("/").text
    assert "共 3 台，2 台超过 2 小时没有成功采集" in page  # t01 (3 h) and t03 (10 h)


def test_periods_beyond_the_served_years_are_refused_instead_of_failing(console: Console) -> None:
    hr = console.login("hr1")
    for page in (
        "/?week=0001-W01",
        "/?week=9999-W52",
        "/anomalies?week=0001-W01",
        "/worklog?week=9999-W52",
        "/cadres/1001?week=9999-W52",
    ):
        refused = hr.get(page)
        assert refused.status_code == 400 and "超出可查询的范围" in refused.text, page
    generated = post_form(
        hr, "/reports", "/reports/generate", {"kind": "monthly", "period": "0001-01"}
    )
    assert generated.status_code == 400 and "超出可查询的范围" in generated.text
    for edge in ("/?week=1900-W01", "/?week=2999-W52"):
        assert hr.get(edge).status_code == 200, edge
    client = console.client()
    headers = console.token("hr1")
    for path in ("/api/v1/weeks/9999-W52", "/api/v1/months/9999-12", "/api/v1/months/0001-01"):
        response = client.get(path, headers=headers)
        assert response.status_code == 422, path
        assert "outside the years served" in response.json()["detail"], path
    for edge in ("/api/v1/months/1900-01", "/api/v1/months/2999-12"):
        assert client.get(edge, headers=headers).status_code == 200, edge
    # The last date there is bounds nothing: every punch, not an error.
    everything = client.get("/api/v1/punches?to=9999-12-31", headers=headers)
    assert everything.status_code == 200 and len(everything.json()["punches"]) == 7


def test_the_api_pages_punches(console: Console) -> None:
    client = console.client()
    headers = console.token("hr1")
    first = client.get(
        "/api/v1/punches?from=2026-11-16&to=2026-11-22&limit=3", headers=headers
    ).json()
    assert len(first["punches"]) == 3 and first["next_after"] is not None
    rest = client.get(
        f"/api/v1/punches?from=2026-11-16&to=2026-11-22&after={first['next_after']}",
        headers=headers,
    ).json()
    assert rest["next_after"] is None
    assert len(first["punches"]) + len(rest["punches"]) == 7
    by_terminal = client.get("/api/v1/punches?terminal=t02", headers=headers).json()
    assert {p["village"] for p in by_terminal["punches"]} == {"西村"}


def test_the_api_enters_leave_by_role(console: Console) -> None:
    client = console.client()
    body = {"user_id": "1002", "from": "2026-11-17", "to": "2026-11-18", "kind": "business_trip"}
    made = client.post("/api/v1/leave", json=body, headers=console.token("hr1"))
    assert made.status_code == 201 and made.json()["status"] == "approved"
    assert made.json()["from"] == "2026-11-17"
    assert week_row(console, console.token("hr1"), "1002")["leave_days"] == 2
    requested = client.post("/api/v1/leave", json=body, headers=console.token("li"))
    assert requested.status_code == 202 and requested.json()["status"] == "pending"
    for_other = client.post(
        "/api/v1/leave", json={**body, "user_id": "1001"}, headers=console.token("li")
    )
    assert for_other.status_code == 403
    leader = client.post("/api/v1/leave", json=body, headers=console.token("leader1"))
    assert leader.status_code == 403
    backwards = client.post(
        "/api/v1/leave", json={**body, "to": "2026-11-01"}, headers=console.token("hr1")
    )
    assert backwards.status_code == 422


def test_accounts_are_managed_by_the_admin_only(console: Console) -> None:
    hr = console.login("hr1")
    assert hr.get("/accounts").status_code == 403
    admin = console.login("admin1")
    added = post_form(
        admin,
        "/accounts",
        "/accounts",
        {"username": "wang", "role": "cadre", "user_id": "1003", "password": "longenough1"},
    )
    assert added.status_code == 303
    assert console.login("wang", "longenough1").get("/").headers["location"] == "/cadres/1003"
    disabled = post_form(admin, "/accounts", "/accounts/wang/disable", {})
    assert disabled.status_code == 303
    assert sign_in(console.client(), "wang", "longenough1").status_code == 401


def test_every_page_renders_for_each_role(console: Console) -> None:
    pages = {
        "admin1": [
            "/",
            "/cadres/1001",
            "/worklog",
            "/leave",
            "/anomalies",
            "/reports",
            "/accounts",
        ],
        "hr1": ["/", "/cadres/1002", "/worklog", "/leave", "/anomalies", "/reports"],
        "leader1": ["/", "/cadres/1003", "/worklog", "/leave", "/anomalies", "/reports"],
        "zhang": ["/cadres/1001", "/leave"],
    }
    for username, paths in pages.items():
        client = console.login(username)
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, (username, path, response.text[:300])
            assert "<script" not in response.text
            assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert console.client().get("/static/style.css").status_code == 200
    response = sign_in(console.client(), "hr1", PASSWORD)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie


def test_withdrawing_and_requests_entered_by_hr(console: Console) -> None:
    cadre = console.login("li")
    post_form(cadre, "/leave", "/leave/request", {"start": "2026-11-19", "end": "2026-11-19"})
    (mine,) = store_requests(console)
    refused = post_form(cadre, "/leave", f"/leave/{mine.id}/approve", {})
    assert refused.status_code == 403  # a cadre does not decide leave
    other = console.login("zhang")
    assert post_form(other, "/leave", f"/leave/{mine.id}/withdraw", {}).status_code == 403
    assert post_form(cadre, "/leave", f"/leave/{mine.id}/withdraw", {}).status_code == 303
    assert [r.status for r in store_requests(console)] == ["withdrawn"]
    assert "已撤回" in cadre.get("/leave").text

    hr = console.login("hr1")
    entered = post_form(
        hr,
        "/leave",
        "/leave/request",
        {"user_id": "1001", "start": "2026-11-20", "end": "2026-11-20", "kind": "business_trip"},
    )
    assert entered.status_code == 303
    newest = store_requests(console)[0]
    assert (newest.user_id, newest.kind.value, newest.requested_by) == (
        "1001",
        "business_trip",
        "hr1",
    )
    assert post_form(hr, "/leave", f"/leave/{newest.id}/approve", {}).status_code == 303
    assert week_row(console, console.token("hr1"), "1001")["leave_days"] == 1
    unknown = post_form(
        hr,
        "/leave",
        "/leave/request",
        {"user_id": "9999", "start": "2026-11-20", "end": "2026-11-20"},
    )
    assert unknown.status_code == 400 and "不在花名册中" in unknown.text
    # The zhang cadre sees only their own requests.
    page = other.get("/leave").text
    assert "1001" in page and "李四" not in page


def test_work_results_change_compliance_when_required(console: Console) -> None:
    from clockd.web.app import create_app
    from tests.web_site import SECRET

    site = console.site
    rules = site.settings.rules.model_copy(update={"work_results_required": True})
    settings = site.settings.model_copy(update={"rules": rules})
    strict = Console(
        site,
        create_app(
            settings, site.engine, cadres=site.cadres, environ={"CLOCKD_WEB_SECRET": SECRET}
        ),
    )
    headers = strict.token("hr1")
    assert week_row(console, headers, "1001")["passed"] is True  # the default rules
    row = week_row(strict, headers, "1001")
    assert (row["valid_days"], row["passed"]) == (0, False)
    assert "2天未按时填报工作成效" in str(row["remarks"])

    cadre = strict.login("zhang")
    page = f"/cadres/1001?week={W47.label}"
    filed = post_form(
        cadre, page, "/worklog", {"user_id": "1001", "day": "2026-11-16", "text": "调研"}
    )
    assert filed.status_code == 303
    # Filed now, long after Monday's report was due: still not counted.
    assert week_row(strict, headers, "1001")["valid_days"] == 0
    # As if both had been filed on time, just before the report (Monday 07:30 in Shanghai).
    in_time = dt.datetime(2026, 11, 22, 23, 0, tzinfo=dt.UTC)
    with site.engine.begin() as connection:
        connection.execute(update(WorkResult).values(entered_at=in_time))
        connection.execute(
            insert(WorkResult).values(
                user_id="1001",
                day=dt.date(2026, 11, 17),
                village="西村",
                text="走访",
                entered_by="zhang",
                entered_at=in_time,
            )
        )
    row = week_row(strict, headers, "1001")
    assert (row["valid_days"], row["passed"], row["remarks"]) == (2, True, "")
    # The weekly workbook agrees, and shows the days with a result either way.
    outcome = write_weekly_report(settings, site.cadres, site.engine, W47)
    sheet = {r["工号"]: r for r in table(open_workbook(outcome.path)["汇总"], "工号")}
    assert (sheet["1001"]["有效下村天数"], sheet["1001"]["已填工作成效天数"]) == (2, 2)
    assert (sheet["1002"]["有效下村天数"], sheet["1002"]["已填工作成效天数"]) == (0, 0)


def test_the_api_month_equals_the_monthly_workbook(console: Console) -> None:
    from clockd.reports.monthly import week_names, write_monthly_report
    from clockd.workcal import YearMonth

    site = console.site
    outcome = write_monthly_report(site.settings, site.cadres, site.engine, YearMonth(2026, 11))
    workbook = open_workbook(outcome.path)
    summary = {row["工号"]: row for row in table(workbook["月度汇总"], "工号")}
    notice = {row["工号"]: row for row in table(workbook["通报"], "工号")}
    month = console.client().get("/api/v1/months/2026-11", headers=console.token("hr1")).json()
    assert {row["user_id"] for row in month["cadres"]} == set(summary)
    for row in month["cadres"]:
        sheet = summary[row["user_id"]]
        assert row["assessed_weeks"] == sheet["考核周数"]
        assert row["met_weeks"] == sheet["达标周数"]
        assert row["failed_weeks"] == sheet["未达标周数"]
        assert row["valid_days"] == sheet["有效下村天数"]
        assert row["average_valid_days"] == pytest.approx(sheet["周均下村天数"])
        assert row["deduction_yuan"] == sheet["扣款合计(元)"]
    assert [row["user_id"] for row in month["notified"]] == list(notice)  # the 通报 order
    for row in month["notified"]:
        # ISO weeks in the API, written out the workbook's way to compare.
        assert week_names(row["failed_weeks"]) == notice[row["user_id"]]["未达标周次"]
    assert month["status"] == live.api_status(outcome.status) == "provisional"  # W48 not polled
    cadre = console.client().get("/api/v1/months/2026-11", headers=console.token("zhang")).json()
    assert [row["user_id"] for row in cadre["cadres"]] == ["1001"]
    assert cadre["statistics"] is None


def test_pages_answer_errors_with_chinese_pages_and_the_api_with_json(console: Console) -> None:
    hr = console.login("hr1")
    for method, path, status, title in (
        ("GET", "/no-such-page", 404, "页面不存在"),
        ("POST", "/", 405, "请求方式不对"),
        ("GET", "/?page=abc", 422, "页码格式不对"),
    ):
        response = hr.request(method, path)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert title in response.text and "退出" in response.text, path  # the console's layout
    assert hr.post("/").headers["allow"] == "GET"
    api = console.client().get("/api/v1/no-such-thing", headers=console.token("hr1"))
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}


def test_an_overlong_password_is_refused_without_being_echoed(console: Console) -> None:
    password = "never-shown-" + "x" * 1100
    response = sign_in(console.client(), "hr1", password)
    assert response.status_code == 422 and "密码过长" in response.text
    assert "never-shown" not in response.text


def test_oversized_bodies_are_refused_before_they_are_buffered(console: Console) -> None:
    client = console.client()
    headers = console.token("hr1")
    big = b'{"user_id": "' + b"1" * (2 * 1024 * 1024) + b'"}'
    declared = client.post(
        "/api/v1/leave", content=big, headers={**headers, "Content-Type": "application/json"}
    )
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    streamed = client.post("/login", content=chunks(), headers=form)
    assert streamed.status_code == 413
    json = {**headers, "Content-Type": "application/json"}
    assert client.post("/api/v1/leave", content=chunks(), headers=json).status_code == 413


def test_a_week_in_progress_is_shown_as_such_and_charged_nothing(console: Console) -> None:
    """On Wednesday of W47 nobody has failed the week yet: the API says it is in progress
    with nothing charged, the home page counts cadres 尚未达标, not 未达标."""
    wednesday = dt.datetime(2026, 11, 18, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
    with time_machine.travel(wednesday, tick=False):
        headers = console.token("hr1")
        during = console.client().get(f"/api/v1/weeks/{W47.label}", headers=headers).json()
        home = console.login("hr1").get(f"/?week={W47.label}").text
    assert during["cadres"] and all(row["in_progress"] for row in during["cadres"])
    assert all(row["deduction_yuan"] == 0 for row in during["cadres"])
    assert any(not row["passed"] for row in during["cadres"])
    assert "尚未达标" in home and "本周尚未结束" in home
    after = console.client().get(f"/api/v1/weeks/{W47.label}", headers=headers).json()
    assert not any(row["in_progress"] for row in after["cadres"])
    assert any(row["deduction_yuan"] == 100 for row in after["cadres"])
    page = console.login("hr1").get(f"/?week={W47.label}").text
    assert "尚未达标" not in page and "未达标" in page
