"""The console's commands as an operator runs them (through `clockd`'s own entry point, on a
real SQLite file): accounts, tokens, quarantine decisions, work results, and `clockd serve` up
and down as a real process."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from clockd.store import console as store
from clockd.web.app import create_app
from tests.cli_runner import Result, run_clockd
from tests.report_site import Site, make_site
from tests.web_site import SECRET


def clockd(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = "") -> Result:
    """An operator's command; `clockd serve` that must keep running is started as a process."""
    return run_clockd(*args, cwd=cwd, env=env, stdin=stdin)


def one_error(result: Result, text: str) -> None:
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path, f"sqlite:///{tmp_path / 'clockd.sqlite3'}")


def test_accounts_and_tokens(site: Site) -> None:
    folder = site.folder
    added = clockd(
        "user", "add", "hr1", "--role", "hr", cwd=folder, env={"CLOCKD_PASSWORD": "pass-word-1"}
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added hr user hr1"
    cadre = clockd(
        "user",
        "add",
        "zhang",
        "--role",
        "cadre",
        "--user-id",
        "1001",
        cwd=folder,
        stdin="another-pass\n",
    )
    assert cadre.returncode == 0, cadre.stderr
    one_error(
        clockd("user", "add", "hr1", "--role", "hr", cwd=folder, stdin="pass-word-2\n"),
        "already a user named hr1",
    )
    one_error(
        clockd("user", "add", "x", "--role", "cadre", cwd=folder, stdin="pass-word-2\n"),
        "needs --user-id",
    )
    one_error(
        clockd(
            "user",
            "add",
            "y",
            "--role",
            "cadre",
            "--user-id",
            "9999",
            cwd=folder,
            stdin="pass-word-2\n",
        ),
        "not in the roster",
    )
    one_error(
        clockd("user", "add", "z", "--role", "hr", cwd=folder, stdin="short\n"),
        "at least 8 characters",
    )
    listing = clockd("user", "list", cwd=folder)
    assert listing.returncode == 0
    rows = [line.split() for line in listing.stdout.splitlines()[2:]]
    assert [(row[0], row[1]) for row in rows] == [("hr1", "hr"), ("zhang", "cadre")]
    assert rows[1][2] == "1001"

    created = clockd("token", "create", "hr1", cwd=folder)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("clk_") and token not in created.stderr
    app = create_app(
        site.settings, site.engine, cadres=site.cadres, environ={"CLOCKD_WEB_SECRET": SECRET}
    )
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/terminals", headers=headers).status_code == 200
    token_id = created.stderr.split("#")[1].split()[0]
    assert clockd("token", "revoke", token_id, cwd=folder).returncode == 0
    assert client.get("/api/v1/terminals", headers=headers).status_code == 401
    one_error(clockd("token", "revoke", token_id, cwd=folder), f"no live token #{token_id}")

    again = clockd("token", "create", "hr1", cwd=folder).stdout.strip()
    disabled = clockd("user", "disable", "hr1", "--by", "admin", cwd=folder)
    assert disabled.returncode == 0, disabled.stderr
    assert (
        client.get("/api/v1/terminals", headers={"Authorization": f"Bearer {again}"}).status_code
        == 401
    )
    one_error(clockd("token", "create", "hr1", cwd=folder), "no active console user")
    assert "disabled" in clockd("user", "list", cwd=folder).stdout


def test_quarantine_decisions(site: Site) -> None:
    site.store("t01", [("1001", "2026-11-16 08:00")])
    site.store(
        "t01",
        [("1001", "2026-11-16 14:00"), ("1002", "2026-11-16 15:00")],
        now_local=dt.datetime(2026, 11, 16, 9),
    )
    folder = site.folder
    listing = clockd("quarantine", "list", cwd=folder)
    assert listing.returncode == 0
    ids = [line.split()[0] for line in listing.stdout.splitlines()[2:]]
    assert len(ids) == 2
    one_error(clockd("quarantine", "release", ids[0], "--reason", " ", cwd=folder), "--reason")
    released = clockd(
        "quarantine", "release", ids[0], "--reason", "时钟快了", "--by", "hr1", cwd=folder
    )
    assert released.returncode == 0, released.stderr
    rejected = clockd("quarantine", "reject", ids[1], "--reason", "重复", cwd=folder)
    assert rejected.returncode == 0, rejected.stderr
    one_error(
        clockd("quarantine", "reject", ids[1], "--reason", "again", cwd=folder),
        "already decided",
    )
    assert clockd("quarantine", "list", cwd=folder).stdout.count("\n") == 2  # headers only
    everything = clockd("quarantine", "list", "--all", cwd=folder).stdout
    assert "release by hr1" in everything and "时钟快了" in everything
    decided = {entry.id: entry.decision for entry in store.list_quarantine(site.engine)}
    assert sorted(str(decision) for decision in decided.values()) == ["reject", "release"]


def test_worklog_import_and_list(site: Site) -> None:
    folder = site.folder
    (folder / "worklog.csv").write_text(
        "工号,日期,村,工作成效\n1001,2026-11-16,东村,调解纠纷\n1002,2026-11-17,西村,走访\n",
        encoding="utf-8",
    )
    imported = clockd("worklog", "import", "worklog.csv", "--by", "hr1", cwd=folder)
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 work results" in imported.stdout
    listing = clockd("worklog", "list", "--from", "2026-11-16", "--to", "2026-11-22", cwd=folder)
    assert "调解纠纷" in listing.stdout and "走访" in listing.stdout
    only = clockd("worklog", "list", "--user", "1002", "--from", "2026-11-01", cwd=folder)
    assert "走访" in only.stdout and "调解纠纷" not in only.stdout
    (folder / "bad.csv").write_text(
        "user_id,date,village,result\n9999,2026-11-16,,x\n1001,2026-11-17,丙村,走访\n",
        encoding="utf-8",
    )
    bad = clockd("worklog", "import", "bad.csv", cwd=folder)
    assert bad.returncode != 0 and "row 2, column user_id: 9999 is not in the roster" in bad.stderr
    assert "row 3, column village: '丙村' is not a configured village" in bad.stderr
    misnamed = folder / "misnamed.csv"
    misnamed.write_text("user_id,day_of_visit,result\n1001,2026-11-16,x\n", encoding="utf-8")
    refused = clockd("worklog", "import", str(misnamed), cwd=folder)
    assert "(expected date, result, user_id, village)" in refused.stderr, refused.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_answers_logs_each_request_and_stops_on_sigterm(site: Site) -> None:
    port = free_port()
    config = site.folder / "devices.yaml"
    config.write_text(
        config.read_text(encoding="utf-8") + f"web:\n  listen: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    missing = clockd("serve", cwd=site.folder)
    one_error(missing, "CLOCKD_WEB_SECRET")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}
    environ["CLOCKD_WEB_SECRET"] = SECRET
    server = subprocess.Popen(
        [sys.executable, "-m", "clockd", "serve"],
        cwd=site.folder,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=5).text == "ok"
        login = httpx.get(f"{base}/login", timeout=5)
        assert login.status_code == 200 and "登录" in login.text
        assert (
            httpx.post(
                f"{base}/login", data={"username": "nobody", "password": "secret-pw"}, timeout=5
            ).status_code
            == 403
        )
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0
    assert "GET /login 200 -" in errors and "POST /login 403 -" in errors
    assert "secret-pw" not in errors and SECRET not in errors
    assert "Traceback" not in errors


def test_serve_refuses_a_short_session_key(site: Site) -> None:
    short = clockd("serve", cwd=site.folder, env={"CLOCKD_WEB_SECRET": "short"})
    one_error(short, "at least 32 characters")


def test_the_demo_ends_with_working_console_accounts(site: Site) -> None:
    from clockd.web.demo import demo_console
    from tests.web_site import sign_in

    text = demo_console(site.folder / "devices.yaml")
    command, invitation = text.splitlines()[1:3]
    assert command.strip().startswith("CLOCKD_WEB_SECRET=")
    assert command.strip().endswith(f"clockd --config {site.folder / 'devices.yaml'} serve")
    assert "http://127.0.0.1:8080/" in invitation
    password = invitation.rsplit("password ", 1)[1].strip()
    secret = command.strip().split()[0].split("=", 1)[1]
    app = create_app(
        site.settings, site.engine, cadres=site.cadres, environ={"CLOCKD_WEB_SECRET": secret}
    )
    client = TestClient(app, follow_redirects=False)
    assert sign_in(client, "demo-hr", password).status_code == 303
    cadre = TestClient(app, follow_redirects=False)
    assert sign_in(cadre, "demo-cadre", password).status_code == 303
    assert cadre.get("/").headers["location"] == "/cadres/1001"
