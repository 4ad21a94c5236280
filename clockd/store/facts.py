"""What the store says about terminals, as plain values: shared by the SQLAlchemy queries
(store/periods.py, store/unconfigured.py) and the standard-library reader of `clockd devices`
(store/fleet.py), which must not import SQLAlchemy to load them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clockd.domain import TerminalSite


@dataclass(frozen=True)
class TerminalFacts:
    """One configured terminal as its poll history stood at an instant."""

    terminal: TerminalSite
    last_success: dt.datetime | None  # finish of the newest successful poll or USB import
    collected_after: dt.datetime | None  # first success that started at or after the period end
    reported_serial: str | None  # what the device said in its newest run that reached it
    records_on_device: int | None
    record_capacity: int | None
    drift_seconds: float | None
    last_outcome: str | None
    last_error: str | None

    @property
    def capacity_ratio(self) -> float | None:
        if self.records_on_device is None or not self.record_capacity:
            return None
        return self.records_on_device / self.record_capacity

    @property
    def serial_mismatch(self) -> bool:
        return self.reported_serial is not None and self.reported_serial != self.terminal.serial


@dataclass(frozen=True)
class UnconfiguredSerial:
    serial: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    quarantined: int  # punches and records kept in quarantine, undecided
