"""Table rows written as rendered XML read back exactly as openpyxl's own cells of them do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from openpyxl import load_workbook

from clockd.reports.xlsx import (
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    PERCENT,
    Column,
    Formatted,
    Line,
    Sheet,
    Stamp,
    Table,
    add_sheet,
    new_workbook,
)

TEXTS = [
    "张三",
    "  leading and trailing  ",
    '=HYPERLINK("http://x","y")',
    "a & b < c > d \"quoted\" 'single'",
    "two\r\nlines\tand a tab",
    "",
    "-12",
    "x" * 60,
    "\x85padded by a next-line\x85",
    "astral \U0001f600 and \x7f",
]
NUMBERS = [None, 1.5, float("nan"), 2.25, 0.1, -3.0, 1e-9, 12345.678, 2**60, 1 / 3, -0.0, 7]
NUMBERS += [float("inf")]
# Characters XML 1.0 cannot hold, which a terminal or a roster file could still send: dropped.
ILLEGAL = ["nul\x00 bell\x07 esc\x1b", "non-characters \ufffe\uffff", "lone \ud800 surrogate"]


def write(path: Path, number: type) -> None:
    """One table of awkward values; `number` makes its numbers (a numpy type is written
    through openpyxl's cells, a Python one as rendered XML)."""
    count = len(TEXTS) + len(ILLEGAL)
    columns = [
        Column("文本", TEXTS + ILLEGAL),
        Column("整数", [number(n * 7 - 3) for n in range(count)], INTEGER),
        Column("小数", NUMBERS, DECIMAL),
        Column("日期", [dt.date(2026, 11, 1 + n) for n in range(count)], DATE),
        Column("时间", [dt.datetime(2026, 11, 16, 8, n, 30) for n in range(count)], DATETIME),
        Column(
            "数值",
            [Formatted(0.25 * n, PERCENT) if n % 2 else "—" for n in range(count)],
            INTEGER,
        ),
    ]
    sheet = Sheet(
        "表",
        [Line("标题", "title")],
        [
            Table(
                columns, [n % 3 == 0 for n in range(count)], totals=["合计", 1, 2.5, None, None, 3]
            )
        ],
    )
    stamp = Stamp("clockd test", dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    book = new_workbook(stamp, "测试")
    add_sheet(book, sheet)
    book.workbook.save(path)


def cells(path: Path) -> list[tuple[object, ...]]:
    sheet = load_workbook(path)["表"]
    return [
        (
            cell.coordinate,
            cell.value,
            cell.data_type,
            cell.number_format,
            cell.quotePrefix,
            cell.fill.fgColor.rgb,
            cell.font.name,
            cell.font.b,
            cell.border.left.style,
            cell.alignment.horizontal,
            cell.alignment.wrap_text,
            sheet.row_dimensions[cell.row or 0].height,
        )
        for row in sheet.iter_rows()
        for cell in row
    ]


def test_rendered_rows_read_back_as_openpyxl_cells(tmp_path: Path) -> None:
    write(tmp_path / "rendered.xlsx", int)
    write(tmp_path / "cells.xlsx", np.int64)
    rendered = cells(tmp_path / "rendered.xlsx")
    assert rendered == cells(tmp_path / "cells.xlsx")
    values = [value for _, value, *_ in rendered]
    assert all(text in values for text in TEXTS if text)
    assert [
        value
        for value in values
        if isinstance(value, str) and value.startswith(("nul", "non-", "lone"))
    ] == ["nul bell esc", "non-characters ", "lone  surrogate"]
