"""Emulated ZKTeco terminals: a device model and the UDP/TCP servers that speak for it.

Used by `clockd simulate`, the demo, the benchmarks and the tests, so a poller can be run
against something that answers byte for byte like a village terminal, faults included.

Build devices, add them to one server, start it::

    device = EmulatedDevice("CKD0000000001", attendance_record_size=40, comm_key=0)
    device.add_user("1001", "张三")
    device.add_punch("1001", datetime(2026, 11, 16, 8, 1))
    with EmulatorServer() as server:                 # one asyncio loop in one thread
        endpoint = server.add(device, host="127.0.0.1", port=0, transport="tcp")
        ...  # talk to ("127.0.0.1", endpoint.port)

or `server.run_until_signal(on_ready=...)` to serve in the foreground until SIGTERM/SIGINT.

Behaviour worth knowing, chosen to match real terminals:

- One client session per device at a time. While a session is live, another client's
  CMD_CONNECT is answered CMD_ACK_ERROR (pyzk: "Invalid response: Can't connect"). A session
  ends on CMD_EXIT, when its TCP connection closes, on a failed CMD_AUTH, or when another
  client connects after it has been idle for `session_timeout` seconds (10 by default; UDP
  clients that vanish without CMD_EXIT, e.g. a killed poller, hold the device until then).
- While disabled (CMD_DISABLEDEVICE) the device records no punches: `add_punch` returns
  False, as a terminal showing "working..." ignores fingers. The device enables itself again
  when the session ends, so a poller that dies mid-window cannot leave it dead.
- A punch by a user ID that is not enrolled enrols it first (with no name): a real terminal
  only records enrolled users.
- Commands from a client without an authenticated session get CMD_ACK_UNAUTH.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import enum
import functools
import logging
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from clockd.domain import PunchFields
from clockd.signals import SignalLatch
from clockd.zk import wire
from clockd.zk.wire import Cmd

__all__ = [
    "EmulatedDevice",
    "EmulatorServer",
    "Endpoint",
    "Faults",
    "PunchFeed",
    "Transport",
]

log = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Faults:
    """What is wrong with a terminal right now; assign a new value to `device.faults`.

    - `refuse`: nothing listens on the device's port (TCP: connection refused; UDP: no answer).
      Existing TCP connections are left alone.
    - `hang`: connections are accepted and requests read, but nothing is ever answered.
    - `reply_delay`: seconds to wait before each reply.
    - `drop_after_chunks`: after answering this many READ_BUFFER requests in a session (the
      user table's count too), close the connection (UDP: stop answering) instead of
      answering the next one; the session ends.
    - `drop_mid_packet`: with `drop_after_chunks`, send the next chunk's first data packet cut
      in half before closing (a link lost mid-transfer).
    - `zero_time_punches`: the next N punches are stored with time 0 (a reset clock,
      read back as 2000-01-01 00:00:00).
    - `wrong_serial`: report this serial number instead of the device's own.
    - `corrupt_replies`: the next N replies are sent truncated to half their length (only the
      first packet of a multi-packet reply, the rest not at all).

    Hostile or broken firmware (the poller must stay bounded and on time; docs/protocol.md):

    - `declared_size`: PREPARE_BUFFER's answer and every PREPARE_DATA announce this many bytes
      (e.g. 4 GB), whatever the data is.
    - `drip_seconds`: over TCP, the data of each READ_BUFFER answer is sent one byte at a
      time, this many seconds apart, after a whole PREPARE_DATA packet and the next header.
    - `flood_seconds`: over UDP, each READ_BUFFER is answered by DATA datagrams without end for
      this long.
    - `spoof_udp`: UDP replies come from another port of the same host.
    - `free_sizes`: the raw GET_FREE_SIZES answer instead of the real counters (an AK3750
      answers 4 zero bytes).
    - `count_factor`: GET_FREE_SIZES reports this many times the real record count.
    - `clock_value`: the raw u32 GET_TIME answers (e.g. one naming 31 February).
    """

    refuse: bool = False
    hang: bool = False
    reply_delay: float = 0.0
    drop_after_chunks: int | None = None
    drop_mid_packet: bool = False
    zero_time_punches: int = 0
    wrong_serial: str | None = None
    corrupt_replies: int = 0
    declared_size: int | None = None
    drip_seconds: float = 0.0
    flood_seconds: float = 0.0
    spoof_udp: bool = False
    free_sizes: bytes | None = None
    count_factor: int = 1
    clock_value: int | None = None


@dataclass(eq=False, slots=True)
class _Session:
    session_id: int
    peer: Hashable
    push: Callable[[bytes], None]
    authenticated: bool
    last_seen: float
    events: int = 0
    buffer: bytes | None = None
    chunks: int = 0


class EmulatedDevice:
    """One terminal's state: identity, users, attendance log, clock and faults. Thread-safe.

    `attendance_record_size` (8/16/40/49) and `user_record_size` (28/72) choose the firmware's
    record layouts; 16-byte attendance and 28-byte users need numeric user IDs. `encoding` is
    the terminal's text encoding for names (gbk on Chinese firmware). A `comm_key` of 0 means
    none, as on the terminals. Terminals keep naive wall-clock time: `zone` is the IANA zone
    whose wall clock this one shows (None: the host's local time), and `clock_drift` how many
    seconds it is ahead of that; CMD_SET_TIME changes the drift. `session_timeout` is how
    long an idle session keeps other clients out. `data_frame` is the largest CMD_DATA packet
    of a TCP chunk: real firmware sends 1008-byte frames (pyzk's own test capture), the default
    sends each chunk in one packet.
    """

    def __init__(
        self,
        serial: str = "EMU0000000001",
        *,
        name: str = "ZK Emulator",
        platform: str = "ZMM220_TFT",
        firmware: str = "Ver 6.60 Apr 28 2020",
        mac: str = "00:17:61:00:00:01",
        ip: str = "192.168.1.201",
        attendance_record_size: int = 40,
        user_record_size: int = 72,
        encoding: str = "gbk",
        comm_key: int = 0,
        record_capacity: int = 100_000,
        user_capacity: int = 3_000,
        finger_capacity: int = 3_000,
        clock_drift: float = 0.0,
        zone: str | None = None,
        session_timeout: float = 10.0,
        data_frame: int = wire.MAX_TCP_CHUNK,
    ) -> None:
        if attendance_record_size not in wire.ATTENDANCE_RECORD_SIZES:
            raise ValueError(
                f"attendance_record_size must be one of {wire.ATTENDANCE_RECORD_SIZES}"
            )
        if user_record_size not in wire.USER_RECORD_SIZES:
            raise ValueError(f"user_record_size must be one of {wire.USER_RECORD_SIZES}")
        codecs.lookup(encoding)  # an unknown encoding fails here, not at the first poll
        self.serial = serial
        self.name = name
        self.platform = platform
        self.firmware = firmware
        self.mac = mac
        self.ip = ip
        self.attendance_record_size = attendance_record_size
        self.user_record_size = user_record_size
        self.encoding = encoding
        self.comm_key = comm_key
        self.record_capacity = record_capacity
        self.user_capacity = user_capacity
        self.finger_capacity = finger_capacity
        self.session_timeout = session_timeout
        if not 1 <= data_frame <= wire.MAX_TCP_CHUNK:
            raise ValueError(f"data_frame must be 1..{wire.MAX_TCP_CHUNK}")
        self.data_frame = data_frame
        self.zone = zone
        self._tz = ZoneInfo(zone) if zone else None
        self._lock = threading.RLock()
        self._drift = clock_drift
        self._enabled = True
        self._faults = Faults()
        self._users: dict[int, wire.UserRecord] = {}
        self._uid_of: dict[str, int] = {}
        self._log = bytearray()
        self._count = 0
        self._session: _Session | None = None
        self._fault_listeners: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"EmulatedDevice({self.serial!r}, {self._count} records, {len(self._users)} users)"

    # --- users ----------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str = "",
        *,
        privilege: int = 0,
        password: str = "",
        card: int = 0,
        group: str = "1",
    ) -> wire.UserRecord:
        """Enrol a user (or update an enrolled one, keeping its uid); returns the record.

        Raises ValueError when the user ID does not fit this firmware's layouts or the user
        table is full.
        """
        with self._lock:
            uid = self._uid_of.get(user_id)
            if uid is None:
                if len(self._users) >= self.user_capacity:
                    raise ValueError(f"user table of {self.serial} is full")
                uid = max(self._users, default=0) + 1
                if uid > 0xFFFF:
                    raise ValueError("no free uid")
            user = wire.UserRecord(uid, user_id, name, privilege, password, card, group)
            wire.encode_user(user, self.user_record_size, self.encoding)
            wire.pack_attendance(
                self.attendance_record_size, uid=uid, user_id=user_id, time_value=0
            )
            self._users[uid] = user
            self._uid_of[user_id] = uid
            return user

    def users(self) -> list[wire.UserRecord]:
        with self._lock:
            return [self._users[uid] for uid in sorted(self._users)]

    @property
    def user_count(self) -> int:
        return len(self._users)

    # --- attendance -----------------------------------------------------------------------

    def add_punch(
        self,
        user_id: str,
        timestamp: datetime | None = None,
        *,
        verify: int = 1,
        state: int = 0,
        workcode: int = 0,
    ) -> bool:
        """Record a punch (at the device clock's current time by default).

        Returns False when the log is full or the device is disabled, as a terminal would
        refuse it. Real-time events go to a session that registered for them.
        """
        with self._lock:
            time_value = self._record(user_id, timestamp, verify, state, workcode)
            if time_value is None:
                return False
            session = self._session
            if session is None or not session.events & wire.EF_ATTLOG:
                return True
            moment = wire.decode_time(time_value)
            event = wire.encode_event(user_id, verify, state, moment)
            packet = wire.build_packet(Cmd.REG_EVENT, session.session_id, 0, event)
        session.push(packet)
        return True

    def add_punches(self, punches: Iterable[PunchFields]) -> int:
        """Record many punches (domain Punch or AttendanceRecord); returns how many fit."""
        recorded = 0
        with self._lock:
            for item in punches:
                if (
                    self._record(
                        item.user_id, item.timestamp, item.verify, item.state, item.workcode
                    )
                    is None
                ):
                    break
                recorded += 1
        return recorded

    def _record(
        self, user_id: str, timestamp: datetime | None, verify: int, state: int, workcode: int
    ) -> int | None:
        """Append one record; returns the time value stored, or None when refused."""
        if not self._enabled or self._count >= self.record_capacity:
            return None
        moment = timestamp if timestamp is not None else self.now()
        uid = self._uid_of.get(user_id)
        if uid is None:
            uid = self.add_user(user_id).uid
        faults = self._faults
        if faults.zero_time_punches > 0:
            time_value = 0
            self._faults = dataclasses.replace(
                faults, zero_time_punches=faults.zero_time_punches - 1
            )
        else:
            time_value = wire.encode_time(moment)
        self._log += wire.pack_attendance(
            self.attendance_record_size,
            uid=uid,
            user_id=user_id,
            time_value=time_value,
            verify=verify,
            state=state,
            workcode=workcode,
        )
        self._count += 1
        return time_value

    def attendance(self) -> list[wire.AttendanceRecord]:
        """The log as a poller would decode it (zeroed times read as 2000-01-01)."""
        with self._lock:
            data, count = bytes(self._log), self._count
            uids = {uid: user.user_id for uid, user in self._users.items()}
        return wire.decode_attendance(
            data, count, uids, record_size=self.attendance_record_size
        ).records

    @property
    def punch_count(self) -> int:
        return self._count

    def clear_attendance(self) -> None:
        with self._lock:
            self._log.clear()
            self._count = 0

    # --- clock, state, faults -------------------------------------------------------------

    def now(self) -> datetime:
        """The device clock: wall-clock time in its zone plus the drift, to the second."""
        return (self._wall_clock() + timedelta(seconds=self._drift)).replace(microsecond=0)

    def _wall_clock(self) -> datetime:
        if self._tz is None:
            return datetime.now()
        return datetime.now(self._tz).replace(tzinfo=None)

    @property
    def clock_drift(self) -> float:
        return self._drift

    @clock_drift.setter
    def clock_drift(self, seconds: float) -> None:
        self._drift = seconds

    def set_clock(self, moment: datetime) -> None:
        """Set the device clock, as CMD_SET_TIME does."""
        self._drift = (moment - self._wall_clock()).total_seconds()

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def in_session(self) -> bool:
        """Whether a client currently holds the device's one session."""
        return self._session is not None

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """Replace the fault set; a change of `refuse` takes effect before this returns."""
        with self._lock:
            changed = faults.refuse != self._faults.refuse
            self._faults = faults
            listeners = list(self._fault_listeners) if changed else []
        for listener in listeners:
            listener()

    def _take_corruption(self) -> bool:
        with self._lock:
            faults = self._faults
            if faults.corrupt_replies <= 0:
                return False
            self._faults = dataclasses.replace(faults, corrupt_replies=faults.corrupt_replies - 1)
            return True

    def start_feed(
        self, user_ids: Sequence[str], interval: float, *, verify: int = 1, state: int = 0
    ) -> PunchFeed:
        """Start a background thread in which these cadres punch in turn every `interval` s."""
        feed = PunchFeed(self, user_ids, interval, verify=verify, state=state)
        feed.start()
        return feed

    # --- protocol (called by the servers, in the event loop's thread) ---------------------

    def _end_session(self) -> None:
        self._session = None
        self._enabled = True

    def _disconnected(self, peer: Hashable) -> None:
        with self._lock:
            if self._session is not None and self._session.peer == peer:
                self._end_session()

    def _users_buffer(self) -> bytes:
        size, encoding = self.user_record_size, self.encoding
        records = b"".join(wire.encode_user(u, size, encoding) for u in self.users())
        return wire.size_prefixed(records)

    def _options(self) -> dict[str, str]:
        gateway = ".".join([*self.ip.split(".")[:3], "1"])
        return {
            "~serialnumber": (
                self.serial if self._faults.wrong_serial is None else self._faults.wrong_serial
            ),
            "~platform": self.platform,
            "~devicename": self.name,
            "mac": self.mac,
            "~zkfpversion": "10",
            "zkfaceversion": "0",
            "~extendfmt": "1" if self.attendance_record_size >= 40 else "0",
            "~userextfmt": "1" if self.user_record_size == 72 else "0",
            "facefunon": "0",
            "compatoldfirmware": "0",
            "~pin2width": "24" if self.user_record_size == 72 else "9",
            "~os": "1",
            "ipaddress": self.ip,
            "netmask": "255.255.255.0",
            "gateipaddress": gateway,
        }

    def _free_sizes(self) -> wire.FreeSizes:
        admins = sum(1 for user in self._users.values() if user.privilege >= 14)
        return wire.FreeSizes(
            users=len(self._users),
            records=self._count * self._faults.count_factor,
            admins=admins,
            finger_capacity=self.finger_capacity,
            user_capacity=self.user_capacity,
            record_capacity=self.record_capacity,
        )


class _Action(enum.Enum):
    REPLY = "reply"
    DROP = "drop"  # close the connection without answering
    CUT = "cut"  # send the packets with the last one cut in half, then close
    FLOOD = "flood"  # after the packets, DATA datagrams without end (faults.flood_seconds)


@dataclass(slots=True)
class _Response:
    packets: list[bytes]
    action: _Action = _Action.REPLY


_NO_REPLY = _Response([])
_SIMPLE_OK = frozenset({Cmd.REFRESHDATA, Cmd.CANCELCAPTURE, Cmd.STARTVERIFY, Cmd.OPTIONS_WRQ})


class _Terminal:
    """The protocol side of one device: turns a request packet into reply packets."""

    def __init__(self, device: EmulatedDevice) -> None:
        self.device = device

    def handle(
        self, raw: bytes, peer: Hashable, push: Callable[[bytes], None], udp: bool
    ) -> _Response:
        try:
            packet = wire.parse_packet(raw)
        except wire.WireError as exc:
            log.warning("%s: ignoring %s", self.device.serial, exc)
            return _NO_REPLY
        if not packet.checksum_ok:
            log.info(
                "%s: bad checksum on command %d (accepted)", self.device.serial, packet.command
            )
        if packet.command == Cmd.ACK_OK:  # the client acknowledging an event
            return _NO_REPLY
        with self.device._lock:
            return self._dispatch(packet, peer, push, udp)

    def _dispatch(
        self, packet: wire.Packet, peer: Hashable, push: Callable[[bytes], None], udp: bool
    ) -> _Response:
        device = self.device
        now = time.monotonic()
        command = packet.command

        def reply(code: int, data: bytes = b"", session_id: int = packet.session_id) -> _Response:
            return _Response([wire.build_packet(code, session_id, packet.reply_id, data)])

        session = device._session
        if command == Cmd.CONNECT:
            if (
                session is not None
                and session.peer != peer
                and now - session.last_seen < device.session_timeout
            ):
                log.info("%s: busy, refusing a second session", device.serial)
                return reply(Cmd.ACK_ERROR, session_id=0)
            if session is not None:
                device._end_session()
            session_id = random.randint(1, 0xFFFE)
            device._session = _Session(session_id, peer, push, not device.comm_key, now)
            code = Cmd.ACK_UNAUTH if device.comm_key else Cmd.ACK_OK
            return reply(code, session_id=session_id)
        if session is None or session.peer != peer:
            return reply(Cmd.ACK_UNAUTH)
        session.last_seen = now
        if command == Cmd.AUTH:
            if not device.comm_key or wire.verify_commkey(
                packet.data[:4], device.comm_key, session.session_id
            ):
                session.authenticated = True
                return reply(Cmd.ACK_OK)
            log.info("%s: wrong comm key", device.serial)
            device._end_session()
            return reply(Cmd.ACK_UNAUTH)
        if not session.authenticated:
            return reply(Cmd.ACK_UNAUTH)
        if command == Cmd.EXIT:
            device._end_session()
            return reply(Cmd.ACK_OK)
        if command == Cmd.READ_BUFFER:
            return self._read_buffer(packet, session, udp)
        if command == Cmd.PREPARE_BUFFER:
            return self._prepare_buffer(packet, session)
        answer, data = self._simple(packet, session)
        return reply(answer, data, session.session_id)

    def _simple(self, packet: wire.Packet, session: _Session) -> tuple[int, bytes]:
        """Commands answered by one packet: (reply code, data)."""
        device = self.device
        command = packet.command
        if command == Cmd.DISABLEDEVICE or command == Cmd.ENABLEDEVICE:
            device._enabled = command == Cmd.ENABLEDEVICE
            return Cmd.ACK_OK, b""
        if command == Cmd.GET_VERSION:
            return Cmd.ACK_OK, device.firmware.encode() + b"\x00"
        if command == Cmd.OPTIONS_RRQ:
            key = wire.parse_option_request(packet.data)
            value = device._options().get(key.lower())
            if value is None:
                return Cmd.ACK_ERROR, b""
            return Cmd.ACK_OK, wire.option_reply(key, value)
        faults = device._faults
        if command == Cmd.GET_FREE_SIZES:
            if faults.free_sizes is not None:
                return Cmd.ACK_OK, faults.free_sizes
            return Cmd.ACK_OK, wire.encode_free_sizes(device._free_sizes())
        if command == Cmd.GET_TIME:
            if faults.clock_value is not None:
                return Cmd.ACK_OK, _U32.pack(faults.clock_value)
            try:
                return Cmd.ACK_OK, _U32.pack(wire.encode_time(device.now()))
            except wire.InvalidTimeError:
                return Cmd.ACK_ERROR, b""
        if command == Cmd.SET_TIME:
            try:
                device.set_clock(wire.decode_time(_U32.unpack_from(packet.data)[0]))
            except (struct.error, wire.InvalidTimeError):
                return Cmd.ACK_ERROR, b""
            return Cmd.ACK_OK, b""
        if command == Cmd.CLEAR_ATTLOG:
            device.clear_attendance()
            return Cmd.ACK_OK, b""
        if command == Cmd.FREE_DATA:
            session.buffer = None
            return Cmd.ACK_OK, b""
        if command == Cmd.REG_EVENT:
            session.events = _U32.unpack_from(packet.data)[0] if len(packet.data) >= 4 else 0
            return Cmd.ACK_OK, b""
        if command in _SIMPLE_OK:
            return Cmd.ACK_OK, b""
        return Cmd.ACK_UNKNOWN, b""

    def _prepare_buffer(self, packet: wire.Packet, session: _Session) -> _Response:
        device = self.device
        sid, rid = session.session_id, packet.reply_id
        try:
            inner, fct, _ext = wire.parse_prepare_buffer(packet.data)
        except wire.WireError:
            return _Response([wire.build_packet(Cmd.ACK_ERROR, sid, rid)])
        if inner == Cmd.ATTLOG_RRQ:
            data = wire.size_prefixed(bytes(device._log))
        elif inner == Cmd.USERTEMP_RRQ and fct == wire.FCT_USER:
            data = device._users_buffer()
        elif inner == Cmd.DB_RRQ and fct == wire.FCT_FINGERTMP:
            data = wire.size_prefixed(b"")  # no fingerprint templates are emulated
        else:
            return _Response([wire.build_packet(Cmd.ACK_ERROR, sid, rid)])
        declared = device._faults.declared_size
        if len(data) <= wire.MAX_DIRECT_DATA and declared is None:
            return _Response([wire.build_packet(Cmd.DATA, sid, rid, data)])
        session.buffer = data
        ready = wire.prepare_buffer_ready(len(data) if declared is None else declared)
        return _Response([wire.build_packet(Cmd.ACK_OK, sid, rid, ready)])

    def _read_buffer(self, packet: wire.Packet, session: _Session, udp: bool) -> _Response:
        device = self.device
        sid, rid = session.session_id, packet.reply_id
        buffer = session.buffer
        try:
            start, size = wire.parse_read_buffer(packet.data)
        except wire.WireError:
            start, size = -1, 0
        faults = device._faults
        if faults.declared_size is not None and buffer is not None:
            buffer = buffer.ljust(min(start + size, len(buffer) + (1 << 20)), b"\x00")
        if buffer is None or start < 0 or size <= 0 or start >= len(buffer):
            return _Response([wire.build_packet(Cmd.ACK_ERROR, sid, rid)])
        dropping = (
            faults.drop_after_chunks is not None and session.chunks >= faults.drop_after_chunks
        )
        if dropping and not faults.drop_mid_packet:
            log.info("%s: dropping the session after %d chunks", device.serial, session.chunks)
            device._end_session()
            return _Response([], _Action.DROP)
        session.chunks += 1
        piece = buffer[start : start + size]
        limit = wire.MAX_UDP_DATA if udp else device.data_frame
        announced = len(piece) if faults.declared_size is None else faults.declared_size
        prepare = wire.prepare_data_payload(announced)
        packets = [wire.build_packet(Cmd.PREPARE_DATA, sid, rid, prepare)]
        if udp and faults.flood_seconds > 0:
            return _Response(packets, _Action.FLOOD)
        for offset, length in wire.iter_chunks(len(piece), limit):
            packets.append(wire.build_packet(Cmd.DATA, sid, rid, piece[offset : offset + length]))
            if dropping:
                log.info("%s: cutting chunk %d mid-packet", device.serial, session.chunks)
                device._end_session()
                return _Response(packets, _Action.CUT)
        packets.append(wire.build_packet(Cmd.ACK_OK, sid, rid))
        return _Response(packets)


class Endpoint:
    """One device served on one transport; `port` is the bound port once the server runs."""

    __slots__ = (
        "_listener",
        "_on_faults",
        "_spoofer",
        "_terminal",
        "_udp_task",
        "device",
        "host",
        "port",
        "transport",
    )

    def __init__(self, device: EmulatedDevice, host: str, port: int, transport: Transport) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.transport: Transport = transport
        self._listener: asyncio.Server | asyncio.DatagramTransport | None = None
        self._udp_task: asyncio.Task[None] | None = None
        self._on_faults: Callable[[], None] | None = None
        self._spoofer: socket.socket | None = None
        self._terminal = _Terminal(device)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __repr__(self) -> str:
        return f"Endpoint({self.device.serial!r}, {self.transport}://{self.host}:{self.port})"


class _UdpProtocol(asyncio.DatagramProtocol):
    """Queues datagrams so one device answers them in order, delays included."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class EmulatorServer:
    """Serves any number of emulated devices from one asyncio loop in a background thread.

    `add()` endpoints before or after `start()`; `stop()` (or leaving the `with` block)
    closes every listener and connection. One loop scales to hundreds of terminals.
    """

    def __init__(self) -> None:
        self._endpoints: list[Endpoint] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    def add(
        self,
        device: EmulatedDevice,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: Transport = "tcp",
    ) -> Endpoint:
        """Serve `device` on host:port (0: an ephemeral port, see `Endpoint.port`).

        A device may be added twice, once per transport; it keeps one session across both.
        When the server is running this binds at once and raises OSError if it cannot.
        """
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', not {transport!r}")
        endpoint = Endpoint(device, host, port, transport)
        if self._loop is not None:
            self._attach(endpoint)
            try:
                self._call(self._bind(endpoint))
            except BaseException:
                self._detach(endpoint)
                raise
        self._endpoints.append(endpoint)
        return endpoint

    def start(self) -> EmulatorServer:
        """Start the loop thread and bind every endpoint; returns once all listen."""
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="zk-emulator", daemon=True)
        self._thread.start()
        for endpoint in self._endpoints:
            self._attach(endpoint)
        try:
            self._call(self._bind_all())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close all listeners and connections and end the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        for endpoint in self._endpoints:
            self._detach(endpoint)
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._loop = None
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_until_signal(
        self,
        on_ready: Callable[[], None] | None = None,
        signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    ) -> None:
        """Serve in the foreground until one of `signals` arrives (call from the main thread).

        `on_ready` runs once every endpoint listens (`clockd simulate` prints `ready` there).
        """
        with SignalLatch(signals) as latch:
            try:
                self.start()
                if on_ready is not None:
                    on_ready()
                latch.wait()
            finally:
                self.stop()

    # --- loop-thread machinery ------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _attach(self, endpoint: Endpoint) -> None:
        """Follow the device's `refuse` fault while this server runs."""

        def on_faults() -> None:
            self._sync_listener(endpoint)

        endpoint._on_faults = on_faults
        with endpoint.device._lock:
            endpoint.device._fault_listeners.append(on_faults)

    def _detach(self, endpoint: Endpoint) -> None:
        if endpoint._on_faults is not None:
            with endpoint.device._lock, contextlib.suppress(ValueError):
                endpoint.device._fault_listeners.remove(endpoint._on_faults)
            endpoint._on_faults = None

    async def _bind_all(self) -> None:
        await asyncio.gather(*(self._bind(endpoint) for endpoint in self._endpoints))

    async def _bind(self, endpoint: Endpoint) -> None:
        if endpoint.device.faults.refuse or endpoint._listener is not None:
            return
        loop = asyncio.get_running_loop()
        if endpoint.transport == "tcp":
            # The callback returns a task, not a coroutine: Python 3.11's stream protocol
            # would otherwise log a spurious error for each connection cancelled at stop().
            server = await asyncio.start_server(
                lambda r, w: self._spawn(self._serve_tcp(endpoint, r, w)),
                endpoint.host,
                endpoint.port,
                reuse_address=True,
            )
            endpoint.port = server.sockets[0].getsockname()[1]
            endpoint._listener = server
            return
        protocol = _UdpProtocol()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, local_addr=(endpoint.host, endpoint.port)
        )
        endpoint.port = transport.get_extra_info("sockname")[1]
        endpoint._listener = transport
        endpoint._udp_task = self._spawn(self._serve_udp(endpoint, transport, protocol))

    async def _unbind(self, endpoint: Endpoint) -> None:
        spoofer, endpoint._spoofer = endpoint._spoofer, None
        if spoofer is not None:
            spoofer.close()
        listener, endpoint._listener = endpoint._listener, None
        if listener is not None:
            listener.close()
        task, endpoint._udp_task = endpoint._udp_task, None
        if task is not None:
            task.cancel()

    def _sync_listener(self, endpoint: Endpoint) -> None:
        """Open or close an endpoint's listener to follow the device's `refuse` fault."""
        loop = self._loop
        if loop is None:
            return
        if endpoint.device.faults.refuse:
            coroutine = self._unbind(endpoint)
        else:
            coroutine = self._bind(endpoint)
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        if threading.current_thread() is not self._thread:
            future.result()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _shutdown(self) -> None:
        for endpoint in self._endpoints:
            await self._unbind(endpoint)
        for writer in list(self._writers):
            writer.close()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve_tcp(
        self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        peer = object()

        def push(packet: bytes) -> None:
            loop.call_soon_threadsafe(_write_quietly, writer, wire.frame_tcp(packet))

        splitter = wire.TcpStreamSplitter()
        device = endpoint.device
        try:
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    break
                for raw in splitter.feed(data):
                    if device.faults.hang:
                        continue
                    response = endpoint._terminal.handle(raw, peer, push, udp=False)
                    if not await self._send_tcp(device, writer, response):
                        return
        except wire.FramingError as exc:
            log.warning("%s: closing connection: %s", device.serial, exc)
        except ConnectionError:
            pass
        except Exception:
            log.exception("%s: closing connection after an internal error", device.serial)
        finally:
            device._disconnected(peer)
            self._writers.discard(writer)
            writer.close()

    async def _send_tcp(
        self, device: EmulatedDevice, writer: asyncio.StreamWriter, response: _Response
    ) -> bool:
        """Write one response, a packet per write; False when the connection must close."""
        if response.action is _Action.DROP:
            return False
        if not response.packets:
            return True
        framed = [wire.frame_tcp(packet) for packet in response.packets]
        outgoing = await _outgoing(device, framed, response.action)
        drip = device.faults.drip_seconds
        if drip > 0 and len(outgoing) > 1:
            # The bulk data of a READ_BUFFER answer, one byte at a time after a whole first
            # packet and the next one's header: every read is answered well within any
            # per-read timeout, and the answer never ends.
            rest = b"".join(outgoing[1:])
            writer.write(outgoing[0] + rest[:16])
            for byte in rest[16:]:
                writer.write(bytes((byte,)))
                await writer.drain()
                await asyncio.sleep(drip)
            return response.action is not _Action.CUT
        for packet in outgoing:
            writer.write(packet)
        await writer.drain()
        return response.action is not _Action.CUT

    def _spoofer(self, endpoint: Endpoint) -> socket.socket:
        """A second UDP socket on the endpoint's host: replies from a port nobody asked."""
        if endpoint._spoofer is None:
            spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            spoofer.bind((endpoint.host, 0))
            spoofer.setblocking(False)
            endpoint._spoofer = spoofer
        return endpoint._spoofer

    async def _serve_udp(
        self, endpoint: Endpoint, transport: asyncio.DatagramTransport, protocol: _UdpProtocol
    ) -> None:
        device = endpoint.device
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await protocol.queue.get()
            if device.faults.hang:
                continue

            def push(packet: bytes, addr: tuple[str, int] = addr) -> None:
                loop.call_soon_threadsafe(transport.sendto, packet, addr)

            try:
                response = endpoint._terminal.handle(data, ("udp", addr), push, udp=True)
                if response.packets:
                    send: Callable[[bytes, tuple[str, int]], object] = transport.sendto
                    if device.faults.spoof_udp:
                        send = functools.partial(_send_from, self._spoofer(endpoint))

                    for packet in await _outgoing(device, response.packets, response.action):
                        send(packet, addr)
                    if response.action is _Action.FLOOD:
                        await _flood(device, response.packets[0], send, addr)
            except Exception:  # one bad request must not silence the terminal
                log.exception("%s: error answering %s", device.serial, addr)


def _send_from(sock: socket.socket, packet: bytes, addr: tuple[str, int]) -> None:
    with contextlib.suppress(BlockingIOError):
        sock.sendto(packet, addr)


async def _flood(
    device: EmulatedDevice,
    first: bytes,
    send: Callable[[bytes, tuple[str, int]], object],
    addr: tuple[str, int],
) -> None:
    """DATA datagrams of the reply's session, as fast as the loop allows, for a while."""
    header = wire.parse_packet(first)
    packet = wire.build_packet(Cmd.DATA, header.session_id, header.reply_id, b"\xee" * 1024)
    loop = asyncio.get_running_loop()
    end = loop.time() + device.faults.flood_seconds
    sent = 0
    while loop.time() < end and device.faults.flood_seconds > 0:
        with contextlib.suppress(OSError):
            send(packet, addr)
        sent += 1
        if sent % 16 == 0:
            await asyncio.sleep(0.001)


async def _outgoing(device: EmulatedDevice, packets: list[bytes], action: _Action) -> list[bytes]:
    """The packets to send after the reply-delay, corrupt-reply and mid-packet-cut faults."""
    delay = device.faults.reply_delay
    if delay > 0:
        await asyncio.sleep(delay)
    if device._take_corruption():
        return [packets[0][: len(packets[0]) // 2]]
    if action is _Action.CUT:
        return [*packets[:-1], packets[-1][: len(packets[-1]) // 2]]
    return packets


def _write_quietly(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send a pushed event unless the connection has gone meanwhile."""
    if not writer.is_closing():
        with contextlib.suppress(ConnectionError):
            writer.write(data)


class PunchFeed:
    """Cadres punching "now" on a device from a background thread, for daemon tests.

    Every `interval` seconds the next user in `user_ids` punches at the device's clock time;
    `recorded` lists the punches the device accepted, `refused` those it did not (log full
    or device disabled), so a test knows exactly what a poller should find.
    """

    def __init__(
        self,
        device: EmulatedDevice,
        user_ids: Sequence[str],
        interval: float,
        *,
        verify: int = 1,
        state: int = 0,
    ) -> None:
        if not user_ids:
            raise ValueError("a punch feed needs at least one user ID")
        self.device = device
        self.user_ids = list(user_ids)
        self.interval = interval
        self.verify = verify
        self.state = state
        self.recorded: list[wire.AttendanceRecord] = []
        self.refused: list[wire.AttendanceRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"punch-feed-{device.serial}")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> PunchFeed:
        if not self._thread.is_alive():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        turn = 0
        while not self._stop.wait(self.interval):
            user_id = self.user_ids[turn % len(self.user_ids)]
            turn += 1
            moment = self.device.now()
            record = wire.AttendanceRecord(None, user_id, moment, self.verify, self.state, 0)
            ok = self.device.add_punch(user_id, moment, verify=self.verify, state=self.state)
            (self.recorded if ok else self.refused).append(record)
