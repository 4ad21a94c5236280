"""The poller's side of a terminal: pyzk 0.9 for the session, clockd for the bulk data.

pyzk does the session work (connect, comm-key authentication, simple commands); clockd reads
and decodes the tables, because pyzk's own decoders are quadratic, mis-step 49-byte records,
misread 8- and 16-byte ones and raise on one bad date. Two pyzk defects would hang an
unattended poller, so this module hardens the connection without changing pyzk's code:

- pyzk loops forever in its raw receive when a terminal closes the TCP connection mid-transfer
  (`recv` returns b"" and it asks again); the socket given to pyzk turns end-of-stream into
  ConnectionResetError.
- pyzk's connection probe waits a fixed 10 s; the probe here uses the configured timeout.

A terminal is untrusted input (see docs/protocol.md), so beyond that:

- every socket wait is bounded by one deadline for the whole attempt, not per read;
- the UDP socket is connected, so only the terminal's own address and port can answer;
- buffered reads (users, attendance) are clockd's own: the requests go through pyzk's session
  (its session and reply ids), the replies are reassembled with `wire.TcpStreamSplitter`, and
  no buffer grows beyond what the terminal's capacity allows, whatever size it declares.
  pyzk 0.9's reader allocates whatever the terminal declares and waits for more data after
  every 1008-byte frame even when the rest is already buffered (pinned: `pyzk==0.9.*`).
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from zk import const as zk_const
from zk.base import ZK, ZK_helper
from zk.exception import ZKError

from clockd.zk import wire

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer as Buffer

log = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]


class TerminalError(Exception):
    """A terminal could not be read; the message says why, in an operator's words."""


_WAKE_SLICE = 0.25
"""Longest single wait in a receive, so that `abort()` is noticed (a connected UDP socket
cannot be woken from another thread: shutdown does not interrupt its recv)."""


