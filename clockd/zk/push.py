"""The ADMS ("PUSH", iclock) HTTP protocol as text: no sockets, no HTTP, no database.

A terminal set to push calls the server: a handshake (`GET /iclock/cdata?SN=..&options=all`)
answered with option lines, attendance batches (`POST /iclock/cdata?SN=..&table=ATTLOG`) of
tab-separated lines, a heartbeat (`GET /iclock/getrequest`) answered with `OK` or command lines
`C:<id>:<command>`, and command results (`POST /iclock/devicecmd`). The shapes accepted here,
and where they were learnt, are in docs/protocol.md ("Push protocol").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clockd.zk.wire import RecordProblem, encode_time, is_printable_id

MAX_FIELDS = 12  # PIN, time, state, verify, workcode, then reserved fields or a counter
MAX_PIN = 24  # the punches table's user_id width
MAX_LINE = 1024  # a real line is under 100 bytes; longer ones are garbage, not a punch
_SMALLINT = 32767
_BIGINT = 2**63 - 1
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})")
_SERIAL = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class AttlogLine:
    """One attendance line of a push batch; satisfies domain.PunchFields."""

    user_id: str
    timestamp: dt.datetime
    state: int = 0
    verify: int = 0
    workcode: int = 0


@dataclass(frozen=True)
class Attlog:
    punches: list[AttlogLine]
    problems: list[RecordProblem]  # index = 1-based line number in the body
    lines: int  # non-blank lines seen, good and bad


def valid_serial(text: str | None) -> str | None:
    """The SN query parameter when it can be a serial number; None for anything else."""
    if text is None:
        return None
    text = text.strip()
    return text if _SERIAL.fullmatch(text) else None


def _decode(raw: bytes) -> str:
    # PINs are ASCII on every firmware seen; GBK covers a Chinese device's stray bytes.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gbk", errors="replace")


def _integer(text: str, name: str, limit: int) -> int:
    text = text.strip()
    if not text:
        return 0
    if not re.fullmatch(r"-?\d{1,19}", text):
        raise ValueError(f"{name} {text[:20]!r} is not a number")
    value = int(text)
    if not -limit - 1 <= value <= limit:
        raise ValueError(f"{name} {value} is out of range")
    return value


def _time(text: str) -> dt.datetime | None:
    match = _TIME.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def parse_attlog_line(raw: bytes) -> AttlogLine:
    """One line: `PIN<TAB>time<TAB>state<TAB>verify<TAB>workcode<TAB>reserved...`.

    Empty fields count as 0 and trailing tabs are ignored. Some firmware puts a running
    record number before the PIN; it is recognised by the time standing third instead of
    second. Raises ValueError saying what is wrong.
    """
    if len(raw) > MAX_LINE:
        raise ValueError(f"line of {len(raw)} bytes is too long")
    text = _decode(raw).rstrip("\t \r")
    fields = text.split("\t")
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"{len(fields)} fields (at most {MAX_FIELDS})")
    if "=" in fields[0]:
        fields = _named_fields(fields)
    if len(fields) < 2:
        raise ValueError("no time field")
    moment = _time(fields[1])
    if moment is None and len(fields) >= 3 and fields[0].strip().isdigit():
        moment = _time(fields[2])
        if moment is not None:
            fields = fields[1:]  # a leading record number
    if moment is None:
        raise ValueError(f"time {fields[1][:30]!r} is not YYYY-MM-DD HH:MM:SS or impossible")
    pin = fields[0].strip()
    if not pin:
        raise ValueError("empty user ID")
    if len(pin) > MAX_PIN or not is_printable_id(pin.encode("utf-8")):
        raise ValueError(f"user ID {pin[:30]!r} is not a PIN")
    rest = fields[2:5] + [""] * (5 - len(fields))
    return AttlogLine(
        user_id=pin,
        timestamp=moment,
        state=_integer(rest[0], "state", _SMALLINT),
        verify=_integer(rest[1], "verify", _SMALLINT),
        workcode=_integer(rest[2], "workcode", _BIGINT),
    )


_NAMES = {
    "pin": 0,
    "time": 1,
    "datetime": 1,
    "status": 2,
    "state": 2,
    "verify": 3,
    "verifytype": 3,
    "workcode": 4,
}


def _named_fields(fields: list[str]) -> list[str]:
    """`PIN=1001<TAB>Time=...` lines (newer push versions) in the positional order."""
    ordered = [""] * 5
    for part in fields:
        key, separator, value = part.partition("=")
        if not separator:
            raise ValueError(f"field {part[:30]!r} is not name=value")
        position = _NAMES.get(key.strip().lower())
        if position is not None:
            ordered[position] = value
    return ordered


def parse_attlog(body: bytes) -> Attlog:
    """Every line of an ATTLOG batch (LF or CRLF); bad lines are kept as problems, not raised."""
    punches: list[AttlogLine] = []
    problems: list[RecordProblem] = []
    count = 0
    for number, raw in enumerate(body.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip(b" \t\x00"):
            continue
        count += 1
        try:
            punches.append(parse_attlog_line(raw))
        except ValueError as exc:
            problems.append(RecordProblem(number, raw[:MAX_LINE], str(exc)))
    return Attlog(punches, problems, count)


def count_records(body: bytes) -> int:
    """Non-blank lines of a table the receiver acknowledges without storing (OPERLOG...)."""
    return sum(1 for raw in body.split(b"\n") if raw.strip(b" \t\r\x00"))


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a heartbeat's `INFO=` parameter tells: firmware and the device's counts."""

    firmware: str
    users: int | None
    fingerprints: int | None
    records: int | None


