"""Writing the report workbooks: typed cells, formula-safe text, a fixed layout, atomic saves.

Every sheet is a title block followed by tables (SPEC §5). The main table's header row is
frozen, filtered and repeated on every printed page; columns are fitted to their widest value
(Chinese characters count double); failed rows are filled light red. Workbooks are streamed
(openpyxl write-only), so a district's sheets cost little memory; that is why column widths are
computed from the data before the first row is written.

Text from devices, the roster or users could start with `=`, `+`, `-` or `@`; such a cell is
stored as a plain string with Excel's quote prefix, so Excel neither evaluates it on opening nor
when someone edits the cell.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.packaging.core import DocumentProperties
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.xml.functions import fromstring

from clockd.textui import display_width

# Number formats.
INTEGER = "0"
DECIMAL = "0.00"
PERCENT = "0.0%"
DATE = "yyyy-mm-dd"
DATETIME = "yyyy-mm-dd hh:mm:ss"
MINUTES = "yyyy-mm-dd hh:mm"

RISKY_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
MAX_TEXT = 32_767  # Excel's limit for one cell
FAILED_FILL = PatternFill("solid", fgColor="FFC7CE")
_HEADER_FILL = PatternFill("solid", fgColor="D9E1F2")
_BANNER_FILL = PatternFill("solid", fgColor="FFF2CC")
_FONTS = {
    "title": Font(bold=True, size=14),
    "text": Font(),
    "banner": Font(bold=True, color="C00000"),
    "note": Font(italic=True, color="595959"),
    "header": Font(bold=True),
}
_WIDTH_BY_FORMAT = {DATE: 12.0, DATETIME: 20.0, MINUTES: 17.0, PERCENT: 9.0}
_MIN_WIDTH, _MAX_WIDTH = 6.0, 60.0

LineStyle = Literal["title", "text", "banner", "note"]


def safe_text(value: str) -> str:
    """Text Excel can hold: no XML-illegal control characters, at most 32,767 characters."""
    return ILLEGAL_CHARACTERS_RE.sub("", value)[:MAX_TEXT]


def is_risky(text: str) -> bool:
    """Whether Excel (or a CSV export of the sheet) could read the text as a formula."""
    return text.startswith(RISKY_PREFIXES)


@dataclass(frozen=True)
class Line:
    """One row of a title block: a single cell in column A that overflows to the right."""

    text: str
    style: LineStyle = "text"


@dataclass(frozen=True)
class Formatted:
    """A value with its own number format, for a column whose rows differ (指标 | 数值)."""

    value: object
    number_format: str


@dataclass(frozen=True)
class Column:
    """A table column: its header, its values top to bottom, and an Excel number format."""

    header: str
    values: Sequence[object]
    number_format: str | None = None


@dataclass(frozen=True)
class Table:
    """Rows without blanks under one header row; `failed` marks rows to fill light red."""

    columns: Sequence[Column]
    failed: Sequence[bool] | None = None

    @property
    def height(self) -> int:
        return len(self.columns[0].values) if self.columns else 0


@dataclass(frozen=True)
class Sheet:
    """A title block, then tables separated by one blank row. The first is the main table."""

    name: str
    title: Sequence[Line]
    tables: Sequence[Table]


@dataclass(frozen=True)
class Placement:
    """Where a table landed: 1-based rows of its header and of its last data row."""

    header_row: int
    last_row: int


@dataclass(frozen=True)
class Stamp:
    """What a report file says about itself in its document properties."""

    identifier: str  # e.g. clockd weekly 2026-W47 r1
    generated_at: dt.datetime  # aware, UTC


@dataclass
class _Styles:
    """Style arrays by (font, fill, number format, quote prefix), built once per workbook."""

    workbook: Workbook
    sheet: WriteOnlyWorksheet
    cache: dict[tuple[str, str | None, str | None, bool], StyleArray] = field(default_factory=dict)

    def array(
        self, font: str, fill: PatternFill | None, number_format: str | None, quote: bool
    ) -> StyleArray:
        fill_key = None if fill is None else str(fill.fgColor.rgb)
        key = (font, fill_key, number_format, quote)
        if key not in self.cache:
            template = Cell(self.sheet, row=1, column=1)
            template.font = _FONTS[font]
            if fill is not None:
                template.fill = fill
            if number_format is not None:
                template.number_format = number_format
            if font == "header":
                template.alignment = Alignment(horizontal="center", vertical="center")
            template.quotePrefix = quote
            # The finished style array is copied into each cell: setting font, fill and format
            # on every one of a district's million cells would dominate the write.
            self.cache[key] = StyleArray(template._style)  # type: ignore[attr-defined]
        return self.cache[key]


def new_workbook(stamp: Stamp, title: str) -> Workbook:
    """A streaming workbook whose document properties identify the report and its revision."""
    workbook = Workbook(write_only=True)
    naive_utc = stamp.generated_at.astimezone(dt.UTC).replace(tzinfo=None)
    workbook.properties = DocumentProperties(
        creator="clockd",
        lastModifiedBy="clockd",
        title=title,
        identifier=stamp.identifier,
        created=naive_utc,
        modified=naive_utc,
    )
    return workbook


@dataclass(frozen=True)
class Written:
    """A streamed sheet (typed by the settings it shares with a worksheet) and its tables."""

    worksheet: Worksheet
    placements: list[Placement]


def add_sheet(workbook: Workbook, sheet: Sheet) -> Written:
    """Write one sheet: title block, tables, frozen and filtered header, print set-up."""
    worksheet = workbook.create_sheet(sheet.name)
    assert isinstance(worksheet, WriteOnlyWorksheet)
    placements = _placements(sheet)
    layout = _layout(worksheet)
    # A streamed sheet writes its head (widths, panes, page properties) with the first row.
    for index, width in enumerate(_widths(sheet.tables), start=1):
        layout.column_dimensions[get_column_letter(index)].width = width
    if placements:
        _set_up_page(layout, placements[0], len(sheet.tables[0].columns))

    styles = _Styles(workbook, worksheet)
    for line in sheet.title:
        fill = _BANNER_FILL if line.style == "banner" else None
        worksheet.append([_text_cell(worksheet, styles, line.text, line.style, fill)])
    header_style = styles.array("header", _HEADER_FILL, None, False)
    for number, table in enumerate(sheet.tables):
        if number or sheet.title:
            worksheet.append([])
        worksheet.append(
            [_styled(worksheet, safe_text(c.header), header_style) for c in table.columns]
        )
        _write_rows(worksheet, styles, table)
    return Written(layout, placements)


def _placements(sheet: Sheet) -> list[Placement]:
    """Where each table will land: below the title block and a blank row, one blank between."""
    placements = []
    row = len(sheet.title)
    for number, table in enumerate(sheet.tables):
        if number or sheet.title:
            row += 1
        header_row = row + 1
        row = header_row + table.height
        placements.append(Placement(header_row, row))
    return placements


def _layout(worksheet: WriteOnlyWorksheet) -> Worksheet:
    """The streaming sheet's layout settings, which it shares with an ordinary worksheet
    (openpyxl copies them over; its type stubs do not say so)."""
    return cast(Worksheet, worksheet)


def _write_rows(worksheet: WriteOnlyWorksheet, styles: _Styles, table: Table) -> None:
    formats = [column.number_format for column in table.columns]
    failed = table.failed
    plain = [None if fmt is None else styles.array("text", None, fmt, False) for fmt in formats]
    red = [styles.array("text", FAILED_FILL, fmt, False) for fmt in formats]
    for index, values in enumerate(zip(*(column.values for column in table.columns), strict=True)):
        fill = failed is not None and bool(failed[index])
        arrays = red if fill else plain
        cells: list[object] = []
        for position, value in enumerate(values):
            if isinstance(value, str):
                cells.append(
                    _text_cell(worksheet, styles, value, "text", FAILED_FILL if fill else None)
                )
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append(_styled(worksheet, None, red[position]) if fill else None)
            elif isinstance(value, Formatted):
                own = styles.array(
                    "text", FAILED_FILL if fill else None, value.number_format, False
                )
                cells.append(_styled(worksheet, value.value, own))
            else:
                array = arrays[position]
                cells.append(value if array is None else _styled(worksheet, value, array))
        worksheet.append(cells)


def _styled(worksheet: WriteOnlyWorksheet, value: object, array: StyleArray) -> Cell:
    return Cell(worksheet, row=1, column=1, value=cast(Any, value), style_array=array)


def _text_cell(
    worksheet: WriteOnlyWorksheet,
    styles: _Styles,
    value: str,
    font: str,
    fill: PatternFill | None,
) -> object:
    """A string cell that Excel will never evaluate, whatever the text starts with."""
    text = safe_text(value)
    risky = is_risky(text)
    if not risky and fill is None and font == "text":
        return text
    cell = _styled(worksheet, text, styles.array(font, fill, None, risky))
    cell.data_type = "s"  # openpyxl would store "=..." as a formula otherwise
    return cell


def _widths(tables: Sequence[Table]) -> list[float]:
    count = max((len(table.columns) for table in tables), default=0)
    widths = [_MIN_WIDTH] * count
    for table in tables:
        for index, column in enumerate(table.columns):
            widths[index] = max(widths[index], _column_width(column))
    return widths


def _column_width(column: Column) -> float:
    width = float(display_width(column.header))
    if column.number_format in _WIDTH_BY_FORMAT:
        width = max(width, _WIDTH_BY_FORMAT[column.number_format])
    else:
        for value in set(column.values):
            if value is None:
                continue
            if isinstance(value, Formatted):
                value = value.value
            if isinstance(value, float):
                text = f"{value:.2f}"
            else:
                text = value if isinstance(value, str) else str(value)
            width = max(width, float(display_width(text)))
    return min(max(width + 2, _MIN_WIDTH), _MAX_WIDTH)


def _set_up_page(worksheet: Worksheet, main: Placement, columns: int) -> None:
    """Frozen, filtered header; A4 landscape, one page wide, header repeated on each page."""
    last_column = get_column_letter(max(columns, 1))
    worksheet.freeze_panes = f"A{main.header_row + 1}"
    worksheet.auto_filter.ref = (
        f"A{main.header_row}:{last_column}{max(main.last_row, main.header_row)}"
    )
    worksheet.print_title_rows = f"{main.header_row}:{main.header_row}"
    worksheet.page_setup.orientation = "landscape"
    worksheet.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    worksheet.page_setup.fitToWidth = 1
    worksheet.page_setup.fitToHeight = 0
    worksheet.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)


def save_atomically(
    workbook: Workbook, path: Path, before_replace: Callable[[], None] | None = None
) -> None:
    """Save so that `path` holds either the old file or the complete new one, never a part.

    The workbook goes to a temporary file in the same folder and is flushed to disk; then
    `before_replace` runs (e.g. to keep the old file in history) and the temporary file is
    renamed over `path`. On any failure the temporary file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            workbook.save(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())  # as any file the process creates
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


