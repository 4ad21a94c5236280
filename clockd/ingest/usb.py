"""USB fallback: a terminal's `*_attlog.dat` export, stored like a poll (docs/operations.md).

A line is `user ID <TAB> YYYY-MM-DD HH:MM:SS <TAB> status <TAB> verify <TAB> workcode ...`; the
user ID may be right-aligned with spaces. Status (punch state) and verify type must be numbers
when present; the workcode and reserved fields are not used and not checked. Files come off
whatever stick the village had, so CRLF, a byte-order mark, GBK text and blank lines are all
accepted. A bad line is reported by
its line number and skipped; every good line is stored through the same path as a poll
(`ingest.store_collection`: same dedupe key, same clock checks, a poll_runs row with source
'usb'), under the serial configured for the terminal, so importing a file twice, or a file
whose records were already polled, stores nothing new.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from clockd.config import Settings, TerminalConfig
from clockd.domain import Punch
from clockd.errors import UserError
from clockd.ingest.poll import Collection, local_now, store_collection
from clockd.store import db
from clockd.store.models import Outcome, Source

MAX_USER_ID = 24  # the punches.user_id column
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_SMALLINT = range(-32768, 32768)


@dataclass(frozen=True)
class BadLine:
    number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


@dataclass(frozen=True)
class AttLog:
    """A parsed export: the punches of its good lines, and what was wrong with the others."""

    punches: tuple[Punch, ...]
    bad: tuple[BadLine, ...]
    lines: int  # non-blank lines read


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) when it is; otherwise GB18030, a superset of GBK."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def parse_attlog(text: str, serial: str) -> AttLog:
    """Parse an export's text; punches are attributed to `serial`."""
    punches: list[Punch] = []
    bad: list[BadLine] = []
    lines = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        lines += 1
        try:
            punches.append(_parse_line(line, serial))
        except ValueError as exc:
            bad.append(BadLine(number, str(exc)))
    return AttLog(tuple(punches), tuple(bad), lines)


def _parse_line(line: str, serial: str) -> Punch:
    fields = line.split("\t")
    if len(fields) < 2:
        raise ValueError("expected tab-separated user ID and time")
    user_id = fields[0].strip()
    if not user_id:
        raise ValueError("no user ID")
    if len(user_id) > MAX_USER_ID or not user_id.isprintable():
        raise ValueError(f"user ID {user_id[:40]!r} is not a terminal user ID")
    stamp = fields[1].strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise ValueError(f"time {stamp[:40]!r} is not YYYY-MM-DD HH:MM:SS")
    try:
        timestamp = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ValueError(f"time {stamp!r} is not a real date and time") from None
    numbers = []  # punch state and verify type; workcode and reserved fields are not used
    for position, field in enumerate(fields[2:4], start=3):
        value = field.strip()
        if not value:
            continue
        if not re.fullmatch(r"-?\d{1,6}", value) or int(value) not in _SMALLINT:
            raise ValueError(f"field {position} {value[:40]!r} is not a status number")
        numbers.append(int(value))
    state = numbers[0] if numbers else 0
    verify = numbers[1] if len(numbers) > 1 else 0
    return Punch(serial=serial, user_id=user_id, timestamp=timestamp, verify=verify, state=state)


@dataclass(frozen=True)
class UsbImport:
    terminal: TerminalConfig
    lines: int
    new: int
    duplicates: int
    quarantined: int
    bad: tuple[BadLine, ...]

    def line(self) -> str:
        return (
            f"{self.terminal.id} {self.terminal.village} ({self.terminal.serial}): "
            f"{self.lines} lines read, {self.new} new, {self.duplicates} duplicates, "
            f"{self.quarantined} quarantined, {len(self.bad)} bad"
        )


def import_usb(settings: Settings, engine: Engine, path: Path, terminal_id: str) -> UsbImport:
    """Store the good lines of an export as one USB collection of the terminal."""
    terminal = settings.terminal(terminal_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    log = parse_attlog(decode(data), terminal.serial)
    if not log.lines:
        raise UserError(f"{path}: no attendance lines in the file")
    if not log.punches:  # nothing readable: not a collection of the terminal at all
        return UsbImport(terminal, log.lines, 0, 0, 0, log.bad)
    collection = Collection(
        terminal=terminal, serial=terminal.serial, source=Source.USB, punches=log.punches
    )
    with db.write_transaction(engine) as connection:
        stored = store_collection(
            connection,
            collection,
            now_local=local_now(settings),
            future_tolerance=dt.timedelta(minutes=settings.poll.future_tolerance_minutes),
            outcome=Outcome.OK,
        )
    return UsbImport(
        terminal=terminal,
        lines=log.lines,
        new=stored.new,
        duplicates=len(log.punches) - stored.new,
        quarantined=stored.quarantined,
        bad=log.bad,
    )
