"""Report anchors: the chain heads a report was computed from, printed on its 终端状态 sheet.

A published workbook thereby names, per terminal and per audited table, the last row (id,
chain position and hash) its figures could include; `clockd verify --report FILE` reads them
back and checks they still lie on today's chains (docs/integrity.md).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

from openpyxl import load_workbook

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


def anchor_table(settings: Settings, anchors: Sequence[Anchor]) -> Table:
    """The second table of 终端状态: one row per chain head."""
    by_serial = {terminal.serial: terminal for terminal in settings.terminals}
    labels: list[object] = []
    for anchor in anchors:
        if anchor.chain.startswith(PUNCH_PREFIX):
            terminal = by_serial.get(anchor.chain[len(PUNCH_PREFIX) :])
            labels.append(f"{terminal.id} {terminal.village}" if terminal else "未配置的终端")
        else:
            labels.append(TABLE_LABELS.get(anchor.chain, anchor.chain))
    values: list[list[object]] = [
        [anchor.chain for anchor in anchors],
        labels,
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


def read_anchors(path: Path) -> list[Anchor]:
    """The anchors printed in a report workbook."""
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UserError(f"{path}: not a readable xlsx workbook ({exc})") from None
    try:
        if SHEET not in workbook.sheetnames:
            raise UserError(f"{path}: no {SHEET} sheet; is it a clockd report?")
        anchors: list[Anchor] = []
        inside = False
        for row in workbook[SHEET].iter_rows(values_only=True):
            first = row[0] if row else None
            if not inside:
                inside = first == HEADERS[0]
                continue
            if first is None or first == "":
                break
            anchors.append(_anchor(path, row))
    finally:
        workbook.close()
    if not anchors:
        raise UserError(
            f"{path}: its {SHEET} sheet prints no chain heads (a report from before the ledger)"
        )
    return anchors


def _anchor(path: Path, row: Sequence[object]) -> Anchor:
    chain, _, seq, last_id, digest = (list(row) + [None] * 5)[:5]
    if not isinstance(seq, int) or not isinstance(digest, str) or len(digest) != 64:
        raise UserError(f"{path}: {SHEET}: the chain head of {chain!r} is not readable")
    return Anchor(str(chain), seq, last_id if isinstance(last_id, int) else None, digest)
