"""Writing the report workbooks: typed cells, formula-safe text, a print-ready layout, atomic saves.

Every sheet is a title block followed by tables (see docs/reports.md). The main table's header
row is frozen, filtered and repeated on every printed page; columns are fitted to their widest
value (Chinese characters count double); failed rows are filled light red. Every cell uses one
named font family (Chinese and digits alike), tables have thin borders, numbers are right-
aligned with an indent so they never touch the next column, and each sheet prints on A4 with
a page header (title and period), a footer with page numbers, and the orientation and scale
that fit its width. The title block's technical lines (generation time, revision) sit above
the print area: the page footer carries the generation time instead. Workbooks are streamed
(openpyxl write-only), so a district's sheets cost little memory; that is why column widths are
computed from the data before the first row is written.

Text from devices, the roster or users could start with `=`, `+`, `-` or `@`; such a cell is
stored as a plain string with Excel's quote prefix, so Excel neither evaluates it on opening nor
when someone edits the cell.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from openpyxl import Workbook
from openpyxl.cell.cell import Cell, WriteOnlyCell
from openpyxl.compat import safe_string
from openpyxl.packaging.core import DocumentProperties
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel
from openpyxl.utils.indexed_list import IndexedList
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet._writer import WorksheetWriter
from openpyxl.worksheet.cell_range import CellRange
from openpyxl.worksheet.properties import PageSetupProperties
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter
from openpyxl.xml.constants import SHEET_MAIN_NS
from openpyxl.xml.functions import fromstring, xmlfile

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
_TOTALS_FILL = PatternFill("solid", fgColor="EDEDED")
# 微软雅黑 (Microsoft YaHei) is on every Chinese Windows, where WPS uses it too: one sans face
# for Chinese and digits. Where it is missing (LibreOffice on Linux) the GB2312 charset (134)
# and the sans family class make the office substitute a Chinese sans face, not a Japanese or
# a serif one. `report.font` in devices.yaml names another (e.g. 宋体).
DEFAULT_FONT = "微软雅黑"
_GB2312 = 134
_SWISS = 2  # sans-serif family class, the hint used when the named face is absent
_FONT_SPECS: dict[str, dict[str, Any]] = {
    "title": {"bold": True, "size": 14},
    "summary": {"bold": True, "size": 11},
    "text": {"size": 10},
    "banner": {"bold": True, "color": "C00000", "size": 10},
    "note": {"color": "595959", "size": 9},
    "header": {"bold": True, "size": 10},
    "totals": {"bold": True, "size": 10},
    "technical": {"color": "808080", "size": 8},
}
_THIN = Side(style="thin", color="808080")
BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_WIDTH_BY_FORMAT = {DATE: 12.0, DATETIME: 20.0, MINUTES: 17.0, PERCENT: 9.0}
_MIN_WIDTH, _MAX_WIDTH = 6.0, 48.0
# Width units (about one digit each) that fit across A4 at 100 % within the margins below.
_PORTRAIT_UNITS, _LANDSCAPE_UNITS = 100.0, 150.0
# A table this short is scaled to print on one page; a longer one runs on, header repeated.
ONE_PAGE_ROWS = 70

LineStyle = Literal["title", "summary", "text", "banner", "note", "technical"]


def font(name: str, style: str) -> Font:
    """A style's font in the workbook's one family."""
    return Font(name=name, charset=_GB2312, family=_SWISS, **_FONT_SPECS[style])


# What XML 1.0 cannot hold: control characters but tab, line feed and carriage return (all
# openpyxl removes), lone surrogates and the non-characters U+FFFE and U+FFFF.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def safe_text(value: str) -> str:
    """Text Excel can hold: no XML-illegal characters, at most 32,767 characters."""
    return _XML_ILLEGAL.sub("", value)[:MAX_TEXT]


def is_risky(text: str) -> bool:
    """Whether Excel (or a CSV export of the sheet) could read the text as a formula."""
    return text.startswith(RISKY_PREFIXES)


@dataclass(frozen=True)
class Line:
    """One row of a title block: a single cell in column A that overflows to the right.

    Technical lines (style "technical") come first and stay outside the print area."""

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
    """Rows without blanks under one header row; `failed` marks rows to fill light red.

    `empty` is the sentence written under the header when there are no rows (本周无异常);
    `totals` is a bold 合计 row written after one blank row, so that a program reading the
    table up to its first blank row never takes it for a cadre.
    """

    columns: Sequence[Column]
    failed: Sequence[bool] | None = None
    empty: str | None = None
    totals: Sequence[object] | None = None

    @property
    def height(self) -> int:
        return len(self.columns[0].values) if self.columns else 0


@dataclass(frozen=True)
class Sheet:
    """A title block, then tables separated by one blank row. The first is the main table.

    `page_header` is printed at the top of every page (the title and period), `page_footer`
    at the bottom left (the generation time) beside the page numbers.
    """

    name: str
    title: Sequence[Line]
    tables: Sequence[Table]
    page_header: str = ""
    page_footer: str = ""
    extra_rows: int = 0  # rows below the tables that print too (a chart placed there)


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
    """Style arrays by (font style, fill, number format, quote prefix, border, alignment),
    built once per sheet."""

    font_name: str
    sheet: WriteOnlyWorksheet
    cache: dict[tuple[str, str | None, str | None, bool, bool, str], StyleArray] = field(
        default_factory=dict
    )

    def array(
        self,
        style: str,
        fill: PatternFill | None,
        number_format: str | None,
        quote: bool,
        *,
        bordered: bool = False,
        align: str = "",
    ) -> StyleArray:
        fill_key = None if fill is None else str(fill.fgColor.rgb)
        key = (style, fill_key, number_format, quote, bordered, align)
        if key not in self.cache:
            template = Cell(self.sheet, row=1, column=1)
            template.font = font(self.font_name, style)
            if fill is not None:
                template.fill = fill
            if number_format is not None:
                template.number_format = number_format
            if bordered:
                template.border = BORDER
            if align:
                template.alignment = _ALIGNMENTS[align]
            template.quotePrefix = quote
            # The finished style array is copied into each cell: setting font, fill and format
            # on every one of a district's million cells would dominate the write.
            self.cache[key] = StyleArray(template._style)  # type: ignore[attr-defined]
        return self.cache[key]


_ALIGNMENTS = {
    "header": Alignment(horizontal="center", vertical="center", wrap_text=True),
    "number": Alignment(horizontal="right", vertical="center", indent=1),
    "center": Alignment(horizontal="center", vertical="center"),
    "text": Alignment(horizontal="left", vertical="center"),
    "wrap": Alignment(horizontal="left", vertical="center", wrap_text=True),
    "title": Alignment(horizontal="left", vertical="top", wrap_text=True),
}


@dataclass(frozen=True)
class Book:
    """A workbook being written and the one font family all its cells use."""

    workbook: Workbook
    font_name: str = DEFAULT_FONT


def new_workbook(stamp: Stamp, title: str, font_name: str = DEFAULT_FONT) -> Book:
    """A streaming workbook whose document properties identify the report and its revision,
    in one font family: the Normal style (empty cells, and the unit column widths are counted
    in) takes the report's face instead of openpyxl's Calibri."""
    workbook = Workbook(write_only=True)
    normal = font(font_name, "text")
    # openpyxl offers no way to set the default font: its first font entry is the default.
    workbook._fonts = IndexedList([normal])  # type: ignore[attr-defined]
    workbook._named_styles["Normal"].font = normal  # type: ignore[attr-defined]
    naive_utc = stamp.generated_at.astimezone(dt.UTC).replace(tzinfo=None)
    workbook.properties = DocumentProperties(
        creator="clockd",
        lastModifiedBy="clockd",
        title=title,
        identifier=stamp.identifier,
        created=naive_utc,
        modified=naive_utc,
    )
    return Book(workbook, font_name)


@dataclass(frozen=True)
class Written:
    """A streamed sheet (typed by the settings it shares with a worksheet) and its tables."""

    worksheet: Worksheet
    placements: list[Placement]


def add_sheet(book: Book, sheet: Sheet) -> Written:
    """Write one sheet: title block, tables, frozen and filtered header, print set-up."""
    worksheet = book.workbook.create_sheet(sheet.name)
    assert isinstance(worksheet, WriteOnlyWorksheet)
    worksheet._values_to_row = _cells_in_place(worksheet)  # type: ignore[attr-defined]
    placements = _placements(sheet)
    layout = _layout(worksheet)
    # A streamed sheet writes its head (widths, panes, page properties) with the first row.
    widths = _widths(sheet.tables)
    for index, width in enumerate(widths, start=1):
        layout.column_dimensions[get_column_letter(index)].width = width
    if placements:
        _set_up_page(layout, sheet, placements, widths, book.font_name)
    _set_heights(layout, sheet, placements, widths)

    _start_writer(worksheet)
    styles = _Styles(book.font_name, worksheet)
    last = get_column_letter(max(len(widths), 1))
    for row, line in enumerate(sheet.title, start=1):
        fill = _BANNER_FILL if line.style == "banner" else None
        if len(widths) > 1:
            # Across the table's width, wrapped: a long banner stays on the printed page.
            layout.merged_cells.add(CellRange(f"A{row}:{last}{row}"))
        text = safe_text(line.text)
        array = styles.array(line.style, fill, None, is_risky(text), align="title")
        cell = _styled(worksheet, text, array)
        cell.data_type = "s"
        worksheet.append([cell])
    header_style = styles.array("header", _HEADER_FILL, None, False, bordered=True, align="header")
    for number, table in enumerate(sheet.tables):
        if number or sheet.title:
            worksheet.append([])
        worksheet.append(
            [_styled(worksheet, safe_text(c.header), header_style) for c in table.columns]
        )
        _write_rows(worksheet, styles, table, widths)
        if table.height == 0 and table.empty:
            worksheet.append([])
            worksheet.append([_text_cell(worksheet, styles, table.empty, "summary", None)])
        if table.totals is not None:
            worksheet.append([])
            worksheet.append(_totals_cells(worksheet, styles, table))
    return Written(layout, placements)


def _cells_in_place(
    worksheet: WriteOnlyWorksheet,
) -> Callable[[Sequence[object], int], Iterator[Cell] | _RenderedRow]:
    """A streamed sheet's row of cells, placed as given. openpyxl 3.1's own version tries
    each cell as a value first, catches the error and makes a spare cell: for the styled
    cells written here, a third of a district workbook's time. A plain value still becomes
    a cell of its own."""

    def values_to_row(values: Sequence[object], row_index: int) -> Iterator[Cell] | _RenderedRow:
        if isinstance(values, _RenderedRow):
            return values
        return placed(values, row_index)

    def placed(values: Sequence[object], row_index: int) -> Iterator[Cell]:
        for column, value in enumerate(values, start=1):
            if value is None:
                continue
            cell = value if isinstance(value, Cell) else WriteOnlyCell(worksheet, cast(Any, value))
            cell.column = column
            cell.row = row_index
            yield cell

    return values_to_row


_LINE_POINTS = {"title": 22.0, "summary": 17.0, "banner": 16.0}


def _lines(text: str, width: float, scale: float = 1.0) -> int:
    """How many lines `text` takes wrapped in a column `width` units wide."""
    return max(1, math.ceil(display_width(text) * scale / max(width - 1.5, 1.0)))


def _set_heights(
    worksheet: Worksheet, sheet: Sheet, placements: Sequence[Placement], widths: Sequence[float]
) -> None:
    """Row heights for text that wraps, which a viewer does not always fit by itself: title
    lines across the table, header rows, and rows with long text in a capped column."""
    total = sum(widths) if widths else _MAX_WIDTH
    for row, line in enumerate(sheet.title, start=1):
        size = float(_FONT_SPECS[line.style]["size"])
        lines = _lines(line.text, total, size / 10)
        if lines > 1 or line.style in _LINE_POINTS:
            base = _LINE_POINTS.get(line.style, size * 1.45)
            worksheet.row_dimensions[row].height = round(base + (lines - 1) * size * 1.35, 1)
    for table, placement in zip(sheet.tables, placements, strict=True):
        lines = max((_lines(c.header, widths[i]) for i, c in enumerate(table.columns)), default=1)
        if lines > 1:
            worksheet.row_dimensions[placement.header_row].height = 13.5 * lines + 3
        capped = [i for i, c in enumerate(table.columns) if widths[i] >= _MAX_WIDTH]
        for index in capped:
            for offset, value in enumerate(table.columns[index].values):
                if isinstance(value, str) and display_width(value) > widths[index] - 1.5:
                    row = placement.header_row + 1 + offset
                    height = 13.5 * _lines(value, widths[index]) + 2
                    current = worksheet.row_dimensions[row].height or 0
                    worksheet.row_dimensions[row].height = max(current, height)


def _totals_cells(worksheet: WriteOnlyWorksheet, styles: _Styles, table: Table) -> list[object]:
    assert table.totals is not None
    cells: list[object] = []
    for column, value in zip(table.columns, table.totals, strict=True):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        fmt = column.number_format if numeric else None
        array = styles.array(
            "totals", _TOTALS_FILL, fmt, False, bordered=True, align="number" if numeric else "text"
        )
        cells.append(
            _styled(worksheet, safe_text(value) if isinstance(value, str) else value, array)
        )
    return cells


def _trailer_rows(table: Table) -> int:
    """Rows a table writes after its data: a blank and the empty sentence or the totals."""
    rows = 0
    if table.height == 0 and table.empty:
        rows += 2
    if table.totals is not None:
        rows += 2
    return rows


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
        row += _trailer_rows(table)
    return placements


def _layout(worksheet: WriteOnlyWorksheet) -> Worksheet:
    """The streaming sheet's layout settings, which it shares with an ordinary worksheet
    (openpyxl copies them over; its type stubs do not say so)."""
    return cast(Worksheet, worksheet)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _alignment(column: Column, width: float) -> str:
    """How a column's cells sit: numbers right with an indent, times centred, long text
    wrapped inside its (capped) width."""
    if column.number_format in (DATE, DATETIME, MINUTES):
        return "center"
    if column.number_format is not None:
        return "number"
    return "wrap" if width >= _MAX_WIDTH else "text"


def _write_rows(
    worksheet: WriteOnlyWorksheet, styles: _Styles, table: Table, widths: Sequence[float]
) -> None:
    """The table's data rows. Each row goes out as its cells' XML (`_RenderedRow`), written by
    `_SheetWriter` straight to the sheet's file: a district's 周明细 is hundreds of thousands
    of cells, and an openpyxl cell object for each (or an lxml element) was most of a report's
    time."""
    formats = [column.number_format for column in table.columns]
    aligns = [_alignment(c, widths[i]) for i, c in enumerate(table.columns)]
    text_aligns = ["wrap" if align == "wrap" else "text" for align in aligns]
    arrays = {
        red: [
            styles.array("text", fill, fmt, False, bordered=True, align=align)
            for fmt, align in zip(formats, aligns, strict=True)
        ]
        for red, fill in _FILLS.items()
    }
    text_arrays = {
        (red, risky): [
            styles.array("text", fill, None, risky, bordered=True, align=align)
            for align in text_aligns
        ]
        for red, fill in _FILLS.items()
        for risky in (False, True)
    }
    render = _Renderer(worksheet)
    columns = [
        _ColumnCells(
            styles,
            render,
            get_column_letter(position + 1),
            {red: row_arrays[position] for red, row_arrays in arrays.items()},
            {key: row_arrays[position] for key, row_arrays in text_arrays.items()},
        )
        for position in range(len(table.columns))
    ]
    failed = table.failed
    for index, values in enumerate(zip(*(column.values for column in table.columns), strict=True)):
        red = failed is not None and bool(failed[index])
        pairs = list(zip(columns, values, strict=True))
        rendered = [cells.xml(value, red) for cells, value in pairs]
        if None in rendered:  # a value only openpyxl's own cells write (a bool, a numpy number)
            worksheet.append([cells.cell(worksheet, value, red) for cells, value in pairs])
        else:
            worksheet.append(_RenderedRow(("".join(cast(list[str], rendered)),)))


_FILLS = {False: None, True: FAILED_FILL}  # by whether the row failed
# The types whose cells' XML a column keeps for the value's next occurrence: names, IDs,
# villages, dates and small counts repeat down a district's table. Exact types only, so that
# 1, 1.0 and True (equal as keys) never share a cell.
_KEPT_TYPES = frozenset({str, int, dt.date, dt.datetime})
_KEPT_CELLS = 20_000  # per column and fill; the store is emptied when full
_KEPT_CHARS = 200  # a longer cell is rendered each time it occurs


class _ColumnCells:
    """One table column's cells, by value and by whether the row failed (filled red): the
    style arrays are looked up once, and the XML of a repeated value is rendered once."""

    def __init__(
        self,
        styles: _Styles,
        render: _Renderer,
        letter: str,
        arrays: dict[bool, StyleArray],
        text_arrays: dict[tuple[bool, bool], StyleArray],
    ) -> None:
        self.styles = styles
        self.render = render
        self.letter = letter
        self.arrays = arrays  # by red
        self.text_arrays = text_arrays  # by (red, risky)
        self.kept: dict[bool, dict[object, str]] = {False: {}, True: {}}

    def styled(self, value: object, red: bool) -> tuple[object, StyleArray]:
        """The value as it is written (text made safe) and its cell's style."""
        if isinstance(value, str):
            text = safe_text(value)
            return text, self.text_arrays[(red, is_risky(text))]
        if isinstance(value, Formatted):
            align = "number" if _is_number(value.value) else "text"
            fmt = value.number_format
            own = self.styles.array("text", _FILLS[red], fmt, False, bordered=True, align=align)
            inner = safe_text(value.value) if isinstance(value.value, str) else value.value
            return inner, own
        return value, self.arrays[red]

    def xml(self, value: object, red: bool) -> str | None:
        """The cell's XML (row number left as ROW_MARK), or None for a value only openpyxl's
        own cells write."""
        if type(value) not in _KEPT_TYPES:
            return self.render.cell(self.letter, *self.styled(value, red))
        kept = self.kept[red]
        rendered = kept.get(value)
        if rendered is None:
            rendered = self.render.cell(self.letter, *self.styled(value, red))
            if rendered is not None and len(rendered) <= _KEPT_CHARS:
                if len(kept) >= _KEPT_CELLS:
                    kept.clear()
                kept[value] = rendered
        return rendered

    def cell(self, worksheet: WriteOnlyWorksheet, value: object, red: bool) -> Cell:
        """The value as openpyxl's own cell."""
        value, array = self.styled(value, red)
        if isinstance(value, str):
            return _string_cell(worksheet, value, array)
        if isinstance(value, float) and math.isnan(value):
            return _styled(worksheet, None, array)
        return _styled(worksheet, value, array)


