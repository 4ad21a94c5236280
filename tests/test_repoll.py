"""The re-poll fast path (ingest/logtail.py) against the full path, on emulated terminals.

Two databases follow the same terminals through the same changes: one polled as clockd
polls, the other with the record of what was stored forgotten before every poll, so every
record goes the full way. After each poll both must hold the same punches and quarantine
entries, and report the same counts; only the amount of work differs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, select

from clockd import ledger
from clockd.ingest.poll import PollOutcome, poll_cycle
from clockd.store import db, terminal_logs
from clockd.store.models import PunchRow, Quarantine, TerminalLog
from tests.emulated import Site, emulated_site, fill, on_device, stored

START = dt.datetime(2026, 11, 2, 8, 0)


def snapshot(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every punch and quarantine entry, without ids, poll runs or ingestion times."""
    with engine.connect() as connection:
        punches = connection.execute(
            select(
                PunchRow.serial,
                PunchRow.user_id,
                PunchRow.punched_at,
                PunchRow.verify,
                PunchRow.state,
                PunchRow.workcode,
                PunchRow.source,
            )
        ).all()
        quarantine = connection.execute(
            select(
                Quarantine.serial,
                Quarantine.reason,
                Quarantine.raw_record,
                PunchRow.user_id,
                PunchRow.punched_at,
            ).outerjoin(PunchRow, PunchRow.id == Quarantine.punch_id)
        ).all()
    return sorted(map(tuple, punches)), sorted(map(tuple, quarantine), key=repr)


class Twins:
    """The same terminals polled into a fast-path and a full-path database."""

    def __init__(self, site: Site, fast_url: str, full_url: str) -> None:
        self.fast_settings = site.settings(fast_url)
        self.full_settings = site.settings(full_url)
        self.fast = db.make_engine(fast_url)
        self.full = db.make_engine(full_url)
        for engine in (self.fast, self.full):
            db.migrate(engine)

    def poll(self) -> dict[str, PollOutcome]:
        """Poll both; check they store the same; return the fast path's outcomes."""
        with db.write_transaction(self.full) as connection:
            connection.execute(delete(TerminalLog))
        fast = {o.terminal_id: o for o in poll_cycle(self.fast_settings, self.fast)}
        full = {o.terminal_id: o for o in poll_cycle(self.full_settings, self.full)}
        for terminal_id, outcome in fast.items():
            other = full[terminal_id]
            assert outcome.ok and other.ok, (outcome.line(), other.line())
            assert (outcome.new, outcome.duplicates, outcome.quarantined) == (
                other.new,
                other.duplicates,
                other.quarantined,
            ), (outcome.line(), other.line())
            assert other.known_stored == 0
        assert snapshot(self.fast) == snapshot(self.full)
        return fast

    def close(self) -> None:
        self.fast.dispose()
        self.full.dispose()


def test_re_polls_store_the_same_as_full_polls_through_growth_enrolment_and_replaced_logs(
    database_url: str, tmp_path: Path
) -> None:
    with emulated_site(4, punches=300) as site:  # 40-, 16-, 8- and 49-byte layouts
        twins = Twins(site, database_url, f"sqlite:///{tmp_path / 'full.sqlite3'}")
        try:
            first = twins.poll()
            assert all(o.new == 300 and o.known_stored == 0 for o in first.values())

            unchanged = twins.poll()
            assert [o.known_stored for o in unchanged.values()] == [300] * 4
            assert all(o.new == 0 and o.duplicates == 300 for o in unchanged.values())

            # The logs grow: ordinary punches, one dated in the future (quarantined), and on
            # the layouts that carry the user ID as text, one under an unprintable ID.
            for index, device in enumerate(site.devices):
                fill(device, 20, 0, START)
                for minute in range(25):
                    device.add_punch("1005", START + dt.timedelta(days=5, minutes=minute))
                device.add_punch("1006", device.now() + dt.timedelta(days=2))
                if index in (0, 3):
                    device.add_punch("10 07", START + dt.timedelta(days=6))
            grown = twins.poll()
            assert [o.known_stored for o in grown.values()] == [300] * 4
            assert [o.new for o in grown.values()] == [26, 26, 26, 26]
            assert [o.quarantined for o in grown.values()] == [3, 1, 1, 3]

            # Enrolment changes the uid -> user ID table: the layout whose records hold only
            # the uid goes the full way, the others still skip their stored start.
            for device in site.devices:
                device.add_user("2001", "新人")
                device.add_punch("2001", START + dt.timedelta(days=7))
            enrolled = twins.poll()
            assert [o.known_stored > 0 for o in enrolled.values()] == [True, True, False, True]
            assert all(o.new == 1 for o in enrolled.values())

            # A log cleared behind clockd's back and refilled past its old length, and one
            # replaced by as many different records: both go the full way.
            refilled, replaced = site.devices[1], site.devices[2]
            length = replaced.punch_count
            for device in (refilled, replaced):
                device.clear_attendance()
            fill(refilled, 20, 400, START + dt.timedelta(days=10))
            for index in range(length):
                replaced.add_punch("1003", START + dt.timedelta(days=15, minutes=index))
            changed = twins.poll()
            assert changed["t02"].known_stored == 0 and changed["t02"].new == 400
            assert changed["t03"].known_stored == 0 and changed["t03"].new == length
            assert changed["t01"].known_stored > 0 and changed["t04"].known_stored > 0

            settled = twins.poll()
            assert all(o.new == 0 and o.known_stored > 0 for o in settled.values())
            assert ledger.verify_all(twins.fast).ok
        finally:
            twins.close()


def test_a_log_cleared_by_clockd_starts_a_new_mark(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    try:
        with emulated_site(1, punches=600, transports=("tcp",)) as site:
            device = site.devices[0]
            device.record_capacity = 1_000
            settings = site.settings(sqlite_url, clear_policy={"when_above_percent": 50})
            outcome = poll_cycle(settings, engine)[0]
            assert outcome.cleared and device.punch_count == 0
            with engine.connect() as connection:
                mark = terminal_logs.known(connection, device.serial)
            assert mark is not None and mark.records == 0
            fill(device, 20, 50, START + dt.timedelta(days=3))
            after = poll_cycle(settings, engine)[0]
            assert (after.new, after.known_stored) == (50, 0)
            again = poll_cycle(settings, engine)[0]
            assert (again.new, again.duplicates, again.known_stored) == (0, 50, 50)
            assert len(stored(engine, device.serial)) == 650
            assert set(on_device(device)) <= set(stored(engine, device.serial))
    finally:
        engine.dispose()
