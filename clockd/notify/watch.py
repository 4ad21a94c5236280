"""Which conditions hold now, from the database alone, and the messages their changes make.

Each check runs in one write transaction: the condition's flip (store.alerts) and the queued
messages commit together, so a message is queued exactly when its condition changed, once,
whichever process looked and however often.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from clockd.config import Settings
from clockd.domain import Cadre
from clockd.due import monthly_due_at, weekly_due_at
from clockd.notify import messages
from clockd.notify.messages import Message
from clockd.store import alerts
from clockd.store.models import OK
from clockd.workcal import IsoWeek, YearMonth

if TYPE_CHECKING:
    from clockd.reports.period import Period
    from clockd.store.facts import TerminalFacts

STALE, CAPACITY, SERIAL = "terminal_stale", "capacity", "serial_mismatch"
PROVISIONAL, REVISION, REMINDER = "report_provisional", "report_revised", "reminder"
LEDGER, UNKNOWN = "ledger", "unknown_terminal"
REPORT_CURSOR = "report_runs"

# report_runs.status has been spelt in Chinese (正式/临时/更正) and in English; this one map
# is the only place notify looks at it.
_REPORT_STATUS = {
    "正式": "final",
    "final": "final",
    "临时": "provisional",
    "provisional": "provisional",
    "更正": "corrected",
    "corrected": "corrected",
    "revised": "corrected",
}


def report_status(status: str) -> str:
    """final | provisional | corrected."""
    return _REPORT_STATUS.get(status, "final")


def queue(connection: Connection, settings: Settings, message: Message, now: dt.datetime) -> None:
    alerts.enqueue(
        connection,
        message.key,
        [channel.key for channel in settings.notify.channels],
        message.kind.value,
        message.title,
        message.body,
        now,
    )


# --- terminals -------------------------------------------------------------------------------


def check_terminals(connection: Connection, settings: Settings, now: dt.datetime) -> None:
    """Stale terminals, serial mismatches, nearly full logs, and unknown serials now added."""
    from clockd.store.periods import terminal_facts

    terminals = settings.terminals
    contacts = alerts.contacts(connection, [t.id for t in terminals])
    facts = terminal_facts(connection, terminals, now, now)
    threshold = dt.timedelta(hours=settings.notify.stale_hours)
    # Only conditions that are on can turn off: no update per terminal and cycle otherwise.
    on = {key for kind in (STALE, SERIAL, CAPACITY) for key in alerts.active(connection, kind)}
    for terminal, fact in zip(terminals, facts, strict=True):
        _stale(connection, settings, fact, contacts[terminal.id], threshold, now, on)
        _serial(connection, settings, fact, now, on)
        _capacity(connection, settings, fact, now, on)
    configured = {t.id for t in terminals}
    for key in on:
        if key.split(":", 1)[1] not in configured:
            alerts.turn_off(connection, key, now)  # removed from devices.yaml: nothing to do
    by_serial = {t.serial: t for t in terminals}
    for key in alerts.active(connection, UNKNOWN):
        added = by_serial.get(key.split(":", 1)[1])
        flip = alerts.turn_off(connection, key, now) if added is not None else None
        if added is not None and flip is not None:
            message = messages.unknown_terminal_added(settings, flip.message_key, added)
            queue(connection, settings, message, now)


def _serial(
    connection: Connection,
    settings: Settings,
    fact: TerminalFacts,
    now: dt.datetime,
    on: set[str],
) -> None:
    """The device at a terminal's address reports another serial (SPEC: an alert)."""
    terminal, reported = settings.terminal(fact.terminal.id), fact.reported_serial
    if reported is None:
        return
    key = f"{SERIAL}:{terminal.id}"
    if fact.serial_mismatch:
        flip = alerts.turn_on(connection, key, SERIAL, now, reported)
        if flip is not None:
            message = messages.serial_mismatch(settings, terminal, flip.message_key, reported)
            queue(connection, settings, message, now)
    elif key in on:
        flip = alerts.turn_off(connection, key, now)
        if flip is not None:
            queue(
                connection,
                settings,
                messages.serial_confirmed(settings, terminal, flip.message_key),
                now,
            )


