"""Reading HR's tables (YAML, CSV, xlsx) into rows that remember where they came from.

The roster and the leave sheet arrive as whatever HR keeps: a CSV saved by Excel (often GBK), an
xlsx workbook, or YAML. Every row carries its file position so an error can name file, row and
column.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from clockd.errors import ConfigError, UserError

_DATE_TEXT = re.compile(r"^\s*(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?\s*$")


@dataclass(frozen=True)
class SourceRow:
    """One data row: its cells by canonical column name, and where it sits in the file."""

    where: str  # "row 5" or "entry 3 (line 12)"
    cells: dict[str, Any]


def read_rows(path: Path, aliases: Mapping[str, str], yaml_list_key: str) -> list[SourceRow]:
    """Rows of a YAML, CSV or xlsx file, with header names mapped through `aliases`.

    `aliases` maps every accepted header (lower-cased, stripped) to its canonical name; unknown
    headers are errors so that a misspelt column is not silently ignored.
    """
    suffix = path.suffix.lower()
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if suffix in (".yaml", ".yml"):
        return _yaml_rows(path, aliases, yaml_list_key)
    if suffix == ".csv":
        return _table_rows(path, _csv_table(path), aliases)
    if suffix in (".xlsx", ".xlsm"):
        return _table_rows(path, _xlsx_table(path), aliases)
    raise UserError(f"{path}: unsupported file type {suffix!r} (use .yaml, .csv or .xlsx)")


def _canonical_header(path: Path, header: object, aliases: Mapping[str, str], index: int) -> str:
    """The canonical name of the header cell in column `index` (0 for column A)."""
    name = str(header if header is not None else "").strip()
    key = name.lower()
    if key not in aliases:
        # Imported only here: openpyxl costs every command start-up time otherwise.
        from openpyxl.utils import get_column_letter

        accepted = ", ".join(sorted(set(aliases.values())))
        column = get_column_letter(index + 1)
        raise ConfigError(
            str(path), [f"column {column}: unknown column {name!r} (expected {accepted})"]
        )
    return aliases[key]


def _csv_table(path: Path) -> list[list[Any]]:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise UserError(f"{path}: cannot decode as UTF-8 or GBK")
    return [row for row in csv.reader(io.StringIO(text, newline=""))]


def _xlsx_table(path: Path) -> list[list[Any]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise UserError(f"{path}: cannot read as an xlsx workbook: {exc}") from None
    try:
        sheet = workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _table_rows(path: Path, table: list[list[Any]], aliases: Mapping[str, str]) -> list[SourceRow]:
    rows = [
        (number, row) for number, row in enumerate(table, start=1) if not all(map(_is_blank, row))
    ]
    if not rows:
        raise ConfigError(str(path), ["the file is empty (a header row is required)"])
    header_number, header = rows[0]
    while header and _is_blank(header[-1]):
        header = header[:-1]
    names = [_canonical_header(path, cell, aliases, index) for index, cell in enumerate(header)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(
            str(path), [f"row {header_number}: column {d} appears twice" for d in duplicates]
        )
    result = []
    for number, row in rows[1:]:
        cells = {
            name: (row[index] if index < len(row) else None) for index, name in enumerate(names)
        }
        result.append(SourceRow(f"row {number}", cells))
    return result


def _yaml_rows(path: Path, aliases: Mapping[str, str], list_key: str) -> list[SourceRow]:
    import yaml

    from clockd.config import read_yaml

    try:
        data, root = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(str(path), [f"{where}not valid YAML"]) from None
    nodes: list[Any] = []
    if isinstance(data, dict) and list_key in data:
        data = data[list_key]
        if isinstance(root, yaml.MappingNode):
            nodes = [v for k, v in root.value if k.value == list_key]
            root = nodes[0] if nodes else None
    if not isinstance(data, list):
        raise ConfigError(str(path), [f"expected a list of entries (or a `{list_key}:` list)"])
    items = root.value if isinstance(root, yaml.SequenceNode) else [None] * len(data)
    result = []
    problems = []
    for index, (item, node) in enumerate(zip(data, items, strict=False), start=1):
        line = f" (line {node.start_mark.line + 1})" if node is not None else ""
        where = f"entry {index}{line}"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping of column: value")
            continue
        cells: dict[str, Any] = {}
        for key, value in item.items():
            canonical = aliases.get(str(key).strip().lower())
            if canonical is None:
                problems.append(f"{where}: unknown column {key!r}")
            else:
                cells[canonical] = value
        result.append(SourceRow(where, cells))
    if problems:
        raise ConfigError(str(path), problems)
    return result


def text_cell(value: object) -> str | None:
    """A cell as text: numbers from Excel lose a spurious `.0` (1001.0 is PIN 1001)."""
    if _is_blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def date_cell(value: object) -> dt.date | None:
    """A cell as a date: Excel dates, ISO text, or 2026/11/18 and 2026年11月18日."""
    if _is_blank(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    match = _DATE_TEXT.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a date (use YYYY-MM-DD)")
    year, month, day = map(int, match.groups())
    return dt.date(year, month, day)


Model = TypeVar("Model", bound=BaseModel)


def validate_rows(
    path: Path,
    rows: Iterable[SourceRow],
    model: type[Model],
    converters: Mapping[str, Callable[[object], object]],
) -> list[tuple[SourceRow, Model]]:
    """Validate each row into `model`, collecting every problem as `row N, column C: message`."""
    problems: list[str] = []
    result: list[tuple[SourceRow, Model]] = []
    for row in rows:
        values: dict[str, object] = {}
        row_ok = True
        for name, raw in row.cells.items():
            convert = converters.get(name, text_cell)
            try:
                value = convert(raw)
            except ValueError as exc:
                problems.append(f"{row.where}, column {name}: {exc}")
                row_ok = False
                continue
            if value is not None:  # a blank cell is an absent value: default, or "required"
                values[name] = value
        if not row_ok:
            continue
        try:
            result.append((row, model.model_validate(values)))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                column = ".".join(str(p) for p in error["loc"]) or "(row)"
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "missing":
                    message = "a value is required"
                problems.append(f"{row.where}, column {column}: {message}")
    if problems:
        raise ConfigError(str(path), problems)
    return result
