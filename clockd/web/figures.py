"""Week figures and terminal health for the console, computed once per change of the data.

A 首页 request for a district of 10,000 cadres would otherwise load and assess the week each
time. Figures are cached by week and recomputed when `store.console.data_version` moves (a
punch stored, leave approved, a quarantine released, a poll run finished, a report written)
and when a new day begins (a week in progress is over at the end of its Sunday).
One lock per key: fifty clients asking at once cause one computation, not fifty, and while
figures are being refreshed after a change the others are served the previous ones.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

from sqlalchemy import Engine

from clockd.config import Settings
from clockd.domain import Cadre
from clockd.reports import live
from clockd.store.console import data_version
from clockd.store.facts import TerminalFacts
from clockd.store.models import utcnow
from clockd.store.periods import terminal_facts
from clockd.workcal import IsoWeek, YearMonth

Value = TypeVar("Value")
MAX_WEEKS = 16
MAX_DERIVED = 64
# The years whose weeks and months pages and the API compute. Far wider than any township's
# data, and narrow enough that a period's neighbours, the month a year earlier and the
# conversions between local time and UTC stay within the dates Python can hold.
FIRST_YEAR, LAST_YEAR = 1900, 2999


def supported(period: IsoWeek | YearMonth | dt.date) -> bool:
    """Whether `period` lies within FIRST_YEAR..LAST_YEAR."""
    return FIRST_YEAR <= period.year <= LAST_YEAR


class _Cache(Generic[Value]):
    """A small LRU of values tagged with the data version they were computed at."""

    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[object, tuple[tuple[object, ...], Value]] = OrderedDict()
        self._locks: dict[object, threading.Lock] = {}
        self._guard = threading.Lock()
        self._capacity = capacity

    def get(self, key: object, version: tuple[object, ...], compute: Callable[[], Value]) -> Value:
        """The value for `version`; while another request recomputes it, the previous one."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            return entry[1]
        if entry is not None and not lock.acquire(blocking=False):
            return entry[1]  # being refreshed: these figures are seconds old at most
        if entry is None:
            lock.acquire()
        try:
            with self._guard:
                entry = self._entries.get(key)
            if entry is not None and entry[0] == version:
                return entry[1]
            value = compute()
            with self._guard:
                self._entries[key] = (version, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self._capacity:
                    old, _ = self._entries.popitem(last=False)
                    self._locks.pop(old, None)
            return value
        finally:
            lock.release()


class Figures:
    def __init__(self, settings: Settings, engine: Engine, cadres: Sequence[Cadre]) -> None:
        self.settings = settings
        self.engine = engine
        self.cadres = list(cadres)
        self._weeks: _Cache[live.WeekStanding] = _Cache(MAX_WEEKS)
        self._terminals: _Cache[tuple[dt.datetime, list[TerminalFacts]]] = _Cache(1)
        self._derived: _Cache[object] = _Cache(MAX_DERIVED)

    def week(self, week: IsoWeek) -> live.WeekStanding:
        """The week's standing, recomputed when the data changes and when a new local day
        begins (a week is in progress, and charged nothing, until its last day is over)."""
        today = dt.datetime.now(self.settings.zone).date()
        return self._weeks.get(
            week,
            (*data_version(self.engine), today),
            lambda: live.week_standing(self.engine, self.settings, self.cadres, week),
        )

    def terminals(self) -> tuple[dt.datetime, list[TerminalFacts]]:
        """(as of, every terminal's poll history facts)."""

        def compute() -> tuple[dt.datetime, list[TerminalFacts]]:
            now = utcnow()
            with self.engine.connect() as connection:
                return now, terminal_facts(connection, self.settings.terminals, now, now)

        return self._terminals.get("all", data_version(self.engine), compute)

    def derived(self, key: object, compute: Callable[[], Value]) -> Value:
        """Something computed from the figures (a page's rows, an API body), kept while the
        data is unchanged. `key` must name everything the value depends on."""
        return cast(Value, self._derived.get(key, data_version(self.engine), compute))
