"""Editions of a report: which revision to write, claiming it, and replacing the file safely.

The rules (docs/editions.md tells the whole story):

- The first report of a period is revision 0: 正式 (final) when every terminal in service has
  been collected since the period ended, else 临时 (provisional).
- A re-run whose input fingerprint and finality match the latest revision leaves the files
  alone when they already are that revision: the published file, and the chain heads printed
  in it, stay as they were. A file missing or older is written again as that same revision,
  with its original generation time.
- Otherwise a new revision is written: 临时 while still provisional; 更正 when final and the
  inputs changed since the previous revision; 正式 when final and only the finality changed
  (every terminal reported late but brought nothing new). Whenever the inputs changed, the
  report lists what changed against the previous revision.
- A new revision is claimed by inserting its report_runs row, with the per-cadre figures it
  publishes (report_figures), in one transaction: the unique (kind, period, revision) key lets
  exactly one process win; the others skip quietly. The file itself is
  replaced under a folder lock, after checking that no newer revision has been claimed, and the
  file it replaces (an older revision) is kept in history/, named with its generation time.
- The claim is committed before the file is renamed into place, never after: a process killed
  in between leaves a recorded edition whose file is missing or says an older revision (and
  perhaps a temporary file), never a file the database does not know. `reconcile` finds those
  editions (the daemon writes them again, which reproduces the same revision when nothing
  changed) and removes the temporary files, under the folder lock so no live writer is hit.
"""

from __future__ import annotations

import datetime as dt
import enum
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from clockd.errors import InputError
from clockd.reports.frames import records
from clockd.reports.xlsx import read_stamp, reproducible, save_atomically
from clockd.store import db, editions
from clockd.store.db import write_transaction
from clockd.store.periods import FIGURE_COLUMNS, Edition, edition_figures, record_edition


class EditionStatus(enum.StrEnum):
    """What an edition is; the value is stored, the label printed."""

    FINAL = "final"  # 正式: every terminal collected since the period ended
    PROVISIONAL = "provisional"  # 临时: some terminal not yet collected
    CORRECTED = "corrected"  # 更正: final, and its figures' inputs changed since the last one

    @property
    def label(self) -> str:
        return STATUS_LABELS[self]


STATUS_LABELS = {
    EditionStatus.FINAL: "正式",
    EditionStatus.PROVISIONAL: "临时",
    EditionStatus.CORRECTED: "更正",
}
FINAL, PROVISIONAL, CORRECTED = EditionStatus


@dataclass(frozen=True)
class Plan:
    """The revision about to be written and what it is compared with."""

    revision: int
    status: EditionStatus
    generated_at: dt.datetime
    new: bool  # a new report_runs row must be claimed
    compared: Edition | None  # the earlier revision whose inputs differ, if any
    compared_era: int | None  # its cut number in the period data


def plan_edition(editions: list[Edition], fingerprint: str, final: bool, now: dt.datetime) -> Plan:
    """Decide the revision and status (module docstring). `editions` oldest first."""
    if not editions:
        return Plan(0, FINAL if final else PROVISIONAL, now, True, None, None)
    latest = editions[-1]
    latest_era = min(len(editions), 2) - 1  # cuts are the last two editions' times
    latest_status = EditionStatus(latest.status)
    if latest.fingerprint == fingerprint and final == (latest_status != PROVISIONAL):
        before = editions[-2] if len(editions) > 1 else None
        if before is not None and before.fingerprint != latest.fingerprint:
            return Plan(
                latest.revision, latest_status, latest.generated_at, False, before, latest_era - 1
            )
        return Plan(latest.revision, latest_status, latest.generated_at, False, None, None)
    changed = latest.fingerprint != fingerprint
    status = PROVISIONAL if not final else CORRECTED if changed else FINAL
    return Plan(
        latest.revision + 1,
        status,
        now,
        True,
        latest if changed else None,
        latest_era if changed else None,
    )


def identifier(kind: str, period: str, revision: int) -> str:
    """What a report file carries in its document properties to say which revision it is."""
    return f"clockd {kind} {period} r{revision}"


@dataclass(frozen=True)
class Output:
    """One file of an edition (the workbook first; the monthly notice's document beside it)
    and how to write it."""

    path: Path
    write: Callable[[BinaryIO], None]
    # Releases what `write` holds when it will not run to the end (a streamed workbook's
    # sheet writers; xlsx.discard_workbook), so an abandoned edition leaves no noise.
    discard: Callable[[], None] | None = None


