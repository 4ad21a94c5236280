"""The re-poll fast path: which leading records of a download are stored already.

A terminal's log only grows between clears, so a re-poll downloads what was stored before
plus a few new records at the end. clockd keeps, per terminal, a digest of the raw bytes of
the records it stored last time (store/terminal_logs.py). When the same number of leading
records of a new download hash the same, they are byte for byte the records stored then and
only the tail goes to the database; the insert's ON CONFLICT stays the safety net. Whenever
the digest does not match (the log was cleared, replaced, rewritten, its layout or user table
changed) every record goes the full way, so a changed log never loses a punch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from clockd.store.terminal_logs import LogMark
from clockd.zk import wire
from clockd.zk.client import LogRead


@dataclass(frozen=True)
class Split:
    """A download cut into the part known stored and the rest."""

    skipped: int  # leading records (readable or not) known stored
    skipped_punches: int  # the readable ones among them
    records: Sequence[wire.AttendanceRecord]  # the readable records after them
    problems: list[wire.RecordProblem]  # the unreadable records after them
    mark: LogMark  # what will be stored once the rest is


def split(read: LogRead, known: LogMark | None) -> Split:
    """Cut `read` after the records `known` says are stored, when its digest proves it."""
    users = users_digest(read)
    size, total, raw = read.record_size, read.total, read.raw
    skipped = 0
    hasher = hashlib.sha256()
    if (
        known is not None
        and 0 < known.records <= total
        and known.record_size == size
        and known.users_digest == users
        and len(raw) == total * size
    ):
        hasher.update(raw[: known.records * size])
        if hasher.digest() == known.digest:
            skipped = known.records
        else:
            hasher = hashlib.sha256()
    hasher.update(raw[skipped * size :])
    mark = LogMark(size, total, hasher.digest(), users)
    if not skipped:
        return Split(0, 0, read.records, read.problems, mark)
    unreadable_before = sum(1 for problem in read.problems if problem.index < skipped)
    return Split(
        skipped,
        skipped - unreadable_before,
        read.records[skipped - unreadable_before :],
        [problem for problem in read.problems if problem.index >= skipped],
        mark,
    )


def cleared(read: LogRead) -> LogMark:
    """The mark of the empty log a clear leaves behind."""
    return LogMark(read.record_size, 0, hashlib.sha256().digest(), users_digest(read))


def users_digest(read: LogRead) -> bytes | None:
    """The uid -> user ID table, for the layout whose records hold only the uid (the user ID
    of the same bytes changes with it); None for layouts that carry the user ID."""
    if read.record_size != 8:
        return None
    hasher = hashlib.sha256()
    table = {user.uid: user.user_id for user in read.users}  # as the decoder maps them
    for uid, user_id in sorted(table.items()):
        hasher.update(f"{uid}\0{user_id}\n".encode())
    return hasher.digest()
