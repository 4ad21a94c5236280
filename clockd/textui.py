"""Text for consoles and logs: control characters escaped, tables aligned even with Chinese
(double-width) text."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

# Characters that move the cursor, clear the screen, start a new line or reorder text: shown
# escaped, so text from a terminal or a file cannot forge or hide output lines.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def escape_control(text: str) -> str:
    """`text` with every control or format character written as a visible escape
    (ESC -> `\\x1b`, newline -> `\\n`)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def display_width(text: str) -> int:
    if text.isascii():  # most cells; a table of 3,400 terminals has 27,000 of them
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [
        ["" if v is None else escape_control(str(v)) for v in row] for row in rows
    ]
    sizes = [[display_width(value) for value in row] for row in cells]
    widths = [max(row[i] for row in sizes) for i in range(len(headers))]
    lines = []
    for index, (row, row_sizes) in enumerate(zip(cells, sizes, strict=True)):
        padded = [
            value + " " * (widths[i] - size)
            for i, (value, size) in enumerate(zip(row, row_sizes, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