class _RenderedRow(tuple[str]):
    """A data row's cells as sheet XML, the row number left as ROW_MARK in each reference;
    `_SheetWriter` writes it out as openpyxl would have written the same cells."""


ROW_MARK = "\x01"  # a control character safe_text removes, so never part of a cell's text
_XML_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


class _Renderer:
    """Cells as openpyxl's streamed writer (lxml_write_cell) writes them: an inline string,
    or a number (dates as Excel serial numbers), with the cell's style index."""

    def __init__(self, worksheet: WriteOnlyWorksheet) -> None:
        self.workbook = cast(Workbook, worksheet.parent)
        self.style_ids: dict[int, str] = {}

    def style(self, array: StyleArray) -> str:
        key = id(array)
        if key not in self.style_ids:
            styles = self.workbook._cell_styles  # type: ignore[attr-defined]
            self.style_ids[key] = str(styles.add(array))
        return self.style_ids[key]

    def cell(self, letter: str, value: object, array: StyleArray) -> str | None:
        """The cell's XML, or None for a value only openpyxl's own cells write."""
        head = f'<c r="{letter}{ROW_MARK}" s="{self.style(array)}"'
        if isinstance(value, str):  # safe_text'ed already
            if not value:
                return head + ' t="inlineStr"/>'
            space = ' xml:space="preserve"' if value != value.strip() else ""
            text = value.translate(_XML_TEXT)
            return f'{head} t="inlineStr"><is><t{space}>{text}</t></is></c>'
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return head + ' t="n"/>'
        if isinstance(value, bool) or not isinstance(value, (int, float, dt.date)):
            return None
        if isinstance(value, dt.date):
            if isinstance(value, dt.datetime) and value.tzinfo is not None:
                return None
            value = to_excel(value, self.workbook.epoch)  # type: ignore[no-untyped-call]
        return f'{head} t="n"><v>{safe_string(value)}</v></c>'


