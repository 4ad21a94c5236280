"""Emulated ADMS terminals: they post their logs to a push receiver as real devices do.

A device handshakes (`GET /iclock/cdata?options=all`), posts its records after the stamp the
server handed back in batches (`POST /iclock/cdata?table=ATTLOG&Stamp=..`), advances its stamp
only on an `OK` reply and sends the same batch again after any failure, and polls
`/iclock/getrequest` every `Delay` seconds, obeying clock resets and re-upload requests and
reporting each result to `/iclock/devicecmd`. Used by `clockd simulate`, the tests and the
push benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import httpx

from clockd.zk import wire

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushRecord:
    user_id: str
    timestamp: dt.datetime  # the device's naive local time
    state: int = 0
    verify: int = 1
    workcode: int = 0


def attlog_line(record: PushRecord, number: int, style: str = "7") -> str:
    """One line as firmware writes it. Styles seen on real devices: `7` fields with a trailing
    tab, `11`/`12` fields (reserved fields, the 12th a running record number), `5` bare."""
    head = (
        f"{record.user_id}\t{record.timestamp:%Y-%m-%d %H:%M:%S}\t"
        f"{record.state}\t{record.verify}\t{record.workcode}"
    )
    if style == "5":
        return head
    if style == "11":
        return head + "\t0\t0\t\t\t\t"
    if style == "12":
        return head + f"\t0\t0\t\t\t\t\t{number}"
    return head + "\t0\t0\t"


@dataclass
class PushDevice:
    """One terminal's log and its upload position; network I/O in `run` / the step methods."""

    serial: str
    base_url: str
    records: list[PushRecord] = field(default_factory=list)
    batch_size: int = 128
    line_style: str = "7"
    crlf: bool = False
    content_type: str | None = "text/plain"
    zone: str = "Asia/Shanghai"
    clock_offset: dt.timedelta = dt.timedelta()  # device clock minus true local time
    stamp: int = 0  # records [0, stamp) were acknowledged
    ignores_stamp: bool = False  # some firmware sends its whole log after every handshake
    delay: float = 5.0  # heartbeat interval, from the handshake
    error_delay: float = 30.0
    uploaded_batches: int = 0
    failed_posts: int = 0
    results: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: PushRecord) -> None:
        with self._lock:
            self.records.append(record)

    def clock(self) -> dt.datetime:
        """The device's own wall-clock time (true local time plus its drift)."""
        true = dt.datetime.now(ZoneInfo(self.zone)).replace(tzinfo=None, microsecond=0)
        return true + self.clock_offset

    def punch(self, user_id: str, state: int = 0) -> PushRecord:
        """A finger on the sensor now, stamped by the device's clock."""
        record = PushRecord(user_id, self.clock(), state)
        self.add(record)
        return record

    def pending(self) -> int:
        with self._lock:
            return len(self.records) - self.stamp

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    async def handshake(self, client: httpx.AsyncClient) -> dict[str, str]:
        reply = await client.get(
            self._url("/iclock/cdata"),
            params={"SN": self.serial, "options": "all", "pushver": "2.4.1", "language": "83"},
        )
        reply.raise_for_status()
        lines = reply.text.splitlines()
        if not lines or not lines[0].startswith("GET OPTION FROM:"):
            raise ValueError(f"unexpected handshake reply {reply.text[:80]!r}")
        options = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        stamp = options.get("ATTLOGStamp", "0")
        # The server's stamp is where this device continues; 0 (or one it does not know)
        # means everything again.
        with self._lock:
            known = stamp.isdigit() and int(stamp) <= len(self.records)
            self.stamp = int(stamp) if known and not self.ignores_stamp else 0
        self.delay = float(options.get("Delay", self.delay))
        self.error_delay = float(options.get("ErrorDelay", self.error_delay))
        return options

    def _batch(self) -> tuple[bytes, int]:
        with self._lock:
            chosen = self.records[self.stamp : self.stamp + self.batch_size]
            first = self.stamp
        newline = "\r\n" if self.crlf else "\n"
        text = newline.join(
            attlog_line(record, first + index + 1, self.line_style)
            for index, record in enumerate(chosen)
        )
        return (text + newline).encode() if chosen else b"", first + len(chosen)

    async def upload_once(self, client: httpx.AsyncClient) -> bool:
        """Post the next batch; True when the server acknowledged it (the stamp advanced)."""
        body, end = self._batch()
        if not body:
            return False
        headers = {"Content-Type": self.content_type} if self.content_type else {}
        try:
            reply = await client.post(
                self._url("/iclock/cdata"),
                params={"SN": self.serial, "table": "ATTLOG", "Stamp": str(end)},
                content=body,
                headers=headers,
            )
        except httpx.HTTPError:
            self.failed_posts += 1
            raise
        if reply.status_code != 200 or not reply.text.startswith("OK"):
            self.failed_posts += 1
            return False
        with self._lock:
            self.stamp = max(self.stamp, end)
        self.uploaded_batches += 1
        return True

    async def upload_all(self, client: httpx.AsyncClient) -> None:
        while self.pending() and await self.upload_once(client):
            pass

    async def heartbeat(self, client: httpx.AsyncClient) -> list[str]:
        """One getrequest; obeys and reports each command. Returns the command lines."""
        with self._lock:
            users = len({record.user_id for record in self.records})
            records = len(self.records)
        info = f"Ver 6.60 Oct 29 2019,{users},0,{records},127.0.0.1,10,7,15,0,111"
        reply = await client.get(
            self._url("/iclock/getrequest"), params={"SN": self.serial, "INFO": info}
        )
        reply.raise_for_status()
        commands = [line for line in reply.text.splitlines() if line.startswith("C:")]
        reports = []
        for line in commands:
            _, number, text = line.split(":", 2)
            code = self._execute(text)
            reports.append(f"ID={number}&Return={code}&CMD={text.split(' ', 1)[0]}")
            self.results.append(text)
        if reports:
            await client.post(
                self._url("/iclock/devicecmd"),
                params={"SN": self.serial},
                content=("\n".join(reports) + "\n").encode(),
            )
        return commands

    def _execute(self, text: str) -> int:
        if text.startswith("SET OPTIONS DateTime="):
            value = text.split("=", 1)[1].strip()
            if not value.isdigit():
                return -1
            target = wire.decode_time(int(value))
            self.clock_offset = target - (self.clock() - self.clock_offset)
            return 0
        if text.startswith("DATA QUERY ATTLOG"):
            fields = {}
            for part in text[len("DATA QUERY ATTLOG") :].split("\t"):
                key, _, value = part.partition("=")
                fields[key.strip()] = value.strip()
            try:
                start = dt.datetime.fromisoformat(fields["StartTime"])
                end = dt.datetime.fromisoformat(fields["EndTime"])
            except (KeyError, ValueError):
                return -1
            with self._lock:
                again = [r for r in self.records if start <= r.timestamp <= end]
                # Posted again as new records at the end of the log, as firmware re-sends them.
                self.records.extend(again)
            return 0
        return -1  # unknown command

    async def run(self, stop: asyncio.Event, client: httpx.AsyncClient | None = None) -> None:
        """Handshake, then upload and heartbeat until `stop`; after errors wait ErrorDelay."""
        own = client is None
        session = client or httpx.AsyncClient(timeout=10.0)
        try:
            connected = False
            while not stop.is_set():
                try:
                    if not connected:
                        await self.handshake(session)
                        connected = True
                    await self.upload_all(session)
                    await self.heartbeat(session)
                    wait = self.delay
                except (httpx.HTTPError, ValueError) as exc:
                    log.info("push device %s: %s; retrying", self.serial, exc)
                    connected = False
                    wait = self.error_delay
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            if own:
                await session.aclose()


class PushFleet:
    """Push devices running in a background thread (for `clockd simulate`)."""

    def __init__(self, devices: Sequence[PushDevice]) -> None:
        self.devices = list(devices)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="push-devices", daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            async with httpx.AsyncClient(timeout=10.0) as client:
                await asyncio.gather(*(device.run(self._stop, client) for device in self.devices))

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
