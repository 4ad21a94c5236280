"""A small township for report, USB and leave tests: config, roster, a database, and helpers
that store punches the way a poll does (`ingest.store_collection`) and read workbooks back."""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import Engine

from clockd.config import Settings, load_settings
from clockd.domain import Cadre, Punch
from clockd.ingest.poll import Collection, Stored, store_collection
from clockd.roster import load_roster
from clockd.store import db
from clockd.store.models import Outcome, Source

CONFIG = """\
township: 测试镇
database_url: "{url}"
roster: roster.csv
reports_dir: "{reports}"
terminals:
  - id: t01
    village: 东村
    host: 127.0.0.1
    port: 4371
    serial: SN001
    installed: {installed}
  - id: t02
    village: 西村
    host: 127.0.0.1
    port: 4372
    serial: SN002
    installed: {installed}
  - id: t03
    village: 南村
    host: 127.0.0.1
    port: 4373
    serial: SN003
    installed: {installed}
"""
ROSTER = """\
user_id,name,role,village,active_from
1001,张三,机关干部,,
1002,李四,驻村干部,东村,
1003,王五,机关干部,,2026-11-18
1004,"=HYPERLINK(""http://x"",""y"")",机关干部,,
"""
AFTER_W47 = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai


@dataclass
class Site:
    folder: Path
    settings: Settings
    cadres: list[Cadre]
    engine: Engine

    def store(
        self,
        terminal_id: str,
        punches: Iterable[tuple[str, str]],
        *,
        started: dt.datetime = AFTER_W47,
        serial: str | None = None,
        now_local: dt.datetime = dt.datetime(2026, 12, 31),
        source: Source = Source.POLL,
    ) -> Stored:
        """Store (user ID, 'YYYY-MM-DD HH:MM') punches as one collection of a terminal."""
        terminal = self.settings.terminal(terminal_id)
        reported = serial or terminal.serial
        collection = Collection(
            terminal=terminal,
            serial=reported,
            source=source,
            punches=[
                Punch(reported, user_id, dt.datetime.fromisoformat(when), 1, 0)
                for user_id, when in punches
            ],
            started_at=started,
        )
        with db.write_transaction(self.engine) as connection:
            return store_collection(
                connection,
                collection,
                now_local=now_local,
                future_tolerance=dt.timedelta(minutes=10),
                outcome=Outcome.OK if reported == terminal.serial else Outcome.MISMATCH,
            )

    def poll_all(self, started: dt.datetime = AFTER_W47) -> None:
        for terminal in self.settings.terminals:
            self.store(terminal.id, [], started=started)


def make_site(
    folder: Path, database_url: str, *, roster: str = ROSTER, installed: str = "2025-01-01"
) -> Site:
    (folder / "devices.yaml").write_text(
        CONFIG.format(url=database_url, reports=folder / "reports", installed=installed),
        encoding="utf-8",
    )
    (folder / "roster.csv").write_text(roster, encoding="utf-8")
    settings = load_settings(folder / "devices.yaml", environ={})
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    return Site(folder, settings, load_roster(settings.roster_path), engine)


def open_workbook(path: Path) -> Workbook:
    return load_workbook(path)


def header_row(sheet: Worksheet, first: str) -> int:
    """The table's header row: the first row whose first cell is `first` (docs/reports.md)."""
    for row in sheet.iter_rows(min_col=1, max_col=1):
        if row[0].value == first:
            return int(row[0].row)
    raise AssertionError(f"no header row starting {first!r} in {sheet.title}")


def table(sheet: Worksheet, first: str) -> list[dict[str, Any]]:
    """The table under the header row, as dicts, up to the first blank row."""
    top = header_row(sheet, first)
    headers = [str(cell.value) for cell in sheet[top] if cell.value is not None]
    rows: list[dict[str, Any]] = []
    for cells in sheet.iter_rows(min_row=top + 1, max_col=len(headers)):
        values = [cell.value for cell in cells]
        if all(value is None for value in values):
            break
        rows.append(dict(zip(headers, values, strict=True)))
    return rows


def title_text(sheet: Worksheet, first: str) -> str:
    top = header_row(sheet, first)
    return "\n".join(str(sheet.cell(row, 1).value or "") for row in range(1, top))


def has_formulas(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(
            b"<f>" in archive.read(name) or b"<f " in archive.read(name)
            for name in archive.namelist()
            if name.startswith("xl/worksheets/")
        )