class _SheetWriter(WorksheetWriter):
    """openpyxl 3.1's streamed sheet writer, which writes `_RenderedRow`s to the sheet's file
    as they are. Its stream is openpyxl's own but over a file object, with lxml unbuffered:
    what lxml writes (the sheet's head and tail, the rows of openpyxl cells) reaches the file
    at once, so the rendered rows land in order between. The file object buffers both."""

    file: BinaryIO

    def get_stream(self) -> Generator[Any, bool | None]:
        with (
            open(cast(str, self.out), "wb") as self.file,
            xmlfile(self.file, buffered=False) as xf,
            xf.element("worksheet", xmlns=SHEET_MAIN_NS),
        ):
            try:
                while True:
                    element = yield
                    if element is True:
                        yield xf
                    elif element is not None:
                        xf.write(element)
            except GeneratorExit:
                pass

    def write_row(self, xf: Any, row: Any, row_idx: Any) -> None:
        if not isinstance(row, _RenderedRow):
            super().write_row(xf, row, row_idx)
            return
        number = str(row_idx)
        height = "".join(
            f' {key}="{value}"'
            for key, value in cast(Worksheet, self.ws).row_dimensions.get(row_idx, {})
        )
        xml = f'<row r="{number}"{height}>{row[0].replace(ROW_MARK, number)}</row>'
        # As lxml writes the rest of the sheet: ASCII, other characters as references.
        self.file.write(xml.encode("ascii", "xmlcharrefreplace"))


