"""Alerts and reminders: an unattended clockd speaks up on WeCom, DingTalk or email.

`Notifier` is what the daemon holds: after each poll cycle it checks the terminals and the
mid-week reminder, after the reports it checks their editions, and its dispatcher delivers
the outbox from a worker thread. Other parts of clockd raise their own events inside their own
transactions with `ledger_checked`, `unknown_terminal_seen` and `raise_event`. See
docs/alerts.md for every event, its message and when it fires.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from clockd.config import Settings
from clockd.domain import Cadre
from clockd.notify import messages, watch
from clockd.notify.dispatch import Dispatcher
from clockd.notify.messages import Kind, Message
from clockd.store import alerts, db
from clockd.store.models import utcnow

log = logging.getLogger("clockd.notify")

__all__ = [
    "Kind",
    "Message",
    "Notifier",
    "ledger_checked",
    "raise_event",
    "send_test",
    "unknown_terminal_seen",
]


class Notifier:
    """The daemon's notifier; every method swallows database errors (logged) and returns."""

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
        self.enabled = bool(settings.notify.channels)
        self.dispatcher = Dispatcher(settings, engine, worker_id, clock=clock, environ=environ)
        self._db_down_since: dt.datetime | None = None
        self._db_failures = 0
        self._db_alerted = False

    def start_watching(self) -> None:
        """Note the report editions already written: only later revisions are news."""
        if self.enabled:
            self._check("start", lambda connection, _now: watch.prime_report_cursor(connection))

    def start(self) -> None:
        """Start the sender thread (`clockd run`)."""
        if self.enabled:
            self.dispatcher.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.dispatcher.stop(timeout)

    def after_poll(self, cadres: Callable[[], Sequence[Cadre]]) -> None:
        """Terminal conditions and the reminder, then wake the sender."""
        if not self.enabled:
            return
        self._check("terminals", lambda c, now: watch.check_terminals(c, self.settings, now))
        self._check(
            "reminder", lambda c, now: watch.check_reminder(c, self.settings, cadres(), now)
        )
        self.dispatcher.wake()

    def after_reports(self) -> None:
        """Provisional reports and revisions (call while holding the report lock)."""
        if not self.enabled:
            return
        self._check("reports", lambda c, now: watch.check_reports(c, self.settings, now))
        self.dispatcher.wake()

    def flush(self, seconds: float) -> int:
        """Deliver what is due, for at most about `seconds` (`clockd run --once`)."""
        if not self.enabled:
            return 0
        return self.dispatcher.deliver(deadline=time.monotonic() + seconds)

    def database_unreachable(self, error: str) -> None:
        """A poll cycle could not reach the database; alert from the second one in a row."""
        if not self.enabled:
            return
        now = self.clock()
        if self._db_down_since is None:
            self._db_down_since = now
        self._db_failures += 1
        if self._db_failures >= 2 and not self._db_alerted:
            self._db_alerted = True
            key = f"database:{self.worker_id}:{self._db_down_since.isoformat()}"
            self.dispatcher.send_direct(
                messages.database_down(
                    self.settings,
                    key,
                    db.process_name(),
                    self._db_down_since,
                    self._db_failures,
                    error,
                )
            )

    def database_reachable(self) -> None:
        """The database answered again; say so if its loss was announced."""
        since, alerted = self._db_down_since, self._db_alerted
        self._db_down_since, self._db_failures, self._db_alerted = None, 0, False
        if not self.enabled or since is None or not alerted:
            return
        key = f"database:{self.worker_id}:{since.isoformat()}:back"
        self._check(
            "database",
            lambda c, now: watch.queue(
                c,
                self.settings,
                messages.database_back(self.settings, key, db.process_name(), since, now),
                now,
            ),
        )
        self.dispatcher.wake()

    def _check(self, what: str, body: Callable[[Connection, dt.datetime], None]) -> None:
        """Run one check in its own transaction. Whatever goes wrong in it is logged and
        rolled back; it never reaches the poll or report job that called it."""
        try:
            with db.write_transaction(self.engine) as connection:
                body(connection, self.clock())
        except SQLAlchemyError as exc:
            log.error(
                "notify: %s check skipped, database unavailable: %s", what, db.first_line(exc)
            )
        except Exception:
            log.exception("notify: %s check failed; polling and reports go on", what)


# --- events raised by other parts of clockd ---------------------------------------------------


def raise_event(
    connection: Connection, settings: Settings, message: Message, now: dt.datetime | None = None
) -> None:
    """Queue a one-off message inside the caller's transaction; its key is sent only once."""
    if settings.notify.channels:
        watch.queue(connection, settings, message, now or utcnow())


def ledger_checked(
    connection: Connection,
    settings: Settings,
    problems: Sequence[str],
    now: dt.datetime | None = None,
) -> None:
    """The result of a ledger check (`clockd verify`, the daemon's daily run): `problems` names
    each broken row, empty when intact. Alerts when it starts failing and when it is whole
    again, never on every check."""
    if not settings.notify.channels:
        return
    now = now or utcnow()
    key = watch.LEDGER
    if problems:
        flip = alerts.turn_on(connection, key, watch.LEDGER, now, f"{len(problems)} problems")
        if flip is not None:
            message = messages.ledger_failed(settings, flip.message_key, problems)
            watch.queue(connection, settings, message, now)
    else:
        flip = alerts.turn_off(connection, key, now)
        if flip is not None:
            watch.queue(
                connection, settings, messages.ledger_intact(settings, flip.message_key), now
            )


def unknown_terminal_seen(
    connection: Connection,
    settings: Settings,
    serial: str,
    address: str = "",
    now: dt.datetime | None = None,
) -> None:
    """A push terminal with a serial not in devices.yaml called in. One alert per serial; when
    the serial is later configured, the daemon says so once."""
    if not settings.notify.channels or any(t.serial == serial for t in settings.terminals):
        return
    now = now or utcnow()
    key = f"{watch.UNKNOWN}:{serial[:150]}"
    flip = alerts.turn_on(connection, key, watch.UNKNOWN, now, address[:200])
    if flip is not None:
        message = messages.unknown_terminal(settings, flip.message_key, serial, address)
        watch.queue(connection, settings, message, now)


# --- clockd notify test -----------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    channel: str
    ok: bool
    detail: str


def send_test(settings: Settings, environ: Mapping[str, str] | None = None) -> list[TestResult]:
    """Send a test message on every channel, directly (not through the outbox)."""
    from clockd.notify.channels import ChannelError, send

    results = []
    for channel in settings.notify.channels:
        message = messages.test_message(settings, channel.key, utcnow())
        try:
            send(settings, channel, message, environ=environ)
        except ChannelError as exc:
            results.append(TestResult(channel.key, False, str(exc)))
        else:
            results.append(TestResult(channel.key, True, "delivered"))
    return results