UNCHANGED = "unchanged since it was published; the file in place is kept as it is"


@dataclass(frozen=True)
class Published:
    written: bool
    note: str = ""  # why it was skipped, or where the replaced file went
    history_path: Path | None = None


@dataclass(frozen=True)
class ReportOutcome:
    """What writing a report did, for the command line and the scheduler."""

    kind: str
    period: str
    path: Path
    revision: int
    status: EditionStatus
    written: bool
    cadres: int
    failed: int  # cadres with at least one failed week
    failed_weeks: int
    deduction_total: int
    average_days: float | None  # valid village days per assessed cadre-week
    missing_villages: tuple[str, ...]
    note: str = ""

    def summary(self) -> str:
        line = (
            f"{self.period}: {self.cadres} cadres, {self.failed} failed, "
            f"deductions {self.deduction_total} yuan, status {self.status.value} "
            f"(revision {self.revision})"
        )
        if self.missing_villages:
            line += f"; not yet collected: {'、'.join(self.missing_villages)}"
        if not self.written:
            line += f"; not written: {self.note}"
        elif self.note:
            line += f"; {self.note}"
        return line


def publish(
    engine: Engine,
    *,
    kind: str,
    period: str,
    plan: Plan,
    path: Path,
    fingerprint: str,
    figures: pd.DataFrame,
    build: Callable[[], Sequence[Output]],
    zone: ZoneInfo,
    beside: Sequence[Path] = (),
) -> Published:
    """Claim the revision when new (with the per-cadre `figures` it publishes, FIGURE_COLUMNS),
    build its files and put them in place; `path` is the workbook's, the first output, and
    `beside` where the other outputs go. An edition that is not new and whose files all say
    it already is left as it was published. Whatever stops it, the outputs not saved are
    discarded."""
    current = identifier(kind, period, plan.revision)
    if not plan.new and all(_says(file, current) for file in [path, *beside]):
        return Published(False, UNCHANGED)
    if plan.new and not _claim(engine, kind, period, plan, path, fingerprint, figures):
        return Published(False, f"revision {plan.revision} was written by another process")
    outputs: Sequence[Output] = ()
    saved: set[Path] = set()
    try:
        outputs = build()
        assert outputs and outputs[0].path == path
        with _folder_lock(path.parent):
            newest = _newest_revision(engine, kind, period)
            if newest is not None and newest > plan.revision:
                return Published(False, f"a newer revision ({newest}) has been claimed")
            kept: list[tuple[Path, int | None]] = []
            # The workbook goes last: its revision is what a re-run checks, so the
            # documents beside it are in place before it says this edition is complete.
            for output in [*outputs[1:], outputs[0]]:

                def keep_previous(target: Path = output.path) -> None:
                    moved = _keep_in_history(target, current, zone)
                    if moved is not None and target == path:
                        kept.append(moved)

                write = reproducible(output.write, plan.generated_at.astimezone(zone))
                save_atomically(write, output.path, before_replace=keep_previous)
                saved.add(output.path)
    except BaseException:
        if plan.new:
            _unclaim(engine, kind, period, plan.revision)
        raise
    finally:
        for output in outputs:
            if output.discard is not None and output.path not in saved:
                output.discard()
    if not kept:
        return Published(True)
    history_path, old_revision = kept[0]
    if old_revision is not None:
        _record_move(engine, kind, period, old_revision, history_path)
    return Published(True, f"previous file moved to {history_path}", history_path)


def _says(file: Path, current: str) -> bool:
    """Whether the report file at `file` is the edition named `current`."""
    stamp = read_stamp(file) if file.is_file() else None
    return stamp is not None and stamp.identifier == current


def _claim(
    engine: Engine,
    kind: str,
    period: str,
    plan: Plan,
    path: Path,
    fingerprint: str,
    figures: pd.DataFrame,
) -> bool:
    rows = [
        {
            "user_id": str(row.user_id),
            "name": str(row.name),
            "category": str(row.category),
            "required_days": None if pd.isna(row.required_days) else int(row.required_days),
            "valid_days": int(row.valid_days),
            "failed_weeks": int(row.failed_weeks),
            "deduction": int(row.deduction),
        }
        for row in records(figures[list(FIGURE_COLUMNS)])
    ]
    edition = Edition(
        revision=plan.revision,
        status=plan.status.value,
        generated_at=plan.generated_at,
        path=str(path),
        fingerprint=fingerprint,
        deduction_total=sum(int(str(row["deduction"])) for row in rows),
    )
    try:
        with write_transaction(engine) as connection:
            record_edition(connection, kind, period, edition, db.process_name(), rows)
    except IntegrityError:
        return False
    return True


