"""Logging to stderr, one line per event: plain text for people, JSON for log shippers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from clockd.textui import escape_control


class EscapeControl(logging.Filter):
    """Escape control characters in every message: text from terminals and files (serials,
    user IDs, names, error replies) must not forge or hide log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_control(message)
        if escaped is not message:
            record.msg, record.args = escaped, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class OneLineFormatter(logging.Formatter):
    """Plain text, one line per event even when it carries an exception: the exception's
    type, message and innermost frame go on the same line (journald and grep see one event);
    -vv logs at debug level, where the full traceback follows for a developer."""

    def formatException(self, ei: Any) -> str:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return super().formatException(ei)
        _type, value, tb = ei
        where = ""
        if tb is not None:
            frame = traceback.extract_tb(tb)[-1]
            where = f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
        text = " ".join(str(value).split())
        return f"{type(value).__name__}: {text}{where}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return line
        return line.replace("\n", " | ")


def _log_unraisable(info: Any) -> None:
    """What Python would print as a multi-line "Exception ignored in ...": one log line."""
    logging.getLogger("clockd").warning(
        "ignored %s in %s: %s",
        type(info.exc_value).__name__,
        type(info.object).__name__ if info.object is not None else "?",
        " ".join(str(info.exc_value).split()),
    )


def setup_logging(
    verbosity: int, *, json_lines: bool = False, default: int = logging.WARNING
) -> None:
    """`default` is the level without -v; each -v lowers it one step (to DEBUG at most)."""
    level = max(logging.DEBUG, default - 10 * verbosity)
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    handler.addFilter(EscapeControl())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    sys.unraisablehook = _log_unraisable
    root.setLevel(level)
    # Third-party chatter stays quiet unless asked for twice.
    for noisy in ("apscheduler", "alembic", "sqlalchemy", "zk"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING if verbosity < 2 else level))
