"""Sans-I/O codec for the ZKTeco terminal protocol (UDP/TCP port 4370).

Nothing here touches a socket: the emulator builds its replies with it and the poller decodes
the raw bytes of pyzk's buffered reads with it, so both sides share one tested definition of
every byte. All integers are little-endian; the layouts are those real firmware sends and pyzk
0.9 reads (see the tests for the published byte vectors).

Decoders never fail as a whole because of one bad record: they return the good records plus a
list of `RecordProblem` (index, raw bytes, reason) so the poller can quarantine the bad ones.
Errors that make the whole buffer meaningless (wrong record size, truncated transfer) raise a
`WireError` subclass instead.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from typing import Any, Generic, NamedTuple, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "ATTENDANCE_RECORD_SIZES",
    "EF_ATTLOG",
    "FCT_FINGERTMP",
    "FCT_USER",
    "MAX_DIRECT_DATA",
    "MAX_TCP_CHUNK",
    "MAX_TCP_PACKET",
    "MAX_UDP_DATA",
    "TCP_MAGIC",
    "USER_RECORD_SIZES",
    "ZERO_TIME",
    "AttendanceRecord",
    "Cmd",
    "Decoded",
    "FramingError",
    "FreeSizes",
    "InvalidTimeError",
    "Packet",
    "RecordProblem",
    "RecordSizeError",
    "TcpStreamSplitter",
    "TruncatedBufferError",
    "UserRecord",
    "WireError",
    "buffer_records",
    "build_packet",
    "checksum",
    "decode_attendance",
    "decode_attendance_buffer",
    "decode_event_time",
    "decode_free_sizes",
    "decode_time",
    "decode_users",
    "decode_users_buffer",
    "encode_attendance",
    "encode_event",
    "encode_event_time",
    "encode_free_sizes",
    "encode_time",
    "encode_user",
    "frame_tcp",
    "is_printable_id",
    "iter_chunks",
    "make_commkey",
    "option_reply",
    "pack_attendance",
    "parse_option_request",
    "parse_packet",
    "parse_prepare_buffer",
    "parse_prepare_buffer_ready",
    "parse_prepare_data",
    "parse_read_buffer",
    "prepare_buffer_ready",
    "prepare_buffer_request",
    "prepare_data_payload",
    "read_buffer_request",
    "size_prefixed",
    "verify_commkey",
]


class Cmd(enum.IntEnum):
    """Command and reply codes (one numbering space: CMD_DATA is both a request and a reply)."""

    DB_RRQ = 7
    USER_WRQ = 8
    USERTEMP_RRQ = 9
    OPTIONS_RRQ = 11
    OPTIONS_WRQ = 12
    ATTLOG_RRQ = 13
    CLEAR_DATA = 14
    CLEAR_ATTLOG = 15
    GET_FREE_SIZES = 50
    STARTVERIFY = 60
    CANCELCAPTURE = 62
    GET_TIME = 201
    SET_TIME = 202
    REG_EVENT = 500
    CONNECT = 1000
    EXIT = 1001
    ENABLEDEVICE = 1002
    DISABLEDEVICE = 1003
    RESTART = 1004
    POWEROFF = 1005
    REFRESHDATA = 1013
    GET_VERSION = 1100
    AUTH = 1102
    PREPARE_DATA = 1500
    DATA = 1501
    FREE_DATA = 1502
    PREPARE_BUFFER = 1503
    READ_BUFFER = 1504
    ACK_OK = 2000
    ACK_ERROR = 2001
    ACK_DATA = 2002
    ACK_RETRY = 2003
    ACK_REPEAT = 2004
    ACK_UNAUTH = 2005
    ACK_ERROR_DATA = 0xFFFB
    ACK_ERROR_INIT = 0xFFFC
    ACK_ERROR_CMD = 0xFFFD
    ACK_UNKNOWN = 0xFFFF


EF_ATTLOG = 1
"""REG_EVENT mask bit: real-time attendance events."""

FCT_FINGERTMP = 2
"""`fct` of a buffered read of fingerprint templates (inner command DB_RRQ)."""
FCT_USER = 5
"""`fct` of a buffered read of the user table (inner command USERTEMP_RRQ)."""

TCP_MAGIC = b"\x50\x50\x82\x7d"
MAX_TCP_CHUNK = 0xFFC0
"""Largest READ_BUFFER chunk pyzk asks for over TCP."""
MAX_UDP_DATA = 1024
"""Largest data part of one CMD_DATA datagram (pyzk reads 1032-byte datagrams)."""
MAX_DIRECT_DATA = 1016
"""Largest buffer answered directly with CMD_DATA (pyzk reads that UDP reply with recv(1024))."""
MAX_TCP_PACKET = 1 << 20
"""Upper bound on a TCP packet's declared length; anything longer is a framing error."""

