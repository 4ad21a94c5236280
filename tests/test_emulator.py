"""The emulated terminal against the real pyzk 0.9 client over loopback TCP and UDP."""

from __future__ import annotations

import contextlib
import gc
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from zk import ZK
from zk.exception import ZKErrorResponse, ZKNetworkError

from clockd.domain import Punch
from clockd.sim.emulator import EmulatedDevice, EmulatorServer, Endpoint, Faults, Transport
from clockd.zk import wire
from clockd.zk.wire import Cmd

TRANSPORTS: list[Transport] = ["tcp", "udp"]
NAMES = ["张三", "李四", "欧阳建国", "王小明", "赵敏"]


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running


def client(endpoint: Endpoint, *, timeout: float = 5, password: int = 0) -> ZK:
    return ZK(
        endpoint.host,
        endpoint.port,
        timeout=timeout,
        password=password,
        force_udp=endpoint.transport == "udp",
        ommit_ping=True,
        encoding=endpoint.device.encoding,
    )


@contextlib.contextmanager
def connected(endpoint: Endpoint, **options: float) -> Iterator[ZK]:
    conn = client(endpoint, **options).connect()  # type: ignore[arg-type]
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.disconnect()


def enrol(device: EmulatedDevice, count: int = len(NAMES)) -> list[str]:
    user_ids = [str(1001 + n) for n in range(count)]
    for n, user_id in enumerate(user_ids):
        device.add_user(user_id, NAMES[n % len(NAMES)], privilege=14 if n == 0 else 0)
    return user_ids


def punches(user_ids: list[str], count: int) -> list[Punch]:
    start = datetime(2026, 11, 16, 7, 30, 0)
    return [
        Punch(
            "",
            user_ids[i % len(user_ids)],
            start + timedelta(seconds=127 * i),
            verify=(1, 15, 2, 0)[i % 4],
            state=i % 6,
        )
        for i in range(count)
    ]


def as_tuples(records: object) -> list[tuple[str, datetime, int, int]]:
    """(user ID, time, verify, state) of clockd records or of pyzk's (`status`, `punch`)."""
    return [
        (r.user_id, r.timestamp, r.verify, r.state)
        if hasattr(r, "verify")
        else (r.user_id, r.timestamp, r.status, r.punch)
        for r in records  # type: ignore[attr-defined]
    ]


def read_attendance(conn: ZK, device: EmulatedDevice) -> wire.Decoded[wire.AttendanceRecord]:
    """What clockd's poller does: pyzk's transport, clockd's decoder."""
    conn.read_sizes()
    users = {u.uid: u.user_id for u in conn.get_users()}
    data, size = conn.read_with_buffer(Cmd.ATTLOG_RRQ)
    assert size == len(data)
    return wire.decode_attendance_buffer(data, conn.records, users)