def _start_writer(worksheet: WriteOnlyWorksheet) -> None:
    """Give the sheet a `_SheetWriter`, as its first row would give it openpyxl's own: the
    writer writes the sheet's head (widths, panes, page properties) when it is made."""
    writer = _SheetWriter(worksheet)
    worksheet._writer = writer  # type: ignore[attr-defined]
    writer.write_top()


def _string_cell(worksheet: WriteOnlyWorksheet, text: str, array: StyleArray) -> Cell:
    """A string cell, never a formula whatever it starts with (set directly: openpyxl would
    take "=..." for a formula, and its type checks cost time on large sheets)."""
    cell = Cell(worksheet, row=1, column=1, style_array=array)
    cell._value = text  # type: ignore[attr-defined]
    cell.data_type = "s"
    return cell


def _styled(worksheet: WriteOnlyWorksheet, value: object, array: StyleArray) -> Cell:
    return Cell(worksheet, row=1, column=1, value=cast(Any, value), style_array=array)


def _text_cell(
    worksheet: WriteOnlyWorksheet,
    styles: _Styles,
    value: str,
    style: str,
    fill: PatternFill | None,
) -> object:
    """A string cell that Excel will never evaluate, whatever the text starts with."""
    text = safe_text(value)
    cell = _styled(worksheet, text, styles.array(style, fill, None, is_risky(text)))
    cell.data_type = "s"  # openpyxl would store "=..." as a formula otherwise
    return cell


