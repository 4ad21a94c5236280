"""Plain data shared by every layer: cadres, punches, leave. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, runtime_checkable


class Role(enum.StrEnum):
    """A cadre's category; the value is what devices.yaml and the database store."""

    ORDINARY = "ordinary"  # 机关干部: at least 2 village days a week
    RESIDENT = "resident"  # 驻村干部: at least 3 village days a week

    @property
    def label(self) -> str:
        """The Chinese name used in reports."""
        return ROLE_LABELS[self]

    @classmethod
    def parse(cls, text: str) -> Role:
        """Accept the English value or the Chinese label, ignoring surrounding blanks."""
        key = text.strip()
        for role in cls:
            if key.lower() == role.value or key == role.label:
                return role
        raise ValueError(f"unknown role {text!r} (use ordinary/机关干部 or resident/驻村干部)")


ROLE_LABELS = {Role.ORDINARY: "机关干部", Role.RESIDENT: "驻村干部"}


class LeaveKind(enum.StrEnum):
    LEAVE = "leave"  # 请假
    BUSINESS_TRIP = "business_trip"  # 出差
    OTHER = "other"  # 其他

    @property
    def label(self) -> str:
        return LEAVE_LABELS[self]

    @classmethod
    def parse(cls, text: str) -> LeaveKind:
        key = text.strip()
        for kind in cls:
            if key.lower() == kind.value or key == kind.label:
                return kind
        raise ValueError(
            f"unknown leave kind {text!r} (use leave/请假, business_trip/出差, other/其他)"
        )


LEAVE_LABELS = {LeaveKind.LEAVE: "请假", LeaveKind.BUSINESS_TRIP: "出差", LeaveKind.OTHER: "其他"}


@dataclass(frozen=True, slots=True)
class Cadre:
    """One roster entry. `user_id` is the PIN enrolled on every terminal."""

    user_id: str
    name: str
    role: Role
    village: str | None = None
    department: str | None = None
    active_from: date | None = None
    active_to: date | None = None

    def active_on(self, day: date) -> bool:
        if self.active_from is not None and day < self.active_from:
            return False
        return self.active_to is None or day <= self.active_to


class PunchFields(Protocol):
    """What every punch-shaped record offers: a domain Punch, a decoded terminal record."""

    @property
    def user_id(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def verify(self) -> int: ...
    @property
    def state(self) -> int: ...
    @property
    def workcode(self) -> int: ...


@runtime_checkable
class TimeTexts(Protocol):
    """A sequence of punches that can give its times as the store writes them (ledger.time_text)
    faster than formatting each record's time: a decoded log (zk/wire.py, RecordColumns)."""

    def time_texts(self, start: int, stop: int) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Punch:
    """One attendance record as a terminal holds it.

    `timestamp` is the terminal's naive local wall-clock time; the township's zone is applied
    by whoever needs an absolute instant.
    """

    serial: str
    user_id: str
    timestamp: datetime
    verify: int = 0  # verify type: 0 password, 1 fingerprint, 2 card, 15 face
    state: int = 0  # punch state: 0 check-in, 1 check-out, 2 break-out, 3 break-in, 4/5 overtime
    workcode: int = 0  # work code keyed on the terminal, 0 when none


class TerminalSite(Protocol):
    """A configured terminal as the store sees it: which serial counts for which village, and
    since when (devices.yaml's terminal entries are one)."""

    @property
    def id(self) -> str: ...
    @property
    def village(self) -> str: ...
    @property
    def serial(self) -> str: ...
    @property
    def installed(self) -> date: ...


@dataclass(frozen=True, slots=True)
class Leave:
    """Approved leave or business trip, both ends inclusive."""

    user_id: str
    start: date
    end: date
    kind: LeaveKind = LeaveKind.LEAVE
    note: str = ""


def user_id_order(user_id: str) -> tuple[int, int, str]:
    """Sort PINs as HR reads them: 999 before 1001, numeric before alphanumeric."""
    if user_id.isdigit():
        return (0, int(user_id), user_id)
    return (1, 0, user_id)