ATTENDANCE_RECORD_SIZES = (8, 16, 40, 49)
USER_RECORD_SIZES = (28, 72)

_HEADER = struct.Struct("<4H")
_TCP_PREFIX = struct.Struct("<4sI")
_U32 = struct.Struct("<I")

_SECONDS_PER_DAY = 86400
_DAYS_PER_YEAR = 12 * 31
ZERO_TIME = datetime(2000, 1, 1)
"""What an all-zero time field decodes to: the value a reset terminal clock writes."""


class WireError(ValueError):
    """Bytes that do not follow the protocol."""


class FramingError(WireError):
    """A TCP stream whose prefix is not `50 50 82 7D` + a sane length."""


class InvalidTimeError(WireError):
    """A ZK time value that names no real date (e.g. 31 February), or a date it cannot hold."""


class RecordSizeError(WireError):
    """A buffer whose size does not divide into one of the known record layouts."""


class TruncatedBufferError(WireError):
    """A buffered read shorter than its own size prefix says: the transfer was cut short."""


# --- checksum and packets -------------------------------------------------------------------


def checksum(data: bytes | bytearray | memoryview) -> int:
    """16-bit one's-complement checksum of a packet whose checksum field is zero.

    Words are little-endian and an odd last byte is a low byte. Because 2**16 is 1 modulo
    0xFFFF, the folded word sum is the whole packet read as one integer, modulo 0xFFFF; that
    keeps a 64 KiB data packet cheap to sum.
    """
    total = int.from_bytes(data, "little")
    folded = 0 if total == 0 else (total - 1) % 0xFFFF + 1
    return 0xFFFF - folded


@dataclass(frozen=True, slots=True)
class Packet:
    """One protocol packet without TCP framing: the 8-byte header fields and the data."""

    command: int
    checksum: int
    session_id: int
    reply_id: int
    data: bytes

    @property
    def checksum_ok(self) -> bool:
        """Whether the checksum is the standard one (pyzk's own requests always are)."""
        header = _HEADER.pack(self.command, 0, self.session_id, self.reply_id)
        return checksum(header + self.data) == self.checksum


def build_packet(command: int, session_id: int, reply_id: int, data: bytes = b"") -> bytes:
    """Header + data with the standard checksum: a UDP datagram, or a TCP packet to frame."""
    packet = bytearray(_HEADER.pack(command, 0, session_id, reply_id))
    packet += data
    struct.pack_into("<H", packet, 2, checksum(packet))
    return bytes(packet)


def parse_packet(raw: bytes | bytearray | memoryview) -> Packet:
    """Split a datagram (or a TCP packet after its prefix) into header fields and data."""
    if len(raw) < _HEADER.size:
        raise WireError(f"packet of {len(raw)} bytes is shorter than the 8-byte header")
    command, value, session_id, reply_id = _HEADER.unpack_from(raw)
    return Packet(command, value, session_id, reply_id, bytes(raw[_HEADER.size :]))


def frame_tcp(packet: bytes) -> bytes:
    """Put the TCP prefix (`50 50 82 7D` + u32 length) in front of a packet."""
    return _TCP_PREFIX.pack(TCP_MAGIC, len(packet)) + packet


class TcpStreamSplitter:
    """Cut a TCP byte stream into packets, whatever the read boundaries were.

    Feed it each read; it returns every packet completed so far (prefix removed) and keeps
    the incomplete tail. A bad prefix is unrecoverable for the stream: FramingError.
    """

    def __init__(self, max_length: int = MAX_TCP_PACKET) -> None:
        self._buffer = bytearray()
        self._max_length = max_length

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        packets: list[bytes] = []
        start = 0
        prefix = _TCP_PREFIX.size
        while len(buffer) - start >= prefix:
            magic, length = _TCP_PREFIX.unpack_from(buffer, start)
            if magic != TCP_MAGIC:
                raise FramingError(f"bad TCP prefix {bytes(buffer[start : start + 4]).hex()}")
            if not _HEADER.size <= length <= self._max_length:
                raise FramingError(f"TCP packet length {length} out of range")
            end = start + prefix + length
            if end > len(buffer):
                break
            packets.append(bytes(buffer[start + prefix : end]))
            start = end
        del buffer[:start]
        return packets


# --- comm key -------------------------------------------------------------------------------


