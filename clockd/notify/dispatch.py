"""Delivering the outbox: claim due messages, send each on its channel, record the result.

Runs in its own thread under `clockd run` (a slow or failing channel never holds up a poll),
or once with a deadline after `clockd run --once`. A failed message is retried with
exponential backoff (notify.retry_backoff_seconds doubling up to retry_max_seconds) until
notify.give_up_hours after it was queued; within one round, a channel that has just failed is
not tried again, so one dead robot costs one timeout per round, not one per message.

Messages about the database itself cannot wait in the database's outbox: `send_direct`
keeps them in memory and retries them the same way while the process lives.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from clockd.config import Settings
from clockd.notify import channels as senders
from clockd.notify.messages import Kind, Message
from clockd.store import alerts, db
from clockd.store.models import utcnow

log = logging.getLogger("clockd.notify")
BATCH = 10
IDLE_SECONDS = 30.0


@dataclass
class _Direct:
    message: Message
    pending: set[str]
    created_at: dt.datetime
    attempts: int = 0
    next_at: dt.datetime = field(default_factory=utcnow)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        worker_id: str,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.worker_id = worker_id
        self.clock = clock
        self.environ = environ
        self.channels = {channel.key: channel for channel in settings.notify.channels}
        self._direct: list[_Direct] = []
        self._direct_lock = threading.Lock()  # held briefly: the poll thread queues here
        self._round = threading.Lock()  # one delivery round at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the worker thread ------------------------------------------------------------------

    def start(self) -> None:
        if not self.channels or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="clockd-notify", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        idle = min(IDLE_SECONDS, self.settings.notify.retry_backoff_seconds)
        while not self._stopping.is_set():
            try:
                self.deliver()
            except Exception:  # the thread must outlive any surprise; the next round retries
                log.exception("notify: delivery round failed")
            self._wake.wait(idle)
            self._wake.clear()

    # --- delivery ---------------------------------------------------------------------------

    def send_direct(self, message: Message) -> None:
        """Queue a message in memory (the database is unavailable) and wake the sender."""
        with self._direct_lock:
            self._direct.append(_Direct(message, set(self.channels), self.clock()))
        self.wake()

    def deliver(self, deadline: float | None = None) -> int:
        """One round: everything due, until done or the monotonic `deadline`; returns how many
        deliveries succeeded."""
        if not self.channels:
            return 0
        with self._round:
            down: set[str] = set()
            sent = self._deliver_direct(down, deadline)
            while not self._out_of_time(deadline):
                try:
                    with db.write_transaction(self.engine) as connection:
                        batch = alerts.claim(
                            connection,
                            self.worker_id,
                            [key for key in self.channels if key not in down],
                            self.clock(),
                            self._hold(),
                            BATCH,
                        )
                except SQLAlchemyError as exc:
                    log.warning("notify: outbox unavailable: %s", db.first_line(exc))
                    break
                if not batch:
                    break
                sent += self._send_batch(batch, down, deadline)
        return sent

    def _send_batch(
        self, batch: list[alerts.Outgoing], down: set[str], deadline: float | None
    ) -> int:
        sent = 0
        untried: list[int] = []
        for item in batch:
            if item.channel in down or self._out_of_time(deadline):
                untried.append(item.id)
                continue
            error = self._attempt(item.channel, self._message(item))
            now = self.clock()
            try:
                with db.write_transaction(self.engine) as connection:
                    if error is None:
                        alerts.delivered(connection, item.id, self.worker_id, now)
                    else:
                        down.add(item.channel)
                        retry_at = self._retry_at(item.created_at, item.attempts, now)
                        alerts.failed(connection, item.id, self.worker_id, error, retry_at, now)
                        self._log_failure(
                            item.kind, item.channel, item.attempts + 1, error, retry_at
                        )
            except SQLAlchemyError as exc:
                # The claim lapses and the message is tried again: at worst sent twice,
                # never lost.
                log.warning("notify: could not record a delivery: %s", db.first_line(exc))
            sent += error is None
        if untried:
            try:
                with db.write_transaction(self.engine) as connection:
                    alerts.release(connection, untried, self.worker_id)
            except SQLAlchemyError as exc:
                log.warning("notify: could not release messages: %s", db.first_line(exc))
        return sent

    def _deliver_direct(self, down: set[str], deadline: float | None) -> int:
        sent = 0
        with self._direct_lock:
            queued = list(self._direct)
        for item in queued:
            now = self.clock()
            if item.next_at > now:
                continue
            for key in sorted(item.pending):
                if key in down or self._out_of_time(deadline):
                    continue
                error = self._attempt(key, item.message)
                if error is None:
                    item.pending.discard(key)
                    sent += 1
                else:
                    down.add(key)
                    retry_at = self._retry_at(item.created_at, item.attempts, self.clock())
                    self._log_failure(item.message.kind, key, item.attempts + 1, error, retry_at)
                    if retry_at is None:
                        item.pending.discard(key)
            item.attempts += 1
            item.next_at = self._retry_at(item.created_at, item.attempts - 1, now) or now
            if not item.pending:
                with self._direct_lock:
                    self._direct.remove(item)
        return sent

    def _attempt(self, key: str, message: Message) -> str | None:
        """Send once; None when delivered, else the (secret-free) reason."""
        try:
            senders.send(self.settings, self.channels[key], message, environ=self.environ)
        except senders.ChannelError as exc:
            return str(exc)
        log.info("notify: %s delivered on %s", message.kind.value, key)
        return None

    def _message(self, item: alerts.Outgoing) -> Message:
        try:
            kind = Kind(item.kind)
        except ValueError:  # queued by a newer clockd sharing the database
            kind = Kind.TEST
        return Message(kind, item.message_key, item.title, item.body)

    def _retry_at(
        self, created: dt.datetime, attempts: int, now: dt.datetime
    ) -> dt.datetime | None:
        """When to try again after `attempts` + 1 failures; None once it is time to give up."""
        notify = self.settings.notify
        if now - created >= dt.timedelta(hours=notify.give_up_hours):
            return None
        delay = min(notify.retry_backoff_seconds * 2 ** min(attempts, 20), notify.retry_max_seconds)
        return now + dt.timedelta(seconds=delay)

    def _hold(self) -> dt.timedelta:
        """How long a claim lasts: enough for a batch of timeouts, then another may send."""
        return dt.timedelta(seconds=BATCH * 3 * self.settings.notify.timeout_seconds + 60)

    @staticmethod
    def _out_of_time(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    @staticmethod
    def _log_failure(
        kind: str, channel: str, attempt: int, error: str, retry_at: dt.datetime | None
    ) -> None:
        if retry_at is None:
            log.error(
                "notify: %s on %s failed (attempt %d): %s; giving up (kept in the outbox)",
                kind,
                channel,
                attempt,
                error,
            )
        else:
            log.warning(
                "notify: %s on %s failed (attempt %d): %s; retrying at %s",
                kind,
                channel,
                attempt,
                error,
                retry_at.isoformat(timespec="seconds"),
            )
