"""Real-firmware quirks and hostile terminals on loopback (issue 9): each test polls emulated
terminals that misbehave the way real or malicious ones do, beside healthy ones, with the real
pyzk session underneath and a real SQLite store."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select

from clockd.config import Settings
from clockd.ingest.poll import PollOutcome, StopSignal, poll_cycle, poll_terminal
from clockd.logs import EscapeControl
from clockd.sim.emulator import EmulatedDevice, EmulatorServer, Faults, Transport
from clockd.store import db
from clockd.store.models import FAILED, MISMATCH, OK, PollRun, PunchRow, Terminal
from clockd.store.periods import load_punches
from clockd.textui import escape_control
from clockd.zk import wire
from tests.emulated import ZONE, emulated_site, fill, on_device, stored

START = dt.datetime(2026, 11, 2, 8, 0)


@dataclass
class Rig:
    server: EmulatorServer
    devices: list[EmulatedDevice]
    terminals: list[dict[str, Any]]
    url: str

    def settings(self, **poll: Any) -> Settings:
        return Settings.model_validate(
            {
                "township": "测试镇",
                "timezone": ZONE,
                "roster": "roster.csv",
                "database_url": self.url,
                "poll": {"timeout_seconds": 2, "retry_backoff_seconds": 0.1, **poll},
                "terminals": self.terminals,
            }
        )


@contextmanager
def rig(
    url: str,
    devices: Sequence[EmulatedDevice],
    transports: Sequence[Transport] = (),
    serials: Sequence[str | None] = (),
    **terminal: Any,
) -> Iterator[Rig]:
    """Serve `devices` on loopback; terminal i is configured with serials[i] (default: the
    device's own serial) and the transport transports[i] (default TCP)."""
    with EmulatorServer() as server:
        terminals = []
        for index, device in enumerate(devices):
            transport = transports[index] if index < len(transports) else "tcp"
            endpoint = server.add(device, transport=transport)
            serial = serials[index] if index < len(serials) else None
            terminals.append(
                {
                    "id": f"t{index + 1:02d}",
                    "village": f"村{index + 1:02d}",
                    "host": "127.0.0.1",
                    "port": endpoint.port,
                    "transport": transport,
                    "serial": serial or device.serial,
                    "installed": "2025-01-01",
                    **terminal,
                }
            )
        yield Rig(server, list(devices), terminals, url)


def healthy(serial: str = "GOOD000001", **kwargs: Any) -> EmulatedDevice:
    device = EmulatedDevice(serial, zone=ZONE, session_timeout=0.5, **kwargs)
    fill(device, 5, 30, START)
    return device


def poll(settings: Settings, engine: Engine) -> dict[str, PollOutcome]:
    return {o.terminal_id: o for o in poll_cycle(settings, engine)}


def write_config(folder: Path, site: Rig, **poll_: Any) -> Path:
    """devices.yaml and a roster for a `clockd` process."""
    data = {
        "township": "测试镇",
        "timezone": ZONE,
        "roster": "roster.csv",
        "database_url": site.url,
        "reports_dir": str(folder / "reports"),
        "poll": {"timeout_seconds": 2, "retry_backoff_seconds": 0.1, **poll_},
        "terminals": site.terminals,
    }
    config = folder / "devices.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    roster = ["user_id,name,role"] + [f"{1001 + n},干部{n},ordinary" for n in range(5)]
    (folder / "roster.csv").write_text("\n".join(roster) + "\n", encoding="utf-8")
    return config


def clockd(config: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `clockd --config config args` (or Python `code` with those arguments)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}
    program = ["-m", "clockd"] if code is None else ["-c", code]
    return subprocess.run(
        [sys.executable, *program, "--config", str(config), *args],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    yield engine
    engine.dispose()


# --- real data read right ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"\x00" * 4, id="AK3750-four-zero-bytes"),
        pytest.param(
            wire.encode_free_sizes(wire.FreeSizes(users=5, records=30))[:40], id="cut-at-40"
        ),
    ],
)
def test_a_terminal_without_counts_is_read_anyway(
    sqlite_url: str, sqlite_engine: Engine, reply: bytes
) -> None:
    device = healthy()
    device.faults = Faults(free_sizes=reply)
    with rig(sqlite_url, [device]) as site:
        outcome = poll(site.settings(), sqlite_engine)["t01"]
    assert outcome.outcome == OK, outcome.line()
    assert outcome.new == 30 and outcome.records_on_device == 30
    assert "reported no record counts; 30 records found in the log (40-byte layout)" in (
        outcome.line()
    )
    assert stored(sqlite_engine, device.serial) == on_device(device)


