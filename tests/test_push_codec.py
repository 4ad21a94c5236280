"""The iclock text codec on the line shapes real push terminals send."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clockd.zk import push as codec
from clockd.zk import wire

T = dt.datetime(2026, 11, 16, 8, 3, 27)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # 7 fields with the trailing tab most firmware leaves
        (b"1001\t2026-11-16 08:03:27\t0\t1\t0\t0\t0\t", ("1001", T, 0, 1, 0)),
        # 5 bare fields
        (b"1001\t2026-11-16 08:03:27\t1\t15\t7", ("1001", T, 1, 15, 7)),
        # 11 fields, empty reserved ones and trailing tabs
        (b"1001\t2026-11-16 08:03:27\t0\t1\t\t0\t0\t\t\t\t", ("1001", T, 0, 1, 0)),
        # 12 fields, the last a running record number
        (b"1001\t2026-11-16 08:03:27\t2\t1\t0\t0\t0\t\t\t\t\t255", ("1001", T, 2, 1, 0)),
        # a record number in front of the PIN
        (b"17\t1001\t2026-11-16 08:03:27\t1\t0\t0\t0", ("1001", T, 1, 0, 0)),
        # state and verify left empty, PIN padded with blanks
        (b"  1001 \t2026-11-16 08:03:27\t\t\t", ("1001", T, 0, 0, 0)),
        # only PIN and time
        (b"A17\t2026-11-16 08:03:27", ("A17", T, 0, 0, 0)),
        # named fields, in any order
        (b"Time=2026-11-16 08:03:27\tPIN=1001\tStatus=1\tVerify=15", ("1001", T, 1, 15, 0)),
    ],
)
def test_real_line_shapes(line: bytes, expected: tuple[object, ...]) -> None:
    parsed = codec.parse_attlog_line(line)
    assert (parsed.user_id, parsed.timestamp, parsed.state, parsed.verify, parsed.workcode) == (
        expected
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"1001", "no time field"),
        (b"1001\t2026-02-30 08:00:00\t0", "impossible"),
        (b"1001\t16/11/2026 08:00\t0", "not YYYY-MM-DD"),
        (b"\t2026-11-16 08:03:27\t0", "empty user ID"),
        (b"1001\t2026-11-16 08:03:27\tx\t1", "state 'x' is not a number"),
        (b"1001\t2026-11-16 08:03:27\t0\t99999", "out of range"),
        (b"1001\t2026-11-16 08:03:27" + b"\t0" * 12, "fields (at most 12)"),
        (b"1" * 30 + b"\t2026-11-16 08:03:27", "is not a PIN"),
        (b"1001\t2026-11-16 08:03:27\t" + b"0" * 2000, "too long"),
        (b"PIN=1001\tTime", "is not name=value"),
        (b"PIN=1001\tStatus=1", "is not YYYY-MM-DD"),
    ],
)
def test_malformed_lines_say_why(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        codec.parse_attlog_line(line)


def test_a_batch_with_crlf_blank_lines_and_a_bad_line() -> None:
    body = (
        b"1001\t2026-11-16 08:03:27\t0\t1\t0\t0\t0\t\r\n"
        b"\r\n"
        b"garbage line\r\n"
        b"1002\t2026-11-16 08:04:00\t0\t1\t0\t0\t0\t\r\n"
    )
    parsed = codec.parse_attlog(body)
    assert [p.user_id for p in parsed.punches] == ["1001", "1002"]
    assert parsed.lines == 3
    assert [(p.index, p.raw) for p in parsed.problems] == [(3, b"garbage line")]


def test_replies() -> None:
    text = codec.options_reply("SN1", {"ATTLOGStamp": 0, "Realtime": 1})
    assert text == "GET OPTION FROM: SN1\nATTLOGStamp=0\nRealtime=1\n"
    assert codec.ok_reply(3) == "OK: 3\n"
    assert codec.command_lines([]) == "OK\n"
    assert codec.command_lines([(7, "INFO"), (8, "CHECK")]) == "C:7:INFO\nC:8:CHECK\n"
    moment = dt.datetime(2026, 11, 16, 8, 0, 0)
    assert codec.set_time_command(moment) == f"SET OPTIONS DateTime={wire.encode_time(moment)}"
    assert codec.reupload_command(moment, moment.replace(hour=9)) == (
        "DATA QUERY ATTLOG StartTime=2026-11-16 08:00:00\tEndTime=2026-11-16 09:00:00"
    )


def test_command_results() -> None:
    body = b"ID=28&Return=0&CMD=DATA\nID=29&Return=-1002&CMD=SET\r\n~DeviceName=x\nID=zz&Return=0\n"
    assert codec.parse_command_results(body) == [
        codec.CommandResult(28, 0, "DATA"),
        codec.CommandResult(29, -1002, "SET"),
    ]


@pytest.mark.parametrize(
    ("text", "valid"),
    [("CQZ7231060042", True), ("A-1.b_2", True), ("", False), ("x y", False), ("é", False)],
)
def test_serial_parameter(text: str, valid: bool) -> None:
    assert (codec.valid_serial(text) is not None) == valid


@given(st.binary(max_size=400))
def test_any_body_parses_without_raising(body: bytes) -> None:
    parsed = codec.parse_attlog(body)
    assert len(parsed.punches) + len(parsed.problems) == parsed.lines


def test_heartbeat_info() -> None:
    info = codec.parse_info("Ver 6.60 Oct 29 2019,12,20,3041,192.168.1.201,10,7,15,0,111")
    assert info == codec.DeviceInfo("6.60 Oct 29 2019", 12, 20, 3041)
    assert codec.parse_info("Ver 8.0,x,,5") == codec.DeviceInfo("8.0", None, None, 5)
    assert codec.parse_info("1,2") is None
    assert codec.parse_info(None) is None
