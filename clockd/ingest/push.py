"""The push receiver's logic: what a pushing terminal is answered, and its punches stored.

Batches go through the same store path as polling (`store_collection`: one dedupe key, the
clock-fault and quarantine rules) and are committed before the device hears `OK`, so a crash
anywhere before the reply makes the device send the batch again and nothing is lost; a resend
stores nothing twice. Heartbeats cost no database write: last contact is kept in memory and
flushed every `push.contact_flush_seconds` as a push "contact" run of the terminal, which
counts as its last good collection (SPEC §8). Thread-safe: the HTTP app calls the cheap
methods on its event loop and `store_attlog` in worker threads. See docs/protocol.md.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from clockd import notify
from clockd.config import Settings, TerminalConfig
from clockd.ingest.poll import Collection, Stored, local_now, store_collection
from clockd.store import db, polls
from clockd.store.models import Outcome, Source, utcnow
from clockd.zk import push as codec

log = logging.getLogger(__name__)

SOURCE = Source.PUSH
UNCONFIGURED_ID = "unconfigured"  # poll_runs.terminal_id of a serial not in devices.yaml
UNCONFIGURED_REASON = "terminal serial not in devices.yaml (push from an unknown device)"
CONTACT_RUN_SECONDS = 3600  # one contact run per terminal and hour, extended by each flush
REALTIME_LINES = 4  # a batch this small was posted as the punches happened (Realtime=1)
REALTIME_LAG_SECONDS = 3600  # older newest punch: a resend after an outage, not a clock reading
SYNC = None  # queued in place of command text: a clock reset, timed when it is sent
MAX_UNKNOWN_SERIALS = 10_000
MAX_SENT = 10_000  # commands awaiting a result; the oldest are forgotten beyond this
COMMAND_RESULT_SECONDS = 600  # a command unanswered this long is no longer awaited


class Refused(Exception):
    """A batch not taken (not stored, not acknowledged): the device keeps it and retries."""


@dataclass(frozen=True)
class BatchOutcome:
    serial: str
    terminal_id: str
    lines: int
    new: int
    duplicates: int
    quarantined: int
    problems: list[str]
    drift_seconds: float | None


@dataclass(frozen=True)
class SentCommand:
    serial: str
    text: str
    sent_at: dt.datetime


class PushReceiver:
    """State shared by every request of one `clockd serve` process."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        now: Callable[[], dt.datetime] = utcnow,
        on_alert: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._now = now
        self._on_alert = on_alert  # an alert was queued: wake the sender
        self._terminals = {t.serial: t for t in settings.terminals}
        self._lock = threading.Lock()
        self._unflushed: dict[str, tuple[dt.datetime, dt.datetime]] = {}  # first, last contact
        self._last_contact: dict[str, dt.datetime] = {}
        self._unknown_tracked = 0
        self._contact_runs: dict[str, tuple[int, dt.datetime]] = {}  # serial -> run id, start
        self._stamps: dict[str, str] = {}
        self._info: dict[str, codec.DeviceInfo] = {}
        self._queues: dict[str, deque[tuple[int, str | None]]] = {}
        # Ids from the clock, so that a restarted server does not reuse a recent id.
        self._ids = itertools.count(int(time.time()) % 1_000_000_000)
        self._sent: dict[int, SentCommand] = {}
        self.results: deque[tuple[str, codec.CommandResult, str]] = deque(maxlen=1000)

    # --- cheap, called on the event loop --------------------------------------------------------

    def terminal(self, serial: str) -> TerminalConfig | None:
        return self._terminals.get(serial)

    def touch(self, serial: str) -> None:
        """Note a contact in memory; the database hears of it at the next flush.

        Serials not in devices.yaml are tracked up to a bound, so that a client inventing
        serials cannot grow this process's memory without end.
        """
        now = self._now()
        with self._lock:
            if serial not in self._last_contact and serial not in self._terminals:
                if self._unknown_tracked >= MAX_UNKNOWN_SERIALS:
                    return
                self._unknown_tracked += 1
            first, _ = self._unflushed.get(serial, (now, now))
            self._unflushed[serial] = (first, now)
            self._last_contact[serial] = now

    def last_contact(self, serial: str) -> dt.datetime | None:
        with self._lock:
            return self._last_contact.get(serial)

    def handshake(self, serial: str) -> str:
        """Option lines for `GET /iclock/cdata?options=all`.

        The stamp is the last one this process saw; after a restart it is 0, so the device
        sends its whole log again and the dedupe key absorbs what is already stored.
        """
        self.touch(serial)
        push = self.settings.push
        with self._lock:
            stamp = self._stamps.get(serial, "0")
        offset = dt.datetime.now(self.settings.zone).utcoffset() or dt.timedelta()
        options: dict[str, object] = {
            "ATTLOGStamp": stamp,
            "OPERLOGStamp": "9999",
            "ATTPHOTOStamp": "None",
            "ErrorDelay": push.error_delay_seconds,
            "Delay": push.heartbeat_seconds,
            "TransTimes": "00:00;14:05",
            "TransInterval": 1,
            "TransFlag": "TransData AttLog",
            "TimeZone": f"{offset.total_seconds() / 3600:g}",
            "Realtime": 1,
            "Encrypt": "None",
        }
        if self.terminal(serial) is None:
            log.warning("push handshake from serial %r, which is not in devices.yaml", serial)
        return codec.options_reply(serial, options)

    def heartbeat(self, serial: str, info: str | None = None) -> str:
        """`GET /iclock/getrequest`: queued commands, else OK. Memory only; the device's
        counts from `INFO=` go to the database with its next contact flush."""
        self.touch(serial)
        parsed = codec.parse_info(info)
        with self._lock:
            if parsed is not None and serial in self._last_contact:
                self._info[serial] = parsed
            queue = self._queues.get(serial)
            if not queue:
                return "OK\n"
            lines = []
            now = self._now()
            while queue:
                command_id, text = queue.popleft()
                if text is SYNC:
                    text = codec.set_time_command(local_now(self.settings))
                self._sent[command_id] = SentCommand(serial, text, now)
                lines.append((command_id, text))
            while len(self._sent) > MAX_SENT:
                del self._sent[next(iter(self._sent))]
        for command_id, text in lines:
            log.info("push %s: sent command C:%d:%s", serial, command_id, text)
        return codec.command_lines(lines)

    def queue_command(self, serial: str, text: str | None) -> int:
        """Queue a command for the device's next heartbeat; `None` queues a clock reset."""
        with self._lock:
            command_id = next(self._ids)
            self._queues.setdefault(serial, deque()).append((command_id, text))
        return command_id

    def request_reupload(self, serial: str, start: dt.datetime, end: dt.datetime) -> int:
        """Ask a terminal to post the punches of [start, end] (local time) again."""
        return self.queue_command(serial, codec.reupload_command(start, end))

    def pending(self, serial: str) -> list[str]:
        """Commands queued and not yet sent, as text (a clock reset shows as SET OPTIONS)."""
        with self._lock:
            return [text or "SET OPTIONS DateTime" for _, text in self._queues.get(serial, ())]

    def command_results(self, serial: str, body: bytes) -> str:
        """`POST /iclock/devicecmd`: record each `ID=..&Return=..` line; answer OK."""
        self.touch(serial)
        for result in codec.parse_command_results(body):
            with self._lock:
                sent = self._sent.get(result.command_id)
                if sent is not None and sent.serial == serial:
                    del self._sent[result.command_id]
                else:
                    sent = None  # not a command this terminal was sent
            text = sent.text if sent is not None else "(unknown command)"
            self.results.append((serial, result, text))
            failed = result.return_code is None or result.return_code < 0
            (log.warning if failed else log.info)(
                "push %s: command %d (%s) returned %s",
                serial,
                result.command_id,
                text,
                result.return_code,
            )
        return "OK\n"

    def _sync_queued(self, serial: str) -> bool:
        with self._lock:
            queued = any(text is SYNC for _, text in self._queues.get(serial, ()))
            awaited = self._now() - dt.timedelta(seconds=COMMAND_RESULT_SECONDS)
            in_flight = any(
                sent.serial == serial
                and sent.text.startswith("SET OPTIONS DateTime")
                and sent.sent_at > awaited
                for sent in self._sent.values()
            )
        return queued or in_flight

    # --- blocking, called in worker threads -----------------------------------------------------

    def store_attlog(self, serial: str, body: bytes, stamp: str | None = None) -> BatchOutcome:
        """Parse and commit one ATTLOG batch. Raises on database failure, and `Refused` for
        an unknown serial beyond the tracking bound (reply 5xx: the device sends it again)."""
        self.touch(serial)
        settings = self.settings
        parsed = codec.parse_attlog(body)
        if not parsed.lines:  # some firmware ends an upload with an empty post
            return BatchOutcome(serial, "", 0, 0, 0, 0, [], None)
        terminal = self.terminal(serial)
        known = terminal is not None
        if terminal is None:
            if self.last_contact(serial) is None:
                raise Refused(f"more than {MAX_UNKNOWN_SERIALS} unknown serials are calling in")
            terminal = TerminalConfig(
                id=UNCONFIGURED_ID,
                village="(unconfigured)",
                transport="push",
                serial=serial,
                installed=dt.date(2000, 1, 1),
            )
        now_local = local_now(settings)
        drift = _drift_estimate(parsed, now_local) if known else None
        collection = Collection(
            terminal=terminal,
            serial=serial,
            source=SOURCE,
            punches=parsed.punches,
            problems=parsed.problems,
            drift_seconds=drift,
            started_at=self._now(),
            unattributed=None if known else UNCONFIGURED_REASON,
        )
        with db.write_transaction(self.engine) as connection:
            stored: Stored = store_collection(
                connection,
                collection,
                now_local=now_local,
                future_tolerance=dt.timedelta(minutes=settings.poll.future_tolerance_minutes),
                outcome=Outcome.OK if known else Outcome.MISMATCH,
                error=None if known else UNCONFIGURED_REASON,
            )
            if not known:
                notify.unknown_terminal_seen(connection, settings, serial)
        if not known:
            self._on_alert()
        # Committed: only now may the stamp advance (the handshake hands it back).
        if stamp is not None and stamp.isascii() and stamp.isdigit() and len(stamp) <= 20:
            with self._lock:
                if serial in self._last_contact:
                    self._stamps[serial] = stamp
        problems = [f"line {p.index}: {p.reason}" for p in parsed.problems]
        for problem in problems:
            log.warning("push %s: %s", serial, problem)
        if drift is not None and abs(drift) > settings.poll.max_drift_seconds:
            log.warning("push %s: clock drift about %+ds", serial, round(drift))
            if settings.poll.sync_time and not self._sync_queued(serial):
                self.queue_command(serial, SYNC)
        return BatchOutcome(
            serial=serial,
            terminal_id=terminal.id,
            lines=parsed.lines,
            new=stored.new,
            duplicates=stored.duplicates,
            quarantined=stored.quarantined,
            problems=problems,
            drift_seconds=drift,
        )

    def flush_contacts(self) -> int:
        """Write the contacts noted since the last flush; returns how many terminals."""
        with self._lock:
            contacts, self._unflushed = self._unflushed, {}
            infos = {serial: self._info.get(serial) for serial in contacts}
        if not contacts:
            return 0
        try:
            with db.write_transaction(self.engine) as connection:
                for serial, (first, last) in sorted(contacts.items()):
                    self._record_contact(connection, serial, first, last, infos[serial])
        except BaseException:
            with self._lock:  # try again at the next flush, keeping newer contacts
                for serial, (first, last) in contacts.items():
                    newer = self._unflushed.get(serial)
                    self._unflushed[serial] = (first, newer[1] if newer else last)
                self._contact_runs.clear()  # their ids may belong to a rolled-back insert
            raise
        return len(contacts)

    def _record_contact(
        self,
        connection: Connection,
        serial: str,
        first: dt.datetime,
        last: dt.datetime,
        info: codec.DeviceInfo | None,
    ) -> None:
        records = users = None
        if info is not None:
            records, users = info.records, info.users
        polls.note_contact(
            connection, serial, last_seen=last, firmware=info.firmware if info else None
        )
        terminal = self.terminal(serial)
        if terminal is None:
            return  # shown from terminals.last_seen once it has posted punches
        run = self._contact_runs.get(serial)
        if run is not None and (last - run[1]).total_seconds() < CONTACT_RUN_SECONDS:
            polls.extend_run(
                connection,
                run[0],
                finished_at=last,
                records_on_device=records,
                users_on_device=users,
            )
            return
        run_id = polls.start_run(
            connection,
            terminal_id=terminal.id,
            source=SOURCE,
            serial=serial,
            started_at=first,
            finished_at=last,
            outcome=Outcome.OK,
            worker=db.process_name(),
            records_on_device=records,
            users_on_device=users,
        )
        self._contact_runs[serial] = (run_id, first)


def _drift_estimate(parsed: codec.Attlog, now_local: dt.datetime) -> float | None:
    """How far the device clock is off, judged from a batch; None when the batch cannot say.

    A punch cannot reach the server before it happens, so a newest punch in the future is a
    fast clock by at least that much. A small batch is a realtime upload, posted within
    seconds, so its newest punch also shows a slow clock, unless it is hours old (a resend).
    """
    if not parsed.punches:
        return None
    newest = max(p.timestamp for p in parsed.punches)
    lag = (newest - now_local).total_seconds()
    if lag > 0:
        return lag
    if parsed.lines <= REALTIME_LINES and -lag < REALTIME_LAG_SECONDS:
        return lag
    return None