# --- connection and identity ----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connect_and_identity(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice(
        "CKD2026000017",
        name="官埠桥村",
        platform="ZLM60_TFT",
        firmware="Ver 6.60 Jun 10 2019",
        mac="00:17:61:aa:bb:cc",
        ip="10.20.30.40",
    )
    endpoint = server.add(device, transport=transport)
    with connected(endpoint) as conn:
        assert device.in_session
        assert conn.get_serialnumber() == "CKD2026000017"
        assert conn.get_platform() == "ZLM60_TFT"
        assert conn.get_firmware_version() == "Ver 6.60 Jun 10 2019"
        assert conn.get_mac() == "00:17:61:aa:bb:cc"
        assert conn.get_device_name() == "官埠桥村"
        assert conn.get_fp_version() == 10
        assert conn.get_extend_fmt() == 1
        assert conn.get_user_extend_fmt() == 1
        assert conn.get_face_fun_on() == 0
        assert conn.get_compat_old_firmware() == 0
        assert conn.get_network_params() == {
            "ip": "10.20.30.40",
            "mask": "255.255.255.0",
            "gateway": "10.20.30.1",
        }
        conn.refresh_data()
        conn.free_data()
    assert not device.in_session


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_comm_key(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice(comm_key=20260417)
    endpoint = server.add(device, transport=transport)
    with connected(endpoint, password=20260417) as conn:
        assert conn.get_serialnumber() == device.serial
    with pytest.raises(ZKErrorResponse, match="Unauthenticated"):
        client(endpoint, password=20260418).connect()
    assert not device.in_session  # a failed AUTH frees the device at once
    with pytest.raises(ZKErrorResponse, match="Unauthenticated"):
        client(endpoint).connect()  # no key at all: the token is made from 0


def test_commands_before_auth_are_refused(server: EmulatorServer) -> None:
    device = EmulatedDevice(comm_key=45)
    endpoint = server.add(device, transport="udp")
    with udp_socket() as sock:
        reply = udp_exchange(sock, endpoint, Cmd.CONNECT, 0, 0)
        assert reply.command == Cmd.ACK_UNAUTH
        session = reply.session_id
        assert udp_exchange(sock, endpoint, Cmd.GET_TIME, session, 1).command == Cmd.ACK_UNAUTH
        token = wire.make_commkey(45, session, ticks=77)
        assert udp_exchange(sock, endpoint, Cmd.AUTH, session, 2, token).command == Cmd.ACK_OK
        assert udp_exchange(sock, endpoint, Cmd.GET_TIME, session, 3).command == Cmd.ACK_OK


def test_device_without_key_ignores_client_password(server: EmulatorServer) -> None:
    endpoint = server.add(EmulatedDevice())
    with connected(endpoint, password=1234) as conn:
        assert conn.get_serialnumber() == "EMU0000000001"


# --- sizes, users -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_sizes(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice(record_capacity=80_000, user_capacity=500, finger_capacity=1_000)
    user_ids = enrol(device)
    device.add_punches(punches(user_ids, 605))
    endpoint = server.add(device, transport=transport)
    with connected(endpoint) as conn:
        conn.read_sizes()
        assert (conn.users, conn.fingers, conn.records) == (5, 0, 605)
        assert (conn.users_cap, conn.fingers_cap, conn.rec_cap) == (500, 1_000, 80_000)
        assert (conn.users_av, conn.fingers_av, conn.rec_av) == (495, 1_000, 79_395)
        assert conn.cards == 1  # pyzk's name for the admin count
        assert conn.get_templates() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("user_size", wire.USER_RECORD_SIZES)
def test_get_users_with_chinese_names(
    server: EmulatorServer, transport: Transport, user_size: int
) -> None:
    device = EmulatedDevice(user_record_size=user_size, encoding="gbk")
    user_ids = enrol(device)
    device.add_user("2001", "", card=123456, password="9876")
    endpoint = server.add(device, transport=transport)
    with connected(endpoint) as conn:
        users = conn.get_users()
        assert conn.user_packet_size == user_size
        data, _size = conn.read_with_buffer(Cmd.USERTEMP_RRQ, wire.FCT_USER)
    expected = device.users()
    assert [(u.uid, u.user_id, u.name) for u in users] == [
        *((n + 1, user_id, NAMES[n]) for n, user_id in enumerate(user_ids)),
        (6, "2001", "NN-2001"),  # pyzk invents a name for an empty one
    ]
    assert (users[-1].card, users[-1].password, users[0].privilege) == (123456, "9876", 14)
    decoded = wire.decode_users_buffer(data, len(expected), "gbk")
    assert decoded.records == expected
    assert decoded.record_size == user_size


def test_many_users_take_the_chunked_path(server: EmulatorServer) -> None:
    device = EmulatedDevice(user_record_size=72)
    for n in range(400):  # 28.8 KB: well past one direct reply
        device.add_user(str(5000 + n), NAMES[n % 5] + str(n))
    endpoint = server.add(device, transport="udp")
    with connected(endpoint) as conn:
        users = conn.get_users()
    assert [(u.user_id, u.name) for u in users] == [(u.user_id, u.name) for u in device.users()]


def test_punch_by_unenrolled_user_enrols_it() -> None:
    device = EmulatedDevice()
    assert device.add_punch("9999", datetime(2026, 11, 16, 8, 0))
    assert [(u.uid, u.user_id, u.name) for u in device.users()] == [(1, "9999", "")]


# --- attendance -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("size", wire.ATTENDANCE_RECORD_SIZES)
@pytest.mark.parametrize("count", [0, 1, 1000])
def test_get_attendance(
    server: EmulatorServer, transport: Transport, size: int, count: int
) -> None:
    device = EmulatedDevice(
        attendance_record_size=size, user_record_size=28 if size in (8, 16) else 72
    )
    given = punches(enrol(device), count)
    assert device.add_punches(given) == count
    endpoint = server.add(device, transport=transport)
    with connected(endpoint) as conn:
        decoded = read_attendance(conn, device)
        # pyzk 0.9 reads 40-byte records as terminals send them; it misreads 49-byte ones
        # (below), 8-byte ZEM500 ones and swaps state and verify in 16-byte ones.
        pyzk_records = conn.get_attendance() if size == 40 else None
    assert decoded.problems == []
    assert as_tuples(decoded.records) == as_tuples(given)
    if count:
        assert decoded.record_size == size
    if pyzk_records is not None:
        assert as_tuples(pyzk_records) == as_tuples(given)


def test_pyzk_get_attendance_misreads_49_byte_records(server: EmulatorServer) -> None:
    """pyzk 0.9 steps 49-byte records by 40: use read_with_buffer + wire.decode_attendance."""
    device = EmulatedDevice(attendance_record_size=49)
    given = punches(enrol(device), 10)
    device.add_punches(given)
    endpoint = server.add(device)
    with connected(endpoint) as conn:
        misread = as_tuples(conn.get_attendance())
        decoded = read_attendance(conn, device)
    assert len(misread) == 490 // 40  # garbage after the first record
    assert misread[0] == as_tuples(given)[0]
    assert misread[1] != as_tuples(given)[1]
    assert as_tuples(decoded.records) == as_tuples(given)


@pytest.mark.parametrize(
    ("transport", "size"),
    [("tcp", 8), ("tcp", 16), ("tcp", 40), ("tcp", 49), ("udp", 40)],
)
def test_100k_records(server: EmulatorServer, transport: Transport, size: int) -> None:
    device = EmulatedDevice(
        attendance_record_size=size,
        user_record_size=28 if size in (8, 16) else 72,
        record_capacity=100_000,
    )
    given = punches(enrol(device, 47), 100_000)
    assert device.add_punches(given) == 100_000
    assert not device.add_punch(given[0].user_id)  # full: a terminal refuses the punch
    endpoint = server.add(device, transport=transport)
    with connected(endpoint, timeout=20) as conn:
        decoded = read_attendance(conn, device)
        conn.read_sizes()
        assert conn.rec_av == 0
    assert len(decoded.records) == 100_000
    assert as_tuples(decoded.records) == as_tuples(given)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_clear_attendance(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice()
    device.add_punches(punches(enrol(device), 50))
    endpoint = server.add(device, transport=transport)
    with connected(endpoint) as conn:
        conn.disable_device()
        conn.clear_attendance()
        conn.read_sizes()
        assert conn.records == 0
        assert conn.get_attendance() == []
        conn.enable_device()
    assert device.punch_count == 0


def test_log_is_snapshotted_when_the_read_starts(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    given = punches(enrol(device), 3000)
    device.add_punches(given)
    endpoint = server.add(device)
    with connected(endpoint) as conn:
        conn.read_sizes()
        device.faults = Faults(reply_delay=0.01)
        added: list[bool] = []
        feeder = threading.Thread(
            target=lambda: added.extend(device.add_punch("1001") for _ in range(20))
        )
        feeder.start()
        data, _size = conn.read_with_buffer(Cmd.ATTLOG_RRQ)
        feeder.join()
        device.faults = Faults()
    decoded = wire.decode_attendance_buffer(data, 0, {}, record_size=40)
    assert as_tuples(decoded.records)[:3000] == as_tuples(given)
    assert len(decoded.records) <= 3020
    assert device.punch_count == 3000 + sum(added)


# --- clock, enable/disable --------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_time_drift_is_read_and_corrected(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice(clock_drift=-3600)
    endpoint = server.add(device, transport=transport)
    with connected(endpoint) as conn:
        drift = (conn.get_time() - datetime.now()).total_seconds()
        assert -3602 < drift < -3598
        conn.set_time(datetime.now())
        assert abs((conn.get_time() - datetime.now()).total_seconds()) < 2
    assert abs(device.clock_drift) < 2


def test_clock_keeps_the_wall_time_of_its_zone(server: EmulatorServer) -> None:
    device = EmulatedDevice(zone="Asia/Shanghai", clock_drift=30)
    endpoint = server.add(device)
    with connected(endpoint) as conn:
        shanghai = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
        assert 28 < (conn.get_time() - shanghai).total_seconds() < 32
        conn.set_time(shanghai)
    assert abs(device.clock_drift) < 2
    with pytest.raises(ZoneInfoNotFoundError):
        EmulatedDevice(zone="Mars/Olympus_Mons")


def test_disabled_device_refuses_punches_until_enabled(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    enrol(device)
    endpoint = server.add(device)
    with connected(endpoint) as conn:
        conn.disable_device()
        assert not device.enabled
        assert not device.add_punch("1001")
        conn.enable_device()
        assert device.add_punch("1001")
        conn.disable_device()
    assert device.enabled  # the session ended: the terminal works again
    assert device.punch_count == 1


# --- sessions -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_second_client_is_refused_while_a_session_is_live(
    server: EmulatorServer, transport: Transport
) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device, transport=transport)
    with connected(endpoint), pytest.raises(ZKErrorResponse, match="Can't connect"):
        client(endpoint).connect()
    with connected(endpoint) as conn:
        assert conn.get_serialnumber() == device.serial


def test_abandoned_udp_session_expires(server: EmulatorServer) -> None:
    device = EmulatedDevice(session_timeout=0.3)
    endpoint = server.add(device, transport="udp")
    client(endpoint).connect()  # never disconnects, like a killed poller
    with pytest.raises(ZKErrorResponse):
        client(endpoint).connect()
    time.sleep(0.4)
    with connected(endpoint) as conn:
        assert conn.get_serialnumber() == device.serial


def test_tcp_session_ends_when_the_connection_closes(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device)
    with tcp_socket(endpoint) as sock:
        sock.sendall(wire.frame_tcp(wire.build_packet(Cmd.CONNECT, 0, 0)))
        assert tcp_packets(sock, 1)[0].command == Cmd.ACK_OK
        assert device.in_session
    wait_for(lambda: not device.in_session)


def test_one_device_on_both_transports_has_one_session(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    tcp = server.add(device, transport="tcp")
    udp = server.add(device, transport="udp")
    with connected(tcp), pytest.raises(ZKErrorResponse):
        client(udp).connect()
    with connected(udp) as conn:
        assert conn.get_serialnumber() == device.serial


# --- raw protocol behaviour -------------------------------------------------------------------


@contextlib.contextmanager
def tcp_socket(endpoint: Endpoint) -> Iterator[socket.socket]:
    sock = socket.create_connection(endpoint.address, timeout=3)
    try:
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def udp_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    try:
        yield sock
    finally:
        sock.close()


def udp_exchange(
    sock: socket.socket,
    endpoint: Endpoint,
    command: int,
    session: int,
    reply: int,
    data: bytes = b"",
) -> wire.Packet:
    sock.sendto(wire.build_packet(command, session, reply, data), endpoint.address)
    return wire.parse_packet(sock.recv(2048))


def tcp_packets(sock: socket.socket, count: int) -> list[wire.Packet]:
    splitter = wire.TcpStreamSplitter()
    packets: list[bytes] = []
    while len(packets) < count:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        packets += splitter.feed(chunk)
    assert splitter.pending == 0
    return [wire.parse_packet(p) for p in packets]


def wait_for(condition: object, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never came true"
        time.sleep(0.01)


def test_pipelined_requests_get_every_reply_in_order(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device)
    with tcp_socket(endpoint) as sock:
        sock.sendall(wire.frame_tcp(wire.build_packet(Cmd.CONNECT, 0, 0)))
        (connect,) = tcp_packets(sock, 1)
        session = connect.session_id
        assert connect.command == Cmd.ACK_OK and session != 0 and connect.checksum_ok
        requests = [
            wire.build_packet(Cmd.GET_VERSION, session, 1),
            wire.build_packet(Cmd.ACK_OK, session, 0xFFFE),  # an event ack: never answered
            wire.build_packet(Cmd.OPTIONS_RRQ, session, 2, b"~SerialNumber\x00"),
            wire.build_packet(777, session, 3),  # unknown command
            wire.build_packet(Cmd.OPTIONS_RRQ, session, 4, b"NoSuchOption\x00"),
        ]
        stream = b"".join(wire.frame_tcp(r) for r in requests)
        sock.sendall(stream[:7])
        time.sleep(0.05)
        sock.sendall(stream[7:])
        replies = tcp_packets(sock, 4)
    assert [(r.command, r.reply_id) for r in replies] == [
        (Cmd.ACK_OK, 1),
        (Cmd.ACK_OK, 2),
        (Cmd.ACK_UNKNOWN, 3),
        (Cmd.ACK_ERROR, 4),
    ]
    assert replies[0].data == b"Ver 6.60 Apr 28 2020\x00"
    assert replies[1].data == b"~SerialNumber=EMU0000000001\x00"
    assert all(r.checksum_ok and r.session_id == session for r in replies)


def test_bad_checksums_are_answered(server: EmulatorServer) -> None:
    endpoint = server.add(EmulatedDevice(), transport="udp")
    with udp_socket() as sock:
        raw = bytearray(wire.build_packet(Cmd.CONNECT, 0, 0))
        raw[2:4] = b"\x00\x00"
        sock.sendto(bytes(raw), endpoint.address)
        assert wire.parse_packet(sock.recv(64)).command == Cmd.ACK_OK


def test_garbage_on_tcp_closes_the_connection(server: EmulatorServer) -> None:
    endpoint = server.add(EmulatedDevice())
    with tcp_socket(endpoint) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert sock.recv(100) == b""


def test_runt_datagrams_are_ignored(server: EmulatorServer) -> None:
    endpoint = server.add(EmulatedDevice(), transport="udp")
    with udp_socket() as sock:
        sock.sendto(b"\x01\x02", endpoint.address)
        assert udp_exchange(sock, endpoint, Cmd.CONNECT, 0, 0).command == Cmd.ACK_OK


def test_a_port_in_use_fails_at_add(server: EmulatorServer) -> None:
    taken = server.add(EmulatedDevice())
    with pytest.raises(OSError):
        server.add(EmulatedDevice(), port=taken.port)
    assert server.endpoints == [taken]


def test_probe_connection_is_harmless(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device)
    for _ in range(3):
        socket.create_connection(endpoint.address, timeout=3).close()
    with connected(endpoint) as conn:
        assert conn.get_serialnumber() == device.serial


def test_buffered_read_chunk_layout_over_udp(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    device.add_punches(punches(enrol(device), 100))  # 4004-byte buffer
    endpoint = server.add(device, transport="udp")
    with udp_socket() as sock:
        session = udp_exchange(sock, endpoint, Cmd.CONNECT, 0, 0).session_id
        request = wire.prepare_buffer_request(Cmd.ATTLOG_RRQ)
        ready = udp_exchange(sock, endpoint, Cmd.PREPARE_BUFFER, session, 1, request)
        assert ready.command == Cmd.ACK_OK
        assert int.from_bytes(ready.data[1:5], "little") == 4004
        assert int.from_bytes(ready.data[9:13], "little") != 0  # as real firmware sends
        sock.sendto(
            wire.build_packet(Cmd.READ_BUFFER, session, 2, wire.read_buffer_request(0, 4004)),
            endpoint.address,
        )
        replies = [wire.parse_packet(sock.recv(2048)) for _ in range(6)]
    assert [r.command for r in replies] == [Cmd.PREPARE_DATA] + [Cmd.DATA] * 4 + [Cmd.ACK_OK]
    assert int.from_bytes(replies[0].data[:4], "little") == 4004
    assert int.from_bytes(replies[0].data[4:8], "little") == 1008  # as real firmware sends
    assert [len(r.data) for r in replies[1:5]] == [1024, 1024, 1024, 932]
    assert b"".join(r.data for r in replies[1:5])[4:] == device.log_buffer()[4:]


# --- real-time events -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_live_capture_events(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice()
    enrol(device)
    endpoint = server.add(device, transport=transport)
    with connected(endpoint) as conn:
        capture = conn.live_capture(new_timeout=1)
        moment = datetime(2026, 11, 16, 8, 5, 9)
        timer = threading.Timer(0.2, lambda: device.add_punch("1002", moment, verify=15, state=1))
        timer.start()
        event = next(capture)
        while event is None:
            event = next(capture)
        timer.join()
        conn.end_live_capture = True
        with contextlib.suppress(StopIteration):
            next(capture)
        assert (event.user_id, event.timestamp, event.status, event.punch) == (
            "1002",
            moment,
            15,
            1,
        )
        assert conn.get_serialnumber() == device.serial  # the stream is still in step


def test_punch_feed() -> None:
    device = EmulatedDevice(clock_drift=120)
    enrol(device)
    with device.start_feed(["1001", "1002"], interval=0.02) as feed:
        wait_for(lambda: len(feed.recorded) >= 5)
    assert device.punch_count == len(feed.recorded)
    assert [r.user_id for r in feed.recorded[:4]] == ["1001", "1002", "1001", "1002"]
    drift = (feed.recorded[0].timestamp - datetime.now()).total_seconds()
    assert 100 < drift < 125
    assert as_tuples(device.attendance()) == as_tuples(feed.recorded)


# --- faults -----------------------------------------------------------------------------------


def test_refuse_tcp(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device)
    port = endpoint.port
    device.faults = Faults(refuse=True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(endpoint.address, timeout=1)
    with pytest.raises(ZKNetworkError):  # pyzk: "[Errno 32] Broken pipe" or similar
        client(endpoint, timeout=1).connect()
    device.faults = Faults()
    assert endpoint.port == port
    with connected(endpoint) as conn:
        assert conn.get_serialnumber() == device.serial


def test_refuse_udp_is_a_timeout(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device, transport="udp")
    device.faults = Faults(refuse=True)
    with pytest.raises(ZKNetworkError, match="timed out"):
        client(endpoint, timeout=0.3).connect()
    device.faults = Faults()
    with connected(endpoint) as conn:
        assert conn.get_serialnumber() == device.serial


def test_refused_device_can_be_added_and_started_later() -> None:
    device = EmulatedDevice()
    device.faults = Faults(refuse=True)
    with EmulatorServer() as server:
        endpoint = server.add(device, port=0)
        assert endpoint.port == 0  # nothing bound yet
        device.faults = Faults()
        assert endpoint.port != 0
        with connected(endpoint) as conn:
            assert conn.get_serialnumber() == device.serial


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hang_is_a_timeout(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device, transport=transport)
    device.faults = Faults(hang=True)
    began = time.monotonic()
    with pytest.raises(ZKNetworkError, match="timed out"):
        client(endpoint, timeout=0.3).connect()
    assert time.monotonic() - began < 2
    device.faults = Faults()
    with connected(endpoint) as conn:
        assert conn.get_serialnumber() == device.serial


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slow_replies(server: EmulatorServer, transport: Transport) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device, transport=transport)
    device.faults = Faults(reply_delay=0.1)
    began = time.monotonic()
    with connected(endpoint) as conn:
        conn.get_serialnumber()
    assert time.monotonic() - began >= 0.3  # connect, serial, exit
    device.faults = Faults(reply_delay=0.5)
    with pytest.raises(ZKNetworkError, match="timed out"):
        client(endpoint, timeout=0.2).connect()


def test_drop_after_chunks_tcp(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    given = punches(enrol(device), 5000)  # 200 KB: four TCP chunks
    device.add_punches(given)
    endpoint = server.add(device)
    device.faults = Faults(drop_after_chunks=2)
    conn = client(endpoint).connect()
    with pytest.raises(ZKNetworkError, match="TCP packet invalid"):
        conn.read_with_buffer(Cmd.ATTLOG_RRQ)
    assert not device.in_session and device.enabled
    device.faults = Faults()
    with connected(endpoint) as conn:
        assert as_tuples(read_attendance(conn, device).records) == as_tuples(given)


def test_drop_after_chunks_udp(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    device.add_punches(punches(enrol(device), 1000))  # 40 KB: three UDP chunks
    endpoint = server.add(device, transport="udp")
    device.faults = Faults(drop_after_chunks=1)
    conn = client(endpoint, timeout=0.3).connect()
    with pytest.raises(ZKNetworkError, match="timed out"):
        conn.read_with_buffer(Cmd.ATTLOG_RRQ)
    assert not device.in_session


PYZK_READ = textwrap.dedent(
    """
    import sys
    from zk import ZK
    conn = ZK("127.0.0.1", int(sys.argv[1]), timeout=1, ommit_ping=True).connect()
    print("connected", flush=True)
    conn.read_with_buffer(13)
    print("returned", flush=True)
    """
)


def test_drop_mid_packet_makes_pyzk_spin_forever(server: EmulatorServer) -> None:
    """pyzk 0.9 loops on recv() == b"" when a TCP peer closes inside a data packet.

    Its socket timeout never fires, so a poller must bound each read from outside.
    """
    device = EmulatedDevice()
    device.add_punches(punches(enrol(device), 5000))
    endpoint = server.add(device)
    device.faults = Faults(drop_after_chunks=1, drop_mid_packet=True)
    process = subprocess.Popen(
        [sys.executable, "-c", PYZK_READ, str(endpoint.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "connected"
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=2.5)  # well past pyzk's 1 s timeout
    finally:
        process.kill()
        process.communicate()


def test_zero_time_records(server: EmulatorServer) -> None:
    device = EmulatedDevice()
    enrol(device)
    device.faults = Faults(zero_time_punches=2)
    moment = datetime(2026, 11, 16, 8, 0)
    for minute in range(3):
        assert device.add_punch("1001", moment + timedelta(minutes=minute))
    assert device.faults.zero_time_punches == 0
    endpoint = server.add(device)
    with connected(endpoint) as conn:
        pyzk_times = [r.timestamp for r in conn.get_attendance()]
        decoded = read_attendance(conn, device)
    expected = [wire.ZERO_TIME, wire.ZERO_TIME, moment + timedelta(minutes=2)]
    assert pyzk_times == expected
    assert [r.timestamp for r in decoded.records] == expected


def test_wrong_serial(server: EmulatorServer) -> None:
    device = EmulatedDevice("CKD0001")
    endpoint = server.add(device)
    device.faults = Faults(wrong_serial="CKD9999")
    with connected(endpoint) as conn:
        assert conn.get_serialnumber() == "CKD9999"


@pytest.mark.parametrize(
    ("transport", "message"),
    [("tcp", "TCP packet invalid"), ("udp", "unpack requires a buffer of 8 bytes")],
)
def test_corrupt_reply(server: EmulatorServer, transport: Transport, message: str) -> None:
    device = EmulatedDevice()
    endpoint = server.add(device, transport=transport)
    device.faults = Faults(corrupt_replies=1)
    broken = client(endpoint, timeout=1)
    with pytest.raises(ZKNetworkError, match=message):
        broken.connect()
    del broken  # pyzk never closes its socket after a failure; the session goes with it
    gc.collect()
    if transport == "tcp":
        wait_for(lambda: not device.in_session)
    else:
        device.session_timeout = 0
    with connected(endpoint) as conn:
        device.faults = Faults(corrupt_replies=1)
        with pytest.raises(ZKNetworkError):
            conn.get_time()
        assert conn.get_serialnumber() == device.serial  # the next exchange is clean


# --- server ---------------------------------------------------------------------------------


def test_many_devices_in_one_server() -> None:
    devices = [EmulatedDevice(f"CKD{n:04d}") for n in range(200)]
    for device in devices:
        device.add_punches(punches(enrol(device, 2), 20))
    with EmulatorServer() as server:
        endpoints = [
            server.add(device, transport=TRANSPORTS[n % 2]) for n, device in enumerate(devices)
        ]
        assert len({(e.transport, e.port) for e in endpoints}) == 200
        results: dict[str, int] = {}

        def poll(endpoint: Endpoint) -> None:
            with connected(endpoint) as conn:
                results[conn.get_serialnumber()] = len(
                    read_attendance(conn, endpoint.device).records
                )

        threads = [threading.Thread(target=poll, args=(e,)) for e in endpoints[::10]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {f"CKD{n:04d}": 20 for n in range(0, 200, 10)}


def test_fixed_port_and_restart() -> None:
    device = EmulatedDevice()
    with EmulatorServer() as first:
        port = first.add(device).port
    with EmulatorServer() as second:
        endpoint = second.add(device, port=port)
        assert endpoint.port == port
        with connected(endpoint) as conn:
            assert conn.get_serialnumber() == device.serial


def test_run_until_signal() -> None:
    script = textwrap.dedent(
        """
        import sys
        from clockd.sim.emulator import EmulatedDevice, EmulatorServer
        server = EmulatorServer()
        endpoint = server.add(EmulatedDevice(), transport="udp")
        server.run_until_signal(on_ready=lambda: print("ready", endpoint.port, flush=True))
        print("stopped", flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        word, port = process.stdout.readline().split()
        assert word == "ready"
        endpoint = Endpoint(EmulatedDevice(), "127.0.0.1", int(port), "udp")
        with connected(endpoint) as conn:
            assert conn.get_serialnumber() == "EMU0000000001"
        process.terminate()
        out, _ = process.communicate(timeout=5)
        assert out.strip() == "stopped"
        assert process.returncode == 0
    finally:
        process.kill()


def test_device_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        EmulatedDevice(attendance_record_size=41)
    with pytest.raises(ValueError):
        EmulatedDevice(user_record_size=29)
    with pytest.raises(LookupError):
        EmulatedDevice(encoding="no-such-codec")
    device = EmulatedDevice(attendance_record_size=16)
    with pytest.raises(ValueError):
        device.add_user("A12", "x")
    full = EmulatedDevice(user_capacity=1)
    full.add_user("1")
    full.add_user("1", "renamed")  # an update, not a new user
    with pytest.raises(ValueError, match="full"):
        full.add_user("2")
    with EmulatorServer() as server, pytest.raises(ValueError):
        server.add(device, transport="sctp")  # type: ignore[arg-type]
