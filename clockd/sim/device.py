"""The emulated terminal itself: identity, users, attendance log, clock and faults.

The protocol side (`clockd.sim.emulator`) and the wire misbehaviours (`clockd.sim.hostile`)
use it through its public methods only. See `clockd.sim.emulator` for how terminals behave.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import random
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from zoneinfo import ZoneInfo

from clockd.domain import PunchFields
from clockd.zk import wire

__all__ = ["EmulatedDevice", "Faults", "PunchFeed", "Session"]


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
    - `write_pieces`: over TCP, replies are written in pieces of this many bytes, a moment
      apart, so the client's reads end at odd places inside packets (a slow or lossy link).
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
    write_pieces: int = 0


@dataclass(eq=False, slots=True)
class Session:
    """One client's session with a device."""

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
        self.lock = threading.RLock()
        self._drift = clock_drift
        self._enabled = True
        self._faults = Faults()
        self._users: dict[int, wire.UserRecord] = {}
        self._uid_of: dict[str, int] = {}
        self._log = bytearray()
        self._count = 0
        self._session: Session | None = None
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
        with self.lock:
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
        with self.lock:
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
        with self.lock:
            time_value = self._record(user_id, timestamp, verify, state, workcode)
            if time_value is None:
                return False
            session = self._session
            if session is None or not session.events & wire.EF_ATTLOG:
                return True
            moment = wire.decode_time(time_value)
            event = wire.encode_event(user_id, verify, state, moment)
            packet = wire.build_packet(wire.Cmd.REG_EVENT, session.session_id, 0, event)
        session.push(packet)
        return True

    def add_punches(self, punches: Iterable[PunchFields]) -> int:
        """Record many punches (domain Punch or AttendanceRecord); returns how many fit."""
        recorded = 0
        with self.lock:
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
        with self.lock:
            data, count = bytes(self._log), self._count
            uids = {uid: user.user_id for uid, user in self._users.items()}
        decoded = wire.decode_attendance(data, count, uids, record_size=self.attendance_record_size)
        return list(decoded.records)

    @property
    def punch_count(self) -> int:
        return self._count

    def clear_attendance(self) -> None:
        with self.lock:
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
        with self.lock:
            changed = faults.refuse != self._faults.refuse
            self._faults = faults
            listeners = list(self._fault_listeners) if changed else []
        for listener in listeners:
            listener()

    def take_corruption(self) -> bool:
        """Whether the next reply is to be corrupted (counting one down if so)."""
        with self.lock:
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

    # --- what the protocol side uses (the servers' thread, holding `lock`) ----------------

    @property
    def session(self) -> Session | None:
        """The one client session, if any."""
        return self._session

    def open_session(self, peer: Hashable, push: Callable[[bytes], None], now: float) -> Session:
        """Start a session for `peer` (ending any earlier one); it needs CMD_AUTH first when
        the device has a comm key."""
        if self._session is not None:
            self.end_session()
        session_id = random.randint(1, 0xFFFE)
        self._session = Session(session_id, peer, push, not self.comm_key, now)
        return self._session

    def end_session(self) -> None:
        """End the session; the device takes punches again, as a terminal does."""
        self._session = None
        self._enabled = True

    def disconnected(self, peer: Hashable) -> None:
        """A connection closed: its session, if it held the device, ends."""
        with self.lock:
            if self._session is not None and self._session.peer == peer:
                self.end_session()

    def set_enabled(self, enabled: bool) -> None:
        """CMD_ENABLEDEVICE / CMD_DISABLEDEVICE: a disabled terminal records no punch."""
        self._enabled = enabled

    def log_buffer(self) -> bytes:
        """The attendance log as a buffered read returns it (size-prefixed records)."""
        return wire.size_prefixed(bytes(self._log))

    def users_buffer(self) -> bytes:
        """The user table as a buffered read returns it (size-prefixed records)."""
        size, encoding = self.user_record_size, self.encoding
        records = b"".join(wire.encode_user(u, size, encoding) for u in self.users())
        return wire.size_prefixed(records)

    def options(self) -> dict[str, str]:
        """CMD_OPTIONS_RRQ values by lower-case key."""
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

    def free_sizes(self) -> wire.FreeSizes:
        """The GET_FREE_SIZES counters (the `count_factor` fault inflates the record count)."""
        admins = sum(1 for user in self._users.values() if user.privilege >= 14)
        return wire.FreeSizes(
            users=len(self._users),
            records=self._count * self._faults.count_factor,
            admins=admins,
            finger_capacity=self.finger_capacity,
            user_capacity=self.user_capacity,
            record_capacity=self.record_capacity,
        )

    def watch_refuse(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the `refuse` fault changes (a server opens or closes)."""
        with self.lock:
            self._fault_listeners.append(listener)

    def unwatch_refuse(self, listener: Callable[[], None]) -> None:
        with self.lock, contextlib.suppress(ValueError):
            self._fault_listeners.remove(listener)


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