def make_commkey(key: int, session_id: int, ticks: int = 50) -> bytes:
    """The 4-byte AUTH token for a numeric comm key, as terminals and their SDKs compute it."""
    reversed_key = int(f"{key & 0xFFFFFFFF:032b}"[::-1], 2)
    mixed = (reversed_key + session_id) & 0xFFFFFFFF
    b = bytes(x ^ y for x, y in zip(mixed.to_bytes(4, "little"), b"ZKSO", strict=True))
    swapped = b[2:4] + b[0:2]
    t = ticks & 0xFF
    return bytes((swapped[0] ^ t, swapped[1] ^ t, t, swapped[3] ^ t))


def verify_commkey(token: bytes, key: int, session_id: int) -> bool:
    """Check an AUTH token: the client's ticks travel in byte 2, so recompute with those."""
    if len(token) != 4:
        return False
    return make_commkey(key, session_id, token[2]) == bytes(token)


# --- time -----------------------------------------------------------------------------------


def encode_time(moment: datetime) -> int:
    """Terminal time: seconds in a calendar of 31-day months since 2000 (naive local time)."""
    if not 2000 <= moment.year <= 2099:
        raise InvalidTimeError(f"{moment} is outside the terminal's years 2000-2099")
    days = (moment.year % 100) * _DAYS_PER_YEAR + (moment.month - 1) * 31 + moment.day - 1
    return days * _SECONDS_PER_DAY + (moment.hour * 60 + moment.minute) * 60 + moment.second


def decode_time(value: int) -> datetime:
    """Inverse of encode_time; 0 is 2000-01-01 00:00:00, a non-existent date raises."""
    days, seconds = divmod(value, _SECONDS_PER_DAY)
    months, day = divmod(days, 31)
    years, month = divmod(months, 12)
    hour, rest = divmod(seconds, 3600)
    minute, second = divmod(rest, 60)
    try:
        return datetime(years + 2000, month + 1, day + 1, hour, minute, second)
    except ValueError as exc:
        raise InvalidTimeError(f"time value {value} is not a real date: {exc}") from None