CM_PER_WIDTH_UNIT = 0.19  # one column-width unit (a digit of the default font) on paper


def sheet_width_cm(tables: Sequence[Table]) -> float:
    """How wide the tables' columns are on paper at 100 %: to size a chart beside them."""
    return sum(_widths(tables)) * CM_PER_WIDTH_UNIT


def _widths(tables: Sequence[Table]) -> list[float]:
    count = max((len(table.columns) for table in tables), default=0)
    widths = [_MIN_WIDTH] * count
    for table in tables:
        for index, column in enumerate(table.columns):
            widths[index] = max(widths[index], _column_width(column))
        if table.totals is not None:
            for index, value in enumerate(table.totals):
                if value is not None:
                    text = value if isinstance(value, str) else str(value)
                    widths[index] = max(widths[index], min(display_width(text) + 3.0, _MAX_WIDTH))
    return widths


def _column_width(column: Column) -> float:
    # Headers wrap (Chinese breaks anywhere): a long header takes two or three lines, so a
    # column of small numbers under 有效下村天数 stays narrow.
    header = float(display_width(column.header))
    if column.number_format is not None and column.number_format not in _WIDTH_BY_FORMAT:
        width = max(min(header, 6.0), math.ceil(header / 3))
    else:
        width = header if header <= 12 else max(12.0, math.ceil(header / 2))
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
    # Room for the numbers' indent and the cell padding, so nothing touches the next column.
    return min(max(width + 3, _MIN_WIDTH), _MAX_WIDTH)


