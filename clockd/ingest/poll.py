"""Polling: collect every terminal's log into the store, each punch exactly once.

One terminal is one session and one database transaction: the poll run, the new punches and
the quarantine entries are committed together or not at all, so whatever fails (the terminal
link, the database, the process) the terminal still holds the punches and a later poll stores
them. Terminals are polled concurrently with a bound; a terminal that hangs costs at most its
timeout and never holds up the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from clockd.config import ClearWhenAbove, Settings, TerminalConfig
from clockd.domain import PunchFields
from clockd.errors import UserError
from clockd.ingest import logtail
from clockd.store import db, polls, terminal_logs
from clockd.store.models import Outcome, Source, utcnow
from clockd.store.punches import insert_punches, stored_keys
from clockd.textui import escape_control
from clockd.zk import wire
from clockd.zk.client import DeviceInfo, LogRead, TerminalClient, TerminalError

log = logging.getLogger(__name__)


@dataclass
class PollOutcome:
    """What one terminal's poll did; printed as one line and kept as a poll run."""

    terminal_id: str
    village: str
    outcome: Outcome = Outcome.FAILED
    serial: str | None = None
    records_on_device: int | None = None
    record_capacity: int | None = None
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    drift_seconds: float | None = None
    clock_synced: bool = False
    cleared: bool = False
    known_stored: int = 0  # leading records skipped as stored already (ingest/logtail.py)
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK

    @property
    def capacity_percent(self) -> float | None:
        if self.records_on_device is None or not self.record_capacity:
            return None
        return 100.0 * self.records_on_device / self.record_capacity

    def line(self) -> str:
        """One line for the console; terminal text in it (serials, errors) is escaped."""
        return escape_control(self._line())

    def _line(self) -> str:
        head = f"{self.terminal_id} {self.village}"
        if self.outcome == Outcome.FAILED:
            tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
            return f"{head}: FAILED {self.error} ({tries}, {self.seconds:.1f}s)"
        parts = [f"{head}: {'ok' if self.ok else 'SERIAL MISMATCH'}"]
        if self.records_on_device is not None:
            capacity = f"/{self.record_capacity}" if self.record_capacity else ""
            percent = self.capacity_percent
            parts.append(
                f"records {self.records_on_device}{capacity}"
                + (f" ({percent:.0f}%)" if percent is not None else "")
            )
        parts.append(f"new {self.new}, duplicates {self.duplicates}")
        if self.quarantined:
            parts.append(f"quarantined {self.quarantined}")
        if self.drift_seconds is not None:
            synced = ", clock reset" if self.clock_synced else ""
            parts.append(f"drift {round(self.drift_seconds):+d}s{synced}")
        if self.cleared:
            parts.append("log cleared")
        parts.append(f"{self.seconds:.1f}s")
        text = ", ".join(parts)
        if self.warnings:
            text += " | " + "; ".join(self.warnings)
        return text


# --- the clock rules (docs/rules.md) ---------------------------------------------------------


