"""USB fallback: a terminal's `*_attlog.dat` export, stored like a poll (docs/operations.md).

A line is `PIN <TAB> YYYY-MM-DD HH:MM:SS <TAB> device number <TAB> state <TAB> verify <TAB>
workcode`, ended by CRLF; the PIN is right-aligned with spaces (docs/protocol.md, "USB export
files"). This is not the ADMS push order, which has no device-number column. Real exports are
messy: runs of NUL bytes mid-file followed by a repeat of earlier lines, negative or impossible
date fields, empty PINs, control bytes and mojibake in PINs, a UTF-8 byte-order mark, the odd
GBK line. So the file is streamed in bounded memory and decoded line by line:

- a bad line (no tab, a time that is not a real time, a number field that is not a number) is
  reported by its line number and skipped; after the first few only a count per kind is kept;
- a well-formed line whose PIN is not printable ASCII is quarantined with its raw bytes, never
  stored as a user's punch;
- every good line is stored through the same path as a poll (`store_collection`: same dedupe
  key, same clock checks, a poll_runs row with source 'usb'), under the serial configured for
  the terminal, in batches so that memory does not grow with the file. Importing a file twice,
  or a file whose records were already polled, stores nothing new; an import stopped halfway
  keeps the batches already committed and a re-import adds the rest.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine

from clockd.config import Settings, TerminalConfig
from clockd.domain import Punch
from clockd.errors import UserError
from clockd.ingest.poll import Collection, local_now, store_collection
from clockd.store import db
from clockd.store.models import Outcome, Source
from clockd.zk.wire import RecordProblem, is_printable_id

MAX_USER_ID = 24  # the punches.user_id column
MAX_LINE = 512  # bytes kept of one line; a real line is under 60
BAD_LINES_SHOWN = 20  # bad lines reported one by one; the rest are counted by kind
BATCH = 20_000  # lines stored per transaction
CHUNK = 1 << 16
BOM = b"\xef\xbb\xbf"
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_NUMBER = re.compile(r"-?\d{1,10}")
_SMALLINT = range(-32768, 32768)
_WORKCODE = range(0, 1 << 32)


@dataclass(frozen=True)
class BadLine:
    number: int
    kind: str  # a short class of problem, for the summary after the first few
    reason: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}"


class _Bad(ValueError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class AttLog:
    """What reading an export found: good punches, quarantined records, and bad lines (the
    first `BAD_LINES_SHOWN` in full, all of them counted by kind)."""

    punches: list[Punch] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    bad_kinds: Counter[str] = field(default_factory=Counter)
    lines: int = 0  # non-blank lines read

    @property
    def bad_count(self) -> int:
        return sum(self.bad_kinds.values())

    def add_bad(self, bad: BadLine) -> None:
        if len(self.bad) < BAD_LINES_SHOWN:
            self.bad.append(bad)
        self.bad_kinds[bad.kind] += 1


def read_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line without its end, whether it was cut) in bounded memory.

    NUL bytes are filler (a terminal's unwritten flash), never part of a record: a run of them
    is dropped as it is read, so its length costs nothing, and where it interrupts a line the
    text before it is a line of its own (a record cut short), reported under the same line
    number as the text after it. At most `MAX_LINE` bytes of a line are kept, whatever its
    length.
    """
    kept = bytearray()
    cut = False
    number = 0

    def keep(piece: bytes) -> None:
        nonlocal cut
        room = MAX_LINE - len(kept)
        if len(piece) > room:
            cut = True
            piece = piece[:room]
        kept.extend(piece)

    while chunk := handle.read(CHUNK):
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            while (nul := piece.find(b"\0")) >= 0:
                keep(piece[:nul])
                if kept.strip():
                    yield number + 1, bytes(kept), cut
                    kept.clear()
                    cut = False
                piece = piece[nul:].lstrip(b"\0")
            keep(piece)
            if end < 0:
                break
            number += 1
            yield number, bytes(kept), cut
            kept.clear()
            cut = False
            start = end + 1
    if kept:
        yield number + 1, bytes(kept), cut


def decode_line(raw: bytes) -> str:
    """UTF-8 when the line is; otherwise GB18030, a superset of GBK (a line at a time, since
    one file can mix them)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def parse_attlog(handle: BinaryIO, serial: str) -> AttLog:
    """Parse a whole export; punches are attributed to `serial`.

    Holds every punch of the file: for small files and tests. `import_usb` streams through
    `parse_into` a batch at a time.
    """
    log = AttLog()
    for number, raw, cut in read_lines(handle):
        parse_into(log, number, raw, cut, serial)
    return log


def parse_into(log: AttLog, number: int, raw: bytes, cut: bool, serial: str) -> None:
    """Add one line's result to `log`."""
    if number == 1 or raw.startswith(BOM):
        raw = raw.removeprefix(BOM)
    raw = raw.rstrip(b"\r\0")
    if not raw.strip():
        return
    log.lines += 1
    if cut:
        log.add_bad(BadLine(number, "too long", f"longer than {MAX_LINE} bytes"))
        return
    try:
        punch = _parse_line(decode_line(raw), serial)
    except _Bad as exc:
        log.add_bad(BadLine(number, exc.kind, str(exc)))
        return
    if isinstance(punch, str):
        log.problems.append(RecordProblem(number, raw, f"line {number}: {punch}"))
    else:
        log.punches.append(punch)