def _header_text(text: str) -> str:
    """Text for a page header or footer: `&` is the codes' escape character there."""
    return safe_text(text).replace("&", "&&")[:250]


def _set_up_page(
    worksheet: Worksheet,
    sheet: Sheet,
    placements: Sequence[Placement],
    widths: Sequence[float],
    font_name: str,
) -> None:
    """Frozen, filtered header; A4 in the orientation that fits the width, one page wide (and
    one page tall when the table is short), header row repeated on every page, page header
    and numbered footer, print area from the first printed title line to the last table."""
    main = placements[0]
    columns = len(sheet.tables[0].columns)
    last_column = get_column_letter(max(columns, 1))
    worksheet.freeze_panes = f"A{main.header_row + 1}"
    worksheet.auto_filter.ref = (
        f"A{main.header_row}:{last_column}{max(main.last_row, main.header_row)}"
    )
    worksheet.print_title_rows = f"{main.header_row}:{main.header_row}"
    total_width = sum(widths)
    worksheet.page_setup.orientation = "portrait" if total_width <= _PORTRAIT_UNITS else "landscape"
    worksheet.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    worksheet.page_setup.fitToWidth = 1
    rows = placements[-1].last_row + _trailer_rows(sheet.tables[-1]) + sheet.extra_rows
    worksheet.page_setup.fitToHeight = 1 if rows - main.header_row <= ONE_PAGE_ROWS else 0
    worksheet.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    worksheet.print_options.horizontalCentered = True
    margins = worksheet.page_margins
    margins.left = margins.right = 0.4
    margins.top = margins.bottom = 0.6
    margins.header = margins.footer = 0.25
    technical = sum(1 for line in sheet.title if line.style == "technical")
    worksheet.print_area = f"A{technical + 1}:{get_column_letter(len(widths))}{rows}"
    face = f'&"{font_name},Regular"&9'
    header, footer = worksheet.oddHeader, worksheet.oddFooter
    assert header is not None and footer is not None  # a new sheet has both
    header.center.text = f"{face}{_header_text(sheet.page_header or sheet.name)}"
    footer.left.text = f"{face}{_header_text(sheet.page_footer)}"
    footer.center.text = f"{face}第 &P 页 共 &N 页"