class _DeadlineSocket(socket.socket):
    """A socket whose every wait ends by one deadline (time.monotonic()), whatever the peer
    does: a terminal that drips one byte per second cannot stretch an exchange past it."""

    deadline: float | None = None
    aborted: bool = False

    def _arm(self, longest: float | None = None) -> None:
        if self.aborted:
            raise ConnectionAbortedError("the poll was stopped")
        if self.deadline is None:
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out (the poll's time budget is spent)")
        self.settimeout(remaining if longest is None else min(remaining, longest))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.deadline is None:
            return super().recv(bufsize, flags)
        while True:
            self._arm(_WAKE_SLICE)
            try:
                return super().recv(bufsize, flags)
            except TimeoutError:
                continue  # _arm raises when the deadline has passed or the poll was stopped

    def send(self, data: Buffer, flags: int = 0) -> int:
        self._arm()
        return super().send(data, flags)

    def sendall(self, data: Buffer, flags: int = 0) -> None:
        self._arm()
        super().sendall(data, flags)


class _StrictStreamSocket(_DeadlineSocket):
    """A TCP socket on which end-of-stream while data is expected is an error, not b""."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if not data and bufsize > 0:
            raise ConnectionResetError("the terminal closed the connection")
        return data


class _ConnectedDatagramSocket(_DeadlineSocket):
    """A UDP socket connected to the terminal: the kernel drops datagrams from any other
    address or port, so nobody else on the network can answer for the terminal."""

    def sendto(self, data: Buffer, *args: Any) -> int:
        # pyzk always passes the terminal's address; the socket is connected to it already.
        self._arm()
        return super().send(data)


class _Probe(ZK_helper):  # type: ignore[misc]
    """pyzk's TCP reachability probe, bounded by the attempt's deadline instead of a fixed
    10 s, raising the real reason (refused, unreachable, timed out): pyzk ignores the probe's
    result and later reports a refused connection as a broken pipe."""

    def __init__(self, ip: str, port: int, deadline: Callable[[], float]) -> None:
        super().__init__(ip, port)
        self._remaining = deadline

    def test_tcp(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(max(self._remaining(), 0.001))
            result = probe.connect_ex(self.address)
        if result in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT, errno.EINPROGRESS):
            raise TimeoutError(result, "timed out")
        if result:
            raise OSError(result, os.strerror(result))  # e.g. ConnectionRefusedError
        return 0


class _HardenedZK(ZK):  # type: ignore[misc]
    """pyzk's ZK with the sockets and probe above; the session steps are still pyzk's."""

    _ZK__sock: socket.socket

    def __init__(self, ip: str, port: int, timeout: float, **kwargs: Any) -> None:
        super().__init__(ip, port=port, timeout=timeout, **kwargs)
        # pyzk opens a UDP socket in __init__ that is never used: ours replaces it.
        self._ZK__sock.close()
        self.deadline = time.monotonic() + timeout
        self.helper = _Probe(ip, port, lambda: self.deadline - time.monotonic())

    # Overrides pyzk's private ZK.__create_socket (name-mangled to this name).
    def _ZK__create_socket(self) -> None:
        sock: _DeadlineSocket
        if self.tcp:
            sock = _StrictStreamSocket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = _ConnectedDatagramSocket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.deadline = self.deadline
        sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
        if self.tcp:
            sock.connect_ex(self._ZK__address)
        else:
            sock.connect(self._ZK__address)
        self._ZK__sock = sock

    @property
    def sock(self) -> _DeadlineSocket:
        sock: object = self._ZK__sock
        assert isinstance(sock, _DeadlineSocket)
        return sock

    def close_socket(self) -> None:
        self._ZK__sock.close()

    def wake(self) -> None:
        """Make a receive blocked in pyzk fail soon (another thread calls this to stop a poll)."""
        sock = self._ZK__sock
        if isinstance(sock, _DeadlineSocket):
            sock.aborted = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.debug("waking a terminal socket: %s", exc)


MAX_RECORDS = 1_000_000
"""The most attendance records clockd accepts from one terminal, whatever capacity it claims
(the largest ZKTeco terminals hold a few hundred thousand)."""
MAX_USERS = 0xFFFF
"""uids are 16-bit: no user table holds more."""
_MARGIN = 64 * 1024
_UDP_CHUNK = 16 * 1024
_MAX_SERIAL = 64
_ENABLE_GRACE = 5.0


@dataclass(frozen=True)
class DeviceInfo:
    serial: str
    firmware: str
    platform: str
    device_name: str
    notes: tuple[str, ...] = ()
    """Why the identity is not simply the reported serial number, if it is not."""


@dataclass(frozen=True)
class ClockReading:
    """The terminal clock: `moment` is None when the value names no real date."""

    moment: dt.datetime | None
    raw: int


@dataclass(frozen=True)
class LogRead:
    """One download of a terminal's user table and attendance log."""

    users: list[wire.UserRecord]
    records: Sequence[wire.AttendanceRecord]
    problems: list[wire.RecordProblem]
    record_size: int
    notes: list[str] = field(default_factory=list)
    user_problems: list[wire.RecordProblem] = field(default_factory=list)
    """User records that did not decode (e.g. an unprintable user ID), kept to quarantine."""
    raw: bytes | memoryview = b""
    """The log's records as downloaded, `record_size` bytes each (ingest/logtail.py)."""
    span: tuple[dt.datetime, dt.datetime] | None = None
    """The earliest and latest time in the log, when every record decoded."""

    @property
    def total(self) -> int:
        """Records in the attendance log, readable or not."""
        return len(self.records) + len(self.problems)


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for the operator, whatever layer raised it."""
    if isinstance(exc, TerminalError):
        return str(exc)
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, TimeoutError) or "timed out" in lowered:
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError) or "refused" in lowered:
        return "connection refused"
    if "unauthenticated" in lowered:
        return "comm key rejected (Unauthenticated)"
    if isinstance(exc, ConnectionError) or "reset" in lowered or "broken pipe" in lowered:
        return f"connection lost: {text}"
    if isinstance(exc, struct.error | wire.WireError):
        return f"malformed reply from the terminal: {text}"
    return f"{type(exc).__name__}: {text}"


class TerminalClient:
    """One session with one terminal. Use as a context manager; every call may raise
    TerminalError. `deadline` (time.monotonic()) bounds the whole session; by default it is
    `timeout` seconds after the client is made."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transport: Transport = "tcp",
        timeout: float = 10.0,
        comm_key: int = 0,
        encoding: str = "gbk",
        record_size: int | None = None,
        deadline: float | None = None,
    ) -> None:
        self.host, self.port, self.transport = host, port, transport
        self.encoding = encoding
        self.record_size = record_size
        self._zk = _HardenedZK(
            host,
            port,
            timeout,
            password=comm_key,
            force_udp=transport == "udp",
            ommit_ping=True,  # pyzk's ping pastes the address into a shell command
            encoding=encoding,
        )
        if deadline is not None:
            self._zk.deadline = deadline
        self._connected = False

    def __enter__(self) -> TerminalClient:
        self._call("connect", self._zk.connect)
        self._connected = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Say goodbye if the link still works (and time remains); always release the socket."""
        if self._connected:
            self._connected = False
            try:
                self._zk.disconnect()
            except (ZKError, OSError, struct.error) as exc:
                log.debug("%s:%s: disconnect failed: %s", self.host, self.port, exc)
        self._zk.close_socket()

    def abort(self) -> None:
        """Stop this session from another thread; the blocked call raises TerminalError."""
        self._zk.wake()

    def _call(self, what: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except (ZKError, OSError, struct.error, ValueError, TypeError, IndexError) as exc:
            raise TerminalError(f"{what}: {describe_failure(exc)}") from exc

    def _command(self, what: str, command: int, data: bytes = b"") -> bytes:
        """A one-packet command through pyzk's session; the reply's data, undecoded."""
        reply = self._call(what, self._zk._ZK__send_command, command, data, 1024)
        if not reply.get("status"):
            raise TerminalError(f"{what}: the terminal refused (reply {reply.get('code')})")
        return bytes(self._zk._ZK__data)

    def _option(self, what: str, key: str) -> str:
        raw = self._command(what, zk_const.CMD_OPTIONS_RRQ, key.encode("ascii") + b"\x00")
        value = raw.split(b"\x00", 1)[0].split(b"=", 1)[-1]
        return value.decode("utf-8", errors="replace").strip()

    def device_info(self, fallback_serial: str | None = None) -> DeviceInfo:
        """Identity and firmware. A terminal that reports no serial number (some SpeedFace
        and ZAM170 firmware) is known by its MAC address, else by `fallback_serial`."""
        serial = self._option("read serial number", "~SerialNumber")
        notes: list[str] = []
        if not serial:
            mac = self._option("read MAC address", "MAC").upper()
            if mac and mac != "00:00:00:00:00:00":
                serial = f"MAC-{mac}"
                notes.append(f"the terminal reports no serial number; known as {serial}")
            elif fallback_serial:
                serial = fallback_serial
                notes.append(
                    "the terminal reports no serial number nor MAC address; "
                    f"trusted to be the configured {fallback_serial}"
                )
            else:
                raise TerminalError("read serial number: the terminal reported an empty serial")
        if len(serial) > _MAX_SERIAL:
            raise TerminalError(f"read serial number: longer than {_MAX_SERIAL} characters")
        return DeviceInfo(
            serial=serial,
            firmware=self._call("read firmware version", self._zk.get_firmware_version)[:64],
            platform=self._option("read platform", "~Platform")[:64],
            device_name=self._option("read device name", "~DeviceName")[:64],
            notes=tuple(notes),
        )

    def clock(self) -> ClockReading:
        data = self._command("read clock", zk_const.CMD_GET_TIME)
        if len(data) < 4:
            raise TerminalError(f"read clock: a reply of {len(data)} bytes")
        raw: int = struct.unpack_from("<I", data)[0]
        try:
            return ClockReading(wire.decode_time(raw), raw)
        except wire.InvalidTimeError:
            return ClockReading(None, raw)

    def set_clock(self, moment: dt.datetime) -> None:
        self._call("set clock", self._zk.set_time, moment)

    def sizes(self) -> wire.FreeSizes | None:
        """The terminal's counters, or None when it does not report usable ones (an AK3750
        answers with 4 zero bytes; some firmware cuts the reply short)."""
        data = self._command("read sizes", zk_const.CMD_GET_FREE_SIZES)
        try:
            sizes = wire.decode_free_sizes(data)
        except wire.WireError as exc:
            log.info("%s: no usable counts: %s", self.host, exc)
            return None
        if min(sizes.users, sizes.records, sizes.user_capacity, sizes.record_capacity) < 0:
            return None
        return sizes

    def disable(self) -> None:
        self._call("disable device", self._zk.disable_device)

    def enable(self) -> None:
        """Re-enable the terminal, even if the attempt's time is spent (a slow database
        commit): a few more seconds, once, rather than a terminal that takes no punches."""
        grace = time.monotonic() + _ENABLE_GRACE
        if self._zk.deadline < grace:
            self._zk.deadline = grace
            self._zk.sock.deadline = grace
        self._call("enable device", self._zk.enable_device)

    def clear_log(self) -> None:
        self._call("clear attendance log", self._zk.clear_attendance)

    def read_log(self, sizes: wire.FreeSizes | None) -> LogRead:
        """Download users and attendance, decode them, and set bad records aside.

        `sizes` are the counts read just before (None: the terminal reported none, so the log
        is read anyway and its layout derived from the data). A punch may land between the
        count and the download, so the record size is inferred when the counts disagree.
        """
        notes: list[str] = []
        users, user_problems = self._read_users(sizes)
        if sizes is not None and sizes.records <= 0:
            return LogRead(users, [], [], self.record_size or 0, [], user_problems)
        raw_log = self._buffered(
            "read attendance log", zk_const.CMD_ATTLOG_RRQ, 0, _attendance_limit(sizes)
        )
        body = self._records("attendance log", raw_log)
        uid_map = {user.uid: user.user_id for user in users}
        decoded = self._decode_log(body, sizes, uid_map)
        if decoded.record_size == 8 and not set(_uids_of(body, 8)) <= uid_map.keys():
            # Someone was enrolled between the two reads: read the user table again.
            users, user_problems = self._read_users(None)
            uid_map = {user.uid: user.user_id for user in users}
            decoded = self._decode_log(body, sizes, uid_map)
        if sizes is None:
            notes.append(
                f"the terminal reported no record counts; {len(decoded.records)} records "
                f"found in the log ({decoded.record_size}-byte layout)"
            )
        return LogRead(
            users,
            decoded.records,
            decoded.problems,
            decoded.record_size,
            notes,
            user_problems,
            body,
            decoded.span,
        )

    def _read_users(
        self, sizes: wire.FreeSizes | None
    ) -> tuple[list[wire.UserRecord], list[wire.RecordProblem]]:
        if sizes is not None and sizes.users <= 0:
            return [], []
        raw = self._buffered(
            "read user table", zk_const.CMD_USERTEMP_RRQ, zk_const.FCT_USER, _user_limit(sizes)
        )
        body = self._records("user table", raw)
        count = sizes.users if sizes is not None else -1
        try:
            decoded = wire.decode_users(
                body, count, self.encoding, record_size=_user_size(len(body), count)
            )
        except wire.WireError as exc:
            raise TerminalError(f"decode user table: {exc}") from exc
        for problem in decoded.problems:
            log.warning(
                "%s: user record %d unreadable: %s", self.host, problem.index, problem.reason
            )
        return list(decoded.records), decoded.problems

    def _decode_log(
        self, body: memoryview, sizes: wire.FreeSizes | None, uid_map: dict[int, str]
    ) -> wire.Decoded[wire.AttendanceRecord]:
        try:
            if sizes is None and self.record_size is None:
                return _most_plausible_layout(body, uid_map)
            count = sizes.records if sizes is not None else -1
            size = attendance_record_size(len(body), count, self.record_size)
            return wire.decode_attendance(body, count, uid_map, record_size=size)
        except wire.WireError as exc:
            raise TerminalError(f"decode attendance log: {exc}") from exc

    @staticmethod
    def _records(what: str, raw: bytes) -> memoryview:
        try:
            return wire.buffer_records(raw)
        except wire.WireError as exc:
            raise TerminalError(f"decode {what}: {exc}") from exc

    # --- buffered reads: pyzk's session, clockd's framing -------------------------------

    def _buffered(self, what: str, command: int, fct: int, limit: int) -> bytes:
        """A whole table by PREPARE_BUFFER / READ_BUFFER, never holding more than `limit`."""
        try:
            return _BufferedRead(self._zk, limit).run(command, fct)
        except TerminalError as exc:
            raise TerminalError(f"{what}: {exc}") from exc
        except (OSError, struct.error, wire.WireError) as exc:
            raise TerminalError(f"{what}: {describe_failure(exc)}") from exc


class _BufferedRead:
    """One buffered read over pyzk's session socket.

    Requests carry pyzk's session id and the next reply id, so pyzk's session goes on after
    it. Replies are cut into packets by clockd's own reassembly, whatever the read boundaries
    (one 64 KiB packet, 1008-byte frames, many frames per read), and every size the terminal
    declares is checked against `limit` before anything is kept.
    """

    def __init__(self, zk: _HardenedZK, limit: int) -> None:
        self.zk = zk
        self.limit = limit
        self.tcp: bool = zk.tcp
        self.sock = zk.sock
        longest = min(max(limit, wire.MAX_TCP_CHUNK), wire.MAX_TCP_PACKET) + 64
        self.splitter = wire.TcpStreamSplitter(longest)
        self.pending: deque[bytes] = deque()

    def run(self, command: int, fct: int) -> bytes:
        reply = self.exchange(wire.Cmd.PREPARE_BUFFER, wire.prepare_buffer_request(command, fct))
        if reply.command == wire.Cmd.DATA:
            self.check_total(len(reply.data))
            return reply.data
        if reply.command != wire.Cmd.ACK_OK:
            raise TerminalError(f"buffered read refused (reply {reply.command})")
        size = wire.parse_prepare_buffer_ready(reply.data)
        self.check_total(size)
        data = bytearray()
        chunk = wire.MAX_TCP_CHUNK if self.tcp else _UDP_CHUNK
        for start, length in wire.iter_chunks(size, chunk):
            data += self.read_chunk(start, length)
        self.exchange(wire.Cmd.FREE_DATA)
        return bytes(data)

    def check_total(self, size: int) -> None:
        if size > self.limit:
            raise TerminalError(
                f"the terminal declares {size} bytes, more than its capacity allows "
                f"({self.limit} bytes)"
            )

    def read_chunk(self, start: int, length: int) -> bytes:
        reply = self.exchange(wire.Cmd.READ_BUFFER, wire.read_buffer_request(start, length))
        if reply.command == wire.Cmd.DATA:
            if len(reply.data) != length:
                raise TerminalError(f"chunk at {start}: {len(reply.data)} bytes, asked {length}")
            return reply.data
        if reply.command != wire.Cmd.PREPARE_DATA:
            raise TerminalError(f"chunk at {start}: unexpected reply {reply.command}")
        declared = wire.parse_prepare_data(reply.data)
        if declared != length:
            raise TerminalError(f"chunk at {start}: announces {declared} bytes, asked {length}")
        data = bytearray()
        while len(data) < length:
            packet = self.next_packet()
            if packet.command != wire.Cmd.DATA:
                raise TerminalError(
                    f"chunk at {start}: reply {packet.command} after {len(data)} of {length} bytes"
                )
            if len(data) + len(packet.data) > length:
                raise TerminalError(f"chunk at {start}: more data than the {length} announced")
            data += packet.data
        final = self.next_packet()
        if final.command != wire.Cmd.ACK_OK:
            raise TerminalError(f"chunk at {start}: reply {final.command} instead of ACK_OK")
        return bytes(data)

    def exchange(self, command: int, data: bytes = b"") -> wire.Packet:
        zk = self.zk
        reply_id = zk._ZK__reply_id + 1
        if reply_id >= zk_const.USHRT_MAX:
            reply_id -= zk_const.USHRT_MAX
        packet = wire.build_packet(command, zk._ZK__session_id, reply_id, data)
        if self.tcp:
            self.sock.sendall(wire.frame_tcp(packet))
        else:
            self.sock.send(packet)
        reply = self.next_packet()
        zk._ZK__reply_id = reply.reply_id
        return reply

    def next_packet(self) -> wire.Packet:
        if not self.tcp:
            return wire.parse_packet(self.sock.recv(65536))
        while not self.pending:
            self.pending.extend(self.splitter.feed(self.sock.recv(1 << 16)))
        return wire.parse_packet(self.pending.popleft())


def _attendance_limit(sizes: wire.FreeSizes | None) -> int:
    records = MAX_RECORDS
    if sizes is not None and sizes.record_capacity > 0:
        records = min(max(sizes.record_capacity, sizes.records), MAX_RECORDS)
    return 4 + records * max(wire.ATTENDANCE_RECORD_SIZES) + _MARGIN


def _user_limit(sizes: wire.FreeSizes | None) -> int:
    users = MAX_USERS
    if sizes is not None and sizes.user_capacity > 0:
        users = min(max(sizes.user_capacity, sizes.users), MAX_USERS)
    return 4 + users * max(wire.USER_RECORD_SIZES) + _MARGIN


def _uids_of(body: memoryview, size: int) -> list[int]:
    """The distinct uids of a log of `size`-byte records (8, 40, 49: the uid is bytes 0-1)."""
    if size == 16 or not len(body):
        return []
    table = np.frombuffer(body, dtype=np.dtype([("uid", "<u2"), ("rest", f"V{size - 2}")]))
    uids: list[int] = np.unique(table["uid"]).tolist()
    return uids


def _most_plausible_layout(
    body: memoryview, uid_map: dict[int, str]
) -> wire.Decoded[wire.AttendanceRecord]:
    """With no record count to step by, the layout whose records look most like punches: the
    most records with a real date between 2000 and tomorrow (ties: the larger record)."""
    tomorrow = dt.datetime.now() + dt.timedelta(days=1)
    best: tuple[int, int, wire.Decoded[wire.AttendanceRecord]] | None = None
    for size in wire.ATTENDANCE_RECORD_SIZES:
        if len(body) % size:
            continue
        decoded = wire.decode_attendance(body, -1, uid_map, record_size=size)
        score = sum(1 for r in decoded.records if wire.ZERO_TIME < r.timestamp <= tomorrow)
        if best is None or (score, size) > best[:2]:
            best = (score, size, decoded)
    if best is None:
        raise wire.RecordSizeError(
            f"{len(body)} bytes is no whole number of {wire.ATTENDANCE_RECORD_SIZES} records"
        )
    return best[2]


def attendance_record_size(total: int, count: int, configured: int | None) -> int:
    """The attendance record size of a buffer: configured, else total/count, else the size
    that divides the buffer into the count nearest to what the terminal reported (a punch
    may have landed between reading the count and the download)."""
    return _layout_size(total, count, configured, wire.ATTENDANCE_RECORD_SIZES, "attendance")


def _user_size(total: int, count: int) -> int:
    return _layout_size(total, count, None, wire.USER_RECORD_SIZES, "user")


def _layout_size(
    total: int, count: int, configured: int | None, sizes: tuple[int, ...], kind: str
) -> int:
    if configured is not None and total % configured == 0:
        return configured
    if count > 0 and total % count == 0 and total // count in sizes:
        return total // count
    fitting = [size for size in sizes if total % size == 0]
    if not fitting:
        raise TerminalError(f"decode {kind}: {total} bytes is no whole number of {sizes} records")
    return min(fitting, key=lambda size: (abs(total // size - count), -size))