ABANDONED_AFTER_SECONDS = 600


def current_umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: the only portable way, briefly
    os.umask(mask)
    return mask


def discard_workbook(workbook: Workbook) -> None:
    """Close a streaming workbook that will not be saved.

    Left to the garbage collector, its sheet writers (generators inside lxml's incremental
    writer) are closed in no particular order and print "Exception ignored" tracebacks; closed
    inner first they end cleanly, and their temporary files are removed.
    """
    for sheet in workbook.worksheets:
        rows = getattr(sheet, "_rows", None)  # openpyxl 3.1 internals; absent ones skipped
        writer = getattr(sheet, "_writer", None)
        with contextlib.suppress(Exception):
            if rows is not None:
                rows.close()
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
            out = getattr(writer, "out", None)
            if isinstance(out, str):
                with contextlib.suppress(OSError):
                    os.remove(out)


def _remove_abandoned(path: Path) -> None:
    """Delete temporary files a killed process left for this workbook (old enough that no
    live writer can still own them)."""
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def _sync_folder(folder: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where unsupported)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def read_stamp(path: Path) -> Stamp | None:
    """The identifier and generation time a report file was saved with; None if unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            tree = fromstring(archive.read("docProps/core.xml"))
        properties = DocumentProperties.from_tree(tree)  # type: ignore[arg-type]
    except (OSError, KeyError, zipfile.BadZipFile, ValueError, TypeError, SyntaxError):
        return None
    if properties is None or properties.identifier is None or properties.created is None:
        return None
    created = properties.created
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return Stamp(properties.identifier, created.astimezone(dt.UTC))