def save_atomically(
    write: Callable[[BinaryIO], None], path: Path, before_replace: Callable[[], None] | None = None
) -> None:
    """Save so that `path` holds either the old file or the complete new one, never a part.

    `write` (e.g. a workbook's or a document's save) writes to a temporary file in the same
    folder, which is flushed to disk; then
    `before_replace` runs (e.g. to keep the old file in history) and the temporary file is
    renamed over `path`. On any failure the temporary file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
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


def stored_save(workbook: Workbook) -> Callable[[BinaryIO], None]:
    """The workbook's save with its zip entries stored, not compressed: for `reproducible`,
    which writes every entry again compressed (openpyxl's own save would compress them a
    first time, only for them to be inflated and compressed again)."""

    def save(stream: BinaryIO) -> None:
        if not workbook.worksheets:  # as Workbook.save does for an empty streamed workbook
            workbook.create_sheet()
        archive = zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED, allowZip64=True)
        ExcelWriter(workbook, archive).save()

    return save


# zlib's level for report files. On a district's monthly workbook (37 MB of XML), measured on
# 2026-11-30: level 6 (zlib's default) 0.43 s for 3.11 MB, level 4 0.19 s for 3.57 MB, level 1
# 0.14 s for 4.13 MB. Level 4 takes most of the time off for a file a sixth larger.
DEFLATE_LEVEL = 4


def reproducible(
    write: Callable[[BinaryIO], None], generated_at: dt.datetime
) -> Callable[[BinaryIO], None]:
    """`write` (a workbook's or document's save), with every zip entry dated `generated_at`
    (local wall-clock time, as zip dates are) instead of the moment of saving, and the
    document's `modified` property equal to its `created` one (openpyxl stamps the moment of
    saving there): rewriting the same edition gives the same bytes."""
    date_time = generated_at.replace(tzinfo=None).timetuple()[:6]

    def write_dated(stream: BinaryIO) -> None:
        buffer = io.BytesIO()
        write(buffer)
        with (
            zipfile.ZipFile(buffer) as source,
            zipfile.ZipFile(
                stream, "w", zipfile.ZIP_DEFLATED, compresslevel=DEFLATE_LEVEL
            ) as target,
        ):
            for entry in source.infolist():
                dated = zipfile.ZipInfo(entry.filename, date_time=date_time)
                dated.compress_type = zipfile.ZIP_DEFLATED
                dated.external_attr = entry.external_attr
                data = source.read(entry)
                if entry.filename == "docProps/core.xml":
                    data = _modified_as_created(data)
                target.writestr(dated, data)

    return write_dated


_CREATED = re.compile(rb"<dcterms:created[^>]*>([^<]*)</dcterms:created>")
_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def _modified_as_created(core: bytes) -> bytes:
    created = _CREATED.search(core)
    if created is None:
        return core
    return _MODIFIED.sub(lambda match: match[1] + created[1] + match[2], core, count=1)


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
