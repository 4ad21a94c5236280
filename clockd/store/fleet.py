"""What `clockd devices` shows, read from an SQLite store with the standard library's sqlite3.

`clockd devices` is answered by hand against a district's year of poll runs, and loading
SQLAlchemy and clockd's models took longer than everything else it does (docs/performance.md).
It asks the store what `periods.terminal_facts` (with the period ending now) and
`unconfigured.unconfigured_serials` ask, in the same steps; tests/test_fleet.py holds the two
to the same answers. Anything this reader is not sure of (a URL with options, a file that
cannot be opened read-only, a schema at another version) is left to the general path, which
also words the errors.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from clockd.domain import TerminalSite
from clockd.store.facts import TerminalFacts, UnconfiguredSerial
from clockd.store.schema import expected_revision

_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")
_BUSY_TIMEOUT_S = 30.0  # store/db.py's SQLITE_BUSY_TIMEOUT_MS


def open_sqlite(url: str) -> sqlite3.Connection | None:
    """A read-only connection to the SQLite file of a plain `sqlite:///path` URL whose schema
    is at this clockd's version; None for anything else."""
    path = next((url[len(p) :] for p in _PREFIXES if url.startswith(p)), None)
    if not path or any(mark in path for mark in "?#%"):
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return None
    try:
        versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        connection.close()
        return None
    if len(versions) != 1 or versions[0][0] != expected_revision():
        connection.close()
        return None
    return connection


def _stored(instant: dt.datetime) -> str:
    """An instant as SQLAlchemy keeps UTCDateTime in SQLite: naive UTC text."""
    return instant.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _instant(text: object) -> dt.datetime | None:
    if text is None:
        return None
    return dt.datetime.fromisoformat(str(text)).replace(tzinfo=dt.UTC)


_NEWEST_RUNS = """
SELECT listed.value,
  (SELECT id FROM poll_runs WHERE terminal_id = listed.value AND finished_at IS NOT NULL
     AND finished_at <= :as_of ORDER BY finished_at DESC, id DESC LIMIT 1),
  (SELECT id FROM poll_runs WHERE terminal_id = listed.value AND finished_at IS NOT NULL
     AND finished_at <= :as_of AND outcome = 'ok' ORDER BY finished_at DESC, id DESC LIMIT 1),
  (SELECT id FROM poll_runs WHERE terminal_id = listed.value AND finished_at IS NOT NULL
     AND finished_at <= :as_of AND records_on_device IS NOT NULL
     ORDER BY finished_at DESC, id DESC LIMIT 1)
FROM json_each(:ids) AS listed
"""
_RUNS = """
SELECT id, finished_at, outcome, error, serial, records_on_device, record_capacity, drift_seconds
FROM poll_runs WHERE id IN (SELECT value FROM json_each(?))
"""

# Each missing terminal's newest folded day meeting a condition, walking the
# (terminal_id, day) index; {finished} and {condition} are fixed strings of this module.
_NEWEST_DAYS = """
SELECT days.terminal_id, days.{finished}, days.last_outcome, days.last_error, days.serial,
  days.records_on_device, days.record_capacity, days.drift_seconds
FROM poll_run_days AS days
JOIN (SELECT terminal_id, max(day) AS day FROM poll_run_days
      WHERE terminal_id IN (SELECT value FROM json_each(:ids)) AND {finished} <= :as_of
        {condition}
      GROUP BY terminal_id) AS newest
  ON days.terminal_id = newest.terminal_id AND days.day = newest.day
"""


def terminal_facts_now(
    connection: sqlite3.Connection, terminals: Sequence[TerminalSite], now: dt.datetime
) -> list[TerminalFacts]:
    """Per configured terminal, in config order, its poll history as it stands `now`: what
    `periods.terminal_facts(connection, terminals, now, now)` answers (nothing is collected
    after a period ending now, so `collected_after` is None)."""
    ids = json.dumps([terminal.id for terminal in terminals])
    as_of = _stored(now)
    picked = connection.execute(_NEWEST_RUNS, {"ids": ids, "as_of": as_of}).fetchall()
    wanted = sorted({run for row in picked for run in row[1:] if run is not None})
    runs = {
        row[0]: _run_values(row[1:])
        for row in connection.execute(_RUNS, (json.dumps(wanted),)).fetchall()
    }
    latest, latest_ok, latest_device = (
        {row[0]: runs[row[column]] for row in picked if row[column] is not None}
        for column in (1, 2, 3)
    )
    _fill_from_folded(connection, ids, as_of, latest, latest_ok, latest_device)
    facts = []
    for terminal in terminals:
        attempt = latest.get(terminal.id, {})
        success = latest_ok.get(terminal.id, {})
        device = latest_device.get(terminal.id, {})
        facts.append(
            TerminalFacts(
                terminal=terminal,
                last_success=success.get("finished_at"),
                collected_after=None,
                reported_serial=device.get("serial"),
                records_on_device=device.get("records_on_device"),
                record_capacity=device.get("record_capacity"),
                drift_seconds=device.get("drift_seconds"),
                last_outcome=attempt.get("outcome"),
                last_error=attempt.get("error"),
            )
        )
    return facts


