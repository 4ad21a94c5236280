"""Start-up cost: the command line loads its heavy libraries only for the command that needs
them, and the schema check is one SELECT unless the version differs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from clockd.errors import UserError
from clockd.store import db, schema

HEAVY = ("sqlalchemy", "alembic", "pydantic", "pandas", "numpy", "yaml", "openpyxl")


def loaded_after(code: str) -> list[str]:
    """Which heavy modules a fresh interpreter has loaded after running `code`."""
    probe = f"import sys\n{code}\nprint('LOADED', *(m for m in {HEAVY!r} if m in sys.modules))"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.splitlines()[-1].split()[1:]


def test_help_loads_no_heavy_library() -> None:
    code = (
        "from clockd import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    cli.main(['report', 'monthly', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert loaded_after(code) == []


def test_the_version_files_name_the_same_head_as_alembic() -> None:
    assert schema.expected_revision() == db.head_revision()


def test_a_current_schema_is_checked_without_alembic(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    try:
        db.migrate(engine)
    finally:
        engine.dispose()
    code = f"from clockd.store import db\ndb.require_current_schema(db.make_engine({sqlite_url!r}))"
    assert "alembic" not in loaded_after(code)


def test_an_old_or_missing_schema_is_still_refused(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with pytest.raises(UserError, match="not initialised"):
            db.require_current_schema(engine)
        db.migrate(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
        with pytest.raises(UserError, match="is at schema 0003, this clockd needs"):
            db.require_current_schema(engine)
    finally:
        engine.dispose()


def test_an_unreachable_database_is_reported_as_such(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'missing' / 'clockd.sqlite3'}")
    try:
        with pytest.raises(db.DatabaseUnavailable):
            db.require_current_schema(engine)
    finally:
        engine.dispose()


def test_devices_on_sqlite_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """Only the configuration's own libraries (pydantic, yaml): the store is read with sqlite3."""
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    (tmp_path / "devices.yaml").write_text(
        f"township: t\ndatabase_url: {url}\nroster: roster.csv\nterminals:\n"
        "  - {id: t01, village: 东村, host: 10.0.0.1, serial: SN001, installed: 2025-01-01}\n",
        encoding="utf-8",
    )
    (tmp_path / "roster.csv").write_text("user_id,name,role,village,active_from\n", "utf-8")
    engine = db.make_engine(url)
    try:
        db.migrate(engine)
    finally:
        engine.dispose()
    config = str(tmp_path / "devices.yaml")
    code = f"from clockd import cli\nassert cli.main(['--config', {config!r}, 'devices']) == 0"
    assert loaded_after(code) == ["pydantic", "yaml"]
