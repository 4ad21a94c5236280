"""The push receiver over real HTTP on loopback: bodies as terminals send them, exactly-once
storage whatever fails, unknown devices, hostile clients, commands and last contact."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from clockd.cli import main
from clockd.config import Settings
from clockd.ingest.poll import local_now, poll_cycle
from clockd.ingest.push import UNCONFIGURED_REASON, PushReceiver
from clockd.sim.emulator import EmulatedDevice, EmulatorServer
from clockd.sim.push_device import PushDevice, PushRecord, attlog_line
from clockd.store import db
from clockd.store.models import PollRun, PunchRow, Quarantine
from clockd.store.periods import terminal_facts
from clockd.zk import wire
from tests.push_site import (
    PUSH_SERIAL,
    USERS,
    config_data,
    free_port,
    rows,
    running_receiver,
    serve_process,
    wait_for,
    write_config,
)

DAY = dt.datetime(2026, 11, 16)


def history(count: int, start: dt.datetime = DAY) -> list[PushRecord]:
    """`count` punches a minute apart, cycling users, states, verify types and work codes."""
    return [
        PushRecord(
            USERS[i % len(USERS)],
            start + dt.timedelta(hours=8, minutes=i),
            state=i % 2,
            verify=(1, 15, 2)[i % 3],
            workcode=i % 5,
        )
        for i in range(count)
    ]


def batch(records: list[PushRecord]) -> bytes:
    return "".join(attlog_line(r, n) + "\n" for n, r in enumerate(records, 1)).encode()


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def upload(device: PushDevice) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await device.handshake(client)
        await device.upload_all(client)


def post(url: str, body: bytes, serial: str = PUSH_SERIAL, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/iclock/cdata",
        params={"SN": serial, "table": "ATTLOG", "Stamp": "1"},
        content=body,
        headers=headers,
        timeout=10,
    )


def raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_handshake_answers_options_and_a_date_header(database_url: str) -> None:
    with running_receiver(database_url) as site:
        reply = httpx.get(
            f"{site.url}/iclock/cdata",
            params={"SN": PUSH_SERIAL, "options": "all", "pushver": "2.4.1"},
        )
        assert reply.status_code == 200
        lines = reply.text.splitlines()
        assert lines[0] == f"GET OPTION FROM: {PUSH_SERIAL}"
        options = dict(line.split("=", 1) for line in lines[1:])
        assert options["ATTLOGStamp"] == "0"
        assert options["Realtime"] == "1"
        assert options["TimeZone"] == "8"
        assert {"Delay", "ErrorDelay", "TransFlag", "TransInterval", "Encrypt"} <= set(options)
        assert "date" in reply.headers
        # HTTP/1.0, no Host, headers as firmware writes them, the .aspx name some firmware uses
        raw = raw_exchange(
            site.url,
            f"GET /iclock/cdata.aspx?SN={PUSH_SERIAL}&options=all HTTP/1.0\r\n"
            "user-agent: iClock Proxy/1.09\r\nMAC:   00:17:61:11:cd:3b  \r\n"
            "Cookie: \r\nAccept: */*\r\nAccept: */*\r\nPragma: no-cache\r\n\r\n".encode(),
        )
        assert raw.startswith(b"HTTP/1.1 200") or raw.startswith(b"HTTP/1.0 200")
        assert f"GET OPTION FROM: {PUSH_SERIAL}".encode() in raw
        # other tables are acknowledged, not stored
        for table, body in (
            ("OPERLOG", b"USER PIN=1001\tName=x\tPri=0\nOPLOG 4\t0\t2026-11-16 08:00:00\t0\n"),
            ("options", b"~DeviceName=MB160\nTransactionCount=3041\n"),
        ):
            reply = httpx.post(
                f"{site.url}/iclock/cdata", params={"SN": PUSH_SERIAL, "table": table}, content=body
            )
            assert reply.text == "OK: 2\n"
        assert rows(site.engine, PUSH_SERIAL) == []
        # no SN: refused, never redirected
        assert httpx.get(f"{site.url}/iclock/cdata").status_code == 400
        assert httpx.get(f"{site.url}/iclock/getrequest/", params={"SN": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("style", "crlf", "content_type"),
    [("7", False, "text/plain"), ("11", True, None), ("12", False, None), ("5", True, "x/y")],
)
def test_bodies_as_terminals_send_them(
    sqlite_url: str, style: str, crlf: bool, content_type: str | None
) -> None:
    records = history(300)
    with running_receiver(sqlite_url) as site:
        device = PushDevice(
            PUSH_SERIAL,
            site.url,
            records=list(records),
            line_style=style,
            crlf=crlf,
            content_type=content_type,
        )
        run(upload(device))
        assert device.pending() == 0 and device.uploaded_batches == 3
        expected = sorted(
            (PUSH_SERIAL, r.user_id, r.timestamp, r.verify, r.state, r.workcode) for r in records
        )
        assert rows(site.engine, PUSH_SERIAL) == sorted(expected, key=lambda r: (r[2], r[1]))


def test_without_content_type_over_http_1_0_and_without_a_length(sqlite_url: str) -> None:
    with running_receiver(sqlite_url) as site:
        body = b"1001\t2026-11-16 08:00:00\t0\t1\t0\t0\t0\t\n"
        raw = raw_exchange(
            site.url,
            f"POST /iclock/cdata?SN={PUSH_SERIAL}&table=ATTLOG&Stamp=9 HTTP/1.0\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body,
        )
        assert raw.split(b"\r\n\r\n", 1)[1] == b"OK: 1\n"
        assert len(rows(site.engine, PUSH_SERIAL)) == 1
        # Without a Content-Length an HTTP/1.0 body cannot be read: refused, never an OK that
        # would let the terminal move its stamp past records nobody stored.
        later = b"1002\t2026-11-16 08:05:00\t0\t1\t0\t0\t0\t\n"
        raw = raw_exchange(
            site.url,
            f"POST /iclock/cdata?SN={PUSH_SERIAL}&table=ATTLOG&Stamp=10 HTTP/1.0\r\n\r\n".encode()
            + later,
        )
        assert raw.split(b" ", 2)[1] == b"411", raw
        assert b"OK" not in raw and len(rows(site.engine, PUSH_SERIAL)) == 1


def test_a_device_resending_its_whole_history_stores_nothing_twice(database_url: str) -> None:
    records = history(500)
    with running_receiver(database_url) as site:
        run(upload(PushDevice(PUSH_SERIAL, site.url, records=list(records))))
        first = rows(site.engine, PUSH_SERIAL)
        # A device that ignores the stamp: its whole history, twice, in other batch sizes.
        for size in (37, 500):
            again = PushDevice(
                PUSH_SERIAL, site.url, records=list(records), batch_size=size, ignores_stamp=True
            )
            run(upload(again))
            assert again.pending() == 0
        assert rows(site.engine, PUSH_SERIAL) == first
        assert len(first) == 500
        with site.engine.connect() as connection:
            runs = connection.execute(
                select(func.sum(PollRun.new_count), func.sum(PollRun.duplicate_count)).where(
                    PollRun.source == "push"
                )
            ).one()
        assert tuple(runs) == (500, 1000)


def test_the_stamp_handed_back_continues_where_the_device_was(sqlite_url: str) -> None:
    with running_receiver(sqlite_url) as site:
        device = PushDevice(PUSH_SERIAL, site.url, records=history(200))
        run(upload(device))
        device.add(PushRecord("1001", DAY + dt.timedelta(hours=20)))
        options = run(_handshake(device))
        assert options["ATTLOGStamp"] == "200"  # type: ignore[index]
        assert device.pending() == 1


async def _handshake(device: PushDevice) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as client:
        return await device.handshake(client)


def test_sigkill_of_clockd_serve_mid_batch_then_retry_stores_exactly_once(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, config_data(database_url, port))
    assert main(["--config", str(config), "init"]) == 0
    url = f"http://127.0.0.1:{port}"
    records = history(20_000, start=DAY - dt.timedelta(days=30))
    lines = batch(records)
    engine = db.make_engine(database_url)
    try:
        with serve_process(config) as process:
            host = ("127.0.0.1", port)
            with socket.create_connection(host, timeout=10) as sock:
                sock.sendall(
                    f"POST /iclock/cdata?SN={PUSH_SERIAL}&table=ATTLOG&Stamp=20000 HTTP/1.1\r\n"
                    f"Host: x\r\nContent-Length: {len(lines)}\r\n\r\n".encode()
                    + lines
                )
                time.sleep(0.05)  # the batch is being parsed or stored
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
                assert process.returncode == -signal.SIGKILL
                sock.settimeout(5)
                try:
                    reply = sock.recv(100)
                except OSError:
                    reply = b""
            assert b"OK" not in reply  # the device never heard OK: it still holds the batch
        # The device retries against a restarted server: everything, exactly once.
        with serve_process(config):
            device = PushDevice(PUSH_SERIAL, url, records=list(records), batch_size=20_000)
            run(upload(device))
            assert device.pending() == 0
        stored = rows(engine, PUSH_SERIAL)
        assert len(stored) == 20_000
        assert {(r[1], r[2]) for r in stored} == {(r.user_id, r.timestamp) for r in records}
    finally:
        engine.dispose()


def test_an_unknown_serial_is_answered_and_its_punches_quarantined(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_receiver(sqlite_url) as site:
        stranger = "ZZX0000000999"
        reply = httpx.get(f"{site.url}/iclock/cdata", params={"SN": stranger, "options": "all"})
        assert reply.text.startswith(f"GET OPTION FROM: {stranger}")
        device = PushDevice(stranger, site.url, records=history(10))
        run(upload(device))
        assert device.pending() == 0  # answered OK: the device does not hold them forever
        assert len(rows(site.engine, stranger)) == 10
        with site.engine.connect() as connection:
            reasons = connection.scalars(
                select(Quarantine.reason).where(Quarantine.serial == stranger)
            ).all()
        assert reasons == [UNCONFIGURED_REASON] * 10
        # The same batch again: kept once, quarantined once.
        run(upload(PushDevice(stranger, site.url, records=history(10))))
        with site.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Quarantine)) == 10
        config = write_config(tmp_path, config_data(sqlite_url, 1))
        assert main(["--config", str(config), "devices"]) == 0
        out = capsys.readouterr().out
        assert stranger in out and "10 records quarantined" in out
        assert "push" in out.splitlines()[2]  # the configured push terminal's source


def test_a_malformed_line_among_good_ones(sqlite_url: str) -> None:
    with running_receiver(sqlite_url) as site:
        body = (
            b"1001\t2026-11-16 08:00:00\t0\t1\t0\t0\t0\t\n"
            b"1002\t2026-13-45 08:00:00\t0\t1\t0\t0\t0\t\n"
            b"\xff\xfe\x00garbage\n"
            b"1003\t2026-11-16 08:01:00\t1\t1\t0\t0\t0\t\n"
        )
        reply = post(site.url, body)
        assert reply.status_code == 200 and reply.text == "OK: 4\n"
        assert [r[1] for r in rows(site.engine, PUSH_SERIAL)] == ["1001", "1003"]
        with site.engine.connect() as connection:
            kept = connection.execute(
                select(Quarantine.raw_record, Quarantine.reason).order_by(Quarantine.id)
            ).all()
        assert [raw for raw, _ in kept] == [
            b"1002\t2026-13-45 08:00:00\t0\t1\t0\t0\t0\t",
            b"\xff\xfe\x00garbage",
        ]
        assert all(reason.startswith("unreadable record: ") for _, reason in kept)
        post(site.url, body)  # a resend keeps each bad line once
        with site.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Quarantine)) == 2


def test_a_10_mb_body_is_refused_cleanly(sqlite_url: str) -> None:
    with running_receiver(sqlite_url) as site:  # the default limit, 2 MB
        huge = b"1001\t2026-11-16 08:00:00\t0\t1\t0\t0\t0\t\n" * 300_000  # ~10.8 MB
        assert len(huge) > 10_000_000
        reply = post(site.url, huge)
        assert reply.status_code == 413
        # Without Content-Length (chunked), counted as it arrives.
        chunked = httpx.post(
            f"{site.url}/iclock/cdata",
            params={"SN": PUSH_SERIAL, "table": "ATTLOG"},
            content=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]),
            timeout=30,
        )
        assert chunked.status_code == 413
        assert rows(site.engine, PUSH_SERIAL) == []
        assert post(site.url, huge[:36]).text == "OK: 1\n"  # and the listener still works


@pytest.mark.serial  # asserts the other device is served within a second
def test_a_slow_loris_client_does_not_block_other_devices(sqlite_url: str) -> None:
    with running_receiver(sqlite_url, body_timeout_seconds=1.5) as site:
        host, port = site.url.removeprefix("http://").split(":")
        loris = []
        for _ in range(20):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(
                f"POST /iclock/cdata?SN={PUSH_SERIAL}&table=ATTLOG HTTP/1.1\r\n"
                "Host: x\r\nContent-Length: 100000\r\n\r\n1001\t2026".encode()
            )
            loris.append(sock)
        try:
            began = time.monotonic()
            device = PushDevice(PUSH_SERIAL, site.url, records=history(300))
            run(upload(device))
            assert device.pending() == 0
            assert time.monotonic() - began < 1.0  # not waiting behind the slow ones
            # The slow ones are cut off at the body deadline.
            loris[0].settimeout(5)
            assert loris[0].recv(100).startswith(b"HTTP/1.1 408")
        finally:
            for sock in loris:
                sock.close()


def test_a_client_dripping_its_headers_is_cut_off(sqlite_url: str) -> None:
    with running_receiver(sqlite_url, head_seconds=0.5) as site:
        host, port = site.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as drip:
            began = time.monotonic()
            drip.sendall(b"GET /iclock/getrequest?SN=X HTTP/1.1\r\n")
            closed = False
            while time.monotonic() - began < 5:
                try:
                    drip.sendall(b"X-A: b\r\n")
                except OSError:
                    closed = True
                    break
                drip.settimeout(0.1)
                try:
                    if drip.recv(100) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
            assert closed and time.monotonic() - began < 2.5
        # a keep-alive connection that keeps making requests is not cut off
        with httpx.Client(base_url=site.url, timeout=10) as client:
            for _ in range(8):
                assert client.get("/iclock/getrequest", params={"SN": PUSH_SERIAL}).text == "OK\n"
                time.sleep(0.2)


def test_a_terminal_both_polled_and_pushed_gives_identical_rows(
    tmp_path: Path, sqlite_url: str
) -> None:
    records = history(240)
    pulled_url = f"sqlite:///{tmp_path / 'pulled.sqlite3'}"
    device = EmulatedDevice(
        PUSH_SERIAL, attendance_record_size=16, user_record_size=28, zone="Asia/Shanghai"
    )
    for user in USERS:
        device.add_user(user, f"干部{user}")
    for r in records:
        assert device.add_punch(
            r.user_id, r.timestamp, verify=r.verify, state=r.state, workcode=r.workcode
        )
    server = EmulatorServer()
    endpoint = server.add(device, host="127.0.0.1", port=0, transport="tcp")
    server.start()
    try:
        tcp = {
            "id": "p02",
            "village": "桥东村",
            "host": "127.0.0.1",
            "port": endpoint.port,
            "transport": "tcp",
            "serial": PUSH_SERIAL,
            "installed": "2025-01-01",
        }
        data = config_data(pulled_url, 1)
        data["terminals"] = [tcp]  # the same terminal, polled over the LAN
        settings = Settings.model_validate(data)
        pulled = db.make_engine(pulled_url)
        db.migrate(pulled)
        assert all(o.ok for o in poll_cycle(settings, pulled, environ={}))
        with running_receiver(sqlite_url) as site:
            run(upload(PushDevice(PUSH_SERIAL, site.url, records=list(records))))
            assert rows(site.engine, PUSH_SERIAL) == rows(pulled, PUSH_SERIAL)
            # and pushing into the polled database adds nothing
            assert len(rows(pulled, PUSH_SERIAL)) == 240
        pushed_into_polled = Settings.model_validate(
            {**config_data(pulled_url, 1), "terminals": [tcp]}
        )
        outcome = PushReceiver(pushed_into_polled, pulled).store_attlog(
            PUSH_SERIAL,
            batch(records),
        )
        assert (outcome.new, outcome.duplicates) == (0, 240)
        pulled.dispose()
    finally:
        server.stop()


def test_drift_queues_a_clock_reset_that_the_device_obeys(sqlite_url: str) -> None:
    with running_receiver(sqlite_url) as site:
        device = PushDevice(PUSH_SERIAL, site.url, zone="Asia/Shanghai")
        device.clock_offset = dt.timedelta(minutes=5)  # a fast clock
        device.punch("1001")

        async def session() -> list[str]:
            async with httpx.AsyncClient(timeout=10) as client:
                await device.handshake(client)
                await device.upload_all(client)
                return await device.heartbeat(client)

        commands = run(session())
        assert isinstance(commands, list) and len(commands) == 1
        assert commands[0].split(":", 2)[2].startswith("SET OPTIONS DateTime=")
        assert abs(device.clock_offset.total_seconds()) <= 2
        wait_for(lambda: len(site.receiver.results) == 1)
        serial, result, text = site.receiver.results[0]
        assert (serial, result.return_code) == (PUSH_SERIAL, 0)
        assert text.startswith("SET OPTIONS DateTime=")
        # the punch of the fast clock was dated in the future beyond tolerance? no: 5 min is
        # within the 10-minute tolerance, so it is counted, and the run carries the drift.
        with site.engine.connect() as connection:
            drift = connection.scalar(select(PollRun.drift_seconds).where(PollRun.new_count == 1))
        assert drift is not None and 290 <= drift <= 305


def test_re_upload_request_reaches_the_device(sqlite_url: str) -> None:
    with running_receiver(sqlite_url) as site:
        device = PushDevice(PUSH_SERIAL, site.url, records=history(50))
        run(upload(device))
        site.receiver.request_reupload(
            PUSH_SERIAL, DAY + dt.timedelta(hours=8), DAY + dt.timedelta(hours=8, minutes=9)
        )
        assert site.receiver.pending(PUSH_SERIAL)[0].startswith("DATA QUERY ATTLOG StartTime=")

        async def session() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                await device.heartbeat(client)
                await device.upload_all(client)

        run(session())
        assert device.pending() == 0 and device.uploaded_batches == 2
        assert len(rows(site.engine, PUSH_SERIAL)) == 50
        wait_for(lambda: len(site.receiver.results) == 1)


def test_heartbeats_write_nothing_until_the_flush(sqlite_url: str) -> None:
    with running_receiver(sqlite_url, contact_flush_seconds=3600) as site:
        with httpx.Client(base_url=site.url, timeout=10) as client:
            for _ in range(50):
                reply = client.get("/iclock/getrequest", params={"SN": PUSH_SERIAL})
                assert reply.text == "OK\n"
        with site.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(PollRun)) == 0
        assert site.receiver.last_contact(PUSH_SERIAL) is not None
        assert site.receiver.flush_contacts() == 1
        info = "Ver 6.60 Oct 29 2019,12,20,3041,192.168.1.201,10,7,15,0,111"
        httpx.get(f"{site.url}/iclock/getrequest", params={"SN": PUSH_SERIAL, "INFO": info})
        assert site.receiver.flush_contacts() == 1  # extends the same contact run
        now = dt.datetime.now(dt.UTC)
        with site.engine.connect() as connection:
            runs = connection.execute(select(PollRun.source, PollRun.outcome)).all()
            facts = terminal_facts(connection, site.settings.terminals, now, now)
        assert runs == [("push", "ok")]
        assert facts[0].last_success is not None
        assert facts[0].records_on_device == 3041  # from the heartbeat's INFO
        assert local_now(site.settings) > dt.datetime(2026, 1, 1)


def test_the_punch_store_is_the_polling_one(sqlite_url: str) -> None:
    """Clock faults are quarantined as when polled: dated before `installed`, or in the future."""
    with running_receiver(sqlite_url) as site:
        future = local_now(site.settings) + dt.timedelta(hours=2)
        body = (
            b"1001\t2024-06-01 08:00:00\t0\t1\t0\n"
            + f"1002\t{future:%Y-%m-%d %H:%M:%S}\t0\t1\t0\n".encode()
            + b"9999\t2026-11-16 08:00:00\t0\t1\t0\n"  # unknown user: kept, not quarantined
        )
        assert post(site.url, body).text == "OK: 3\n"
        with site.engine.connect() as connection:
            reasons = sorted(connection.scalars(select(Quarantine.reason)).all())
            count = connection.scalar(select(func.count()).select_from(PunchRow))
        assert count == 3
        assert reasons[0].startswith("dated before the terminal was installed")
        assert reasons[1].startswith("dated more than 10 minutes in the future")


def test_clockd_serve_refuses_a_taken_port(tmp_path: Path, sqlite_url: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path, config_data(sqlite_url, port))
        assert main(["--config", str(config), "init"]) == 0
        result = subprocess.run(
            [sys.executable, "-m", "clockd", "--config", str(config), "serve"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_zk_time_in_the_reset_command_round_trips() -> None:
    moment = dt.datetime(2026, 11, 16, 8, 0, 5)
    assert wire.decode_time(wire.encode_time(moment)) == moment


def test_push_terminals_in_devices_yaml() -> None:
    data = config_data("sqlite:///x.sqlite3", 8081)
    settings = Settings.model_validate(data)
    assert [t.polled for t in settings.terminals] == [False]
    assert settings.push.listen == "127.0.0.1:8081"
    with pytest.raises(ValueError, match="host is required"):
        Settings.model_validate(
            {**data, "terminals": [{**data["terminals"][0], "transport": "tcp"}]}
        )
    with pytest.raises(ValueError, match="is not host:port"):
        Settings.model_validate({**data, "push": {"listen": "8081"}})
    # two push terminals share no address: only their serials must differ
    twin = {**data["terminals"][0], "id": "p02", "serial": "OTHER0001"}
    assert len(Settings.model_validate({**data, "terminals": [*data["terminals"], twin]}).terminals)


def test_simulated_4g_village_pushes_into_clockd_serve(tmp_path: Path) -> None:
    """`clockd simulate` runs the push terminal of devices.yaml against `clockd serve`; its
    synthetic weeks arrive, each punch once, and the unknown-SN case stays empty."""
    port = free_port()
    url = f"sqlite:///{tmp_path / 'clockd.sqlite3'}"
    data = config_data(url, port)
    config = write_config(tmp_path, data)
    assert main(["--config", str(config), "init"]) == 0
    env_path = str(Path(__file__).resolve().parent.parent)
    engine = db.make_engine(url)
    with serve_process(config):
        simulate = subprocess.Popen(
            [sys.executable, "-m", "clockd", "--config", str(config), "simulate", "--weeks", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": env_path},
        )
        try:
            assert simulate.stdout is not None
            assert simulate.stdout.readline().strip() == "ready"

            def arrived() -> bool:
                with engine.connect() as connection:
                    facts = terminal_facts(
                        connection, Settings.model_validate(data).terminals, *[_now()] * 2
                    )
                return len(rows(engine, PUSH_SERIAL)) > 0 and facts[0].last_success is not None

            wait_for(arrived, 30)
            count = len(rows(engine, PUSH_SERIAL))
            time.sleep(0.5)
            assert len(rows(engine, PUSH_SERIAL)) == count  # one upload, not a stream of repeats
        finally:
            simulate.send_signal(signal.SIGTERM)
            simulate.wait(timeout=30)
            for stream in (simulate.stdout, simulate.stderr):
                if stream is not None:
                    stream.close()
    assert simulate.returncode == 0
    engine.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_unknown_serial_shows_in_the_weekly_report(tmp_path: Path, sqlite_url: str) -> None:
    import openpyxl

    stranger = "ZZX0000000999"
    with running_receiver(sqlite_url) as site:
        run(upload(PushDevice(stranger, site.url, records=history(4))))
    data = {**config_data(sqlite_url, 1), "reports_dir": str(tmp_path / "reports")}
    config = write_config(tmp_path, data)
    assert main(["--config", str(config), "init"]) == 0
    assert main(["--config", str(config), "report", "weekly", "--week", "2026-W47"]) == 0
    book = openpyxl.load_workbook(tmp_path / "reports" / "weekly" / "2026-W47.xlsx")
    text = "\n".join(
        str(cell) for row in book["异常"].iter_rows(values_only=True) for cell in row if cell
    )
    assert stranger in text


def test_invented_serials_cannot_grow_memory_without_end(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("clockd.ingest.push.MAX_UNKNOWN_SERIALS", 5)
    with running_receiver(sqlite_url) as site:
        with httpx.Client(base_url=site.url, timeout=10) as client:
            for number in range(20):
                reply = client.get("/iclock/getrequest", params={"SN": f"FAKE{number:04d}"})
                assert reply.text == "OK\n"  # still answered
            client.get("/iclock/getrequest", params={"SN": PUSH_SERIAL})
        assert site.receiver.last_contact("FAKE0004") is not None
        assert site.receiver.last_contact("FAKE0005") is None
        assert site.receiver.last_contact(PUSH_SERIAL) is not None  # configured: always
        # an untracked invented serial's batch is not taken (the device would retry later)
        assert post(site.url, batch(history(2)), serial="FAKE0019").status_code == 503
        assert rows(site.engine, "FAKE0019") == []
        assert post(site.url, batch(history(2)), serial="FAKE0001").text == "OK: 2\n"


def test_sigterm_stops_clockd_serve_cleanly_and_flushes_last_contact(
    tmp_path: Path, sqlite_url: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, config_data(sqlite_url, port, contact_flush_seconds=3600))
    assert main(["--config", str(config), "init"]) == 0
    with serve_process(config) as process:
        for _ in range(3):
            reply = httpx.get(
                f"http://127.0.0.1:{port}/iclock/getrequest", params={"SN": PUSH_SERIAL}
            )
            assert reply.text == "OK\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    engine = db.make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.execute(select(PollRun.source, PollRun.outcome)).all() == [("push", "ok")]
    engine.dispose()


def test_a_database_failure_is_answered_503_and_the_retry_stores_once(database_url: str) -> None:
    with running_receiver(database_url) as site:
        device = PushDevice(PUSH_SERIAL, site.url, records=history(100))
        with site.engine.begin() as connection:
            connection.execute(text("ALTER TABLE punches RENAME TO punches_away"))
        run(upload(device))
        assert (device.pending(), device.failed_posts) == (100, 1)  # not acknowledged
        with site.engine.begin() as connection:
            connection.execute(text("ALTER TABLE punches_away RENAME TO punches"))
        run(upload(device))
        assert device.pending() == 0
        assert len(rows(site.engine, PUSH_SERIAL)) == 100


def test_a_push_contact_after_the_week_makes_its_report_final(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from clockd.store.models import ReportRun

    data = {**config_data(sqlite_url, 1), "reports_dir": str(tmp_path / "reports")}
    config = write_config(tmp_path, data)
    assert main(["--config", str(config), "init"]) == 0
    assert main(["--config", str(config), "report", "weekly", "--week", "2026-W47"]) == 0
    assert "not yet collected: 港口村" in capsys.readouterr().out
    with running_receiver(sqlite_url) as site:  # its shutdown flushes the contacts
        run(upload(PushDevice(PUSH_SERIAL, site.url, records=history(8))))
    assert main(["--config", str(config), "report", "weekly", "--week", "2026-W47"]) == 0
    assert "not yet collected" not in capsys.readouterr().out
    engine = db.make_engine(sqlite_url)
    with engine.connect() as connection:
        statuses = connection.scalars(select(ReportRun.status).order_by(ReportRun.id)).all()
    engine.dispose()
    # provisional until the push terminal called in; then rewritten with its punches
    assert statuses == ["provisional", "corrected"]