def published_figures(engine: Engine, kind: str, period: str, revision: int) -> pd.DataFrame | None:
    """The per-cadre figures (FIGURE_COLUMNS) an edition published; None for an edition
    written before they were recorded (the caller then reconstructs them)."""
    with engine.connect() as connection:
        return edition_figures(connection, kind, period, revision)


def _unclaim(engine: Engine, kind: str, period: str, revision: int) -> None:
    """Give a claimed revision back when its file could not be written."""
    with write_transaction(engine) as connection:
        editions.unclaim(connection, kind, period, revision, db.process_name())


def _newest_revision(engine: Engine, kind: str, period: str) -> int | None:
    with engine.connect() as connection:
        return editions.newest_revision(connection, kind, period)


def _record_move(engine: Engine, kind: str, period: str, revision: int, where: Path) -> None:
    with write_transaction(engine) as connection:
        editions.record_move(connection, kind, period, revision, where, db.process_name())


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Serialise replacing files in one reports folder across processes on this host."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(
            f"{folder}: cannot be used as a reports folder (a file is in the way)"
        ) from None
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _keep_in_history(path: Path, current: str, zone: ZoneInfo) -> tuple[Path, int | None] | None:
    """Put the file at `path` into history/ unless it already is revision `current`.

    It is hard-linked (copied where links are not supported), so `path` keeps a complete file
    until the new one replaces it. Returns the history path and the revision the old file was
    (None if it did not say). The name carries the file's generation time; an existing name
    is never reused.
    """
    if not path.exists():
        return None
    stamp = read_stamp(path)
    if stamp is not None and stamp.identifier == current:
        return None
    if stamp is not None:
        generated = stamp.generated_at
    else:
        generated = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    history = path.parent / "history"
    history.mkdir(exist_ok=True)
    base = f"{path.stem}_{generated.astimezone(zone):%Y%m%d-%H%M%S}"
    target = history / f"{base}{path.suffix}"
    number = 1
    while target.exists():
        number += 1
        target = history / f"{base}-{number}{path.suffix}"
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)
    return target, _revision_of(stamp.identifier) if stamp is not None else None


def _revision_of(stamp_identifier: str) -> int | None:
    tail = stamp_identifier.rsplit(" r", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


@dataclass(frozen=True)
class Unwritten:
    """A recorded edition with a file not in place."""

    kind: str
    period: str
    revision: int
    path: Path  # the first file found out of place: the workbook, else a document beside it
    found: str  # what is there instead, for the log


def reconcile(
    engine: Engine,
    folders: Mapping[str, Path],
    documents: Mapping[str, Callable[[str], Sequence[str]]] | None = None,
) -> tuple[list[Unwritten], list[Path]]:
    """Editions recorded as latest with a file missing or older, and the stale temporary
    files removed (module docstring). `folders` maps a report kind to the folder where this
    process keeps its files: `<period>.xlsx`, and beside it the files named by
    `documents[kind](period)` (the monthly notice), each carrying the edition's identifier."""
    removed: list[Path] = []
    for folder in folders.values():
        if not folder.is_dir():
            continue
        with _folder_lock(folder):
            for leftover in [*folder.glob(".*.xlsx.*.tmp"), *folder.glob(".*.docx.*.tmp")]:
                try:
                    leftover.unlink()
                except OSError:
                    continue
                removed.append(leftover)
    with engine.connect() as connection:
        newest = editions.latest_editions(connection)
    latest = {key: edition.revision for key, edition in newest.items() if key[0] in folders}
    unwritten = []
    for (kind, period), revision in sorted(latest.items()):
        names = [f"{period}.xlsx"]
        if documents is not None and kind in documents:
            names += documents[kind](period)
        expected = identifier(kind, period, revision)
        for file in (folders[kind] / name for name in names):
            stamp = read_stamp(file) if file.is_file() else None
            if stamp is not None and stamp.identifier == expected:
                continue
            found = (
                "no file"
                if not file.exists()
                else f"file says {stamp.identifier if stamp else 'nothing readable'}"
            )
            unwritten.append(Unwritten(kind, period, revision, file, found))
            break
    return unwritten, removed
