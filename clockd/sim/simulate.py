"""An emulated town: the configured loopback terminals, enrolled from the roster, holding
punches from a CSV file or from the synthetic town. `clockd simulate` and `clockd demo` use it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clockd.config import Settings, TerminalConfig, split_listen
from clockd.domain import Cadre
from clockd.errors import ConfigError, UserError
from clockd.sim.emulator import EmulatedDevice, EmulatorServer
from clockd.sim.push_device import PushDevice, PushRecord
from clockd.sim.town import TownPunch, TownTerminal, generate_punches
from clockd.workcal import IsoWeek, WorkCalendar

DEFAULT_RECORD_SIZE = 40


@dataclass(frozen=True)
class EmulatedTown:
    server: EmulatorServer
    devices: dict[str, EmulatedDevice]  # by terminal id
    punches: int
    push_devices: dict[str, PushDevice] = field(default_factory=dict)  # by terminal id


def emulated_terminals(settings: Settings) -> list[TerminalConfig]:
    """The terminals the emulator may stand in for: those configured on a loopback address,
    and push terminals (which post to the receiver of `clockd serve`)."""
    chosen = [t for t in settings.terminals if t.is_loopback or not t.polled]
    if not chosen:
        raise UserError(
            "no terminal of the configuration has a loopback host (127.0.0.1) or transport push"
        )
    return chosen


def push_base_url(settings: Settings) -> str:
    """Where emulated push terminals post: the configured listener, on loopback."""
    host, port = split_listen(settings.push.listen)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard listener, reached on loopback
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def synthetic_punches(
    settings: Settings,
    cadres: Sequence[Cadre],
    terminals: Sequence[TerminalConfig],
    weeks: int,
    seed: int,
    today: dt.date,
) -> list[TownPunch]:
    """`weeks` complete ISO weeks of the synthetic town, ending with the last complete week."""
    first = IsoWeek.containing(today).shift(-weeks)
    return generate_punches(
        cadres,
        [TownTerminal(t.id, t.village) for t in terminals],
        first.start,
        weeks,
        seed,
        WorkCalendar(settings.holiday_overrides()),
    )


def read_punch_csv(path: Path, terminal_ids: Sequence[str]) -> list[TownPunch]:
    """Punches from a `device,user_id,timestamp` CSV; every bad line is reported."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [cell.strip() for cell in rows[0]] != ["device", "user_id", "timestamp"]:
        raise ConfigError(str(path), ["line 1: the header must be device,user_id,timestamp"])
    known = set(terminal_ids)
    punches, problems = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 3:
            problems.append(f"line {number}: expected 3 fields, found {len(row)}")
            continue
        device, user_id, stamp = (cell.strip() for cell in row)
        if device not in known:
            problems.append(f"line {number}: unknown or non-loopback terminal {device!r}")
            continue
        if not user_id.isalnum():
            problems.append(f"line {number}: {user_id!r} is not a terminal user ID")
            continue
        try:
            moment = dt.datetime.fromisoformat(stamp)
        except ValueError:
            problems.append(f"line {number}: {stamp!r} is not a time (YYYY-MM-DD HH:MM:SS)")
            continue
        punches.append(TownPunch(device, user_id, moment.replace(microsecond=0, tzinfo=None)))
    if problems:
        raise ConfigError(str(path), problems)
    return punches


def build_town(
    settings: Settings,
    cadres: Sequence[Cadre],
    punches: Sequence[TownPunch],
    *,
    environ: Mapping[str, str] | None = None,
) -> EmulatedTown:
    """Devices for every loopback terminal, served by one (not yet started) server."""
    env = os.environ if environ is None else environ
    server = EmulatorServer()
    devices: dict[str, EmulatedDevice] = {}
    pushers: dict[str, PushDevice] = {}
    for terminal in emulated_terminals(settings):
        if not terminal.polled:
            pushers[terminal.id] = PushDevice(
                terminal.serial, push_base_url(settings), zone=settings.timezone
            )
            continue
        size = terminal.record_size or DEFAULT_RECORD_SIZE
        device = EmulatedDevice(
            terminal.serial,
            name=f"{terminal.village}考勤机",
            attendance_record_size=size,
            # Firmware with 8- or 16-byte attendance records keeps 28-byte users.
            user_record_size=28 if size in (8, 16) else 72,
            encoding=terminal.encoding,
            comm_key=terminal.comm_key(env),
            zone=settings.timezone,
        )
        for cadre in cadres:
            try:
                device.add_user(cadre.user_id, cadre.name)
            except ValueError as exc:
                raise UserError(
                    f"terminal {terminal.id}: cannot enrol {cadre.user_id}: {exc}"
                ) from None
        devices[terminal.id] = device
        host, port, transport = terminal.poll_endpoint
        server.add(device, host=host, port=port, transport=transport)
    stored = 0
    for punch in sorted(punches, key=lambda p: p.timestamp):
        pusher = pushers.get(punch.terminal_id)
        if pusher is not None:
            pusher.add(PushRecord(punch.user_id, punch.timestamp))
            stored += 1
        elif devices[punch.terminal_id].add_punch(punch.user_id, punch.timestamp):
            stored += 1
    return EmulatedTown(server, devices, stored, pushers)
