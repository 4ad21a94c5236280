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

from clockd.errors import ConfigError, InputError, UserError

_DATE_TEXT = re.compile(r"^\s*(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?\s*$")


@dataclass(frozen=True)
class SourceRow:
    """One data row: its cells by canonical column name, and where it sits in the file."""

    where: str  # "row 5" or "entry 3 (line 12)"
    cells: dict[str, Any]


INPUT_LIMIT = 20_000_000  # bytes of one roster or leave file: some 100,000 rows
MAX_ROWS = 100_000
MAX_COLUMNS = 64


def read_rows(path: Path, aliases: Mapping[str, str], yaml_list_key: str) -> list[SourceRow]:
    """Rows of a YAML, CSV or xlsx file, with header names mapped through `aliases`.

    `aliases` maps every accepted header (lower-cased, stripped) to its canonical name; unknown
    headers are errors so that a misspelt column is not silently ignored. Whatever the file
    holds, memory stays bounded: at most `INPUT_LIMIT` bytes are read, a workbook is streamed
    and one that declares more than `MAX_ROWS` rows or `MAX_COLUMNS` columns is refused.
    """
    from clockd.config import read_input_file

    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv", ".xlsx", ".xlsm"):
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a file")
        if not path.exists():
            raise UserError(f"{path}: file not found")
        raise UserError(f"{path}: unsupported file type {suffix!r} (use .yaml, .csv or .xlsx)")
    data = read_input_file(path, INPUT_LIMIT)
    if suffix in (".yaml", ".yml"):
        return _yaml_rows(path, data, aliases, yaml_list_key)
    if suffix == ".csv":
        return _table_rows(path, _csv_table(path, data), aliases)
    return _table_rows(path, _xlsx_table(path, data), aliases)


def _canonical_header(path: Path, header: object, aliases: Mapping[str, str], index: int) -> str:
    """The canonical name of the header cell in column `index` (0 for column A)."""
    name = str(header if header is not None else "").strip()
    key = name.lower()
    if key not in aliases:
        # Imported only here: openpyxl costs every command start-up time otherwise.
        from openpyxl.utils import get_column_letter

        accepted = ", ".join(sorted(set(shown_names(aliases).values())))
        column = get_column_letter(index + 1)
        raise ConfigError(
            str(path), [f"column {column}: unknown column {name!r} (expected {accepted})"]
        )
    return aliases[key]


def _csv_table(path: Path, data: bytes) -> list[list[Any]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        text = data.decode("gb18030", errors="replace")
    try:
        return [row for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        raise ConfigError(str(path), [f"not a CSV table: {exc}"]) from None


def _xlsx_table(path: Path, data: bytes) -> list[list[Any]]:
    """The first sheet's rows, streamed in read-only mode, at most MAX_COLUMNS cells each."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise UserError(f"{path}: cannot read as an xlsx workbook: {_one_line(exc)}") from None
    try:
        sheet = workbook.worksheets[0]
        declared_rows, declared_columns = sheet.max_row or 0, sheet.max_column or 0
        if declared_rows > MAX_ROWS or declared_columns > MAX_COLUMNS:
            from openpyxl.utils import get_column_letter

            corner = f"{get_column_letter(max(declared_columns, 1))}{declared_rows}"
            raise InputError(
                f"{path}: the sheet spans {declared_rows} rows and {declared_columns} columns "
                f"(to {corner}); clockd reads at most {MAX_ROWS} rows and {MAX_COLUMNS} "
                "columns: delete the cells beyond the table"
            )
        table: list[list[Any]] = []
        blank: list[Any] = []  # one shared list for every empty row
        for row in sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True):
            if len(table) >= MAX_ROWS:
                raise InputError(f"{path}: more than {MAX_ROWS} rows")
            values = list(row)
            while values and values[-1] is None:
                values.pop()
            table.append(values or blank)
        return table
    except (InputError, UserError):
        raise
    except Exception as exc:  # a damaged sheet fails while streaming, not at open
        raise UserError(f"{path}: cannot read as an xlsx workbook: {_one_line(exc)}") from None
    finally:
        workbook.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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


def _yaml_rows(
    path: Path, data_bytes: bytes, aliases: Mapping[str, str], list_key: str
) -> list[SourceRow]:
    import yaml

    from clockd.config import read_yaml, utf8_text

    data, root = read_yaml(utf8_text(path, data_bytes), str(path))
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


def shown_names(aliases: Mapping[str, str]) -> dict[str, str]:
    """How messages name each canonical column: by its first accepted header, the one the
    documentation gives (`from` for the canonical `start`)."""
    shown: dict[str, str] = {}
    for header, canonical in aliases.items():
        shown.setdefault(canonical, header)
    return shown


def validate_rows(
    path: Path,
    rows: Iterable[SourceRow],
    model: type[Model],
    converters: Mapping[str, Callable[[object], object]],
    aliases: Mapping[str, str],
) -> list[tuple[SourceRow, Model]]:
    """Validate each row into `model`, collecting every problem as `row N, column C: message`
    (C as `shown_names` gives it)."""
    shown = shown_names(aliases)
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
                problems.append(f"{row.where}, column {shown.get(name, name)}: {exc}")
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
                column = ".".join(shown.get(str(p), str(p)) for p in error["loc"]) or "(row)"
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "missing":
                    message = "a value is required"
                problems.append(f"{row.where}, column {column}: {message}")
    if problems:
        raise ConfigError(str(path), problems)
    return result
