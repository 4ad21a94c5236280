"""When each report falls due under the configured schedule.

Pure functions of the settings, kept apart from the daemon (scheduler.py) so that the reports
(a day's work result counts as filed on time before its week's report was due) and the alerts
can ask without loading the poller and everything the daemon drives.
"""

from __future__ import annotations

import datetime as dt

from clockd.config import WEEKDAYS, Settings
from clockd.workcal import IsoWeek, YearMonth


def weekly_due_at(settings: Settings, week: IsoWeek) -> dt.datetime:
    """When the week's report is scheduled: the configured weekday and time after it ends."""
    schedule = settings.schedule.weekly
    offset = WEEKDAYS.index(schedule.weekday) + 1  # days after the week's Sunday
    day = week.end + dt.timedelta(days=offset)
    return dt.datetime.combine(day, schedule.time, tzinfo=settings.zone)


def monthly_due_at(settings: Settings, month: YearMonth) -> dt.datetime:
    """When the month's report is scheduled: the configured day and time of the next month."""
    schedule = settings.schedule.monthly
    day = month.shift(1).first_day.replace(day=schedule.day)
    return dt.datetime.combine(day, schedule.time, tzinfo=settings.zone)
