"""What of the configuration and the roster enters a report's input fingerprint, the same
for an edition's (reports/period.py) and for a kept week's (reports/earlier.py)."""

from __future__ import annotations

from clockd.config import TerminalConfig
from clockd.domain import Cadre


def terminal_key(terminal: TerminalConfig) -> list[str]:
    """What of a terminal's configuration enters an input fingerprint."""
    return [terminal.id, terminal.serial, terminal.village, terminal.installed.isoformat()]


def cadre_key(cadre: Cadre) -> list[str | None]:
    """What of a cadre's roster entry enters an input fingerprint."""
    return [
        cadre.user_id,
        cadre.name,
        cadre.role.value,
        cadre.village,
        cadre.department,
        None if cadre.active_from is None else cadre.active_from.isoformat(),
        None if cadre.active_to is None else cadre.active_to.isoformat(),
    ]