def parse_info(text: str | None) -> DeviceInfo | None:
    """`Ver 6.60 Oct 29 2019,12,20,3041,192.168.1.201,...`; None when it is not that shape."""
    if not text:
        return None
    fields = [field.strip() for field in text[:MAX_LINE].split(",")]
    if len(fields) < 4:
        return None
    firmware = fields[0].removeprefix("Ver ").strip()[:64]
    if not firmware.isprintable():
        return None

    def count(field: str) -> int | None:
        return int(field) if field.isascii() and field.isdigit() and len(field) <= 9 else None

    return DeviceInfo(firmware, count(fields[1]), count(fields[2]), count(fields[3]))


# --- server replies ---------------------------------------------------------------------------


def options_reply(serial: str, options: Mapping[str, object]) -> str:
    """The handshake answer: `GET OPTION FROM: <SN>` then one `key=value` per line."""
    lines = [f"GET OPTION FROM: {serial}"]
    lines.extend(f"{key}={value}" for key, value in options.items())
    return "\n".join(lines) + "\n"


def ok_reply(count: int) -> str:
    """What a stored batch is answered with; the device then advances its stamp."""
    return f"OK: {count}\n"


def command_lines(commands: Iterable[tuple[int, str]]) -> str:
    """Queued commands for a heartbeat: `C:<id>:<command>` per line, or `OK` when none."""
    lines = [f"C:{command_id}:{text}" for command_id, text in commands]
    return "\n".join(lines) + "\n" if lines else "OK\n"


def set_time_command(moment: dt.datetime) -> str:
    """Reset the device clock: its naive local wall-clock time, ZKTeco-encoded."""
    return f"SET OPTIONS DateTime={encode_time(moment)}"


def reupload_command(start: dt.datetime, end: dt.datetime) -> str:
    """Ask the device to post its punches of [start, end] again."""
    return f"DATA QUERY ATTLOG StartTime={start:%Y-%m-%d %H:%M:%S}\tEndTime={end:%Y-%m-%d %H:%M:%S}"


# --- device reports ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: int
    return_code: int | None
    command: str


def parse_command_results(body: bytes) -> list[CommandResult]:
    """`ID=<id>&Return=<code>&CMD=<name>` lines of /iclock/devicecmd; other lines are payload."""
    results = []
    for raw in body.split(b"\n"):
        line = _decode(raw.strip(b"\r"))[:MAX_LINE]
        if not line.startswith("ID="):
            continue
        fields: dict[str, str] = {}
        for part in line.split("&"):
            key, _, value = part.partition("=")
            fields[key.strip()] = value.strip()
        try:
            command_id = int(fields.get("ID", ""))
        except ValueError:
            continue
        code_text = fields.get("Return", "")
        code = int(code_text) if re.fullmatch(r"-?\d{1,9}", code_text) else None
        results.append(CommandResult(command_id, code, fields.get("CMD", "")[:64]))
    return results