def _run_values(row: Sequence[Any]) -> dict[str, Any]:
    finished, outcome, error, serial, records, capacity, drift = row
    return {
        "finished_at": _instant(finished),
        "outcome": outcome,
        "error": error,
        "serial": serial,
        "records_on_device": records,
        "record_capacity": capacity,
        "drift_seconds": None if drift is None else float(drift),
    }


def _fill_from_folded(
    connection: sqlite3.Connection,
    ids: str,
    as_of: str,
    latest: dict[str, dict[str, Any]],
    latest_ok: dict[str, dict[str, Any]],
    latest_device: dict[str, dict[str, Any]],
) -> None:
    """retention.fill_from_folded for a period ending now: a terminal whose newest run is
    missing or older than the newest folded day takes its newest folded day's values."""
    newest_day = connection.execute("SELECT max(day) FROM poll_run_days").fetchone()[0]
    if newest_day is None:
        return
    # Every folded run finished before this (zones within a day of UTC; runs within a day).
    folded_until = dt.datetime.combine(
        dt.date.fromisoformat(newest_day) + dt.timedelta(days=3), dt.time(), dt.UTC
    )
    every = json.loads(ids)
    for target, finished, condition in (
        (latest, "last_finished_at", ""),
        (latest_ok, "last_ok_finished_at", "AND ok_runs > 0"),
        (latest_device, "last_finished_at", "AND records_on_device IS NOT NULL"),
    ):
        missing = [
            t
            for t in every
            if t not in target or _before(target[t].get("finished_at"), folded_until)
        ]
        if not missing:
            continue
        query = _NEWEST_DAYS.format(finished=finished, condition=condition)
        for row in connection.execute(query, {"ids": json.dumps(missing), "as_of": as_of}):
            terminal_id, finished_at, outcome, error, serial, records, capacity, drift = row
            values: dict[str, Any] = {"finished_at": _instant(finished_at)}
            if target is latest:
                values |= {"outcome": outcome, "error": error}
            elif target is latest_device:
                values |= {
                    "serial": serial,
                    "records_on_device": records,
                    "record_capacity": capacity,
                    "drift_seconds": None if drift is None else float(drift),
                }
            raw = target.get(terminal_id)
            if raw is None or _before(raw.get("finished_at"), values["finished_at"]):
                target[terminal_id] = values


def _before(value: object, instant: object) -> bool:
    """Whether `value` (an instant or None) is earlier than `instant` (None: unknown, so no)."""
    if not isinstance(instant, dt.datetime):
        return False
    return not isinstance(value, dt.datetime) or value < instant


_UNCONFIGURED = """
SELECT terminals.serial, terminals.terminal_id, terminals.first_seen, terminals.last_seen,
  held.n
FROM terminals
LEFT JOIN (SELECT serial, count(*) AS n FROM quarantine WHERE decision IS NULL
           GROUP BY serial) AS held ON held.serial = terminals.serial
ORDER BY terminals.serial
"""


def unconfigured_serials(
    connection: sqlite3.Connection, configured: Collection[str], terminal_ids: Collection[str]
) -> list[UnconfiguredSerial]:
    """unconfigured.unconfigured_serials, through sqlite3."""
    found = []
    for serial, terminal_id, first_seen, last_seen, held in connection.execute(_UNCONFIGURED):
        if serial in configured or terminal_id in terminal_ids:
            continue
        first, last = _instant(first_seen), _instant(last_seen)
        assert first is not None and last is not None
        found.append(UnconfiguredSerial(serial, first, last, int(held or 0)))
    return found
