"""Byte-level tests of clockd.zk.wire: pyzk's published vectors, pyzk as an oracle, round trips."""

from __future__ import annotations

import itertools
import struct
from datetime import date, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from zk import ZK
from zk.base import make_commkey as pyzk_make_commkey

from clockd import ledger
from clockd.domain import TimeTexts
from clockd.zk import wire
from clockd.zk.wire import Cmd

# --- pyzk's test vectors (test.py in fananimi/pyzk) ---------------------------------------


def test_connect_request_vector() -> None:
    packet = wire.frame_tcp(wire.build_packet(Cmd.CONNECT, 0, 0))
    assert packet.hex() == "5050827d08000000e80317fc00000000"


def test_ack_reply_vector() -> None:
    packet = wire.frame_tcp(wire.build_packet(Cmd.ACK_OK, 0xFB2F, 0))
    assert packet.hex() == "5050827d08000000d007fffc2ffb0000"


def test_read_sizes_request_vector() -> None:
    packet = wire.frame_tcp(wire.build_packet(Cmd.GET_FREE_SIZES, 0x45CF, 2))
    assert packet.hex().endswith("3200fcb9cf450200")


def test_users_prepare_buffer_vector() -> None:
    request = wire.prepare_buffer_request(Cmd.USERTEMP_RRQ, wire.FCT_USER)
    packet = wire.frame_tcp(wire.build_packet(Cmd.PREPARE_BUFFER, 0x45CF, 0x14, request))
    assert packet.hex() == "5050827d13000000df053ca6cf4514000109000500000000000000"
    parsed = wire.parse_packet(packet[8:])
    assert parsed.checksum_ok
    assert wire.parse_prepare_buffer(parsed.data) == (Cmd.USERTEMP_RRQ, wire.FCT_USER, 0)


def test_commkey_vectors() -> None:
    assert wire.make_commkey(45, 0x45CF) == bytes.fromhex("61c9323c")
    assert wire.make_commkey(12, 0x45CF) == bytes.fromhex("614d323c")
    assert wire.verify_commkey(bytes.fromhex("61c9323c"), 45, 0x45CF)
    assert not wire.verify_commkey(bytes.fromhex("61c9323c"), 12, 0x45CF)
    assert not wire.verify_commkey(b"\x61\xc9\x32", 45, 0x45CF)


def test_time_vector() -> None:
    assert wire.encode_time(datetime(2018, 6, 25, 17, 41, 5)) == 594063665
    assert wire.decode_time(594063665) == datetime(2018, 6, 25, 17, 41, 5)
    assert wire.decode_time(0) == wire.ZERO_TIME == datetime(2000, 1, 1)


def test_free_sizes_vector_fields() -> None:
    sizes = wire.FreeSizes(
        users=7,
        fingers=6,
        records=605,
        finger_capacity=3000,
        user_capacity=10000,
        record_capacity=100000,
    )
    raw = wire.encode_free_sizes(sizes)
    fields = struct.unpack("<20i", raw[:80])
    assert (fields[4], fields[6], fields[8]) == (7, 6, 605)
    assert (fields[14], fields[15], fields[16]) == (3000, 10000, 100000)
    assert (fields[17], fields[18], fields[19]) == (2994, 9993, 99395)
    assert wire.decode_free_sizes(raw) == sizes
    with pytest.raises(wire.WireError):
        wire.decode_free_sizes(raw[:79])


# --- pyzk as an oracle --------------------------------------------------------------------


def pyzk_request(command: int, data: bytes, session_id: int, reply_id: int) -> bytes:
    """The exact bytes pyzk 0.9 puts on the wire for a request (its private header builder)."""
    client = ZK("127.0.0.1", 4370, ommit_ping=True)
    header: bytes = client._ZK__create_header(command, data, session_id, reply_id)
    return header


@given(
    command=st.sampled_from([int(c) for c in Cmd]),
    data=st.binary(max_size=64),
    session_id=st.integers(0, 0xFFFF),
    reply_id=st.integers(0, 0xFFFD),
)
def test_pyzk_requests_carry_the_standard_checksum(
    command: int, data: bytes, session_id: int, reply_id: int
) -> None:
    raw = pyzk_request(command, data, session_id, reply_id)
    packet = wire.parse_packet(raw)
    assert (packet.command, packet.session_id, packet.data) == (command, session_id, data)
    assert packet.reply_id == reply_id + 1
    rebuilt = wire.build_packet(command, session_id, packet.reply_id, data)
    assert packet.checksum_ok, (raw.hex(), rebuilt.hex())
    assert rebuilt == raw


