"""Shared fixtures: real databases (an SQLite file, the machine's PostgreSQL) and sample files."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from clockd.store import db

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("CLOCKD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.cache
def _pg_problem() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    engine = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        return db.first_line(exc)
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    problem = _pg_problem()
    if problem is None:
        return
    message = f"PostgreSQL at {PG_URL} is not reachable: {problem}"
    if IN_CI:
        pytest.fail(f"{message} (required when CI=true)")
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards: tests never share tables."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'clockd.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test once on an SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database of either kind."""
    engine = db.make_engine(database_url)
    db.migrate(engine)
    yield engine
    engine.dispose()
