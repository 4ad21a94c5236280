"""The console in a real Chromium (Playwright driving Debian's `chromium`), against a real
uvicorn server on loopback and a real SQLite file: what HR and a cadre do in a week.

Screenshots of the main pages go to test-artifacts/web/ (or $CLOCKD_TEST_ARTIFACTS).
Skipped with the reason when Chromium or Playwright is missing, except under CI=true.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clockd.store import console as store
from tests.conftest import IN_CI, REPO
from tests.web_site import PASSWORD, Console, make_console, week_of_punches

CHROMIUM = Path("/usr/bin/chromium")
W47 = "2026-W47"
ARTIFACTS = Path(os.environ.get("CLOCKD_TEST_ARTIFACTS", REPO / "test-artifacts")) / "web"


def _browser_problem() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed"
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return f"Chromium is not installed ({CHROMIUM})"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    problem = _browser_problem()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"{problem} (required when CI=true)")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if CHROMIUM.exists() else Path(str(shutil.which("chromium")))
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(executable), args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Console, str]]:
    """The console of a township with a week of punches, served by uvicorn on loopback."""
    import uvicorn

    console = make_console(tmp_path, f"sqlite:///{tmp_path / 'clockd.sqlite3'}")
    week_of_punches(console.site)
    # 1003's Friday afternoon punch arrived dated ahead of the server's clock: quarantined.
    console.site.store("t01", [("1003", "2026-11-20 08:00")])
    console.site.store(
        "t01", [("1003", "2026-11-20 15:00")], now_local=dt.datetime(2026, 11, 20, 9)
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(console.app, host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield console, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _sign_in(browser: object, base: str, username: str, *, phone: bool = False) -> object:
    size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=base, viewport=size, locale="zh-CN", accept_downloads=True
    )
    page = context.new_page()
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _notice(page: object, text: str) -> None:
    """Wait for the notice that answers a submitted form: the click returns before the
    answer has loaded, so reading the page at once would race the navigation."""
    from playwright.sync_api import expect

    expect(page.locator(".notice")).to_contain_text(text)  # type: ignore[attr-defined]


def _row_text(page: object, name: str) -> str:
    return str(page.locator("tr", has_text=name).first.inner_text())  # type: ignore[attr-defined]


def test_hr_and_a_cadre_run_the_week_in_a_browser(
    browser: object, served: tuple[Console, str]
) -> None:
    console, base = served
    hr = _sign_in(browser, base, "hr1")
    hr.goto(f"/?week={W47}")  # type: ignore[attr-defined]
    assert "1 / 3" in _row_text(hr, "李四")
    assert "2 / 2" in _row_text(hr, "张三")
    _shot(hr, "home")

    # The cadre asks for three days' leave in that week.
    cadre = _sign_in(browser, base, "li")
    assert "/cadres/1002" in cadre.url  # type: ignore[attr-defined]
    cadre.goto("/leave")  # type: ignore[attr-defined]
    cadre.select_option("#kind", "leave")  # type: ignore[attr-defined]
    cadre.fill("#start", "2026-11-18")  # type: ignore[attr-defined]
    cadre.fill("#end", "2026-11-20")  # type: ignore[attr-defined]
    cadre.fill("#note", "<script>alert(1)</script>照顾病人")  # type: ignore[attr-defined]
    cadre.get_by_role("button", name="提交申请").click()  # type: ignore[attr-defined]
    _notice(cadre, "请假申请已提交")
    _shot(cadre, "leave-requested")

    # HR approves it (three days: HR may), and the cadre's week changes.
    hr.goto("/leave")  # type: ignore[attr-defined]
    row = hr.locator("tr", has_text="照顾病人").first  # type: ignore[attr-defined]
    assert "<script>alert(1)</script>照顾病人" in row.inner_text()  # shown as text
    row.locator("input[name=reason]").fill("同意")
    _shot(hr, "leave-pending")
    row.get_by_role("button", name="批准").click()
    _notice(hr, "已批准")
    cadre.goto(f"/cadres/1002?week={W47}")  # type: ignore[attr-defined]
    figures = cadre.locator(".figures").inner_text()  # type: ignore[attr-defined]
    assert "1 / 2" in figures and "3" in figures

    # The cadre files the work result of Monday's valid day.
    cadre.fill("textarea[aria-label^='2026-11-16']", "走访五保户，登记危房 2 处")  # type: ignore[attr-defined]
    cadre.click("#worklog button[type=submit]")  # type: ignore[attr-defined]
    _notice(cadre, "工作成效已保存")
    assert "走访五保户，登记危房 2 处" in cadre.content()  # type: ignore[attr-defined]
    _shot(cadre, "cadre")

    # HR releases the quarantined punch with a reason; 1003 gains the valid day.
    hr.goto("/anomalies")  # type: ignore[attr-defined]
    (entry,) = store.list_quarantine(console.site.engine, undecided_only=True)
    quarantined = hr.locator("tr", has_text=f"#{entry.id}").first  # type: ignore[attr-defined]
    quarantined.locator("input[name=reason]").fill("终端时钟快了，已核实")
    _shot(hr, "anomalies")
    quarantined.get_by_role("button", name="放行").click()
    _notice(hr, "已放行")
    hr.goto(f"/?week={W47}")  # type: ignore[attr-defined]
    assert "1 / 2" in _row_text(hr, "王五")

    # HR writes the week's report and downloads it.
    hr.goto("/reports")  # type: ignore[attr-defined]
    hr.fill("#week", W47)  # type: ignore[attr-defined]
    hr.get_by_role("button", name="生成周汇总").click()  # type: ignore[attr-defined]
    _notice(hr, "报表已生成")
    _shot(hr, "reports")
    with hr.expect_download() as waiting:  # type: ignore[attr-defined]
        hr.get_by_role("link", name=f"{W47}.xlsx").first.click()  # type: ignore[attr-defined]
    saved = Path(str(waiting.value.path()))
    assert zipfile.is_zipfile(saved)
    assert waiting.value.suggested_filename == f"{W47}.xlsx"

    hr.goto(f"/worklog?week={W47}")  # type: ignore[attr-defined]
    assert "走访五保户" in hr.content()  # type: ignore[attr-defined]
    _shot(hr, "worklog")

    phone = _sign_in(browser, base, "hr1", phone=True)
    phone.goto(f"/?week={W47}&behind=1")  # type: ignore[attr-defined]
    assert "李四" in phone.content() and "张三" not in phone.content()  # type: ignore[attr-defined]
    _shot(phone, "home-phone")
    admin = _sign_in(browser, base, "admin1")
    admin.goto("/accounts")  # type: ignore[attr-defined]
    assert "quarantine.release" in admin.content()  # type: ignore[attr-defined]
    _shot(admin, "accounts")
