"""The poller's side of a terminal: pyzk 0.9 for the connection, clockd's decoders for records.

pyzk does the protocol work (connect, comm-key authentication, the 1503/1504 buffered read);
clockd decodes what it returns, because pyzk's own decoders are quadratic, mis-step 49-byte
records and raise on one bad date. Two pyzk defects would hang an unattended poller, so this
module hardens the connection without changing pyzk's code:

- pyzk loops forever in its raw receive when a terminal closes the TCP connection mid-transfer
  (`recv` returns b"" and it asks again); the socket given to pyzk turns end-of-stream into
  ConnectionResetError.
- pyzk's connection probe waits a fixed 10 s; the probe here uses the configured timeout.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from zk import const as zk_const
from zk.base import ZK, ZK_helper
from zk.exception import ZKError

from clockd.zk import wire

log = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]


class TerminalError(Exception):
    """A terminal could not be read; the message says why, in an operator's words."""


class _StrictStreamSocket(socket.socket):
    """A TCP socket on which end-of-stream while data is expected is an error, not b""."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if not data and bufsize > 0:
            raise ConnectionResetError("the terminal closed the connection")
        return data


class _Probe(ZK_helper):  # type: ignore[misc]
    """pyzk's TCP reachability probe, with the configured timeout instead of a fixed 10 s,
    raising the real reason (refused, unreachable, timed out): pyzk ignores the probe's
    result and later reports a refused connection as a broken pipe."""

    def __init__(self, ip: str, port: int, timeout: float) -> None:
        super().__init__(ip, port)
        self._timeout = timeout

    def test_tcp(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(self._timeout)
            result = probe.connect_ex(self.address)
        if result in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT, errno.EINPROGRESS):
            raise TimeoutError(result, "timed out")
        if result:
            raise OSError(result, os.strerror(result))  # e.g. ConnectionRefusedError
        return 0


class _HardenedZK(ZK):  # type: ignore[misc]
    """pyzk's ZK with the socket and probe above; every protocol step is still pyzk's."""

    def __init__(self, ip: str, port: int, timeout: float, **kwargs: Any) -> None:
        super().__init__(ip, port=port, timeout=timeout, **kwargs)
        # pyzk opens a UDP socket in __init__ that a TCP connection never uses.
        self._ZK__sock.close()
        self.helper = _Probe(ip, port, timeout)

    # Overrides pyzk's private ZK.__create_socket (name-mangled to this name).
    def _ZK__create_socket(self) -> None:
        if self.tcp:
            sock: socket.socket = _StrictStreamSocket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(self._ZK__timeout)
        if self.tcp:
            sock.connect_ex(self._ZK__address)
        self._ZK__sock = sock

    def close_socket(self) -> None:
        self._ZK__sock.close()

    def wake(self) -> None:
        """Make a receive blocked in pyzk fail now (another thread calls this to stop a poll)."""
        sock: socket.socket = self._ZK__sock
        try:
            if self.tcp:
                sock.shutdown(socket.SHUT_RDWR)
                return
            host, port = sock.getsockname()
            if port:  # a stray byte is no ZK packet: pyzk's parse of it raises
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
                    poke.sendto(b"\0", ("127.0.0.1" if host == "0.0.0.0" else host, port))  # noqa: S104
        except OSError as exc:
            log.debug("waking a terminal socket: %s", exc)


@dataclass(frozen=True)
class DeviceInfo:
    serial: str
    firmware: str
    platform: str
    device_name: str


@dataclass(frozen=True)
class LogRead:
    """One download of a terminal's user table and attendance log."""

    users: list[wire.UserRecord]
    records: list[wire.AttendanceRecord]
    problems: list[wire.RecordProblem]
    record_size: int


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
    TerminalError."""

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
        """Say goodbye if the link still works; always release the socket."""
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

    def device_info(self) -> DeviceInfo:
        serial = self._call("read serial number", self._zk.get_serialnumber)
        if not serial:
            raise TerminalError("read serial number: the terminal reported an empty serial")
        return DeviceInfo(
            serial=serial,
            firmware=self._call("read firmware version", self._zk.get_firmware_version),
            platform=self._call("read platform", self._zk.get_platform),
            device_name=self._call("read device name", self._zk.get_device_name),
        )

    def clock(self) -> dt.datetime:
        value: dt.datetime = self._call("read clock", self._zk.get_time)
        return value

    def set_clock(self, moment: dt.datetime) -> None:
        self._call("set clock", self._zk.set_time, moment)

    def sizes(self) -> wire.FreeSizes:
        self._call("read sizes", self._zk.read_sizes)
        z = self._zk
        return wire.FreeSizes(
            users=z.users,
            fingers=z.fingers,
            records=z.records,
            oplog=z.dummy,
            admins=z.cards,
            finger_capacity=z.fingers_cap,
            user_capacity=z.users_cap,
            record_capacity=z.rec_cap,
            faces=z.faces,
            face_capacity=z.faces_cap,
        )

    def disable(self) -> None:
        self._call("disable device", self._zk.disable_device)

    def enable(self) -> None:
        self._call("enable device", self._zk.enable_device)

    def clear_log(self) -> None:
        self._call("clear attendance log", self._zk.clear_attendance)

    def read_log(self, sizes: wire.FreeSizes) -> LogRead:
        """Download users and attendance, decode them, and set bad records aside.

        `sizes` are the counts read just before; a punch may land between that and the
        download, so the record size is inferred from the data when the counts disagree.
        """
        users: list[wire.UserRecord] = []
        user_problems: list[wire.RecordProblem] = []
        if sizes.users > 0:
            raw_users = self._buffered(
                "read user table", zk_const.CMD_USERTEMP_RRQ, zk_const.FCT_USER
            )
            decoded_users = self._decode(
                "user table",
                lambda body: wire.decode_users(
                    body, sizes.users, self.encoding, record_size=_user_size(len(body), sizes.users)
                ),
                raw_users,
            )
            users, user_problems = decoded_users.records, decoded_users.problems
        for problem in user_problems:
            log.warning(
                "%s: user record %d unreadable: %s", self.host, problem.index, problem.reason
            )
        if sizes.records <= 0:
            return LogRead(users, [], [], self.record_size or 0)
        raw_log = self._buffered("read attendance log", zk_const.CMD_ATTLOG_RRQ, 0)
        uid_map = {user.uid: user.user_id for user in users}
        decoded = self._decode(
            "attendance log",
            lambda body: wire.decode_attendance(
                body,
                sizes.records,
                uid_map,
                record_size=attendance_record_size(len(body), sizes.records, self.record_size),
            ),
            raw_log,
        )
        return LogRead(users, decoded.records, decoded.problems, decoded.record_size)

    def _buffered(self, what: str, command: int, fct: int) -> bytes:
        data, _size = self._call(what, self._zk.read_with_buffer, command, fct)
        if not isinstance(data, bytes | bytearray):
            raise TerminalError(f"{what}: the terminal sent no data")
        return bytes(data)

    def _decode(self, what: str, decode: Any, raw: bytes) -> Any:
        try:
            return decode(wire.buffer_records(raw))
        except wire.WireError as exc:
            raise TerminalError(f"decode {what}: {exc}") from exc


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
