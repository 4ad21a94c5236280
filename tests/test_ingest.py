"""Polling emulated terminals over loopback TCP and UDP with the real pyzk client, into SQLite
and PostgreSQL: every punch stored exactly once, whatever fails in between."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from clockd.config import Settings
from clockd.ingest.poll import PollOutcome, clock_fault, poll_cycle
from clockd.sim.emulator import Faults
from clockd.store import db
from clockd.store.models import (
    FAILED,
    MISMATCH,
    OK,
    Lease,
    PollRun,
    PunchRow,
    Quarantine,
    Terminal,
    utcnow,
)
from tests.cli_runner import Result, run_clockd, spawn_clockd
from tests.emulated import emulated_site, fill, on_device, stored

INSTALLED = dt.date(2025, 1, 1)


def poll(settings: Settings, engine: Engine, **kwargs: Any) -> dict[str, PollOutcome]:
    return {o.terminal_id: o for o in poll_cycle(settings, engine, **kwargs)}


def count(engine: Engine, model: type, *where: Any) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(model).where(*where)
        return int(connection.scalar(query) or 0)


def test_sixteen_terminals_are_stored_record_by_record_and_only_once(engine: Engine) -> None:
    with emulated_site(16, punches=600) as site:
        settings = site.settings(str(engine.url.render_as_string(hide_password=False)))
        first = poll(settings, engine)
        assert [o.outcome for o in first.values()] == [OK] * 16
        for device in site.devices:
            assert stored(engine, device.serial) == on_device(device), device
        assert sum(o.new for o in first.values()) == 16 * 600

        again = poll(settings, engine)
        assert sum(o.new for o in again.values()) == 0
        assert sum(o.duplicates for o in again.values()) == 16 * 600
        assert count(engine, PunchRow) == 16 * 600

        # New punches between polls arrive on the next poll, and only they are new.
        later = dt.datetime(2026, 11, 20, 9, 0)
        for index, device in enumerate(site.devices):
            for minute in range(index + 1):
                assert device.add_punch("1003", later + dt.timedelta(minutes=minute))
        third = poll(settings, engine)
        assert [third[f"t{i + 1:02d}"].new for i in range(16)] == list(range(1, 17))
        for device in site.devices:
            assert stored(engine, device.serial) == on_device(device)

    runs = count(engine, PollRun, PollRun.outcome == OK)
    assert runs == 48
    with engine.connect() as connection:
        villages = dict(connection.execute(select(Terminal.serial, Terminal.village)).all())
    assert villages["EMU0000"] == "村01" and len(villages) == 16


def test_a_comm_key_is_checked_and_a_wrong_one_fails_only_that_terminal(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    keys = {0: ("KEY_T01", 123456), 1: ("KEY_T02", 777)}
    with emulated_site(3, comm_keys=keys) as site:
        settings = site.settings(sqlite_url)
        right = {"KEY_T01": "123456", "KEY_T02": "777"}
        outcomes = poll(settings, engine, environ=right)
        assert [o.outcome for o in outcomes.values()] == [OK, OK, OK]

        wrong = {"KEY_T01": "123457", "KEY_T02": "777"}
        outcomes = poll(settings, engine, environ=wrong)
        assert outcomes["t01"].outcome == FAILED
        assert "comm key rejected" in str(outcomes["t01"].error)
        assert [outcomes[t].outcome for t in ("t02", "t03")] == [OK, OK]

        missing = poll(settings, engine, environ={"KEY_T01": "123456"})
        assert missing["t02"].outcome == FAILED
        assert "KEY_T02" in str(missing["t02"].error) and "not set" in str(missing["t02"].error)
        assert missing["t01"].ok and missing["t03"].ok


FAULTS = {
    "refused": Faults(refuse=True),
    "hung": Faults(hang=True),
    "dropped mid-transfer": Faults(drop_after_chunks=2, drop_mid_packet=True),
    "dropped between chunks": Faults(drop_after_chunks=1),
    "corrupt packet": Faults(corrupt_replies=1),
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_a_faulty_terminal_fails_alone_and_loses_nothing(fault: str, database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.migrate(engine)
    # 3,000 records of 40 bytes need several TCP chunks and many UDP datagrams.
    with emulated_site(4, punches=3_000, transports=("tcp", "udp")) as site:
        settings = site.settings(database_url, timeout_seconds=1.5, retries=0)
        broken = site.devices[0]
        broken.faults = FAULTS[fault]
        began = time.monotonic()
        outcomes = poll(settings, engine)
        assert time.monotonic() - began < 1.5 + 3  # a hung terminal costs its timeout only
        assert outcomes["t01"].outcome == FAILED, outcomes["t01"]
        for index, device in enumerate(site.devices[1:], start=2):
            assert outcomes[f"t{index:02d}"].ok
            assert stored(engine, device.serial) == on_device(device)
        assert stored(engine, broken.serial) == []  # nothing half-written

        broken.faults = Faults()
        # A session the fault left open is held by the terminal for SESSION_TIMEOUT, as real
        # firmware holds a dead one: the healed poll retries past it.
        patient = site.settings(database_url, timeout_seconds=6, retries=4)
        healed = poll(patient, engine, terminals=[settings.terminals[0]])
        assert healed["t01"].ok
        assert stored(engine, broken.serial) == on_device(broken)
    failed = count(engine, PollRun, PollRun.terminal_id == "t01", PollRun.outcome == FAILED)
    assert failed == 1


@pytest.mark.serial  # 0.05-second replies against a 1-second timeout: a busy machine fails it
def test_a_slow_terminal_is_waited_for_within_its_timeout(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    with emulated_site(2, punches=300) as site:
        site.devices[0].faults = Faults(reply_delay=0.05)
        outcomes = poll(site.settings(sqlite_url, timeout_seconds=1), engine)
        assert outcomes["t01"].ok and outcomes["t02"].ok
        assert stored(engine, "EMU0000") == on_device(site.devices[0])
        site.devices[0].faults = Faults(reply_delay=1.5)
        slow = poll(site.settings(sqlite_url, timeout_seconds=1, retries=0), engine)
        assert slow["t01"].outcome == FAILED and "timed out" in str(slow["t01"].error)


def test_clock_reset_and_future_records_are_quarantined_not_counted(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.migrate(engine)
    with emulated_site(1, punches=10, transports=("tcp",)) as site:
        device = site.devices[0]
        device.faults = Faults(zero_time_punches=2)
        device.add_punch("1001", dt.datetime(2026, 11, 3, 9, 0))  # stored as 2000-01-01 00:00
        device.add_punch("1002", dt.datetime(2026, 11, 3, 9, 1))
        device.add_punch("1003", dt.datetime(2024, 12, 31, 9, 0))  # before installation
        future = dt.datetime.now() + dt.timedelta(days=2)
        device.add_punch("1004", future.replace(microsecond=0))
        settings = site.settings(database_url)
        outcome = poll(settings, engine)["t01"]
        assert outcome.ok and outcome.quarantined == 4 and outcome.new == 14
        with engine.connect() as connection:
            reasons = sorted(
                connection.execute(
                    select(PunchRow.user_id, Quarantine.reason).join(
                        PunchRow, PunchRow.id == Quarantine.punch_id
                    )
                ).all()
            )
        assert [user for user, _ in reasons] == ["1001", "1002", "1003", "1004"]
        assert all("before the terminal was installed" in why for _, why in reasons[:3])
        assert "in the future" in reasons[3][1]
        # Zeroed records of two users share 2000-01-01 00:00 but are distinct punches.
        assert count(engine, PunchRow, PunchRow.punched_at == dt.datetime(2000, 1, 1)) == 2
        # Polling again quarantines nothing twice.
        again = poll(settings, engine)["t01"]
        assert again.quarantined == 0 and count(engine, Quarantine) == 4


def test_clock_fault_rule() -> None:
    now = dt.datetime(2026, 11, 26, 10, 0)
    tolerance = dt.timedelta(minutes=10)
    assert clock_fault(dt.datetime(2024, 12, 31, 23, 59), INSTALLED, now, tolerance)
    assert clock_fault(dt.datetime(2025, 1, 1, 0, 0), INSTALLED, now, tolerance) is None
    assert clock_fault(now + dt.timedelta(minutes=10), INSTALLED, now, tolerance) is None
    assert clock_fault(now + dt.timedelta(minutes=10, seconds=1), INSTALLED, now, tolerance)


def test_a_wrong_serial_is_stored_but_not_attributed(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    with emulated_site(2, punches=50) as site:
        site.devices[0].faults = Faults(wrong_serial="SWAPPED001")
        outcomes = poll(site.settings(sqlite_url), engine)
        first = outcomes["t01"]
        assert first.outcome == MISMATCH and not first.ok
        assert "configured EMU0000, device reports SWAPPED001" in str(first.error)
        assert len(stored(engine, "SWAPPED001")) == 50
        assert stored(engine, "EMU0000") == []
        with engine.connect() as connection:
            village = connection.scalar(
                select(Terminal.village).where(Terminal.serial == "SWAPPED001")
            )
        assert village is None
        assert outcomes["t02"].ok


def test_clock_drift_is_reported_and_reset_only_when_asked(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    with emulated_site(2, punches=5) as site:
        site.devices[0].clock_drift = 300
        site.devices[1].clock_drift = -30
        keep = poll(site.settings(sqlite_url, sync_time=False), engine)
        drift = keep["t01"].drift_seconds
        assert drift is not None and 295 < drift < 305 and not keep["t01"].clock_synced
        assert abs(site.devices[0].clock_drift - 300) < 1
        synced = poll(site.settings(sqlite_url), engine)
        assert synced["t01"].clock_synced and abs(site.devices[0].clock_drift) < 2
        assert not synced["t02"].clock_synced  # within 60 s: left alone
        after = poll(site.settings(sqlite_url), engine)
        drift = after["t01"].drift_seconds
        assert drift is not None and abs(drift) < 2


def test_a_nearly_full_log_is_reported(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    with emulated_site(1, punches=0, transports=("tcp",)) as site:
        device = site.devices[0]
        device.record_capacity = 1_000
        fill(device, 5, 850, dt.datetime(2026, 10, 1, 8))
        outcome = poll(site.settings(sqlite_url), engine)["t01"]
        assert outcome.ok and "log 85% full" in outcome.warnings
        assert "(85%)" in outcome.line()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_clear_policy_never_loses_a_punch_arriving_during_polls(
    database_url: str, transport: str
) -> None:
    engine = db.make_engine(database_url)
    db.migrate(engine)
    with emulated_site(1, punches=0, transports=(transport,)) as site:
        device = site.devices[0]
        device.record_capacity = 2_000
        fill(device, 30, 1_500, dt.datetime(2026, 9, 1, 8))
        initial = on_device(device)
        # Cleared above 200 records: the feed refills that much within a second.
        settings = site.settings(database_url, clear_policy={"when_above_percent": 10})
        with device.start_feed([str(1001 + i) for i in range(30)], interval=0.002) as feed:
            outcomes: list[PollOutcome] = []
            deadline = time.monotonic() + 30
            # The first poll clears the log; the feed refills it past the threshold while the
            # polls go on, and another poll clears it again.
            while sum(o.cleared for o in outcomes) < 2:
                assert time.monotonic() < deadline, [o.line() for o in outcomes]
                outcomes.append(poll(settings, engine)["t01"])
                while device.punch_count < 250 and time.monotonic() < deadline:
                    time.sleep(0.05)
        final = poll(site.settings(database_url), engine)["t01"]
        assert final.ok
        assert all(o.ok for o in outcomes), [o.line() for o in outcomes]
        accepted = {(r.user_id, r.timestamp, r.verify, r.state) for r in feed.recorded}
        expected = sorted(set(initial) | accepted, key=lambda r: (r[1], r[0]))
        assert stored(engine, device.serial) == expected
        assert device.enabled


def test_a_clear_is_refused_when_the_count_back_fails(sqlite_url: str) -> None:
    """If the stored punches cannot be counted back (here: the store is not the one written
    to), the log stays, the device is re-enabled, and the poll says so."""
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    with emulated_site(1, punches=900, transports=("tcp",)) as site:
        device = site.devices[0]
        device.record_capacity = 1_000
        settings = site.settings(sqlite_url, clear_policy={"when_above_percent": 50})
        with engine.begin() as connection:  # a trigger silently dropping every new punch
            connection.exec_driver_sql(
                "CREATE TRIGGER lose AFTER INSERT ON punches "
                "BEGIN DELETE FROM punches WHERE id = NEW.id; END"
            )
        outcome = poll(settings, engine)["t01"]
        assert not outcome.cleared
        assert any("NOT cleared" in w for w in outcome.warnings)
        assert device.punch_count == 900 and device.enabled


def test_killing_the_poller_at_random_moments_loses_and_doubles_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """The daemon (`clockd run --once`) in its own process, SIGKILLed mid-poll again and
    again, then run to completion: the store equals the terminals' logs exactly."""
    engine = db.make_engine(database_url)
    db.migrate(engine)
    rng = random.Random(20261126)
    with emulated_site(16, punches=8_000, users=40) as site:
        config = site.write_config(tmp_path, database_url, timeout_seconds=5)
        command = ("--config", str(config), "run", "--once")
        for round_number in range(6):
            # More punches arrive while the poller keeps dying.
            for device in site.devices:
                device.add_punch("1007", dt.datetime(2026, 11, 21, 8, round_number))
            process = spawn_clockd(*command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 2.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
        # On PostgreSQL the killed daemons' terminal leases lapse after lease_seconds, which is
        # when the next cron cycle would come: let that time pass.
        with db.write_transaction(engine) as connection:
            connection.execute(update(Lease).values(expires_at=utcnow()))
        # A killed UDP client holds its terminal's one session until the terminal times it
        # out, as real firmware does: poll again like the next cycle would (here without the
        # reports a daemon would write next).
        deadline = time.monotonic() + 60
        while (done := run_clockd("--config", str(config), "poll")).returncode != 0:
            assert time.monotonic() < deadline, done.stdout + done.stderr
            time.sleep(0.2)
        assert done.stdout.count(": ok, ") == 16, done.stdout
        for device in site.devices:
            assert stored(engine, device.serial) == on_device(device)
    with engine.connect() as connection:
        total = connection.scalar(select(func.count()).select_from(PunchRow))
    assert total == 16 * (8_000 + 6)


def test_poll_command_prints_a_line_per_terminal_and_exits_1_on_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    with emulated_site(3, punches=20) as site:
        config = site.write_config(tmp_path, url, timeout_seconds=1, retries=0)

        def clockd(*args: str) -> Result:
            return run_clockd("--config", str(config), *args)

        assert clockd("init").returncode == 0
        good = clockd("poll")
        assert good.returncode == 0, good.stderr
        lines = good.stdout.splitlines()
        assert len(lines) == 3
        assert lines[0].startswith("t01 村01: ok, records 20/100000 (0%), new 20, duplicates 0")

        site.devices[0].faults = Faults(refuse=True)  # TCP
        site.devices[1].faults = Faults(refuse=True)  # UDP: the port is unreachable
        bad = clockd("poll")
        assert bad.returncode == 1
        assert "t01 村01: FAILED connect: connection refused (1 attempt" in bad.stdout
        # The connected UDP socket hears the loopback's "port unreachable".
        assert "t02 村02: FAILED connect: connection refused (1 attempt" in bad.stdout
        assert "new 0, duplicates 20" in bad.stdout.splitlines()[2]

        only = clockd("poll", "--device", "t03")
        assert only.returncode == 0 and only.stdout.startswith("t03 ")
        unknown = clockd("poll", "--device", "t99")
        assert unknown.returncode == 1 and "no terminal 't99'" in unknown.stderr

        devices = clockd("devices")
        assert devices.returncode == 0
        row = next(line for line in devices.stdout.splitlines() if line.startswith("t01"))
        assert "connect: connection refused" in row
