"""A township with a console: the report tests' site, accounts of every role, and an HTTP
client that signs in through the real login form (cookies, CSRF) of the real app."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clockd.config import Settings
from clockd.web import auth
from clockd.web.app import create_app
from tests.report_site import Site, make_site

SECRET = "s" * 48
PASSWORD = "correct horse battery"
ACCOUNTS = {
    "admin1": (auth.ADMIN, None),
    "hr1": (auth.HR, None),
    "leader1": (auth.LEADER, None),
    "zhang": (auth.CADRE, "1001"),
    "li": (auth.CADRE, "1002"),
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def week_of_punches(site: Site) -> None:
    """W47: 1001 has two valid days (met), 1002 one (fails 3), 1003 none."""
    site.store(
        "t01",
        [
            ("1001", "2026-11-16 08:00"),
            ("1001", "2026-11-16 14:00"),
            ("1002", "2026-11-16 08:30"),
            ("1002", "2026-11-16 15:00"),
            ("1002", "2026-11-18 09:00"),
        ],
    )
    site.store("t02", [("1001", "2026-11-17 09:00"), ("1001", "2026-11-17 15:30")])
    site.poll_all()


@dataclass
class Console:
    site: Site
    app: FastAPI

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)

    def login(self, username: str, password: str = PASSWORD) -> TestClient:
        client = self.client()
        response = sign_in(client, username, password)
        assert response.status_code == 303, response.text
        return client

    def token(self, username: str) -> dict[str, str]:
        _, token = auth.create_token(self.site.engine, username, "test")
        return {"Authorization": f"Bearer {token}"}


def sign_in(client: TestClient, username: str, password: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf": csrf_of(client, "/login")},
    )
    return response


def csrf_of(client: TestClient, page: str) -> str:
    response = client.get(page)
    assert response.status_code == 200, response.text
    found = CSRF.search(response.text)
    assert found is not None, f"no CSRF token on {page}"
    return found.group(1)


def post_form(client: TestClient, page: str, action: str, data: dict[str, str]) -> httpx.Response:
    """Submit a form the way a browser does: with the CSRF token of the page it is on."""
    response: httpx.Response = client.post(action, data={**data, "csrf": csrf_of(client, page)})
    return response


def reconfigured(console: Console, settings: Settings) -> Console:
    """The same township and database, served with other settings."""
    site = replace(console.site, settings=settings)
    app = create_app(
        settings, site.engine, cadres=site.cadres, environ={"CLOCKD_WEB_SECRET": SECRET}
    )
    return Console(site, app)


def pushing(console: Console, terminal_id: str) -> Console:
    """The same township and database with `terminal_id` calling in (transport: push)."""
    settings = console.site.settings
    terminals = [
        t.model_copy(update={"transport": "push"}) if t.id == terminal_id else t
        for t in settings.terminals
    ]
    return reconfigured(console, settings.model_copy(update={"terminals": terminals}))


def make_console(folder: Path, database_url: str) -> Console:
    site = make_site(folder, database_url)
    roster = {cadre.user_id for cadre in site.cadres}
    for username, (role, cadre_id) in ACCOUNTS.items():
        auth.add_user(site.engine, username, role, PASSWORD, cadre_id, roster, "test")
    app = create_app(
        site.settings, site.engine, cadres=site.cadres, environ={"CLOCKD_WEB_SECRET": SECRET}
    )
    return Console(site, app)
