"""Work results (工作清单, SPEC §3): one short text per cadre and valid village day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine, insert, select, update

from clockd.errors import ConfigError, UserError
from clockd.store import chains
from clockd.store.console import audit
from clockd.store.db import write_transaction
from clockd.store.models import WorkResult, utcnow
from clockd.tabular import date_cell, read_rows, text_cell, validate_rows

MAX_TEXT = 2000
WORKLOG_COLUMNS = {
    "user_id": "user_id",
    "工号": "user_id",
    "date": "day",
    "day": "day",
    "日期": "day",
    "village": "village",
    "村": "village",
    "村(社区)": "village",
    "result": "result",
    "工作成效": "result",
    "工作内容": "result",
    "工作清单": "result",
}


@dataclass(frozen=True)
class Result:
    user_id: str
    day: dt.date
    village: str
    text: str
    entered_by: str
    entered_at: dt.datetime


def file_result(
    engine: Engine, user_id: str, day: dt.date, village: str, text: str, actor: str
) -> Result:
    """File the result of one day, or replace its text (the audit keeps the earlier text)."""
    with write_transaction(engine) as connection:
        return _file(connection, user_id, day, village, text, actor)


def _file(
    connection: Connection, user_id: str, day: dt.date, village: str, text: str, actor: str
) -> Result:
    text = text.strip()
    if not text:
        raise UserError("工作成效不能为空")
    if len(text) > MAX_TEXT:
        raise UserError(f"工作成效不能超过 {MAX_TEXT} 字")
    now = utcnow()
    earlier = connection.execute(
        select(WorkResult).where(WorkResult.user_id == user_id, WorkResult.day == day)
    ).first()
    if earlier is None:
        result_id = connection.execute(
            insert(WorkResult)
            .values(
                user_id=user_id,
                day=day,
                village=village[:200],
                text=text,
                entered_by=actor,
                entered_at=now,
            )
            .returning(WorkResult.id)
        ).scalar_one()
        chains.record(connection, "work_results", [result_id], "file", actor, at=now)
        detail = text
    else:
        # The row keeps who filed it first and when (that decides whether it was in time);
        # the audit trail keeps every later edit.
        connection.execute(update(WorkResult).where(WorkResult.id == earlier.id).values(text=text))
        chains.record(connection, "work_results", [earlier.id], "edit", actor, at=now)
        detail = f"{text}（原为：{earlier.text}）"
    audit(connection, actor, "worklog.file", f"{user_id} {day.isoformat()}", detail)
    if earlier is None:
        return Result(user_id, day, village, text, actor, now)
    return Result(user_id, day, earlier.village, text, earlier.entered_by, earlier.entered_at)


def results_between(
    engine: Engine, start: dt.date, end: dt.date, user_id: str | None = None
) -> list[Result]:
    query = (
        select(WorkResult)
        .where(WorkResult.day >= start, WorkResult.day <= end)
        .order_by(WorkResult.day, WorkResult.user_id)
    )
    if user_id is not None:
        query = query.where(WorkResult.user_id == user_id)
    with engine.connect() as connection:
        return [
            Result(r.user_id, r.day, r.village, r.text, r.entered_by, r.entered_at)
            for r in connection.execute(query)
        ]


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(min_length=1, max_length=24)]
    day: dt.date
    village: Annotated[str, Field(max_length=200)] = ""
    result: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


def import_results(
    engine: Engine, roster: Collection[str], villages: Collection[str], path: Path, actor: str
) -> Sequence[Result]:
    """Every row of a CSV, xlsx or YAML sheet (`user_id, date, village, result`), or none.
    The village, when given, must be one with a configured terminal: a result names where the
    cadre was, and a misspelt village would read as a visit to a place clockd does not know."""
    rows = read_rows(path, WORKLOG_COLUMNS, yaml_list_key="worklog")
    validated = validate_rows(
        path, rows, _Line, {"day": date_cell, "user_id": text_cell}, WORKLOG_COLUMNS
    )
    problems = []
    for row, line in validated:
        if line.user_id not in roster:
            problems.append(f"{row.where}, column user_id: {line.user_id} is not in the roster")
        if line.village and line.village not in villages:
            problems.append(
                f"{row.where}, column village: {line.village!r} is not a configured village"
            )
    if problems:
        raise ConfigError(str(path), problems)
    with write_transaction(engine) as connection:
        return [
            _file(connection, line.user_id, line.day, line.village, line.result, actor)
            for _, line in validated
        ]


def filed_between(
    connection: Connection, start: dt.date, end: dt.date
) -> list[tuple[str, dt.date, dt.datetime]]:
    """(user ID, day, when first filed) of the results for days `start`..`end`."""
    rows = connection.execute(
        select(WorkResult.user_id, WorkResult.day, WorkResult.entered_at).where(
            WorkResult.day >= start, WorkResult.day <= end
        )
    )
    return [(row.user_id, row.day, row.entered_at) for row in rows]