def encode_event_time(moment: datetime) -> bytes:
    """The 6-byte time of real-time events: year-2000, month, day, hour, minute, second."""
    if not 2000 <= moment.year <= 2255:
        raise InvalidTimeError(f"{moment} cannot be sent in an event")
    return bytes(
        (moment.year - 2000, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    )


def decode_event_time(raw: bytes) -> datetime:
    year, month, day, hour, minute, second = raw[:6]
    try:
        return datetime(year + 2000, month, day, hour, minute, second)
    except ValueError as exc:
        raise InvalidTimeError(f"event time {raw.hex()} is not a real date: {exc}") from None


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NOT_A_DAY = np.int64(-(2**62))


def decode_times(
    values: npt.NDArray[np.integer[Any]],
) -> tuple[npt.NDArray[np.datetime64], dict[int, str]]:
    """decode_time over a whole log at C speed: the calendar arithmetic runs once per distinct
    day, the rest in numpy. Returns the times (datetime64[s]) and, by index, why a value is
    not a real date (its slot in the times then holds a meaningless value)."""
    days, seconds = np.divmod(values.astype(np.int64), _SECONDS_PER_DAY)
    distinct, position = np.unique(days, return_inverse=True)
    epoch_days = np.empty(len(distinct), dtype=np.int64)
    invalid: dict[int, str] = {}
    for slot, day_number in enumerate(distinct.tolist()):
        months, day = divmod(day_number, 31)
        years, month = divmod(months, 12)
        try:
            epoch_days[slot] = date(years + 2000, month + 1, day + 1).toordinal() - _EPOCH_ORDINAL
        except ValueError as exc:
            epoch_days[slot] = _NOT_A_DAY
            invalid[slot] = str(exc)
    per_record = epoch_days[position]
    problems: dict[int, str] = {}
    if invalid:
        for index in np.flatnonzero(per_record == _NOT_A_DAY).tolist():
            value = int(values[index])
            problems[index] = f"time value {value} is not a real date: {invalid[position[index]]}"
        per_record = np.where(per_record == _NOT_A_DAY, 0, per_record)
    return (per_record * _SECONDS_PER_DAY + seconds).astype("datetime64[s]"), problems


# --- records --------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """A record that could not be decoded; kept whole so it can be quarantined and shown."""

    index: int
    raw: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    """Decoder output: every good record in buffer order, and the bad ones set aside."""

    records: Sequence[T]
    problems: list[RecordProblem] = field(default_factory=list)
    record_size: int = 0
    span: tuple[datetime, datetime] | None = None  # earliest and latest time, when all decoded


class AttendanceRecord(NamedTuple):
    """One punch as a terminal stores it.

    `uid` is the terminal's internal user number (None for the 16-byte layout, which has only
    the user ID); `timestamp` is the terminal's naive local time. A named tuple, because a
    poll builds 100,000 of them and a tuple is built three times faster than a dataclass.
    """

    uid: int | None
    user_id: str
    timestamp: datetime
    verify: int = 1
    state: int = 0
    workcode: int = 0


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One enrolled user. `group` is text because the 72-byte layout stores it as text."""

    uid: int
    user_id: str
    name: str
    privilege: int = 0
    password: str = ""
    card: int = 0
    group: str = "1"


# Attendance layouts (see docs/protocol.md for the public evidence behind each):
# 8 bytes (ZEM500 class): u16 uid, u8 state<<4 | verify, u8 reserved, u32 time.
_ATT8 = struct.Struct("<HBxI")
# 16 bytes (TExtendAttLog): u32 PIN, u32 time, u8 state, u8 verify, 2 reserved, u32 workcode.
_ATT16 = struct.Struct("<IIBBxxI")
# 40 bytes: u16 uid, 24-byte PIN, u8 verify, u32 time, u8 state, u32 workcode, 4 reserved;
# 49 bytes: the same and 9 more reserved bytes.
_ATT40 = struct.Struct("<H24sBIBI4x")
_ATT49 = struct.Struct("<H24sBIBI13x")
_ATTENDANCE_LAYOUTS = {8: _ATT8, 16: _ATT16, 40: _ATT40, 49: _ATT49}
# The same layouts as numpy record types, for decoding a whole log at once.
_ATTENDANCE_DTYPES = {
    8: np.dtype([("uid", "<u2"), ("packed", "u1"), ("reserved", "V1"), ("time", "<u4")]),
    16: np.dtype(
        [
            ("user", "<u4"),
            ("time", "<u4"),
            ("state", "u1"),
            ("verify", "u1"),
            ("reserved", "V2"),
            ("workcode", "<u4"),
        ]
    ),
    **{
        size: np.dtype(
            [
                ("uid", "<u2"),
                ("user", "V24"),
                ("verify", "u1"),
                ("time", "<u4"),
                ("state", "u1"),
                ("workcode", "<u4"),
                ("reserved", f"V{size - 36}"),
            ]
        )
        for size in (40, 49)
    },
}

_TEXT_TIME = "%Y-%m-%d %H:%M:%S"


def read_kept_record(raw: bytes) -> tuple[str | None, datetime | None]:
    """What can still be read of a record that was kept because it did not decode: its user ID
    (as the terminal sent it, control characters and all; None when the layout holds none)
    and its recorded time (None when unreadable). A tab-separated line (a USB export's or a
    push terminal's) is read as text, anything else by the binary layout of its size."""
    fields = raw.rstrip(b"\r\n").split(b"\t")
    if len(fields) >= 2:
        try:
            stamp = datetime.strptime(fields[1].strip().decode("ascii"), _TEXT_TIME)
        except (UnicodeDecodeError, ValueError):
            pass
        else:
            return fields[0].strip(b" ").decode("latin-1"), stamp
    layout = _ATTENDANCE_LAYOUTS.get(len(raw))
    if layout is None:
        return None, None
    values = layout.unpack(raw)
    if len(raw) == 8:
        user, value = None, values[2]
    elif len(raw) == 16:
        user, value = str(values[0]), values[1]
    else:
        user, value = values[1].split(b"\0", 1)[0].decode("latin-1"), values[3]
    try:
        return user, decode_time(value)
    except InvalidTimeError:
        return user, None


_USER28 = struct.Struct("<HB5s8sIxBhI")  # uid, privilege, password, name, card, group, tz, id
_USER72 = struct.Struct("<HB8s24sIx7sx24s")  # uid, privilege, password, name, card, group, id
_USER_LAYOUTS = {28: _USER28, 72: _USER72}


def pack_attendance(
    size: int,
    *,
    uid: int,
    user_id: str,
    time_value: int,
    verify: int = 1,
    state: int = 0,
    workcode: int = 0,
) -> bytes:
    """One attendance record from raw field values (time already encoded, may be 0)."""
    try:
        if size == 8:
            if not (0 <= state <= 15 and 0 <= verify <= 15):
                raise ValueError(f"8-byte records hold state and verify < 16: {state}/{verify}")
            return _ATT8.pack(uid, state << 4 | verify, time_value)
        if size == 16:
            return _ATT16.pack(_numeric_id(user_id, 16), time_value, state, verify, workcode)
        layout = _ATTENDANCE_LAYOUTS.get(size)
        if layout is None:
            raise RecordSizeError(f"no {size}-byte attendance layout")
        return layout.pack(uid, _ascii_id(user_id), verify, time_value, state, workcode)
    except struct.error as exc:
        raise ValueError(f"attendance field out of range for {size}-byte records: {exc}") from None


def encode_attendance(record: AttendanceRecord, size: int) -> bytes:
    """One record in the given layout; 8-byte records need the uid, 16-byte a numeric ID."""
    return pack_attendance(
        size,
        uid=record.uid or 0,
        user_id=record.user_id,
        time_value=encode_time(record.timestamp),
        verify=record.verify,
        state=record.state,
        workcode=record.workcode,
    )


def _numeric_id(user_id: str, size: int) -> int:
    if not user_id.isascii() or not user_id.isdigit() or int(user_id) > 0xFFFFFFFF:
        raise ValueError(f"user ID {user_id!r} must be a number below 2**32 in {size}-byte records")
    return int(user_id)


def _ascii_id(user_id: str) -> bytes:
    raw = user_id.encode("ascii")
    if len(raw) > 24 or b"\x00" in raw:
        raise ValueError(f"user ID {user_id!r} does not fit 24 bytes")
    return raw


def _fit(text: str, encoding: str, width: int) -> bytes:
    """Encode text into a fixed field, dropping trailing characters that do not fit whole."""
    raw = text.encode(encoding)
    while len(raw) > width:
        text = text[:-1]
        raw = text.encode(encoding)
    return raw


def encode_user(user: UserRecord, size: int, encoding: str) -> bytes:
    """One user record; a name too long for its field is cut at a character boundary."""
    name = _fit(user.name, encoding, 8 if size == 28 else 24)
    try:
        if size == 28:
            group = int(user.group) if user.group else 0
            password = user.password.encode(encoding)[:5]
            card, user_id = user.card, _numeric_id(user.user_id, 28)
            return _USER28.pack(user.uid, user.privilege, password, name, card, group, 0, user_id)
        if size == 72:
            return _USER72.pack(
                user.uid,
                user.privilege,
                user.password.encode(encoding)[:8],
                name,
                user.card,
                user.group.encode("ascii")[:7],
                _ascii_id(user.user_id),
            )
    except struct.error as exc:
        raise ValueError(f"user field out of range for {size}-byte records: {exc}") from None
    raise RecordSizeError(f"no {size}-byte user layout")


def size_prefixed(records: bytes) -> bytes:
    """A buffered-read payload: u32 total size of the records, then the records."""
    return _U32.pack(len(records)) + records


def buffer_records(data: bytes | memoryview) -> memoryview:
    """The records part of a buffered read of users or attendance (after the size prefix).

    Bytes after the declared size are ignored; fewer than declared mean the transfer was cut
    (pyzk's UDP reader silently returns short data when a datagram is lost).
    """
    if len(data) < 4:
        raise TruncatedBufferError(f"buffer of {len(data)} bytes has no 4-byte size prefix")
    (total,) = _U32.unpack_from(data)
    if total > len(data) - 4:
        raise TruncatedBufferError(f"buffer declares {total} bytes of records, has {len(data) - 4}")
    return memoryview(data)[4 : 4 + total]


def _record_size(length: int, count: int, given: int | None, sizes: tuple[int, ...]) -> int:
    """Step size for a buffer, as pyzk derives it (total / count), but checked."""
    kind = "attendance" if sizes is ATTENDANCE_RECORD_SIZES else "user"
    if given is not None:
        if given not in sizes:
            raise RecordSizeError(f"{given} is not a {kind} record size {sizes}")
        if length % given:
            raise TruncatedBufferError(f"{length} bytes is not a whole number of {given}")
        return given
    if count <= 0:
        raise RecordSizeError(f"{length} bytes of {kind} records but a count of {count}")
    size, extra = divmod(length, count)
    if extra or size not in sizes:
        raise RecordSizeError(
            f"{length} bytes for {count} {kind} records is not one of the sizes {sizes}; "
            "the count may be stale (re-read the sizes) or the layout unknown"
        )
    return size


def decode_attendance(
    data: bytes | memoryview,
    record_count: int,
    uid_to_user_id: Mapping[int, str],
    *,
    record_size: int | None = None,
) -> Decoded[AttendanceRecord]:
    """Decode attendance records (no size prefix), stepping by len(data) / record_count.

    8-byte records hold only the uid: it is mapped through `uid_to_user_id`; a uid missing
    from it is a problem (never stored under its bare number, which names no user).
    `record_size` (when the terminal's layout is known)
    overrides the derivation from the count. Records with impossible dates or unreadable
    user IDs come back as problems; every other record is returned.
    """
    if len(data) == 0 and record_size is None and record_count <= 0:
        return Decoded([])
    size = _record_size(len(data), record_count, record_size, ATTENDANCE_RECORD_SIZES)
    table = np.frombuffer(data, dtype=_ATTENDANCE_DTYPES[size], count=len(data) // size)
    times, problems_at = decode_times(table["time"])
    stamps: list[datetime] = times.tolist()
    verifies: list[int]
    states: list[int]
    if size != 8:
        verifies = table["verify"].tolist()
        states = table["state"].tolist()
    uids: list[int | None]
    workcodes: list[int]
    if size == 8:
        packed = table["packed"]
        verifies = (packed & 0x0F).tolist()
        states = (packed >> 4).tolist()
        numbers: list[int] = table["uid"].tolist()
        user_ids = _map_distinct(numbers, lambda uid: uid_to_user_id.get(uid, ""))
        uids = list(numbers)
        if any(uid not in uid_to_user_id for uid in set(numbers)):
            for index, (uid, user_id) in enumerate(zip(numbers, user_ids, strict=True)):
                if not user_id:
                    problems_at.setdefault(index, f"uid {uid} is not in the user table")
        workcodes = [0] * len(uids)
    elif size == 16:
        uids = [None] * len(table)
        user_ids = _map_distinct(table["user"].tolist(), str)
        workcodes = table["workcode"].tolist()
    else:
        uids = table["uid"].tolist()
        decode_id = _id_decoder()
        raw_ids: list[bytes] = table["user"].tolist()
        unreadable: dict[bytes, str] = {}
        readable: dict[bytes, str] = {}
        for raw in set(raw_ids):
            try:
                readable[raw] = decode_id(raw)
            except WireError as exc:
                unreadable[raw] = str(exc)
        user_ids = [readable.get(raw, "") for raw in raw_ids]
        if unreadable:
            for index, raw in enumerate(raw_ids):
                if raw in unreadable:
                    problems_at.setdefault(index, unreadable[raw])
        workcodes = table["workcode"].tolist()
    records = RecordColumns((uids, user_ids, stamps, verifies, states, workcodes), times)
    if problems_at:
        view = memoryview(data)
        problems = [
            RecordProblem(index, bytes(view[index * size : (index + 1) * size]), reason)
            for index, reason in sorted(problems_at.items())
        ]
        good = [r for index, r in enumerate(records) if index not in problems_at]
        return Decoded(good, problems, size)
    if not records:  # an empty log of a known layout
        return Decoded(records, [], size)
    # The encoding orders like the times it encodes, so the extremes cost two numpy scans.
    span = (decode_time(int(table["time"].min())), decode_time(int(table["time"].max())))
    return Decoded(records, [], size, span)


_build_record = cast(
    Callable[[Iterable[object]], AttendanceRecord], partial(tuple.__new__, AttendanceRecord)
)


class RecordColumns(Sequence[AttendanceRecord]):
    """A decoded log's records, kept as columns until they are read.

    A record's tuple is built when it is asked for, a slice's when the slice is, and all of
    them (once, kept) when the whole sequence is walked. Building 100,000 tuples is most of a
    decode's time, and a re-poll reads only the tail after the records known stored
    (ingest/logtail.py), so the stored part's tuples are never built; a first poll stores
    its records a batch (a slice) at a time, with the times' text made in bulk (time_texts).
    """

    __slots__ = ("_built", "_columns", "_times")

    def __init__(
        self, columns: tuple[Sequence[object], ...], times: npt.NDArray[np.datetime64]
    ) -> None:
        self._columns = columns
        self._times = times  # the records' times again, as numpy datetime64[s]
        self._built: list[AttendanceRecord] | None = None

    def time_texts(self, start: int, stop: int) -> list[str]:
        """The times of records start..stop as the store writes them (`ledger.time_text`:
        `YYYY-MM-DD HH:MM:SS.ffffff`), formatted by numpy in a third of the time that
        `datetime.isoformat` takes per record. A time value's years are 2000 to 2133 (what
        its 32 bits hold), so every text is as long and its date and time meet at index 10."""
        texts = np.datetime_as_string(self._times[start:stop], unit="us")
        if len(texts):
            texts.view(np.uint32).reshape(len(texts), -1)[:, 10] = ord(" ")  # "T" -> " "
        result: list[str] = texts.tolist()
        return result

    def __len__(self) -> int:
        return len(self._columns[0])

    @overload
    def __getitem__(self, index: int) -> AttendanceRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[AttendanceRecord]: ...

    def __getitem__(self, index: int | slice) -> AttendanceRecord | list[AttendanceRecord]:
        if self._built is not None:
            return self._built[index]
        if isinstance(index, slice):
            columns = [column[index] for column in self._columns]
            return list(map(_build_record, zip(*columns, strict=True)))
        return _build_record(column[index] for column in self._columns)

    def __iter__(self) -> Iterator[AttendanceRecord]:
        if self._built is None:
            self._built = list(map(_build_record, zip(*self._columns, strict=True)))
        return iter(self._built)


_T = TypeVar("_T")


def _map_distinct(values: list[_T], convert: Callable[[_T], str]) -> list[str]:
    """convert() once per distinct value: a log has few users and many punches."""
    mapping = {value: convert(value) for value in set(values)}
    return [mapping[value] for value in values]


def _id_decoder() -> Callable[[bytes], str]:
    """Decode NUL-padded ASCII user IDs once per distinct value (few users, many punches)."""
    seen: dict[bytes, str] = {}

    def to_id(raw: bytes) -> str:
        text = seen.get(raw)
        if text is None:
            trimmed = raw.split(b"\x00", 1)[0]
            if not trimmed:
                raise WireError("empty user ID")
            if not is_printable_id(trimmed):
                raise WireError(f"user ID {trimmed!r} is not printable ASCII")
            text = trimmed.decode("ascii")
            seen[raw] = text
        return text

    return to_id


def is_printable_id(raw: bytes) -> bool:
    """Whether a user ID is visible ASCII (no spaces, control bytes or other encodings): the
    only IDs a cadre can be enrolled under, printed or matched against the roster."""
    return bool(raw) and all(0x21 <= byte <= 0x7E for byte in raw)


def decode_attendance_buffer(
    data: bytes,
    record_count: int,
    uid_to_user_id: Mapping[int, str],
    *,
    record_size: int | None = None,
) -> Decoded[AttendanceRecord]:
    """decode_attendance on the raw result of a buffered read (with its size prefix)."""
    return decode_attendance(
        buffer_records(data), record_count, uid_to_user_id, record_size=record_size
    )


def _text(raw: bytes, encoding: str) -> str:
    return raw.split(b"\x00", 1)[0].decode(encoding, errors="replace")


def decode_users(
    data: bytes | memoryview,
    user_count: int,
    encoding: str,
    *,
    record_size: int | None = None,
) -> Decoded[UserRecord]:
    """Decode user records (no size prefix); names and passwords in the terminal's encoding.

    Undecodable name bytes become U+FFFD; a 72-byte record whose user ID is not ASCII is a
    problem, since punches could not be matched to it.
    """
    if len(data) == 0 and record_size is None and user_count <= 0:
        return Decoded([])
    size = _record_size(len(data), user_count, record_size, USER_RECORD_SIZES)
    users: list[UserRecord] = []
    problems: list[RecordProblem] = []
    if size == 28:
        for uid, privilege, password, name, card, group, _tz, number in _USER28.iter_unpack(data):
            users.append(
                UserRecord(
                    uid,
                    str(number),
                    _text(name, encoding),
                    privilege,
                    _text(password, encoding),
                    card,
                    str(group),
                )
            )
        return Decoded(users, problems, size)
    ids = _id_decoder()
    for index, fields in enumerate(_USER72.iter_unpack(data)):
        uid, privilege, password, name, card, group, raw_id = fields
        try:
            user_id = ids(raw_id)
        except WireError as exc:
            problems.append(
                RecordProblem(index, bytes(data[index * 72 : index * 72 + 72]), str(exc))
            )
            continue
        users.append(
            UserRecord(
                uid,
                user_id,
                _text(name, encoding),
                privilege,
                _text(password, encoding),
                card,
                _text(group, "ascii"),
            )
        )
    return Decoded(users, problems, size)


def decode_users_buffer(
    data: bytes, user_count: int, encoding: str, *, record_size: int | None = None
) -> Decoded[UserRecord]:
    """decode_users on the raw result of a buffered read (with its size prefix)."""
    return decode_users(buffer_records(data), user_count, encoding, record_size=record_size)


# --- other payloads -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FreeSizes:
    """The GET_FREE_SIZES counters a poller reads (capacities and what is used)."""

    users: int = 0
    fingers: int = 0
    records: int = 0
    oplog: int = 0
    admins: int = 0
    finger_capacity: int = 0
    user_capacity: int = 0
    record_capacity: int = 0
    faces: int = 0
    face_capacity: int = 0

    @property
    def fingers_available(self) -> int:
        return self.finger_capacity - self.fingers

    @property
    def users_available(self) -> int:
        return self.user_capacity - self.users

    @property
    def records_available(self) -> int:
        return self.record_capacity - self.records


def encode_free_sizes(sizes: FreeSizes) -> bytes:
    """20 i32 counters (pyzk reads 80 bytes) followed by 3 i32 face counters."""
    fields = [0] * 20
    fields[4], fields[6], fields[8] = sizes.users, sizes.fingers, sizes.records
    fields[10], fields[12] = sizes.oplog, sizes.admins
    fields[14], fields[15], fields[16] = (
        sizes.finger_capacity,
        sizes.user_capacity,
        sizes.record_capacity,
    )
    fields[17], fields[18], fields[19] = (
        sizes.fingers_available,
        sizes.users_available,
        sizes.records_available,
    )
    return struct.pack("<20i3i", *fields, sizes.faces, 0, sizes.face_capacity)


def decode_free_sizes(data: bytes) -> FreeSizes:
    if len(data) < 80:
        raise WireError(f"GET_FREE_SIZES reply of {len(data)} bytes, need 80")
    f = struct.unpack_from("<20i", data)
    faces = struct.unpack_from("<3i", data, 80) if len(data) >= 92 else (0, 0, 0)
    return FreeSizes(f[4], f[6], f[8], f[10], f[12], f[14], f[15], f[16], faces[0], faces[2])


def parse_option_request(data: bytes) -> str:
    """The key of an OPTIONS_RRQ request (`~SerialNumber\\0`)."""
    return data.split(b"\x00", 1)[0].decode("ascii", errors="replace")


def option_reply(key: str, value: str) -> bytes:
    """`key=value\\0`, the OPTIONS_RRQ answer."""
    return f"{key}={value}".encode() + b"\x00"


_PREPARE_BUFFER = struct.Struct("<bhii")
_READ_BUFFER = struct.Struct("<ii")


def prepare_buffer_request(command: int, fct: int = 0, ext: int = 0) -> bytes:
    """PREPARE_BUFFER (1503) payload asking for a whole table (users: 9/5, attendance: 13/0)."""
    return _PREPARE_BUFFER.pack(1, command, fct, ext)


def parse_prepare_buffer(data: bytes) -> tuple[int, int, int]:
    """(inner command, fct, ext) of a PREPARE_BUFFER request."""
    if len(data) < _PREPARE_BUFFER.size:
        raise WireError(f"PREPARE_BUFFER payload of {len(data)} bytes, need 11")
    _one, command, fct, ext = _PREPARE_BUFFER.unpack_from(data)
    return command, fct, ext


def prepare_buffer_ready(size: int, frame: int = 1008) -> bytes:
    """ACK_OK payload announcing a buffer too big for one reply: a flag byte, the size (pyzk
    reads bytes 1..4), the size again and a non-zero last u32 as real firmware sends."""
    return b"\x00" + struct.pack("<III", size, size, frame)


def parse_prepare_buffer_ready(data: bytes) -> int:
    """The buffer size an ACK_OK to PREPARE_BUFFER announces."""
    if len(data) < 5:
        raise WireError(f"PREPARE_BUFFER reply of {len(data)} bytes, need 5")
    size: int = _U32.unpack_from(data, 1)[0]
    return size


def read_buffer_request(start: int, size: int) -> bytes:
    return _READ_BUFFER.pack(start, size)


def parse_read_buffer(data: bytes) -> tuple[int, int]:
    """(start, size) of a READ_BUFFER (1504) request."""
    if len(data) < _READ_BUFFER.size:
        raise WireError(f"READ_BUFFER payload of {len(data)} bytes, need 8")
    start, size = _READ_BUFFER.unpack_from(data)
    return start, size


def prepare_data_payload(size: int, frame: int = 1008) -> bytes:
    """CMD_PREPARE_DATA payload: the size of the data that follows, then the data packet size
    real firmware names (1008)."""
    return struct.pack("<II", size, frame)


def parse_prepare_data(data: bytes) -> int:
    """The byte count a CMD_PREPARE_DATA announces."""
    if len(data) < 4:
        raise WireError(f"PREPARE_DATA of {len(data)} bytes, need 4")
    size: int = _U32.unpack_from(data)[0]
    return size


_EVENT = struct.Struct("<24sBB6s")


def encode_event(user_id: str, verify: int, state: int, moment: datetime) -> bytes:
    """A 32-byte real-time attendance event (REG_EVENT packet data)."""
    return _EVENT.pack(_ascii_id(user_id), verify, state, encode_event_time(moment))


def iter_chunks(size: int, limit: int) -> Iterator[tuple[int, int]]:
    """(start, length) pieces of at most `limit` bytes covering `size` bytes."""
    for start in range(0, size, limit):
        yield start, min(limit, size - start)