def clock_fault(
    timestamp: dt.datetime, installed: dt.date, now_local: dt.datetime, tolerance: dt.timedelta
) -> str | None:
    """Why a punch's time cannot be true, or None. Such punches are kept but never counted."""
    if timestamp < dt.datetime.combine(installed, dt.time()):
        return f"dated before the terminal was installed ({installed.isoformat()})"
    if timestamp > now_local + tolerance:
        minutes = int(tolerance.total_seconds() // 60)
        return f"dated more than {minutes} minutes in the future"
    return None


def local_now(settings: Settings) -> dt.datetime:
    """The server's clock as the terminals' naive local wall-clock time."""
    return dt.datetime.now(settings.zone).replace(tzinfo=None)


# --- storing one collection (a poll or a USB file) --------------------------------------------


@dataclass(frozen=True)
class Collection:
    """Punches gathered from one terminal in one go, with what is known about the device."""

    terminal: TerminalConfig
    serial: str
    source: Source
    punches: Sequence[PunchFields]
    problems: Sequence[wire.RecordProblem] = ()
    device: DeviceInfo | None = None
    records_on_device: int | None = None
    record_capacity: int | None = None
    users_on_device: int | None = None
    drift_seconds: float | None = None
    started_at: dt.datetime = field(default_factory=utcnow)
    # Set for a device no configured terminal owns (a push from an unknown serial): its
    # punches are kept, every new one quarantined with this reason, none attributed.
    unattributed: str | None = None
    # Records of the same download left out of `punches` and `problems` because they are
    # known stored (the unchanged start of a re-polled log): counted as duplicates.
    known_stored: int = 0
    # The earliest and latest time among `punches` when known (a bound, for a tail): the clock
    # rules skip their per-punch pass when both lie within them.
    span: tuple[dt.datetime, dt.datetime] | None = None


@dataclass(frozen=True)
class Stored:
    run_id: int
    new: int
    duplicates: int
    quarantined: int


def store_collection(
    connection: Connection,
    collection: Collection,
    *,
    now_local: dt.datetime,
    future_tolerance: dt.timedelta,
    outcome: Outcome,
    error: str | None = None,
) -> Stored:
    """Record the poll run, insert new punches, quarantine clock faults and unreadable records.

    Call inside one write transaction. A punch is judged by the clock rules only when it is
    first stored, since the future check depends on the server's clock at ingestion.
    """
    terminal = collection.terminal
    _upsert_terminal(connection, collection)
    run_id = polls.start_run(
        connection,
        terminal_id=terminal.id,
        source=collection.source,
        serial=collection.serial,
        started_at=collection.started_at,
        outcome=outcome,
        records_on_device=collection.records_on_device,
        record_capacity=collection.record_capacity,
        users_on_device=collection.users_on_device,
        drift_seconds=collection.drift_seconds,
        error=error,
        worker=db.process_name(),
    )
    # One cheap comparison per punch; the reason is worked out only for the few that fail.
    earliest = dt.datetime.combine(terminal.installed, dt.time())
    latest = now_local + future_tolerance
    span = collection.span
    faulty = {
        (p.user_id, p.timestamp): reason
        for p in (() if span and earliest <= span[0] and span[1] <= latest else collection.punches)
        if (p.timestamp < earliest or p.timestamp > latest)
        and (reason := clock_fault(p.timestamp, terminal.installed, now_local, future_tolerance))
    }
    if collection.unattributed is not None:
        faulty = {(p.user_id, p.timestamp): collection.unattributed for p in collection.punches}
    result = insert_punches(
        connection,
        collection.serial,
        collection.punches,
        poll_run_id=run_id,
        source=collection.source,
        flagged=faulty.keys(),
    )
    entries = [
        {
            "punch_id": punch_id,
            "serial": collection.serial,
            "reason": faulty[key],
            "poll_run_id": run_id,
        }
        for key, punch_id in result.flagged_ids.items()
    ]
    polls.quarantine(connection, entries)
    quarantined = len(entries)
    quarantined += _quarantine_unreadable(connection, collection, run_id)
    if quarantined:
        polls.ledger_quarantine(connection, run_id, actor=f"clockd {collection.source}")
    polls.finish_run(
        connection,
        run_id,
        new=result.new,
        new_from=result.new_from,
        new_to=result.new_to,
        duplicates=result.duplicates + collection.known_stored,
        quarantined=quarantined,
    )
    return Stored(run_id, result.new, result.duplicates + collection.known_stored, quarantined)


def _upsert_terminal(connection: Connection, collection: Collection) -> None:
    terminal = collection.terminal
    attributed = (
        terminal.village
        if collection.serial == terminal.serial and collection.unattributed is None
        else None
    )
    values: dict[str, object] = {"terminal_id": terminal.id, "village": attributed}
    if collection.device is not None:
        values |= {
            "firmware": collection.device.firmware,
            "platform": collection.device.platform,
            "device_name": collection.device.device_name,
        }
    polls.upsert_terminal(connection, collection.serial, values)


def _quarantine_unreadable(connection: Connection, collection: Collection, run_id: int) -> int:
    """Keep records that did not decode, once each, so nothing the terminal held is lost."""
    if not collection.problems:
        return 0
    known = polls.unreadable_kept(connection, collection.serial)
    entries = []
    for problem in collection.problems:
        if problem.raw in known:
            continue
        known.add(problem.raw)
        entries.append(
            {
                "serial": collection.serial,
                "raw_record": problem.raw,
                "reason": f"unreadable record: {problem.reason}",
                "poll_run_id": run_id,
            }
        )
    polls.quarantine(connection, entries)
    return len(entries)


def record_failure(
    engine: Engine, terminal: TerminalConfig, outcome: PollOutcome, started_at: dt.datetime
) -> None:
    """Keep a failed attempt in the poll history; if the database is down too, only log."""
    try:
        with db.write_transaction(engine) as connection:
            polls.start_run(
                connection,
                terminal_id=terminal.id,
                source=Source.POLL,
                serial=outcome.serial,
                started_at=started_at,
                finished_at=utcnow(),
                outcome=Outcome.FAILED,
                records_on_device=outcome.records_on_device,
                record_capacity=outcome.record_capacity,
                drift_seconds=outcome.drift_seconds,
                error=outcome.error,
                worker=db.process_name(),
            )
    except SQLAlchemyError as exc:
        log.error(
            "terminal %s: could not record the failed poll: %s", terminal.id, db.first_line(exc)
        )


# --- polling one terminal ---------------------------------------------------------------------


class Abandoned(Exception):
    """The poll was asked to stop before it could commit; nothing was written."""


class StopSignal:
    """Asks running polls to stop, and wakes those blocked waiting for a terminal.

    A terminal's data is committed in one transaction at the end of its poll, so stopping
    anywhere before that leaves nothing half-written.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sessions: set[TerminalClient] = set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def set(self) -> None:
        self._event.set()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.abort()

    @contextmanager
    def watching(self, client: TerminalClient) -> Iterator[None]:
        with self._lock:
            self._sessions.add(client)
        try:
            if self._event.is_set():
                raise Abandoned
            yield
        finally:
            with self._lock:
                self._sessions.discard(client)


def poll_terminal(
    settings: Settings,
    terminal: TerminalConfig,
    engine: Engine,
    *,
    environ: Mapping[str, str] | None = None,
    stop: StopSignal | None = None,
) -> PollOutcome:
    """Poll one terminal with retries inside its time budget; never raises for terminal faults."""
    poll = settings.poll
    outcome = PollOutcome(terminal.id, terminal.village)
    began = time.monotonic()
    started_at = utcnow()
    backoff = poll.retry_backoff_seconds
    try:
        comm_key = terminal.comm_key(environ)
    except UserError as exc:
        outcome.error = str(exc)
        outcome.attempts = 0
        record_failure(engine, terminal, outcome, started_at)
        return outcome
    while True:
        outcome.attempts += 1
        try:
            _poll_once(settings, terminal, engine, comm_key, outcome, stop)
            break
        except Abandoned:
            outcome.error = "abandoned: clockd is stopping"
            break
        except TerminalError as exc:
            if stop is not None and stop.is_set():
                outcome.error = "abandoned: clockd is stopping"
                break
            outcome.error = str(exc)
        except SQLAlchemyError as exc:
            # The terminal still holds its punches: the next cycle stores them.
            outcome.error = f"database: {db.first_line(exc)}"
            log.error("terminal %s: database write failed: %s", terminal.id, outcome.error)
            break
        except Exception as exc:  # a defect must cost this terminal's poll, not the cycle
            log.exception("terminal %s: unexpected error", terminal.id)
            outcome.error = f"internal error: {exc!r}"
            break
        elapsed = time.monotonic() - began
        if outcome.attempts > poll.retries or elapsed + backoff >= poll.timeout_seconds:
            break
        if stop is None:
            time.sleep(backoff)
        elif stop.wait(backoff):
            break
        backoff *= 2
    outcome.seconds = time.monotonic() - began
    if outcome.outcome == Outcome.FAILED:
        log.warning("terminal %s (%s): %s", terminal.id, terminal.village, outcome.error)
        record_failure(engine, terminal, outcome, started_at)
    return outcome


def _check_stop(stop: StopSignal | None) -> None:
    if stop is not None and stop.is_set():
        raise Abandoned


def _poll_once(
    settings: Settings,
    terminal: TerminalConfig,
    engine: Engine,
    comm_key: int,
    outcome: PollOutcome,
    stop: StopSignal | None,
) -> None:
    poll = settings.poll
    started_at = utcnow()
    host, port, transport = terminal.poll_endpoint
    client = TerminalClient(
        host,
        port,
        transport=transport,
        timeout=poll.timeout_seconds,
        comm_key=comm_key,
        encoding=terminal.encoding,
        record_size=terminal.record_size,
        deadline=time.monotonic() + poll.timeout_seconds,
    )
    watch = stop.watching(client) if stop is not None else nullcontext()
    with watch, client:
        device = client.device_info(fallback_serial=terminal.serial)
        outcome.serial = device.serial
        for note in device.notes:
            log.warning("terminal %s (%s): %s", terminal.id, terminal.village, note)
            outcome.warnings.append(note)
        mismatch = device.serial != terminal.serial
        claimed = _claimed_from(settings, terminal, device.serial)
        if mismatch:
            message = (
                f"serial mismatch: configured {terminal.serial}, device reports {device.serial}; "
                "its punches are stored but not attributed to the village until devices.yaml "
                "is corrected"
            )
            if claimed is not None:
                message = (
                    f"serial mismatch: configured {terminal.serial}, device reports "
                    f"{device.serial}, the serial of terminal {claimed.id} ({claimed.village}); "
                    f"its punches are kept apart as {claimed_key(device.serial, terminal)}, "
                    "counted for no village until devices.yaml is corrected"
                )
            log.error("terminal %s (%s): %s", terminal.id, terminal.village, message)
            outcome.warnings.insert(0, message)
        reading = client.clock()
        now = local_now(settings)
        if reading.moment is not None:
            outcome.drift_seconds = (reading.moment - now).total_seconds()
        # The clock is set right away: a log that fails below must not keep it wrong.
        if reading.moment is None:
            note = f"terminal clock holds no real date (raw value {reading.raw})"
            if poll.sync_time:
                client.set_clock(local_now(settings))
                outcome.clock_synced = True
                note += " (reset to the server's time)"
            outcome.warnings.append(note)
            log.warning("terminal %s (%s): %s", terminal.id, terminal.village, note)
        elif abs(outcome.drift_seconds or 0.0) > poll.max_drift_seconds:
            note = f"clock drift {round(outcome.drift_seconds or 0.0):+d}s"
            if poll.sync_time:
                client.set_clock(local_now(settings))
                outcome.clock_synced = True
                note += " (reset to the server's time)"
            log.warning("terminal %s (%s): %s", terminal.id, terminal.village, note)
        sizes = client.sizes()
        if sizes is not None:
            outcome.records_on_device = sizes.records
            outcome.record_capacity = sizes.record_capacity or None
        _check_stop(stop)
        clearing = sizes is not None and _clear_due(settings, sizes) and not mismatch
        if clearing:
            client.disable()
        try:
            if clearing:
                sizes = client.sizes()  # nothing can land between this and the download now
            read = client.read_log(sizes)
            _check_stop(stop)
            if sizes is None:
                outcome.records_on_device = read.total
                outcome.warnings.extend(read.notes)
            check_layout(settings, terminal, sizes, read)
            stored = _store(
                settings, terminal, engine, device, sizes, read, outcome, started_at, claimed
            )
            outcome.new += stored.new
            outcome.duplicates = stored.duplicates
            outcome.quarantined += stored.quarantined
            if clearing:
                _clear_if_all_stored(client, engine, device.serial, read, outcome)
        finally:
            if clearing:
                client.enable()  # a disabled terminal takes no punches: always re-enable
        percent = outcome.capacity_percent
        if percent is not None and poll.nearly_full(percent / 100) and not outcome.cleared:
            note = f"log {percent:.0f}% full"
            outcome.warnings.append(note)
            log.warning("terminal %s (%s): %s", terminal.id, terminal.village, note)
    outcome.outcome = Outcome.MISMATCH if mismatch else Outcome.OK
    outcome.error = outcome.warnings[0] if mismatch else None


def _claimed_from(
    settings: Settings, terminal: TerminalConfig, serial: str
) -> TerminalConfig | None:
    """The other configured terminal whose serial this one reports, if any."""
    for other in settings.terminals:
        if other.id != terminal.id and other.serial == serial:
            return other
    return None


def claimed_key(serial: str, terminal: TerminalConfig) -> str:
    """Where the punches of a terminal reporting another terminal's serial are kept: a serial
    no terminal is configured with (so they count for no village, SPEC §2) and that never
    dedupes against the genuine terminal's punches. Once devices.yaml is corrected, the next
    poll stores the terminal's log (never cleared meanwhile) under its real serial."""
    suffix = f"@{terminal.id}"
    return serial[: 64 - len(suffix)] + suffix


def check_layout(
    settings: Settings, terminal: TerminalConfig, sizes: wire.FreeSizes | None, read: LogRead
) -> None:
    """Refuse a log that the record layout does not fit (SPEC §6): most records unreadable or
    impossibly dated, or a record count the data does not match. Nothing is stored then, and
    the log is never cleared after it."""
    total = read.total
    if sizes is not None and sizes.records > 0:
        # Punches may land between the count and the download, never vanish.
        slack = max(50, sizes.records // 100)
        if not sizes.records <= total <= sizes.records + slack:
            raise TerminalError(
                f"record layout does not fit: the terminal counts {sizes.records} records, "
                f"the data holds {total} of {read.record_size} bytes"
            )
    if not total:
        return
    # The same cheap bounds as store_collection's: a time outside them is a clock fault.
    earliest = dt.datetime.combine(terminal.installed, dt.time())
    latest = local_now(settings) + dt.timedelta(minutes=settings.poll.future_tolerance_minutes)
    if read.span is not None and earliest <= read.span[0] and read.span[1] <= latest:
        return
    implausible = len(read.problems) + sum(
        1 for r in read.records if not earliest <= r.timestamp <= latest
    )
    if 2 * implausible > total:
        raise TerminalError(
            f"record layout does not fit: {implausible} of {total} records are unreadable or "
            f"impossibly dated as {read.record_size}-byte records"
        )


def _clear_due(settings: Settings, sizes: wire.FreeSizes) -> bool:
    policy = settings.poll.clear_policy
    if not isinstance(policy, ClearWhenAbove) or not sizes.record_capacity:
        return False
    return 100.0 * sizes.records / sizes.record_capacity > policy.when_above_percent


def _store(
    settings: Settings,
    terminal: TerminalConfig,
    engine: Engine,
    device: DeviceInfo,
    sizes: wire.FreeSizes | None,
    read: LogRead,
    outcome: PollOutcome,
    started_at: dt.datetime,
    claimed: TerminalConfig | None,
) -> Stored:
    """Store what the download holds that the database may not: only the tail when the
    log's start is known stored (ingest/logtail.py), all of it otherwise."""
    serial = device.serial if claimed is None else claimed_key(device.serial, terminal)
    mismatch = device.serial != terminal.serial
    with db.write_transaction(engine) as connection:
        part = logtail.split(read, terminal_logs.known(connection, serial))
        collection = Collection(
            terminal=terminal,
            serial=serial,
            source=Source.POLL,
            punches=part.records,
            problems=[*part.problems, *read.user_problems],
            device=device,
            records_on_device=outcome.records_on_device,
            record_capacity=outcome.record_capacity,
            users_on_device=sizes.users if sizes is not None else len(read.users),
            drift_seconds=outcome.drift_seconds,
            started_at=started_at,
            known_stored=part.skipped_punches,
            span=read.span,
        )
        stored = store_collection(
            connection,
            collection,
            now_local=local_now(settings),
            future_tolerance=dt.timedelta(minutes=settings.poll.future_tolerance_minutes),
            outcome=Outcome.MISMATCH if mismatch else Outcome.OK,
            error=outcome.warnings[0] if mismatch else None,
        )
        terminal_logs.remember(connection, serial, part.mark)
    outcome.known_stored = part.skipped
    return stored


def _clear_if_all_stored(
    client: TerminalClient, engine: Engine, serial: str, read: LogRead, outcome: PollOutcome
) -> None:
    """Clear the log only when every record of this (disabled-window) read is in the database."""
    punches = read.records
    with engine.connect() as connection:
        found = stored_keys(connection, serial, punches)
        raw_kept = polls.unreadable_kept(connection, serial)
    missing = len({(p.user_id, p.timestamp) for p in punches} - found)
    missing += sum(
        1 for problem in [*read.problems, *read.user_problems] if problem.raw not in raw_kept
    )
    if missing:
        note = f"log NOT cleared: {missing} records read were not found in the database"
        outcome.warnings.append(note)
        log.error("terminal serial %s: %s", serial, note)
        return
    client.clear_log()
    outcome.cleared = True
    with db.write_transaction(engine) as connection:
        terminal_logs.remember(connection, serial, logtail.cleared(read))
    log.info(
        "terminal serial %s: log cleared after %d records were counted back", serial, len(punches)
    )


# --- a poll cycle -----------------------------------------------------------------------------


def poll_cycle(
    settings: Settings,
    engine: Engine,
    terminals: Iterable[TerminalConfig] | None = None,
    *,
    on_outcome: Callable[[PollOutcome], None] | None = None,
    environ: Mapping[str, str] | None = None,
    stop: StopSignal | None = None,
    claim: Callable[[TerminalConfig], bool] | None = None,
) -> list[PollOutcome]:
    """Poll terminals concurrently (bounded by poll.concurrency).

    `on_outcome` sees each result in configuration order, as soon as it and those before it
    are done, so a log reads the same whatever order the terminals answered in. `claim` is
    asked right before each terminal is polled; a terminal it refuses is skipped (another
    process holds its lease).
    """
    chosen = [t for t in (settings.terminals if terminals is None else terminals) if t.polled]
    if not chosen:
        return []
    workers = min(settings.poll.concurrency, len(chosen))

    def run(terminal: TerminalConfig) -> PollOutcome | None:
        if claim is not None and not claim(terminal):
            log.info("terminal %s: leased by another clockd process, skipped", terminal.id)
            return None
        return poll_terminal(settings, terminal, engine, environ=environ, stop=stop)

    outcomes = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
        for outcome in pool.map(run, chosen):
            if outcome is None:
                continue
            if on_outcome is not None:
                on_outcome(outcome)
            outcomes.append(outcome)
    return outcomes
