"""`clockd devices` reads an SQLite store with the standard library (store/fleet.py): it must
say what the SQLAlchemy queries say (periods.terminal_facts, unconfigured_serials), with runs
kept whole, partly folded and folded past every run of a silent terminal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from clockd import cli
from clockd.store import db, fleet
from clockd.store.models import Quarantine, Terminal
from clockd.store.periods import terminal_facts
from clockd.store.retention import fold_poll_runs
from clockd.store.unconfigured import unconfigured_serials
from clockd.textui import render_table
from tests.report_site import Site, make_site
from tests.test_retention import NOW, ZONE, load


def sqlite_site(tmp_path: Path) -> Site:
    site = make_site(tmp_path, f"sqlite:///{tmp_path / 'clockd.sqlite3'}")
    load(site)
    seen = NOW - dt.timedelta(days=2)
    with db.write_transaction(site.engine) as connection:
        connection.execute(
            insert(Terminal),
            [
                # a push from a serial nobody configured, with records held for a decision
                {"serial": "SNX99", "terminal_id": "push", "first_seen": seen, "last_seen": NOW},
                # another serial answering at t01's address: t01's own row says so
                {"serial": "SNZ01", "terminal_id": "t01", "first_seen": seen, "last_seen": seen},
            ],
        )
        connection.execute(
            insert(Quarantine),
            [{"serial": "SNX99", "reason": "unknown serial", "detected_at": NOW}] * 3,
        )
    return site


@pytest.mark.parametrize("keep", [None, 35, 1])
def test_same_facts_as_the_sqlalchemy_queries(tmp_path: Path, keep: int | None) -> None:
    site = sqlite_site(tmp_path)
    if keep is not None:  # 1: t03's last runs (45 days ago) live on only as daily rows
        assert fold_poll_runs(site.engine, ZONE, keep, NOW)
    terminals = site.settings.terminals
    configured = {t.serial for t in terminals}
    polled = {t.id for t in terminals if t.polled}
    with site.engine.connect() as connection:
        expected = terminal_facts(connection, terminals, NOW, NOW)
        expected_unconfigured = unconfigured_serials(connection, configured, polled)
    connection_ = fleet.open_sqlite(site.settings.database_url)
    assert connection_ is not None
    with connection_:
        facts = fleet.terminal_facts_now(connection_, terminals, NOW)
        unconfigured = fleet.unconfigured_serials(connection_, configured, polled)
    connection_.close()
    assert facts == expected
    assert unconfigured == expected_unconfigured
    assert [u.serial for u in unconfigured] == ["SNX99"] and unconfigured[0].quarantined == 3
    assert {f.terminal.id: f.last_outcome for f in facts} == {
        "t01": "ok",
        "t02": "failed",
        "t03": "ok",
    }
    assert all(f.last_success is not None and f.records_on_device for f in facts)
    # the folded answers carry the same types as the raw ones
    for fact in facts:
        for field in dataclasses.fields(fact):
            value = getattr(fact, field.name)
            if isinstance(value, dt.datetime):
                assert value.tzinfo is dt.UTC


def test_devices_prints_the_same_as_the_general_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    site = sqlite_site(tmp_path)
    assert fold_poll_runs(site.engine, ZONE, 1, NOW)
    config = str(tmp_path / "devices.yaml")
    assert cli.main(["--config", config, "devices"]) == 0
    fast = capsys.readouterr().out
    monkeypatch.setattr(fleet, "open_sqlite", lambda url: None)
    assert cli.main(["--config", config, "devices"]) == 0
    assert capsys.readouterr().out == fast
    assert "SNX99" in fast and "t03" in fast


def test_left_to_the_general_path(tmp_path: Path) -> None:
    """URLs with options, files that are missing (not created) or not at this schema."""
    site = sqlite_site(tmp_path)
    path = tmp_path / "clockd.sqlite3"
    for url in (
        f"sqlite:///{path}?timeout=5",
        f"postgresql://postgres@127.0.0.1/{path.name}",
        "sqlite://",
        f"sqlite:///{tmp_path / 'missing.sqlite3'}",
    ):
        assert fleet.open_sqlite(url) is None, url
    assert not (tmp_path / "missing.sqlite3").exists()
    with db.write_transaction(site.engine) as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert fleet.open_sqlite(f"sqlite:///{path}") is None


def test_reads_without_writing(tmp_path: Path) -> None:
    site = sqlite_site(tmp_path)
    site.engine.dispose()
    connection = fleet.open_sqlite(f"sqlite:///{tmp_path / 'clockd.sqlite3'}")
    assert connection is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        connection.execute("DELETE FROM poll_runs")
    connection.close()


def test_table_columns_line_up_with_chinese_text_and_escapes() -> None:
    table = render_table(
        ["terminal", "village"],
        [["t01", "张家村"], ["t2", "x\x1b[2J"], ["t003", None]],
    ).splitlines()
    assert table == [
        "terminal  village",
        "--------  --------",
        "t01       张家村",
        "t2        x\\x1b[2J",
        "t003",
    ]