@given(
    key=st.integers(0, 999_999),
    session_id=st.integers(0, 0xFFFF),
    ticks=st.integers(0, 255),
)
def test_commkey_matches_pyzk(key: int, session_id: int, ticks: int) -> None:
    token = wire.make_commkey(key, session_id, ticks)
    assert wire.verify_commkey(token, key, session_id)
    try:
        expected = pyzk_make_commkey(key, session_id, ticks)
    except struct.error:
        assume(False)  # pyzk overflows there (see the test below)
    assert token == expected


def test_commkey_wraps_where_pyzk_overflows() -> None:
    """Reversed, a key whose low 17+ bits are all ones plus a session id can pass 2**32: the
    terminal's 32-bit arithmetic wraps, pyzk 0.9 raises struct.error in connect()."""
    with pytest.raises(struct.error):
        pyzk_make_commkey(524287, 8192)
    token = wire.make_commkey(524287, 8192, ticks=0)
    assert token == b"SO\x00K"  # the sum wrapped to 0: "ZKSO", halves swapped, ticks 0
    assert wire.verify_commkey(token, 524287, 8192)


# --- checksum, packets, framing -----------------------------------------------------------


def reference_checksum(data: bytes) -> int:
    """Word by word, carries folded as they happen: the textbook one's-complement sum."""
    total = 0
    padded = data + b"\x00" if len(data) % 2 else data
    for (word,) in struct.iter_unpack("<H", padded):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=2048))
def test_checksum_matches_reference(data: bytes) -> None:
    assert wire.checksum(data) == reference_checksum(data)


def test_checksum_edge_cases() -> None:
    assert wire.checksum(b"") == 0xFFFF
    assert wire.checksum(b"\x00" * 10) == 0xFFFF
    assert wire.checksum(b"\xff\xff") == 0x0000
    assert wire.checksum(b"\x01") == 0xFFFE


@given(
    command=st.integers(0, 0xFFFF),
    session_id=st.integers(0, 0xFFFF),
    reply_id=st.integers(0, 0xFFFF),
    data=st.binary(max_size=300),
)
def test_packet_round_trip(command: int, session_id: int, reply_id: int, data: bytes) -> None:
    packet = wire.parse_packet(wire.build_packet(command, session_id, reply_id, data))
    assert (packet.command, packet.session_id, packet.reply_id, packet.data) == (
        command,
        session_id,
        reply_id,
        data,
    )
    assert packet.checksum_ok


def test_parse_packet_rejects_short_input() -> None:
    with pytest.raises(wire.WireError):
        wire.parse_packet(b"\x01\x02\x03")


def test_bad_checksum_is_reported_not_rejected() -> None:
    raw = bytearray(wire.build_packet(Cmd.GET_TIME, 7, 3))
    raw[2] ^= 0xFF
    packet = wire.parse_packet(bytes(raw))
    assert packet.command == Cmd.GET_TIME
    assert not packet.checksum_ok


@given(
    payloads=st.lists(st.binary(max_size=200), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_stream_splitter_any_read_boundaries(payloads: list[bytes], cuts: list[int]) -> None:
    packets = [wire.build_packet(Cmd.DATA, 1, i, p) for i, p in enumerate(payloads)]
    stream = b"".join(wire.frame_tcp(p) for p in packets)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    splitter = wire.TcpStreamSplitter()
    received: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        received += splitter.feed(stream[start:end])
    assert received == packets
    assert splitter.pending == 0


def test_stream_splitter_keeps_partial_packet() -> None:
    framed = wire.frame_tcp(wire.build_packet(Cmd.CONNECT, 0, 0))
    splitter = wire.TcpStreamSplitter()
    assert splitter.feed(framed + framed[:5]) == [framed[8:]]
    assert splitter.pending == 5
    assert splitter.feed(framed[5:]) == [framed[8:]]


@pytest.mark.parametrize(
    "stream",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        wire.TCP_MAGIC + struct.pack("<I", 4) + b"\x00" * 4,
        wire.TCP_MAGIC + struct.pack("<I", wire.MAX_TCP_PACKET + 1),
    ],
    ids=["not-zk", "too-short", "too-long"],
)
def test_stream_splitter_rejects_bad_prefix(stream: bytes) -> None:
    with pytest.raises(wire.FramingError):
        wire.TcpStreamSplitter().feed(stream)


# --- time -----------------------------------------------------------------------------------

moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59))