def _parse_line(line: str, serial: str) -> Punch | str:
    """The punch of a line, or why its PIN cannot be a user's (the line is quarantined)."""
    fields = line.split("\t")
    if len(fields) < 2:
        raise _Bad("not tab-separated", "expected tab-separated user ID and time")
    pin = fields[0].strip(" ")
    if not pin:
        raise _Bad("no PIN", "no user ID (PIN)")
    stamp = fields[1].strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise _Bad("bad time", f"time {_shown(stamp)} is not YYYY-MM-DD HH:MM:SS")
    try:
        timestamp = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise _Bad("impossible date", f"time {stamp!r} is not a real date and time") from None
    # device number, state, verify type, workcode
    numbers = [0, 0, 0, 0]
    for index, text in enumerate(fields[2:6]):
        value = text.strip()
        if not value:
            continue
        allowed = _WORKCODE if index == 3 else _SMALLINT
        if not _NUMBER.fullmatch(value) or int(value) not in allowed:
            raise _Bad("bad number", f"field {index + 3} {_shown(value)} is not a number")
        numbers[index] = int(value)
    if len(pin) > MAX_USER_ID or not is_printable_id(pin.encode("utf-8", "surrogateescape")):
        return f"user ID {_shown(pin)} is not printable ASCII of at most {MAX_USER_ID} characters"
    _device, state, verify, workcode = numbers
    return Punch(
        serial=serial,
        user_id=pin,
        timestamp=timestamp,
        verify=verify,
        state=state,
        workcode=workcode,
    )


def _shown(text: str) -> str:
    """Outside text for a message: cut short, control characters escaped by repr."""
    return repr(text[:40])


@dataclass(frozen=True)
class UsbImport:
    terminal: TerminalConfig
    lines: int
    new: int
    duplicates: int
    quarantined: int
    bad: tuple[BadLine, ...]  # the first BAD_LINES_SHOWN
    bad_kinds: dict[str, int]

    @property
    def bad_count(self) -> int:
        return sum(self.bad_kinds.values())

    def line(self) -> str:
        return (
            f"{self.terminal.id} {self.terminal.village} ({self.terminal.serial}): "
            f"{self.lines} lines read, {self.new} new, {self.duplicates} duplicates, "
            f"{self.quarantined} quarantined, {self.bad_count} bad"
        )

    def bad_summary(self) -> str | None:
        """One line for the bad lines beyond those shown, by kind; None when all were shown."""
        hidden = self.bad_count - len(self.bad)
        if hidden <= 0:
            return None
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.bad_kinds.items()))
        return f"{hidden} more bad lines not shown (all bad lines by kind: {kinds})"


def import_usb(settings: Settings, engine: Engine, path: Path, terminal_id: str) -> UsbImport:
    """Store the good lines of an export as USB collections of the terminal, batch by batch."""
    terminal = settings.terminal(terminal_id)
    handle = _open_export(path)
    total = AttLog()
    counts: Counter[str] = Counter()
    with handle:
        batch = AttLog()
        for number, raw, cut in read_lines(handle):
            parse_into(batch, number, raw, cut, terminal.serial)
            if len(batch.punches) + len(batch.problems) >= BATCH:
                counts.update(_store(settings, engine, terminal, batch))
                _merge(total, batch)
                batch = AttLog()
        counts.update(_store(settings, engine, terminal, batch))
        _merge(total, batch)
    if not total.lines:
        raise UserError(f"{path}: no attendance lines in the file")
    return UsbImport(
        terminal=terminal,
        lines=total.lines,
        new=counts["new"],
        duplicates=counts["duplicates"],
        quarantined=counts["quarantined"],
        bad=tuple(total.bad),
        bad_kinds=dict(total.bad_kinds),
    )


def _open_export(path: Path) -> BinaryIO:
    """Open a regular file only: a device such as /dev/zero never ends."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not an export file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise UserError(f"{path}: not a regular file")
    return handle


def _merge(total: AttLog, batch: AttLog) -> None:
    total.lines += batch.lines
    for bad in batch.bad:
        if len(total.bad) < BAD_LINES_SHOWN:
            total.bad.append(bad)
    total.bad_kinds.update(batch.bad_kinds)


def _store(
    settings: Settings, engine: Engine, terminal: TerminalConfig, batch: AttLog
) -> dict[str, int]:
    """New, duplicate and quarantined counts of one batch; a batch without a readable record
    is not a collection of the terminal at all and stores nothing."""
    if not batch.punches and not batch.problems:
        return {}
    collection = Collection(
        terminal=terminal,
        serial=terminal.serial,
        source=Source.USB,
        punches=batch.punches,
        problems=batch.problems,
    )
    with db.write_transaction(engine) as connection:
        stored = store_collection(
            connection,
            collection,
            now_local=local_now(settings),
            future_tolerance=dt.timedelta(minutes=settings.poll.future_tolerance_minutes),
            outcome=Outcome.OK,
        )
    return {
        "new": stored.new,
        "duplicates": stored.duplicates,
        "quarantined": stored.quarantined,
    }
