"""The end of `clockd demo`: accounts on the demo's data and how to open the console."""

from __future__ import annotations

import secrets
from pathlib import Path

from clockd.config import load_settings
from clockd.roster import load_roster
from clockd.store import db
from clockd.web import auth

DEMO_HR = "demo-hr"
DEMO_CADRE = "demo-cadre"


def demo_console(config: Path) -> str:
    """Create an HR account and an account for the roster's first cadre, both with one new
    random password, and say how to serve and open the console on the demo's database."""
    settings = load_settings(config, environ={})
    cadres = load_roster(settings.roster_path, {t.village for t in settings.terminals})
    password = secrets.token_urlsafe(9)
    engine = db.make_engine(settings.database_url)
    try:
        auth.add_user(engine, DEMO_HR, auth.HR, password, None, set(), "clockd demo")
        first = cadres[0]
        auth.add_user(
            engine, DEMO_CADRE, auth.CADRE, password, first.user_id, {first.user_id}, "clockd demo"
        )
    finally:
        engine.dispose()
    secret = secrets.token_urlsafe(32)
    url = settings.web.base_url or f"http://{settings.web.listen}/"
    return (
        "web console on the demo data:\n"
        f"  CLOCKD_WEB_SECRET={secret} {_clockd_command()} --config {config} serve\n"
        f"  then open {url} and sign in as {DEMO_HR} (HR) or {DEMO_CADRE} "
        f"({first.name}, a cadre), password {password}"
    )


def _clockd_command() -> str:
    """How to run clockd again from where the user is: the console script that is running
    (e.g. `.venv/bin/clockd` under `make demo`), else the module."""
    import shlex
    import sys

    script = Path(sys.argv[0])
    if script.name == "clockd" and script.is_file():
        try:
            shown = script.relative_to(Path.cwd())
        except ValueError:
            shown = script
        return shlex.quote(str(shown))
    return f"{shlex.quote(sys.executable)} -m clockd"