@given(moments)
def test_time_round_trip(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    assert wire.decode_time(wire.encode_time(moment)) == moment


@given(st.integers(0, 0xFFFFFFFF))
def test_decode_time_is_exact_inverse_or_raises(value: int) -> None:
    try:
        moment = wire.decode_time(value)
    except wire.InvalidTimeError:
        return
    if moment.year <= 2099:
        assert wire.encode_time(moment) == value


def test_impossible_dates_raise() -> None:
    feb_31 = ((18 * 12 + 1) * 31 + 30) * 86400
    with pytest.raises(wire.InvalidTimeError, match="not a real date"):
        wire.decode_time(feb_31)
    with pytest.raises(wire.InvalidTimeError):
        wire.encode_time(datetime(1999, 12, 31))
    with pytest.raises(wire.InvalidTimeError):
        wire.encode_time(datetime(2100, 1, 1))


@given(moments)
def test_event_time_round_trip(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    assert wire.decode_event_time(wire.encode_event_time(moment)) == moment


# --- attendance records ---------------------------------------------------------------------

SECOND_MOMENTS = moments.map(lambda m: m.replace(microsecond=0))


@st.composite
def attendance_records(draw: st.DrawFn, size: int) -> wire.AttendanceRecord:
    uid = draw(st.integers(1, 0xFFFF))
    if size in (8, 16):
        user_id = str(draw(st.integers(0 if size == 16 else 1, 0xFFFFFFFF)))
    else:
        user_id = draw(
            st.text(
                alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                min_size=1,
                max_size=24,
            )
        )
    return wire.AttendanceRecord(
        uid=None if size == 16 else uid,
        user_id=user_id,
        timestamp=draw(SECOND_MOMENTS),
        verify=draw(st.integers(0, 15 if size == 8 else 255)),
        state=draw(st.integers(0, 15 if size == 8 else 255)),
        workcode=draw(st.integers(0, 0xFFFFFFFF)) if size != 8 else 0,
    )


@pytest.mark.parametrize("size", wire.ATTENDANCE_RECORD_SIZES)
@given(data=st.data())
def test_attendance_round_trip(size: int, data: st.DataObject) -> None:
    records = data.draw(st.lists(attendance_records(size), max_size=20))
    uid_map = {r.uid: r.user_id for r in records if r.uid is not None}
    if size == 8:  # one user per uid, as on a terminal
        records = [
            wire.AttendanceRecord(r.uid, uid_map[r.uid or 0], r.timestamp, r.verify, r.state)
            for r in records
        ]
    raw = b"".join(wire.encode_attendance(r, size) for r in records)
    assert len(raw) == size * len(records)
    decoded = wire.decode_attendance_buffer(wire.size_prefixed(raw), len(records), uid_map)
    assert decoded.problems == []
    assert list(decoded.records) == records
    if records:
        assert decoded.record_size == size


@given(
    records=st.lists(attendance_records(40), max_size=30),
    start=st.integers(-35, 35) | st.none(),
    stop=st.integers(-35, 35) | st.none(),
    step=st.sampled_from([None, 1, 2, -1, -3]),
    index=st.integers(-35, 35),
)
def test_decoded_records_read_like_the_list_they_stand_for(
    records: list[wire.AttendanceRecord],
    start: int | None,
    stop: int | None,
    step: int | None,
    index: int,
) -> None:
    """A decoded log's records are built when read; any read gives what a list would, before
    and after the whole sequence was walked."""
    raw = b"".join(wire.encode_attendance(r, 40) for r in records)
    for walk_first in (False, True):
        decoded = wire.decode_attendance(raw, len(records), {}, record_size=40).records
        if walk_first:
            assert list(decoded) == records
        assert len(decoded) == len(records)
        assert decoded[start:stop:step] == records[start:stop:step]
        assert all(type(r) is wire.AttendanceRecord for r in decoded[start:stop:step])
        if -len(records) <= index < len(records):
            assert decoded[index] == records[index]
            assert type(decoded[index]) is wire.AttendanceRecord
        else:
            with pytest.raises(IndexError):
                decoded[index]
        assert list(reversed(decoded)) == records[::-1]


def _real_time(value: int) -> bool:
    try:
        wire.decode_time(value)
    except wire.InvalidTimeError:
        return False
    return True


@given(
    times=st.lists(st.integers(0, 0xFFFFFFFF).filter(_real_time), max_size=30),
    start=st.integers(-35, 35),
    stop=st.integers(-35, 35),
)
def test_decoded_times_read_as_the_store_writes_them(
    times: list[int], start: int, stop: int
) -> None:
    """A decoded log's bulk-formatted times are the text the store and the chain's encoding
    take from each record's time (ledger.time_text), for any real date a terminal can hold."""
    raw = b"".join(wire.pack_attendance(40, uid=1, user_id="7", time_value=t) for t in times)
    decoded = wire.decode_attendance(raw, len(times), {}, record_size=40).records
    assert isinstance(decoded, TimeTexts)
    expected = [ledger.time_text(record.timestamp) for record in decoded]
    lo, hi, _ = slice(start, stop).indices(len(times))
    assert decoded.time_texts(lo, max(lo, hi)) == expected[lo:hi]


def test_8_byte_records_map_uid_through_user_table() -> None:
    """An unknown uid is a problem, never a user ID made of its bare number."""
    moment = datetime(2026, 11, 16, 8, 30)
    raw = wire.pack_attendance(8, uid=3, user_id="", time_value=wire.encode_time(moment))
    raw += wire.pack_attendance(8, uid=9, user_id="", time_value=wire.encode_time(moment))
    decoded = wire.decode_attendance(raw, 2, {3: "A1001"})
    assert [r.user_id for r in decoded.records] == ["A1001"]
    assert [(p.index, p.reason) for p in decoded.problems] == [
        (1, "uid 9 is not in the user table")
    ]


def test_known_layout_bytes() -> None:
    moment = datetime(2018, 6, 25, 17, 41, 5)
    record = wire.AttendanceRecord(5, "1234", moment, verify=1, state=2, workcode=9)
    time_le = struct.pack("<I", 594063665)
    eight = wire.AttendanceRecord(5, "1234", moment, verify=1, state=2)
    assert wire.encode_attendance(eight, 8) == b"\x05\x00\x21\x00" + time_le
    assert wire.encode_attendance(record, 40) == (
        b"\x05\x00"
        + b"1234".ljust(24, b"\x00")
        + b"\x01"
        + time_le
        + b"\x02"
        + struct.pack("<I", 9)
        + b"\x00" * 4
    )
    assert wire.encode_attendance(record, 49)[:40] == wire.encode_attendance(record, 40)
    sixteen = wire.AttendanceRecord(None, "1234", moment, 1, 2, workcode=7)
    assert wire.encode_attendance(sixteen, 16) == (
        struct.pack("<I", 1234) + time_le + b"\x02\x01\x00\x00" + struct.pack("<I", 7)
    )


# 38 records of a Z40, firmware 6.60, from one READ_BUFFER reply posted in js_zklib issue #50
# (16-byte records; the reply's header and the tail of the record before them cut off). The
# byte after the time is 0 for every morning punch and turns 1 at 15:15:17, when the terminal
# switched to check-out; the byte after it is always 0.
JS_ZKLIB_50 = bytes.fromhex(
    "15000000ec154f2300000000000000001000000095164f230000000000000000"
    "0b000000c1194f2300000000000000000d000000521b4f230000000000000000"
    "0d000000521b4f2300000000000000000c0000005c1b4f230000000000000000"
    "0c0000005d1b4f2300000000000000001d000000611c4f230000000000000000"
    "08000000661c4f23000000000000000009000000051d4f230000000000000000"
    "040000007e1e4f230000000000000000040000007f1e4f230000000000000000"
    "140000002b1f4f2300000000000000001300000067214f230000000000000000"
    "0e0000003c234f23000000000000000020000000be254f230000000000000000"
    "0a0000001e294f23000000000000000002000000fb294f230000000000000000"
    "170000002f2b4f23000000000000000007000000832d4f230000000000000000"
    "1b000000f92d4f2300000000000000001b000000fa2d4f230000000000000000"
    "1a00000064394f2300000000000000001a00000066394f230000000000000000"
    "06000000064f4f23000000000000000006000000074f4f230000000000000000"
    "1600000082824f2300000000000000001600000085824f230100000000000000"
    "1600000086824f2301000000000000000b0000007c844f230100000000000000"
    "0800000032864f2301000000000000001500000025874f230100000000000000"
    "0d0000009e8b4f2301000000000000000d0000009f8b4f230100000000000000"
    "0d000000a08b4f2301000000000000000c000000168c4f230100000000000000"
    "09000000a08d4f23010000000000000014000000f4914f230100000000000000"
)


def test_16_byte_records_read_as_the_published_capture() -> None:
    decoded = wire.decode_attendance(JS_ZKLIB_50, 38, {})
    records = decoded.records
    assert decoded.problems == [] and len(records) == 38
    assert {r.timestamp.date() for r in records} == {date(2018, 6, 6)}
    switch = datetime(2018, 6, 6, 15, 15, 17)
    assert [r.state for r in records] == [int(r.timestamp >= switch) for r in records]
    assert {r.verify for r in records} == {0}
    assert (records[0].user_id, records[0].timestamp) == ("21", datetime(2018, 6, 6, 7, 31, 56))


def test_40_byte_records_keep_the_workcode() -> None:
    record = wire.AttendanceRecord(3, "1003", datetime(2026, 11, 16, 8, 0), 1, 0, workcode=42)
    raw = wire.encode_attendance(record, 40)
    assert raw[32:36] == struct.pack("<I", 42)
    assert list(wire.decode_attendance(raw, 1, {}).records) == [record]
    assert wire.decode_attendance(raw + b"\x00" * 9, 1, {}).records[0].workcode == 42


# 8-byte records of a ZEM500 terminal, from pyzk issue #99 (hex and the reporter's decoding:
# uid, a byte packing state (high nibble) and verify (low nibble), a zero byte, the time).
PYZK_99 = bytes.fromhex("07002800a8eba71e7b0028004beca71e7b0028004eeca71e")


def test_8_byte_records_read_as_the_published_capture() -> None:
    decoded = wire.decode_attendance(PYZK_99, 3, {7: "1007", 123: "1123"})
    assert decoded.problems == []
    assert [(r.uid, r.user_id, r.timestamp, r.state, r.verify) for r in decoded.records] == [
        (7, "1007", datetime(2016, 1, 1, 19, 2, 0), 2, 8),
        (123, "1123", datetime(2016, 1, 1, 19, 4, 43), 2, 8),
        (123, "1123", datetime(2016, 1, 1, 19, 4, 46), 2, 8),
    ]


@pytest.mark.parametrize("bad", [b"10 01", b"10\x1b[2J", b"\xe5\xbc\xa0", b"\t1001"])
def test_user_ids_that_are_not_printable_ascii_are_problems(bad: bytes) -> None:
    good = wire.pack_attendance(40, uid=1, user_id="1001", time_value=0)
    raw = good + b"\x02\x00" + bad.ljust(24, b"\x00") + b"\x01" + b"\x00" * 13
    decoded = wire.decode_attendance(raw, 2, {})
    assert [r.user_id for r in decoded.records] == ["1001"]
    assert "printable ASCII" in decoded.problems[0].reason
    user = bytes(wire.encode_user(wire.UserRecord(1, "1001", "x"), 72, "gbk"))
    hostile = user[:48] + bad.ljust(24, b"\x00")
    users = wire.decode_users(user + hostile, 2, "gbk")
    assert [u.user_id for u in users.records] == ["1001"] and len(users.problems) == 1


def test_bad_records_are_set_aside_and_good_ones_kept() -> None:
    good = wire.AttendanceRecord(1, "1001", datetime(2026, 11, 16, 8, 0), 1, 0)
    feb_30 = ((26 * 12 + 1) * 31 + 29) * 86400
    bad_time = wire.pack_attendance(40, uid=2, user_id="1002", time_value=feb_30)
    bad_id = b"\x03\x00" + b"\xff\xfe".ljust(24, b"\x00") + b"\x01" + b"\x00" * 13
    empty_id = b"\x04\x00" + b"\x00" * 24 + b"\x01" + b"\x00" * 13
    raw = b"".join([wire.encode_attendance(good, 40), bad_time, bad_id, empty_id])
    raw += wire.encode_attendance(good, 40)
    decoded = wire.decode_attendance(raw, 5, {})
    assert list(decoded.records) == [good, good]
    assert [(p.index, p.raw) for p in decoded.problems] == [
        (1, bad_time),
        (2, bad_id),
        (3, empty_id),
    ]
    assert "not a real date" in decoded.problems[0].reason
    assert "printable ASCII" in decoded.problems[1].reason
    assert "empty" in decoded.problems[2].reason


@pytest.mark.parametrize("size", [8, 16])
def test_bad_dates_in_short_layouts(size: int) -> None:
    feb_30 = ((26 * 12 + 1) * 31 + 29) * 86400
    good = wire.pack_attendance(size, uid=1, user_id="1", time_value=0)
    bad = wire.pack_attendance(size, uid=1, user_id="1", time_value=feb_30)
    decoded = wire.decode_attendance(good + bad + good, 3, {1: "1"})
    assert [r.timestamp for r in decoded.records] == [wire.ZERO_TIME, wire.ZERO_TIME]
    assert [(p.index, p.raw) for p in decoded.problems] == [(1, bad)]


def test_record_size_derivation_errors() -> None:
    with pytest.raises(wire.RecordSizeError, match="stale"):
        wire.decode_attendance(b"\x00" * 80, 1, {})  # 80 bytes for one record
    with pytest.raises(wire.RecordSizeError):
        wire.decode_attendance(b"\x00" * 81, 2, {})
    with pytest.raises(wire.RecordSizeError):
        wire.decode_attendance(b"\x00" * 40, 0, {})
    with pytest.raises(wire.RecordSizeError):
        wire.decode_attendance(b"\x00" * 40, 1, {}, record_size=20)
    with pytest.raises(wire.TruncatedBufferError):
        wire.decode_attendance(b"\x00" * 41, 1, {}, record_size=40)
    assert wire.decode_attendance(b"", 0, {}).records == []
    # an empty log of a configured layout, from a terminal that reported no counts
    assert len(wire.decode_attendance(b"", -1, {}, record_size=40).records) == 0
    # a known layout overrides a stale count
    record = wire.AttendanceRecord(1, "7", datetime(2026, 1, 1), 1, 0)
    raw = wire.encode_attendance(record, 40) * 3
    assert list(wire.decode_attendance(raw, 2, {}, record_size=40).records) == [record] * 3


def test_buffer_prefix_helpers() -> None:
    record = wire.encode_attendance(wire.AttendanceRecord(1, "7", datetime(2026, 1, 1)), 40)
    buffer = wire.size_prefixed(record * 2)
    assert bytes(wire.buffer_records(buffer)) == record * 2
    assert bytes(wire.buffer_records(buffer + b"junk")) == record * 2
    with pytest.raises(wire.TruncatedBufferError):
        wire.buffer_records(buffer[:-1])
    with pytest.raises(wire.TruncatedBufferError):
        wire.buffer_records(b"\x00\x00")


@pytest.mark.parametrize("size", wire.ATTENDANCE_RECORD_SIZES)
def test_a_100k_record_log_decodes_exactly(size: int) -> None:
    """The bulk decoder at volume (its speed is measured by scripts/bench/ingest.py)."""
    start = datetime(2026, 1, 5, 7, 0)
    records = [
        wire.AttendanceRecord(
            None if size == 16 else 1 + i % 47,
            str(1001 + i % 47),
            start + timedelta(seconds=97 * i),
            1,
            i % 2,
        )
        for i in range(100_000)
    ]
    uid_map = {1 + n: str(1001 + n) for n in range(47)}
    raw = wire.size_prefixed(b"".join(wire.encode_attendance(r, size) for r in records))
    decoded = wire.decode_attendance_buffer(raw, len(records), uid_map)
    assert list(decoded.records) == records and decoded.problems == []


# --- users ----------------------------------------------------------------------------------

GBK_NAME_CHARS = st.sampled_from(
    "张王李赵刘陈杨黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤明华建国军平"
)


@st.composite
def users(draw: st.DrawFn, size: int) -> wire.UserRecord:
    width = 8 if size == 28 else 24
    name = draw(st.text(alphabet=GBK_NAME_CHARS, max_size=width // 2))
    if size == 28:
        user_id = str(draw(st.integers(0, 0xFFFFFFFF)))
        group = str(draw(st.integers(0, 255)))
        password = draw(st.text(alphabet="0123456789", max_size=5))
    else:
        user_id = draw(st.text(alphabet="0123456789ABCDEFXYZ", min_size=1, max_size=24))
        group = draw(st.text(alphabet="0123456789", max_size=7))
        password = draw(st.text(alphabet="0123456789", max_size=8))
    return wire.UserRecord(
        uid=draw(st.integers(1, 0xFFFF)),
        user_id=user_id,
        name=name,
        privilege=draw(st.sampled_from([0, 2, 6, 14])),
        password=password,
        card=draw(st.integers(0, 0xFFFFFFFF)),
        group=group,
    )


@pytest.mark.parametrize("size", wire.USER_RECORD_SIZES)
@settings(max_examples=50)
@given(data=st.data())
def test_user_round_trip(size: int, data: st.DataObject) -> None:
    records = data.draw(st.lists(users(size), max_size=12))
    raw = b"".join(wire.encode_user(u, size, "gbk") for u in records)
    assert len(raw) == size * len(records)
    decoded = wire.decode_users_buffer(wire.size_prefixed(raw), len(records), "gbk")
    assert decoded.problems == []
    assert decoded.records == records


def test_user_layout_bytes_28() -> None:
    user = wire.UserRecord(3, "1001", "欧阳建国", 14, "123", 555, "1")
    raw = wire.encode_user(user, 28, "gbk")
    assert raw == (
        b"\x03\x00\x0e"
        + b"123\x00\x00"
        + "欧阳建国".encode("gbk")
        + struct.pack("<I", 555)
        + b"\x00\x01\x00\x00"
        + struct.pack("<I", 1001)
    )


def test_long_names_are_cut_at_a_character_boundary() -> None:
    user = wire.UserRecord(1, "1", "欧阳建国同志", 0)
    decoded = wire.decode_users(wire.encode_user(user, 28, "gbk"), 1, "gbk")
    assert decoded.records[0].name == "欧阳建国"
    long_name = "王" * 13  # 26 bytes in gbk
    decoded = wire.decode_users(
        wire.encode_user(wire.UserRecord(1, "1", long_name), 72, "gbk"), 1, "gbk"
    )
    assert decoded.records[0].name == "王" * 12


def test_undecodable_names_are_replaced_and_bad_ids_set_aside() -> None:
    good = wire.encode_user(wire.UserRecord(1, "1001", "张三"), 72, "gbk")
    odd_name = bytearray(good)
    odd_name[11:13] = b"\xff\xff"  # name field starts at byte 11
    bad_id = bytearray(good)
    bad_id[48:50] = b"\xff\xfe"  # user ID field starts at byte 48
    decoded = wire.decode_users(bytes(good + odd_name + bad_id), 3, "gbk")
    assert [u.uid for u in decoded.records] == [1, 1]
    assert "\ufffd" in decoded.records[1].name
    assert [p.index for p in decoded.problems] == [2]


def test_user_layout_rejects_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="number"):
        wire.encode_user(wire.UserRecord(1, "A1", "x"), 28, "gbk")
    with pytest.raises(ValueError, match="24 bytes"):
        wire.encode_user(wire.UserRecord(1, "1" * 25, "x"), 72, "gbk")
    with pytest.raises(ValueError):
        wire.encode_attendance(wire.AttendanceRecord(None, "A1", datetime(2026, 1, 1)), 16)
    with pytest.raises(wire.RecordSizeError):
        wire.encode_user(wire.UserRecord(1, "1", "x"), 29, "gbk")
    with pytest.raises(wire.RecordSizeError):
        wire.decode_users(b"\x00" * 56, 1, "gbk")


# --- small payloads -------------------------------------------------------------------------


def test_option_request_and_reply() -> None:
    assert wire.parse_option_request(b"~SerialNumber\x00") == "~SerialNumber"
    assert wire.option_reply("~SerialNumber", "CKD01") == b"~SerialNumber=CKD01\x00"


def test_buffer_request_payloads() -> None:
    assert wire.read_buffer_request(0xFFC0, 100) == struct.pack("<ii", 0xFFC0, 100)
    assert wire.parse_read_buffer(wire.read_buffer_request(5, 6)) == (5, 6)
    ready = wire.prepare_buffer_ready(4_000_004)
    assert struct.unpack("<I", ready[1:5])[0] == 4_000_004  # where pyzk reads the size
    assert wire.prepare_data_payload(9)[:4] == struct.pack("<I", 9)
    with pytest.raises(wire.WireError):
        wire.parse_read_buffer(b"\x00")
    with pytest.raises(wire.WireError):
        wire.parse_prepare_buffer(b"\x01\x0d")


def test_event_payload_layout() -> None:
    payload = wire.encode_event("1001", 1, 0, datetime(2026, 11, 16, 8, 1, 2))
    assert len(payload) == 32
    assert payload[:24] == b"1001".ljust(24, b"\x00")
    assert payload[24:26] == b"\x01\x00"
    assert wire.decode_event_time(payload[26:]) == datetime(2026, 11, 16, 8, 1, 2)


def test_iter_chunks() -> None:
    assert list(wire.iter_chunks(2500, 1024)) == [(0, 1024), (1024, 1024), (2048, 452)]
    assert list(wire.iter_chunks(0, 1024)) == []


def _framed_chunk(data: bytes, frame: int) -> bytes:
    """A READ_BUFFER answer as firmware 6.60 sends it over TCP: PREPARE_DATA, CMD_DATA frames
    of `frame` bytes (1008 in pyzk's own test capture), ACK_OK."""
    packets = [wire.build_packet(wire.Cmd.PREPARE_DATA, 7, 3, wire.prepare_data_payload(len(data)))]
    packets += [
        wire.build_packet(wire.Cmd.DATA, 7, 3, data[start : start + length])
        for start, length in wire.iter_chunks(len(data), frame)
    ]
    packets.append(wire.build_packet(wire.Cmd.ACK_OK, 7, 3))
    return b"".join(wire.frame_tcp(packet) for packet in packets)


@pytest.mark.parametrize("read_size", [1, 7, 1016, 1017, 5044, 1 << 16])
def test_1008_byte_frames_reassemble_at_any_read_boundary(read_size: int) -> None:
    data = bytes(range(256)) * 20 + b"tail"  # 5124 bytes: five whole frames and a short one
    stream = _framed_chunk(data, 1008)
    splitter = wire.TcpStreamSplitter(wire.MAX_TCP_CHUNK + 64)
    packets = []
    for start in range(0, len(stream), read_size):
        packets += [wire.parse_packet(p) for p in splitter.feed(stream[start : start + read_size])]
    assert [p.command for p in packets] == [wire.Cmd.PREPARE_DATA] + [wire.Cmd.DATA] * 6 + [
        wire.Cmd.ACK_OK
    ]
    assert [len(p.data) for p in packets[1:-1]] == [1008] * 5 + [84]
    assert b"".join(p.data for p in packets[1:-1]) == data
    assert splitter.pending == 0


def test_a_kept_record_still_says_its_user_and_time_where_it_can() -> None:
    """The 异常 sheet lists a record that did not decode in the week of the time it holds."""
    moment = datetime(2026, 11, 18, 9, 0)
    line = b"10\x0199\t2026-11-18 09:00:00\t1\t0\t1\t0\r\n"
    assert wire.read_kept_record(line) == ("10\x0199", moment)
    binary = struct.pack("<H24sBIBI4x", 7, b"10\x0199", 1, wire.encode_time(moment), 0, 0)
    assert wire.read_kept_record(binary) == ("10\x0199", moment)
    february_31 = (31 + 30) * 86400  # month index 1, day index 30 of the year 2000
    impossible = struct.pack("<H24sBIBI4x", 7, b"\x01", 1, february_31, 0, 0)
    assert wire.read_kept_record(impossible) == ("\x01", None)
    assert wire.read_kept_record(b"\xff\xfe") == (None, None)
