"""What the poll history says about each terminal: `clockd devices` and the reports read this."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, func, select

from clockd.config import TerminalConfig
from clockd.store.models import PollRun

OK = "ok"


@dataclass(frozen=True)
class TerminalStatus:
    terminal_id: str
    village: str
    configured_serial: str
    reported_serial: str | None
    last_attempt: dt.datetime | None
    last_success: dt.datetime | None
    records_on_device: int | None
    record_capacity: int | None
    drift_seconds: float | None
    last_outcome: str | None
    last_error: str | None

    @property
    def capacity_percent(self) -> float | None:
        if self.records_on_device is None or not self.record_capacity:
            return None
        return 100.0 * self.records_on_device / self.record_capacity

    @property
    def serial_mismatch(self) -> bool:
        return self.reported_serial is not None and self.reported_serial != self.configured_serial


def terminal_statuses(
    connection: Connection, terminals: Sequence[TerminalConfig]
) -> list[TerminalStatus]:
    """The latest attempt and the latest success for every configured terminal."""
    latest = {run.terminal_id: run for run in _latest_runs(connection, success_only=False)}
    latest_ok = {run.terminal_id: run for run in _latest_runs(connection, success_only=True)}
    statuses = []
    for terminal in terminals:
        attempt = latest.get(terminal.id)
        success = latest_ok.get(terminal.id)
        # Device facts come from the newest run that reached the device.
        facts = (
            attempt if attempt is not None and attempt.records_on_device is not None else success
        )
        statuses.append(
            TerminalStatus(
                terminal_id=terminal.id,
                village=terminal.village,
                configured_serial=terminal.serial,
                reported_serial=facts.serial if facts is not None else None,
                last_attempt=attempt.finished_at or attempt.started_at if attempt else None,
                last_success=success.finished_at if success is not None else None,
                records_on_device=facts.records_on_device if facts is not None else None,
                record_capacity=facts.record_capacity if facts is not None else None,
                drift_seconds=facts.drift_seconds if facts is not None else None,
                last_outcome=attempt.outcome if attempt is not None else None,
                last_error=attempt.error if attempt is not None else None,
            )
        )
    return statuses


def _latest_runs(connection: Connection, *, success_only: bool) -> list[Row[Any]]:
    newest = select(PollRun.terminal_id, func.max(PollRun.id).label("id")).where(
        PollRun.finished_at.is_not(None)
    )
    if success_only:
        newest = newest.where(PollRun.outcome == OK)
    newest_ids = newest.group_by(PollRun.terminal_id).subquery()
    runs = PollRun.__table__
    query = select(runs).join(newest_ids, runs.c.id == newest_ids.c.id)
    return list(connection.execute(query))
