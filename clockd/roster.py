"""The cadre roster: who is assessed, in which category, over which period."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clockd.domain import Cadre, Role, user_id_order
from clockd.errors import ConfigError, UserError
from clockd.tabular import date_cell, read_rows, text_cell, validate_rows

log = logging.getLogger(__name__)

USER_ID = re.compile(r"[A-Za-z0-9]{1,24}")

ROSTER_COLUMNS = {
    "user_id": "user_id",
    "工号": "user_id",
    "pin": "user_id",
    "name": "name",
    "姓名": "name",
    "role": "role",
    "类别": "role",
    "village": "village",
    "村(社区)": "village",
    "驻村": "village",
    "department": "department",
    "部门": "department",
    "active_from": "active_from",
    "起始日期": "active_from",
    "active_to": "active_to",
    "结束日期": "active_to",
}


class _RosterRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str
    name: Annotated[str, Field(min_length=1, max_length=64)]
    role: Role
    village: str | None = None
    department: str | None = None
    active_from: dt.date | None = None
    active_to: dt.date | None = None

    @field_validator("user_id")
    @classmethod
    def _pin_shape(cls, value: str) -> str:
        if not USER_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not a terminal user ID (1 to 24 letters or digits)")
        return value

    @field_validator("role", mode="before")
    @classmethod
    def _any_role_name(cls, value: object) -> Role:
        if isinstance(value, Role):
            return value
        return Role.parse(str(value))

    @model_validator(mode="after")
    def _period(self) -> _RosterRow:
        if self.active_from and self.active_to and self.active_from > self.active_to:
            raise ValueError(f"active_from {self.active_from} is after active_to {self.active_to}")
        return self


def load_roster(path: Path, villages: Collection[str] | None = None) -> list[Cadre]:
    """Read and validate the roster; every problem is reported, none is skipped silently.

    With `villages`, a cadre's assigned village must be one of them (catches typos).
    """
    rows = read_rows(path, ROSTER_COLUMNS, yaml_list_key="cadres")
    validated = validate_rows(
        path,
        rows,
        _RosterRow,
        {"active_from": date_cell, "active_to": date_cell, "user_id": text_cell},
        ROSTER_COLUMNS,
    )
    problems = []
    first_seen: dict[str, str] = {}
    cadres = []
    for row, entry in validated:
        if entry.user_id in first_seen:
            problems.append(
                f"{row.where}, column user_id: {entry.user_id} repeats {first_seen[entry.user_id]}"
            )
            continue
        first_seen[entry.user_id] = row.where
        if villages is not None and entry.village is not None and entry.village not in villages:
            problems.append(
                f"{row.where}, column village: {entry.village!r} is not a configured village"
            )
        cadres.append(
            Cadre(
                user_id=entry.user_id,
                name=entry.name,
                role=entry.role,
                village=entry.village,
                department=entry.department,
                active_from=entry.active_from,
                active_to=entry.active_to,
            )
        )
    if problems:
        raise ConfigError(str(path), problems)
    if not cadres:
        raise ConfigError(str(path), ["the roster lists no cadres"])
    return sorted(cadres, key=lambda cadre: user_id_order(cadre.user_id))


class RosterFile:
    """The roster for a long-running process: re-read when the file changes, and while a
    change leaves it broken or unreadable (any failure at all), the last good version, with
    the problem logged once rather than every cycle."""

    def __init__(self, path: Path, villages: Collection[str] | None = None) -> None:
        self.path = path
        self.villages = villages
        self._stamp: tuple[int, int] | None = None
        self._cadres: list[Cadre] = []
        self._problem: str | None = None  # the one logged, so it is not repeated

    def __call__(self) -> list[Cadre]:
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError as exc:
            if not self._cadres:
                raise UserError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
            self._keep_last_good(f"unreadable: {exc.strerror or exc}")
            return self._cadres
        if stamp != self._stamp or self._problem is not None:
            try:
                self._cadres = load_roster(self.path, self.villages)
            except Exception as exc:  # any failure at all keeps the last good roster
                if not self._cadres:
                    raise
                self._keep_last_good(_one_line(exc))
            else:
                if self._problem is not None:
                    log.warning(
                        "roster %s is readable again: %d cadres", self.path, len(self._cadres)
                    )
                self._problem = None
            self._stamp = stamp
        return self._cadres

    def _keep_last_good(self, problem: str) -> None:
        if problem != self._problem:
            log.error("roster %s: %s; keeping the last good one", self.path, problem)
        self._problem = problem


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