def _capacity(
    connection: Connection,
    settings: Settings,
    fact: TerminalFacts,
    now: dt.datetime,
    on: set[str],
) -> None:
    """The terminal's log is fuller than the capacity warning (and later, no longer)."""
    terminal = settings.terminal(fact.terminal.id)
    records, capacity = fact.records_on_device, fact.record_capacity
    if records is None or not capacity:
        return
    limit = settings.notify.capacity_warn_percent or settings.poll.capacity_warn_percent
    key = f"{CAPACITY}:{terminal.id}"
    if 100 * records > limit * capacity:
        flip = alerts.turn_on(connection, key, CAPACITY, now)
        if flip is not None:
            message = messages.capacity_high(
                settings, terminal, flip.message_key, records, capacity, limit
            )
            queue(connection, settings, message, now)
    elif key in on:
        flip = alerts.turn_off(connection, key, now)
        if flip is not None:
            message = messages.capacity_normal(
                settings, terminal, flip.message_key, records, capacity
            )
            queue(connection, settings, message, now)


def _stale(
    connection: Connection,
    settings: Settings,
    fact: TerminalFacts,
    contact: alerts.Contact,
    threshold: dt.timedelta,
    now: dt.datetime,
    on: set[str],
) -> None:
    """No good contact (a successful poll, USB import or push) for notify.stale_hours; a
    terminal never reached counts from its first attempt, one never tried is not judged.

    A polled terminal's latest attempt must be a failure too: after clockd itself was down
    for a day, a terminal nobody has tried again yet is not known to be offline (another
    daemon may hold it). Nobody tries a push terminal: its silence is all there is to judge.
    """
    terminal = settings.terminal(fact.terminal.id)
    since = contact.last_good or contact.first_attempt
    if since is None:
        return
    key = f"{STALE}:{terminal.id}"
    failing = not terminal.polled or fact.last_outcome not in (None, OK)
    if now - since >= threshold and failing:
        detail = json.dumps({"since": since.isoformat()})
        flip = alerts.turn_on(connection, key, STALE, now, detail)
        if flip is not None:
            message = messages.terminal_stale(
                settings, terminal, flip.message_key, contact.last_good, since, now
            )
            queue(connection, settings, message, now)
    elif key in on and contact.last_good is not None and now - contact.last_good < threshold:
        flip = alerts.turn_off(connection, key, now)
        if flip is not None:
            went = _detail_time(flip.detail, "since")
            message = messages.terminal_recovered(
                settings, terminal, flip.message_key, went, contact.last_good
            )
            queue(connection, settings, message, now)


def _detail_time(detail: str, field: str) -> dt.datetime | None:
    try:
        value = json.loads(detail).get(field)
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except (ValueError, AttributeError):
        return None


# --- reports ---------------------------------------------------------------------------------


def prime_report_cursor(connection: Connection) -> None:
    """Start watching for revisions from the editions already written (no old news)."""
    alerts.cursor(connection, REPORT_CURSOR, alerts.last_edition_id(connection))


