"""Report anchors: the chain heads a report was computed from, printed on a workbook's 终端状态
sheet and in the appendix of the monthly notice.

A published report thereby names, per terminal and per audited table, the last row (id,
chain position and hash) its figures could include; `clockd verify --report FILE` reads them
back from either file and checks they still lie on today's chains (docs/integrity.md).
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from clockd.config import Settings
from clockd.errors import UserError
from clockd.ledger import PUNCH_PREFIX, Anchor
from clockd.reports.xlsx import INTEGER, Column, Table

SHEET = "终端状态"
HEADERS = ("数据链", "终端", "链序号", "最后记录号", "链哈希(SHA-256)")
TABLE_LABELS = {
    "leave": "请假/出差",
    "leave_audit": "请假变更记录",
    "quarantine": "隔离记录",
    "report_runs": "报表版本",
    "work_results": "工作成效",
}


def labels(settings: Settings, anchors: Sequence[Anchor]) -> list[str]:
    """What each chain is, for a reader: the terminal and its village, or the audited table."""
    by_serial = {terminal.serial: terminal for terminal in settings.terminals}
    named: list[str] = []
    for anchor in anchors:
        if anchor.chain.startswith(PUNCH_PREFIX):
            terminal = by_serial.get(anchor.chain[len(PUNCH_PREFIX) :])
            named.append(f"{terminal.id} {terminal.village}" if terminal else "未配置的终端")
        else:
            named.append(TABLE_LABELS.get(anchor.chain, anchor.chain))
    return named


def anchor_table(settings: Settings, anchors: Sequence[Anchor]) -> Table:
    """The second table of 终端状态: one row per chain head."""
    values: list[list[object]] = [
        [anchor.chain for anchor in anchors],
        list(labels(settings, anchors)),
        [anchor.seq for anchor in anchors],
        [anchor.last_id for anchor in anchors],
        [anchor.hash_hex for anchor in anchors],
    ]
    formats = (None, None, INTEGER, INTEGER, None)
    return Table(
        [
            Column(header, column, fmt)
            for header, column, fmt in zip(HEADERS, values, formats, strict=True)
        ]
    )


# What makes a zip a docx. python-docx reads every part of a package whole, and a notice's parts
# come to a few hundred kilobytes: a file whose parts claim far more is refused unread.
DOCUMENT = "word/document.xml"
_MAX_NOTICE_BYTES = 20 * 2**20
# What a damaged or foreign zip raises while it is read (lxml's parse errors are SyntaxErrors).
_UNREADABLE = (OSError, zipfile.BadZipFile, zlib.error, KeyError, ValueError, SyntaxError)


def read_anchors(path: Path) -> list[Anchor]:
    """The anchors printed in a report: a workbook's 终端状态 sheet, or a notice's appendix."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"{path}: not a clockd report, an xlsx workbook or a docx notice ({exc})"
        ) from None
    if any(part.filename == DOCUMENT for part in parts):
        if sum(part.file_size for part in parts) > _MAX_NOTICE_BYTES:
            raise UserError(f"{path}: far larger than a clockd notice; not read")
        rows = _notice_rows(path)
        where = "appendix"
    else:
        rows = _sheet_rows(path)
        where = f"{SHEET} sheet"
    anchors = [_anchor(path, row) for row in rows]
    if not anchors:
        raise UserError(
            f"{path}: its {where} prints no chain heads (a report from before the ledger)"
        )
    return anchors


def _sheet_rows(path: Path) -> list[Sequence[object]]:
    """The rows under the anchors' header on a workbook's 终端状态 sheet."""
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            if SHEET not in workbook.sheetnames:
                raise UserError(f"{path}: no {SHEET} sheet; is it a clockd report?")
            rows: list[Sequence[object]] = []
            inside = False
            for row in workbook[SHEET].iter_rows(values_only=True):
                first = row[0] if row else None
                if not inside:
                    inside = first == HEADERS[0]
                    continue
                if first is None or first == "":
                    break
                rows.append(row)
        finally:
            workbook.close()
    except (*_UNREADABLE, InvalidFileException) as exc:
        raise UserError(f"{path}: not a readable xlsx workbook ({exc})") from None
    return rows


def _notice_rows(path: Path) -> list[Sequence[object]]:
    """The rows of the notice's table headed like the anchors (text cells: numbers parsed)."""
    from docx import Document
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = Document(str(path))
    except (*_UNREADABLE, PackageNotFoundError) as exc:
        raise UserError(f"{path}: not a readable docx notice ({exc})") from None
    for table in document.tables:
        texts = [[cell.text.strip() for cell in row.cells] for row in table.rows]
        if texts and tuple(texts[0]) == HEADERS:
            return [
                [chain, label, _number(seq), _number(last_id), digest]
                for chain, label, seq, last_id, digest in (
                    (list(row) + [""] * 5)[:5] for row in texts[1:]
                )
            ]
    raise UserError(f"{path}: no table of chain heads; is it a clockd notice?")


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _anchor(path: Path, row: Sequence[object]) -> Anchor:
    chain, _, seq, last_id, digest = (list(row) + [None] * 5)[:5]
    if not isinstance(seq, int) or not isinstance(digest, str) or len(digest) != 64:
        raise UserError(f"{path}: the chain head of {chain!r} is not readable")
    return Anchor(str(chain), seq, last_id if isinstance(last_id, int) else None, digest)