def test_a_count_the_data_does_not_match_fails_and_never_clears(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    """A count x5 divides 40-byte records into 8-byte ones: garbage, never stored as ok."""
    device = healthy(record_capacity=100)
    device.faults = Faults(count_factor=5)
    with rig(sqlite_url, [device]) as site:
        settings = site.settings(retries=0, clear_policy={"when_above_percent": 50})
        outcome = poll(settings, sqlite_engine)["t01"]
    assert outcome.outcome == FAILED
    assert "record layout does not fit" in (outcome.error or "")
    assert stored(sqlite_engine, device.serial) == []
    assert device.punch_count == 30  # not cleared


def test_a_log_of_mostly_impossible_dates_fails(sqlite_url: str, sqlite_engine: Engine) -> None:
    device = EmulatedDevice("ZERO000001", zone=ZONE, attendance_record_size=16, user_record_size=28)
    device.faults = Faults(zero_time_punches=8)  # dated 2000-01-01: before installation
    fill(device, 2, 10, START)
    with rig(sqlite_url, [device]) as site:
        outcome = poll(site.settings(retries=0), sqlite_engine)["t01"]
    assert outcome.outcome == FAILED
    assert "record layout does not fit: 8 of 10 records" in (outcome.error or "")
    assert stored(sqlite_engine, device.serial) == []


@pytest.mark.parametrize(
    ("mac", "configured", "note"),
    [
        ("00:17:61:aa:bb:cc", "MAC-00:17:61:AA:BB:CC", "known as MAC-00:17:61:AA:BB:CC"),
        ("", "CFG0000001", "trusted to be the configured CFG0000001"),
    ],
)
def test_a_terminal_with_an_empty_serial_is_known_by_a_stable_identity(
    sqlite_url: str, sqlite_engine: Engine, mac: str, configured: str, note: str
) -> None:
    device = healthy("", mac=mac)
    with rig(sqlite_url, [device], serials=[configured]) as site:
        outcome = poll(site.settings(), sqlite_engine)["t01"]
        again = poll(site.settings(), sqlite_engine)["t01"]
    assert outcome.outcome == OK and outcome.serial == configured
    assert "reports no serial number" in outcome.line() and note in outcome.line()
    assert outcome.new == 30 and again.new == 0 and again.duplicates == 30
    assert len(stored(sqlite_engine, configured)) == 30


def test_an_impossible_clock_is_collected_reported_and_reset(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    feb_31 = ((26 * 12 + 1) * 31 + 30) * 86400 + 8 * 3600  # 2026-02-31 08:00
    device = healthy(clock_drift=-5000)
    device.faults = Faults(clock_value=feb_31)
    with rig(sqlite_url, [device]) as site:
        outcome = poll(site.settings(sync_time=True), sqlite_engine)["t01"]
    assert outcome.outcome == OK and outcome.new == 30
    assert f"terminal clock holds no real date (raw value {feb_31})" in outcome.line()
    assert outcome.clock_synced and abs(device.clock_drift) < 5


# --- a hostile terminal beside a healthy one ----------------------------------------------


def _beside_healthy(
    sqlite_url: str, engine: Engine, hostile: EmulatedDevice, transport: Transport, **poll_: Any
) -> tuple[PollOutcome, PollOutcome, float, int]:
    """Poll a healthy TCP terminal and `hostile`; (healthy, hostile, seconds, peak bytes)."""
    good = healthy()
    with rig(sqlite_url, [good, hostile], transports=["tcp", transport]) as site:
        settings = site.settings(**poll_)
        tracemalloc.start()
        began = time.monotonic()
        try:
            outcomes = poll(settings, engine)
            seconds = time.monotonic() - began
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert outcomes["t01"].outcome == OK and outcomes["t01"].new == 30
    assert stored(engine, good.serial) == on_device(good)
    return outcomes["t01"], outcomes["t02"], seconds, peak


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_declared_4_gb_buffer_allocates_nothing(
    sqlite_url: str, sqlite_engine: Engine, transport: Transport
) -> None:
    hostile = healthy("HOSTILE001")
    hostile.faults = Faults(declared_size=0xFFFFFFF0)
    _, bad, seconds, peak = _beside_healthy(
        sqlite_url, sqlite_engine, hostile, transport, retries=0
    )
    assert bad.outcome == FAILED
    assert "declares 4294967280 bytes, more than its capacity allows" in (bad.error or "")
    assert peak < 30 * 2**20 and seconds < 2


def test_an_endless_udp_stream_is_cut_at_the_announced_size(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    hostile = healthy("HOSTILE002")
    hostile.faults = Faults(flood_seconds=1.5)
    _, bad, seconds, peak = _beside_healthy(sqlite_url, sqlite_engine, hostile, "udp", retries=0)
    hostile.faults = Faults()
    assert bad.outcome == FAILED and "more data than the" in (bad.error or "")
    assert peak < 30 * 2**20 and seconds < 3


@pytest.mark.timeout(30)
def test_a_drip_feeding_terminal_costs_its_timeout_and_no_more(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    """One byte every 0.1 s keeps each read under the 1 s timeout: the attempt's deadline
    ends it anyway."""
    hostile = healthy("HOSTILE003")
    hostile.faults = Faults(drip_seconds=0.1)
    settings: dict[str, Any] = {"timeout_seconds": 1, "retries": 1, "retry_backoff_seconds": 0}
    _, bad, seconds, _ = _beside_healthy(sqlite_url, sqlite_engine, hostile, "tcp", **settings)
    assert bad.outcome == FAILED and "timed out" in (bad.error or "")
    assert bad.attempts == 1  # the budget of one timeout was spent; no retry past it
    assert seconds < 1 * (1 + 1) + 0.5


def test_udp_replies_from_another_port_are_not_accepted(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    hostile = healthy("HOSTILE004")
    hostile.faults = Faults(spoof_udp=True)
    _, bad, seconds, _ = _beside_healthy(
        sqlite_url, sqlite_engine, hostile, "udp", retries=0, timeout_seconds=1
    )
    assert bad.outcome == FAILED and "timed out" in (bad.error or "")
    assert stored(sqlite_engine, hostile.serial) == []
    assert seconds < 2


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_stopping_wakes_a_poll_waiting_on_a_silent_terminal(
    sqlite_url: str, sqlite_engine: Engine, transport: Transport
) -> None:
    """The daemon's stop must not wait for the deadline, over a connected UDP socket too."""
    device = healthy("SILENT0001")
    device.faults = Faults(hang=True)
    stop = StopSignal()
    with rig(sqlite_url, [device], transports=[transport]) as site:
        settings = site.settings(timeout_seconds=20, retries=0)
        threading.Timer(0.3, stop.set).start()
        began = time.monotonic()
        outcome = poll_terminal(settings, settings.terminals[0], sqlite_engine, stop=stop)
        seconds = time.monotonic() - began
    assert outcome.outcome == FAILED and outcome.error == "abandoned: clockd is stopping"
    assert seconds < 2


FORGED = "X\x1b[2J\x1b[H\nt09 村09: ok, records 1, new 1\r\u202e"


def test_terminal_text_is_escaped_in_poll_lines_logs_and_tables(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A serial that clears the screen and forges an `ok` line stays one escaped line in
    `clockd poll`, `clockd devices` and the log."""
    device = healthy("REAL000001")
    device.faults = Faults(wrong_serial=FORGED)
    with rig(sqlite_url, [device]) as site:
        config = write_config(tmp_path, site)
        assert clockd(config, "init").returncode == 0
        polled = clockd(config, "poll")
        devices = clockd(config, "devices")
    assert polled.returncode == 1
    for text in (polled.stdout, polled.stderr, devices.stdout):
        assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert len(polled.stdout.splitlines()) == 1
    assert "X\\x1b[2J\\x1b[H\\nt09 村09: ok, records 1, new 1\\r\\u202e" in polled.stdout
    assert len(devices.stdout.splitlines()) == 3  # header, rule, one terminal
    assert all(line.startswith("20") for line in polled.stderr.splitlines() if line), (
        polled.stderr
    )  # every log line is a log line: none forged
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "serial %s", (FORGED,), None)
    assert EscapeControl().filter(record)
    assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()
    assert escape_control("张三 1001\u3000") == "张三 1001\u3000"


def test_user_ids_that_are_not_printable_ascii_are_quarantined(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    device = healthy()
    device.add_user("10 01", "空格")
    device.add_user("1002\x1b", "控制")
    device.add_punch("10 01", START + dt.timedelta(days=1))
    device.add_punch("1002\x1b", START + dt.timedelta(days=1, minutes=1))
    with rig(sqlite_url, [device]) as site:
        outcome = poll(site.settings(), sqlite_engine)["t01"]
    # Two user records and their two punches, kept raw in quarantine.
    assert outcome.outcome == OK and outcome.new == 30 and outcome.quarantined == 4
    user_ids = {row[0] for row in stored(sqlite_engine, device.serial)}
    assert user_ids == {str(1001 + n) for n in range(5)}


def test_a_terminal_claiming_another_terminals_serial_is_counted_for_no_village(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    real = healthy("SERIAL_A01")
    impostor = EmulatedDevice("SERIAL_B01", zone=ZONE)
    impostor.add_user("1001")
    later = START + dt.timedelta(days=2)
    for hours in (1, 6):
        impostor.add_punch("1001", later + dt.timedelta(hours=hours))
    impostor.add_punch("1001", START + dt.timedelta(minutes=3))  # the same key as a real punch
    impostor.faults = Faults(wrong_serial="SERIAL_A01")
    with rig(sqlite_url, [real, impostor]) as site:
        settings = site.settings()
        outcomes = poll(settings, sqlite_engine)
        again = poll(settings, sqlite_engine)
        with sqlite_engine.connect() as connection:
            frame = load_punches(connection, START.date(), later.date(), settings.terminals)
            villages = dict(connection.execute(select(Terminal.serial, Terminal.village)).all())
    assert outcomes["t01"].outcome == OK and outcomes["t02"].outcome == MISMATCH
    assert "the serial of terminal t01" in outcomes["t02"].line()
    assert again["t02"].new == 0 and again["t02"].duplicates == 3
    # The real terminal's punches are its own, the impostor's kept apart and attributed to no
    # village: not counted, and not shown as 村01's in any sheet.
    assert stored(sqlite_engine, "SERIAL_A01") == on_device(real)
    assert len(stored(sqlite_engine, "SERIAL_A01@t02")) == 3
    apart = frame[frame["serial"] == "SERIAL_A01@t02"]
    assert len(apart) == 3 and apart["village"].isna().all()
    assert frame[frame["village"] == "村01"]["serial"].eq("SERIAL_A01").all()
    assert villages == {"SERIAL_A01": "村01", "SERIAL_A01@t02": None}


@pytest.mark.parametrize("pieces", [0, 1013], ids=["whole", "reads-cut-at-1013-bytes"])
def test_1008_byte_frames_of_a_5000_record_log_arrive_at_loopback_speed(
    sqlite_url: str, sqlite_engine: Engine, pieces: int
) -> None:
    """Real firmware frames each chunk as 1008-byte CMD_DATA packets (pyzk's test capture);
    pyzk 0.9 waits for more after every frame even when the rest is buffered. Many frames per
    receive, or receives ending inside frames: the log arrives whole and fast."""
    device = EmulatedDevice("FRAMED0001", zone=ZONE, data_frame=1008, record_capacity=10_000)
    device.faults = Faults(write_pieces=pieces)
    device.add_user("1001")
    for index in range(5000):
        device.add_punch("1001", START + dt.timedelta(minutes=index))
    with rig(sqlite_url, [device]) as site:
        began = time.monotonic()
        outcome = poll(site.settings(timeout_seconds=5, retries=0), sqlite_engine)["t01"]
        seconds = time.monotonic() - began
    assert outcome.outcome == OK and outcome.new == 5000, outcome.line()
    assert stored(sqlite_engine, device.serial) == on_device(device)
    assert seconds < 3


@pytest.mark.timeout(60)
def test_users_enrolled_during_a_poll_of_8_byte_records_are_never_stored_by_uid(
    sqlite_url: str, sqlite_engine: Engine
) -> None:
    device = EmulatedDevice("EIGHT00001", zone=ZONE, attendance_record_size=8, user_record_size=28)
    fill(device, 3, 20, START)
    device.faults = Faults(reply_delay=0.15)
    enrolled = [str(1001 + n) for n in range(3)]
    stop = threading.Event()

    def enrol() -> None:
        number = 5000
        while not stop.wait(0.05):
            number += 1
            enrolled.append(str(number))
            device.add_user(str(number))
            device.add_punch(str(number), START + dt.timedelta(days=1, seconds=number))

    thread = threading.Thread(target=enrol)
    with rig(sqlite_url, [device]) as site:
        thread.start()
        try:
            first = poll(site.settings(timeout_seconds=8, retries=0), sqlite_engine)["t01"]
        finally:
            stop.set()
            thread.join()
        device.faults = Faults()
        second = poll(site.settings(timeout_seconds=8, retries=0), sqlite_engine)["t01"]
    assert first.outcome == OK and second.outcome == OK, (first.line(), second.line())
    with sqlite_engine.connect() as connection:
        user_ids = connection.scalars(select(PunchRow.user_id)).all()
    assert set(user_ids) <= set(enrolled)
    assert len(user_ids) == len(set(stored(sqlite_engine, device.serial)))
    assert stored(sqlite_engine, device.serial) == on_device(device)


# --- the whole command against hostile terminals --------------------------------------------

# The peak RSS of clockd's own address space (VmHWM). Not getrusage's ru_maxrss: Linux carries
# the peak of the address space an exec replaced into it, and a subprocess is started from a
# copy of the pytest process, so ru_maxrss reports pytest's size whenever that is larger.
_MEASURED = """
import runpy, sys
try:
    runpy.run_module("clockd", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"\\nmaxrss_kib={peak}\\n")
"""


@pytest.mark.serial  # measures time and peak memory of a whole `clockd poll` process
@pytest.mark.timeout(120)
def test_clockd_poll_beside_hostile_terminals_ends_on_time_in_bounded_memory(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A healthy terminal and three hostile ones (4 GB declared, drip feed, endless UDP):
    `clockd poll` ends within timeout x (retries + 1) plus start-up, under 200 MB, and the
    healthy terminal's punches are stored."""
    good = healthy()
    declared, drip, flood = healthy("HOSTILE101"), healthy("HOSTILE102"), healthy("HOSTILE103")
    declared.faults = Faults(declared_size=0xFFFFFFF0)
    drip.faults = Faults(drip_seconds=0.05)
    flood.faults = Faults(flood_seconds=30)
    devices = [good, declared, drip, flood]
    timeout, retries = 2.0, 1
    with rig(sqlite_url, devices, transports=["tcp", "tcp", "tcp", "udp"]) as site:
        config = write_config(tmp_path, site, timeout_seconds=timeout, retries=retries)
        init = clockd(config, "init", code=_MEASURED)
        assert init.returncode == 0, init.stderr
        began = time.monotonic()
        done = clockd(config, "poll", code=_MEASURED)
        seconds = time.monotonic() - began
        flood.faults = Faults()
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and len(lines) == 4, done.stdout + done.stderr
    assert lines[0].startswith("t01 村01: ok, records 30/100000 (0%), new 30")
    assert all(": FAILED " in line for line in lines[1:])
    assert "more than its capacity allows" in lines[1] and "timed out" in lines[2]
    # (The flood keeps the UDP terminal busy: its retry finds it answering nothing at all.)
    assert seconds < timeout * (retries + 1) + 3.0, (seconds, done.stdout)
    rss = int(done.stderr.rsplit("maxrss_kib=", 1)[1].split()[0]) * 1024
    assert rss < 200 * 2**20, rss
    print(f"clockd poll beside hostile terminals: {seconds:.2f}s, peak RSS {rss / 2**20:.0f} MiB")
    engine = db.make_engine(sqlite_url)
    try:
        assert stored(engine, good.serial) == on_device(good)
    finally:
        engine.dispose()


@pytest.mark.timeout(120)
def test_the_daemon_keeps_its_cycles_beside_a_drip_feeding_terminal(tmp_path: Path) -> None:
    """Before the attempt deadline a drip-feeding terminal held one poll cycle forever and the
    scheduler skipped every later one ("maximum number of running instances"): now every
    cycle ends within the timeout and the next ones run."""
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    with emulated_site(2, punches=300, transports=("tcp",)) as site:
        site.devices[0].faults = Faults(drip_seconds=0.05)
        config = site.write_config(
            tmp_path, url, interval_minutes=0.03, timeout_seconds=1, retries=0
        )
        engine = db.make_engine(url)
        db.migrate(engine)

        def runs(terminal_id: str, outcome: str) -> int:
            with engine.connect() as connection:
                return len(
                    connection.scalars(
                        select(PollRun.id).where(
                            PollRun.terminal_id == terminal_id, PollRun.outcome == outcome
                        )
                    ).all()
                )

        environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "clockd", "--config", str(config), "run"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while runs("t02", OK) < 3 or runs("t01", FAILED) < 3:
                assert time.monotonic() < deadline, "three cycles did not complete"
                assert daemon.poll() is None, daemon.communicate()
                time.sleep(0.1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=30)
        site.devices[0].faults = Faults()
        cycles = [
            float(line.rsplit(" in ", 1)[1].split("s", 1)[0])
            for line in err.splitlines()
            if "poll cycle:" in line and " in " in line
        ]
        assert len(cycles) >= 3 and max(cycles) < 1 + 1.0, err
        assert stored(engine, site.devices[1].serial) == on_device(site.devices[1])
        engine.dispose()
