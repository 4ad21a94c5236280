"""The tamper-evident ledger: hash chains over punches and audited rows, and their check.

Every terminal's punches form a chain in the order they were stored: each row carries its
position (`chain_seq`) and `sha256(previous hash || canonical encoding of the row)`. Every
change to an audited table (leave and its audit trail, quarantine entries, report editions) is
appended to the `ledger` table with the row's state after it, chained per table. The head of
each chain (last position, hash and id) is kept in `chain_heads`. See docs/integrity.md.

This module holds what does not touch the database: the encodings, the chain walk that names
each broken row, and the verdict. `verify_all` and `verify_report` run it over the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

SEP = "\x1f"  # unit separator between fields of a canonical encoding
PUNCH_PREFIX = "punches/"
VERSION = "v1"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def genesis(chain: str) -> bytes:
    """The hash before a chain's first row: binds the chain's name (e.g. the serial) into it."""
    return sha256(f"clockd {VERSION}{SEP}{chain}".encode())


def punch_chain(serial: str) -> str:
    return f"{PUNCH_PREFIX}{serial}"


def time_text(value: dt.datetime) -> str:
    """A naive time as the punches table keeps it on SQLite, and as it enters the hash."""
    return value.isoformat(" ", "microseconds")


def utc_text(value: dt.datetime) -> str:
    """An instant, as naive UTC text (ingestion times)."""
    return time_text(value.astimezone(dt.UTC).replace(tzinfo=None))


def _counted(value: object) -> str:
    """A free-text field prefixed with its UTF-8 length, so no value can shift a separator;
    NULL is an empty length and an empty value (as the SQL encodings have it)."""
    if value is None:
        return SEP
    text = str(value)
    return f"{len(text.encode())}{SEP}{text}"


def _field(value: object) -> str:
    return "" if value is None else str(value)


def punch_tail(
    user_id: object,
    verify: object,
    state: object,
    workcode: object,
    source: object,
    poll_run_id: object,
    ingested_at: object,
) -> str:
    """Everything of a punch's encoding after its time (the same for all punches of a user in
    one batch). Takes column values as stored, NULL included."""
    return (
        f"{SEP}{_counted(user_id)}{SEP}{_field(verify)}{SEP}{_field(state)}"
        f"{SEP}{_field(workcode)}{SEP}{_counted(source)}{SEP}{_field(poll_run_id)}"
        f"{SEP}{_field(ingested_at)}"
    )


class TailCache(dict[tuple[object, ...], bytes]):
    """Encoded tails by (user_id, verify, state, workcode, source, poll_run_id, ingested_at),
    for reading millions of rows: few distinct tails, each encoded once. Bounded."""

    LIMIT = 100_000

    def __missing__(self, key: tuple[object, ...]) -> bytes:
        if len(self) >= self.LIMIT:
            self.clear()
        value = punch_tail(*key).encode()
        self[key] = value
        return value


def encode_punch(
    punched_at: str | None,
    user_id: str,
    verify: int,
    state: int,
    workcode: int,
    source: str,
    poll_run_id: int | None,
    ingested_at: str,
) -> bytes:
    """The canonical encoding of a punch row (times as `time_text`). The store builds the same
    bytes in SQL when it reads rows back (store/chains.py), and in bulk when it inserts."""
    tail = punch_tail(user_id, verify, state, workcode, source, poll_run_id, ingested_at)
    return f"{_field(punched_at)}{tail}".encode()


def link(previous: bytes, encoding: bytes) -> bytes:
    return sha256(previous + encoding)


def chain_links_python(
    previous: bytes,
    heads: list[str] | list[bytes],
    keys: list[Any],
    tails: Mapping[Any, str | bytes] | Sequence[str | bytes],
) -> list[bytearray]:
    """A batch's links: link i is `link(link i-1, heads[i] + tails[keys[i]])`, the first after
    `previous`, text taken as UTF-8 (the store's tails are few, looked up by each punch's
    user, verify type, state and workcode). As bytearrays, which sqlite3 binds without its
    adapter lookup (bytes go through it, at more than the cost of the copy)."""
    sha = hashlib.sha256
    rows = zip(_utf8(heads), _utf8([tails[key] for key in keys]), strict=True)
    links = [previous := sha(previous + head + tail).digest() for head, tail in rows]
    return list(map(bytearray, links))


def _utf8(values: Sequence[str | bytes]) -> list[bytes]:
    return [value.encode() if isinstance(value, str) else value for value in values]


try:  # the same in C (clockd/_chainlinks.c), where the install could build it
    from clockd._chainlinks import chain_links as chain_links
except ImportError:  # pragma: no cover - exercised where no compiler is at hand
    chain_links = chain_links_python


# --- audited rows -----------------------------------------------------------------------------


def _plain(value: object) -> object:
    if isinstance(value, dt.datetime):  # audited tables keep instants; naive ones are UTC
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def row_state(values: Mapping[Any, Any]) -> str:
    """The canonical JSON of an audited row: every column, keys sorted, compact."""
    plain = {str(name): _plain(value) for name, value in values.items()}
    return json.dumps(plain, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def encode_entry(
    chain: str, row_id: int, action: str, actor: str, at: dt.datetime, state: str | None
) -> bytes:
    """The canonical encoding of a ledger entry (its position is the chain's, not hashed)."""
    stamp = at.astimezone(dt.UTC).isoformat()
    return json.dumps(
        [chain, row_id, action, actor, stamp, state], ensure_ascii=False, separators=(",", ":")
    ).encode()


def same_fields(recorded: str, current: str) -> bool:
    """Whether every field the ledger recorded still holds its value (columns added to the
    table by a later migration are not part of the recorded state)."""
    before: dict[str, object] = json.loads(recorded)
    after: dict[str, object] = json.loads(current)
    return all(name in after and after[name] == value for name, value in before.items())


def state_differences(recorded: str, current: str) -> str:
    """Which fields of an audited row differ from the state the ledger recorded."""
    before: dict[str, object] = json.loads(recorded)
    after: dict[str, object] = json.loads(current)
    changes = [
        f"{name} was {before[name]!r}, now {after.get(name)!r}"
        for name in sorted(before)
        if before[name] != after.get(name)
    ]
    return "; ".join(changes) or "the row differs from its recorded state"


# --- the verdict --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One broken link: which chain, which row (by id), and what differs."""

    chain: str
    row_id: int | None
    what: str

    def line(self, names: Mapping[str, str] | None = None) -> str:
        where = describe_chain(self.chain, names or {})
        row = f", id {self.row_id}" if self.row_id is not None else ""
        return printable(f"{where}{row}: {self.what}")


def printable(text: str) -> str:
    """Control characters (from a device or a forged row) escaped, for consoles and logs."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def describe_chain(chain: str, names: Mapping[str, str]) -> str:
    """`terminal SN123 (t01 村名)` for a punch chain, `leave` for an audited table."""
    if chain.startswith(PUNCH_PREFIX):
        serial = chain[len(PUNCH_PREFIX) :]
        known = names.get(serial)
        text = f"terminal {serial!r}"
        return f"{text} ({known})" if known else text
    return f"table {chain}"


@dataclass
class VerifyResult:
    """What `clockd verify` found: every problem, and how much it checked."""

    problems: list[Problem] = field(default_factory=list)
    chains: int = 0
    rows: int = 0
    entries: int = 0
    anchors: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        checked = f"{self.rows} punches on {self.chains} chains, {self.entries} audit entries" + (
            f", {self.anchors} report anchors" if self.anchors else ""
        )
        if self.ok:
            return f"ledger intact: {checked} checked in {self.seconds:.1f}s"
        return f"ledger BROKEN: {len(self.problems)} problem(s) in {checked}"


# --- walking one chain --------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """The recorded end of a chain."""

    seq: int
    hash: bytes
    last_id: int | None


class ChainWalk:
    """Checks one chain's rows in storage order and names each row that breaks it.

    A row whose fields changed fails its own link while the next row still links to its stored
    hash; a row whose stored hash was overwritten (or swapped) fails its own link while the
    next row links to its recomputed hash. The walk keeps both readings of every failing row
    (a few candidates for the true hash) until a later row, or the head, shows which held.
    """

    MAX_CANDIDATES = 16

    def __init__(
        self, chain: str, problems: list[Problem], describe: Callable[[bytes], str]
    ) -> None:
        self.chain = chain
        self.problems = problems
        self.describe = describe
        self.seq = 0
        self.last_id: int | None = None
        self.rows = 0
        self.reported = 0
        # Possible true hashes of the last row, each with a reading of the suspect rows since
        # the last row that linked (True: its hash was overwritten; False: its fields changed).
        self._candidates: list[tuple[bytes, tuple[bool, ...]]] = [(genesis(chain), ())]
        self._suspects: list[tuple[int, bytes]] = []  # (id, encoding) of rows not yet explained
        # The last row's hash while nothing is in doubt: the fast path in verify_all links to it
        # without calling `feed`.
        self.tip: bytes | None = self._candidates[0][0]

    def _report(self, row_id: int | None, what: str) -> None:
        self.reported += 1
        self.problems.append(Problem(self.chain, row_id, what))

    def _settle(self, readings: tuple[bool, ...] | None) -> None:
        """Name the suspect rows, with what a later link showed about each (None: unknown)."""
        for index, (row_id, encoding) in enumerate(self._suspects):
            altered = None if readings is None else readings[index]
            if altered:
                what = "its stored hash was overwritten (its fields still match the chain)"
            elif altered is None:
                what = "it does not match its hash: changed after it was stored"
            else:
                what = "changed after it was stored: its fields no longer match its hash"
            self._report(row_id, f"{what}; now {self.describe(encoding)}")
        self._suspects = []

    def _restart(self, stored: bytes) -> None:
        self._candidates = [(stored, ())]

    def feed(self, row_id: int, seq: int | None, stored: bytes | None, encoding: bytes) -> None:
        """One row, in storage order, telling every kind of break apart."""
        self.rows += 1
        if self.tip is not None:
            self._candidates = [(self.tip, ())]
        self._feed(row_id, seq, stored, encoding)
        self.tip = None if self._suspects else self._candidates[0][0]

    def _feed(self, row_id: int, seq: int | None, stored: bytes | None, encoding: bytes) -> None:
        if seq is None or stored is None:
            text = self.describe(encoding)
            self._report(row_id, f"not on the chain (no link): inserted out of band; {text}")
            return
        stored = bytes(stored)
        expected = self.seq + 1
        if seq != expected and any(link(c, encoding) == stored for c, _ in self._candidates):
            # It links to the row before it: nothing is missing or inserted, its position
            # alone was edited (the position is not part of the encoding).
            self._report(
                row_id,
                f"its chain position was changed to {seq} (it is position {expected}):"
                f" edited out of band; {self.describe(encoding)}",
            )
            seq = expected
        if seq <= self.seq:
            self._report(
                row_id,
                f"chain position {seq} repeats or goes back (after {self.seq}): "
                f"inserted or moved out of band; {self.describe(encoding)}",
            )
            return
        if seq > self.seq + 1:
            self._settle(None)
            missing = seq - self.seq - 1
            after = f" after id {self.last_id}" if self.last_id is not None else " at the start"
            if self.last_id is not None and row_id - self.last_id - 1 == missing:
                after += f" (by the numbering, id {self.last_id + 1}..{row_id - 1})"
            self._report(
                row_id,
                f"{missing} row(s) at chain position(s) {self.seq + 1}..{seq - 1}"
                f" are missing{after}: deleted out of band",
            )
            self._restart(stored)
        else:
            linked = [(c, v) for c, v in self._candidates if link(c, encoding) == stored]
            if linked:
                self._settle(linked[0][1])
                self._restart(stored)
            else:
                self._suspects.append((row_id, encoding))
                candidates = {stored: (*self._candidates[0][1], False)}
                for previous, readings in self._candidates:
                    candidates.setdefault(link(previous, encoding), (*readings, True))
                self._candidates = list(candidates.items())[: self.MAX_CANDIDATES]
        self.seq, self.last_id = seq, row_id

    def finish(self, head: Head | None) -> None:
        """Compare the chain's end with its recorded head."""
        if self.tip is not None:
            self._candidates = [(self.tip, ())]
        if head is None:
            self._settle(None)
            if self.rows:
                self._report(self.last_id, "the chain has no recorded head: written out of band")
            return
        if self._suspects:
            at_head = self.seq == head.seq and self.last_id == head.last_id
            readings = [v for c, v in self._candidates if c == head.hash] if at_head else []
            self._settle(readings[0] if readings else None)
        if self.seq < head.seq:
            ends = f"position {self.seq} (id {self.last_id})" if self.seq else "its start"
            self._report(
                head.last_id,
                f"the chain ends at {ends} but was recorded up to position {head.seq} "
                f"(id {head.last_id}): {head.seq - self.seq} row(s) deleted from its end",
            )
        elif self.seq > head.seq:
            self._report(
                self.last_id,
                f"rows beyond the recorded end (position {head.seq}, id {head.last_id}) "
                f"up to position {self.seq}: added out of band",
            )
        elif not self.reported and all(c != head.hash for c, _ in self._candidates):
            self._report(self.last_id, "the last row's hash differs from the recorded head")


def describe_punch(encoding: bytes) -> str:
    """`user 1001 at 2026-11-16 08:01:00, verify 1` from a punch encoding, for messages."""
    text = encoding.decode(errors="replace")
    when, rest = text.split(SEP, 1)
    length, rest = rest.split(SEP, 1)
    size = int(length) if length.isdigit() else 0
    raw = rest.encode()
    user = raw[:size].decode(errors="replace")
    fields = raw[size:].decode(errors="replace").split(SEP)
    verify = fields[1] if len(fields) > 1 else "?"
    shown = when[:19] if when.endswith(".000000") else when
    return f"user {user!r} at {shown}, verify type {verify}"


# --- anchors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """A chain head as a report printed it."""

    chain: str
    seq: int
    last_id: int | None
    hash_hex: str


def check_anchors(
    anchors: Sequence[Anchor], found: Mapping[int, tuple[str, int, bytes]]
) -> list[Problem]:
    """Whether each anchored row is still on its chain with the hash the report printed.

    `found` maps the anchored punch ids to (chain, position, stored hash) as they are now.
    Audit-table anchors are checked by the caller against the ledger in the same way.
    """
    problems = []
    for anchor in anchors:
        if anchor.last_id is None:
            continue
        row = found.get(anchor.last_id)
        if row is None:
            problems.append(
                Problem(anchor.chain, anchor.last_id, "the report's anchor row no longer exists")
            )
            continue
        chain, seq, stored = row
        if chain != anchor.chain or seq != anchor.seq or bytes(stored).hex() != anchor.hash_hex:
            problems.append(
                Problem(
                    anchor.chain,
                    anchor.last_id,
                    f"history was rewritten after the report: it printed position {anchor.seq} "
                    f"hash {anchor.hash_hex[:16]}…, the row is now position {seq} on {chain} "
                    f"with hash {bytes(stored).hex()[:16]}…",
                )
            )
    return problems


# --- running it over the store ------------------------------------------------------------------


def verify_all(engine: Engine) -> VerifyResult:
    """Recompute every chain, punches and audit tables, streaming with bounded memory.

    The daemon runs this daily and on start; a failure is logged (and alerted on).
    """
    from clockd.store import chains  # the store builds on this module's encodings

    began = time.monotonic()
    result = VerifyResult()
    with chains.snapshot(engine) as connection:
        recorded = chains.heads(connection)
        walks: dict[str, ChainWalk] = {}
        tails = TailCache()
        sha = hashlib.sha256
        for page in chains.scan_punches(connection):
            for row in page:
                # id, serial, chain_seq, chain_hash, punched_at, then the tail's columns
                walk = walks.get(row[1])
                if walk is None:
                    walk = walks[row[1]] = ChainWalk(
                        punch_chain(row[1]), result.problems, describe_punch
                    )
                when = row[4]
                encoding = (when.encode() if when is not None else b"") + tails[row[5:]]
                tip, seq = walk.tip, row[2]
                # The usual link, inline (10 M rows come through here); feed() takes the rest.
                if (
                    tip is not None
                    and seq == walk.seq + 1
                    and row[3] == sha(tip + encoding).digest()
                ):
                    walk.tip, walk.seq, walk.last_id = row[3], seq, row[0]
                    walk.rows += 1
                else:
                    walk.feed(row[0], seq, row[3], encoding)
        ends = {walk.chain: walk for walk in walks.values()}
        for chain in recorded:
            if chain.startswith(PUNCH_PREFIX) and chain not in ends:
                ends[chain] = ChainWalk(chain, result.problems, describe_punch)
        for chain, walk in sorted(ends.items()):
            walk.finish(recorded.get(chain))
            result.rows += walk.rows
        for serial, stored in sorted(chains.stored_by_collections(connection).items()):
            chain = punch_chain(serial)
            walk = ends.get(chain)
            held = walk.rows if walk is not None else 0
            # Only where the chain looks whole: a break already named accounts for its rows.
            if held < stored and (walk is None or not walk.reported):
                gone = "the whole chain, head and all," if held == 0 else f"{stored - held} row(s)"
                result.problems.append(
                    Problem(
                        chain,
                        None,
                        f"its collections stored {stored} punches, the chain holds {held}:"
                        f" {gone} deleted out of band",
                    )
                )
        result.chains = len(ends)
        result.entries = _verify_audit(connection, recorded, result.problems)
    result.seconds = time.monotonic() - began
    return result


def _describe_entry(encoding: bytes) -> str:
    _, row_id, action, actor, at, _ = json.loads(encoding)
    return f"entry for row {row_id}: {action} by {actor} at {at}"


def _verify_audit(
    connection: Connection, recorded: Mapping[str, Head], problems: list[Problem]
) -> int:
    """Walk the ledger's chains, then hold every audited row to its last recorded state."""
    from clockd.store import chains

    walks: dict[str, ChainWalk] = {}
    latest: dict[str, dict[int, str | None]] = {}
    count = 0
    for entry in chains.stream_entries(connection):
        count += 1
        walk = walks.get(entry.chain)
        if walk is None:
            walk = walks[entry.chain] = ChainWalk(entry.chain, problems, _describe_entry)
        encoding = encode_entry(
            entry.chain, entry.row_id, entry.action, entry.actor, entry.at, entry.state
        )
        walk.feed(entry.id, entry.seq, entry.hash, encoding)
        latest.setdefault(entry.chain, {})[entry.row_id] = entry.state
    for chain in sorted(set(walks) | set(chains.AUDITED)):
        walk = walks.get(chain) or ChainWalk(chain, problems, _describe_entry)
        walk.finish(recorded.get(chain))
    for table in chains.AUDITED:
        states = latest.get(table, {})
        seen: set[int] = set()
        for row_id, state in chains.stream_audited(connection, table):
            seen.add(row_id)
            if row_id not in states:
                problems.append(Problem(table, row_id, "not in the ledger: inserted out of band"))
                continue
            before = states[row_id]
            if before is None:
                problems.append(Problem(table, row_id, "recorded as deleted, yet present"))
            elif before != state and not same_fields(before, state):
                problems.append(
                    Problem(
                        table, row_id, "changed out of band: " + state_differences(before, state)
                    )
                )
        for row_id, last in states.items():
            if row_id not in seen and last is not None:
                problems.append(Problem(table, row_id, "deleted out of band"))
    return count


def verify_report(engine: Engine, path: Path) -> VerifyResult:
    """`clockd verify --report FILE`: the whole ledger, and the report's anchors still on it."""
    from clockd.reports.anchors import read_anchors
    from clockd.store import chains

    anchors = read_anchors(path)
    result = verify_all(engine)
    with engine.connect() as connection:
        punch_anchors = [a for a in anchors if a.chain.startswith(PUNCH_PREFIX)]
        found = chains.punch_links(connection, [a.last_id for a in punch_anchors if a.last_id])
        result.problems.extend(check_anchors(punch_anchors, found))
        audit_anchors = [a for a in anchors if not a.chain.startswith(PUNCH_PREFIX)]
        entries = chains.entry_links(connection, [a.last_id for a in audit_anchors if a.last_id])
        result.problems.extend(check_anchors(audit_anchors, entries))
    result.anchors = len(anchors)
    return result


# Report editions are written after a report's inputs are read: not an input, not anchored
# (so re-running an unchanged report writes the same file).
UNANCHORED = frozenset({"report_runs"})


def anchors_of(heads: Mapping[str, Head]) -> list[Anchor]:
    """The anchors a report prints: every input chain's head, punches first."""
    heads = {chain: head for chain, head in heads.items() if chain not in UNANCHORED}
    ordered = sorted(
        heads.items(), key=lambda item: (not item[0].startswith(PUNCH_PREFIX), item[0])
    )
    return [Anchor(chain, head.seq, head.last_id, head.hash.hex()) for chain, head in ordered]