def check_reports(connection: Connection, settings: Settings, now: dt.datetime) -> None:
    """Reports provisional at their scheduled time (and when they turn final); revisions."""
    from clockd.reports.period import completeness

    on = set(alerts.active(connection, PROVISIONAL))
    for edition in alerts.latest_editions(connection):
        key = f"{PROVISIONAL}:{edition.kind}:{edition.period}"
        if report_status(edition.status) == "provisional":
            period = _period(edition.kind, edition.period)
            due = (
                weekly_due_at(settings, period.weeks[0])
                if edition.kind == "weekly"
                else monthly_due_at(settings, YearMonth.parse(edition.period))
            )
            if now < due:
                continue
            flip = alerts.turn_on(connection, key, PROVISIONAL, now)
            if flip is not None:
                missing = completeness(connection, settings, period, now).missing_villages()
                queue(
                    connection,
                    settings,
                    messages.report_provisional(
                        settings,
                        edition.kind,
                        edition.period,
                        flip.message_key,
                        missing,
                    ),
                    now,
                )
        elif key in on:
            flip = alerts.turn_off(connection, key, now)
            # A corrected edition is final too; its revision message below says enough.
            if flip is not None and report_status(edition.status) == "final":
                message = messages.report_final(
                    settings, edition.kind, edition.period, flip.message_key
                )
                queue(connection, settings, message, now)
    position = alerts.cursor(connection, REPORT_CURSOR, alerts.last_edition_id(connection))
    editions = alerts.editions_after(connection, position)
    if not editions or not alerts.move_cursor(connection, REPORT_CURSOR, position, editions[-1].id):
        return
    for edition in editions:
        if report_status(edition.status) != "corrected":
            continue
        key = f"{REVISION}:{edition.kind}:{edition.period}:r{edition.revision}"
        queue(
            connection,
            settings,
            messages.report_revised(
                settings,
                edition.kind,
                edition.period,
                key,
                edition.revision,
                edition.deduction_total,
                edition.previous_deduction,
            ),
            now,
        )


def _period(kind: str, label: str) -> Period:
    from clockd.reports.period import Period

    if kind == "weekly":
        week = IsoWeek.parse(label)
        return Period("weekly", label, (week,), week.start)
    weeks = tuple(YearMonth.parse(label).weeks())
    return Period("monthly", label, weeks, weeks[0].start)


# --- the mid-week reminder ---------------------------------------------------------------------


def reminder_due(settings: Settings, now: dt.datetime) -> tuple[IsoWeek, dt.datetime] | None:
    """This week and the reminder's time, once that time has passed (else None)."""
    schedule = settings.notify.reminder
    if schedule is None:
        return None
    from clockd.config import WEEKDAYS

    week = IsoWeek.containing(now.astimezone(settings.zone).date())
    day = week.start + dt.timedelta(days=WEEKDAYS.index(schedule.weekday))
    at = dt.datetime.combine(day, schedule.time, tzinfo=settings.zone)
    return (week, at) if now >= at else None


def check_reminder(
    connection: Connection, settings: Settings, cadres: Sequence[Cadre], now: dt.datetime
) -> None:
    """Once a week, after the reminder time: every cadre still short of the week's required
    village days, with how many days they still need."""
    due = reminder_due(settings, now)
    if due is None:
        return
    week, at = due
    from clockd.reports.period import data_since

    if week.start < data_since(settings):
        return
    key = f"{REMINDER}:{week.label}"
    if not alerts.once(connection, key, REMINDER, now):
        return
    behind = cadres_behind(connection, settings, cadres, week)
    if behind:
        queue(connection, settings, messages.reminder(settings, key, week, at, behind), now)


def cadres_behind(
    connection: Connection, settings: Settings, cadres: Sequence[Cadre], week: IsoWeek
) -> list[messages.Behind]:
    """Cadres whose valid village days so far are fewer than the week requires, by 工号."""
    from clockd import rules
    from clockd.store.periods import load_leave, load_punches
    from clockd.workcal import WorkCalendar

    punches = load_punches(connection, week.start, week.end, settings.terminals)
    leave = [
        record.leave for record in load_leave(connection, week.start, week.end) if record.in_force()
    ]
    calendar = WorkCalendar(settings.holiday_overrides())
    results = rules.assess_weeks(punches, cadres, leave, calendar, [week], settings.rules)
    needed = results["required_days"].to_numpy() - results["valid_days"].to_numpy()
    return [
        messages.Behind(str(user_id), str(name), int(days))
        for user_id, name, days in zip(results["user_id"], results["name"], needed, strict=True)
        if days > 0
    ]
