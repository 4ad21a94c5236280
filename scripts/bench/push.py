"""Push receiver benchmark: a district's terminals posting to `clockd serve` at once.

`clockd serve` runs as its own process (as deployed); this script is the terminals, speaking
raw HTTP/1.1 over loopback with keep-alive. Per database (SQLite file, PostgreSQL):

1. batches: `--terminals` push terminals (200) each posting `--batch`-line ATTLOG batches
   (128) back to back for `--seconds`; punches stored per second and p95 reply time;
   target >= 5,000 punches/s on SQLite;
2. heartbeats at the same time: `GET /iclock/getrequest` at `--heartbeats` requests per
   second in all (700: 3,400 terminals every 5 s); target p95 < 100 ms;
3. afterwards the database must hold exactly the punches that were answered `OK`: nothing
   lost, nothing twice.

Prints a table and exits 1 when a target is missed.
Usage: python scripts/bench/push.py [--seconds 20] [--database sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing import Queue
from pathlib import Path

import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from clockd.store import db
from clockd.store.models import PunchRow
from clockd.textui import render_table

ZONE = "Asia/Shanghai"
PG_URL = os.environ.get("CLOCKD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Tally:
    replies: list[float] = field(default_factory=list)  # seconds
    acknowledged: int = 0  # punches answered OK
    failures: int = 0


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20)[18]


class Connection:
    """One keep-alive HTTP/1.1 connection, as a terminal's HTTP client holds it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


_BODIES: dict[tuple[int, int], bytes] = {}


def batch_body(first: int, size: int, base: dt.datetime) -> bytes:
    """`size` punches, one a second from `base`: unique per terminal, and the same bytes for
    every terminal (the serial tells them apart), so the load generator stays cheap."""
    key = (first, size)
    body = _BODIES.get(key)
    if body is None:
        lines = []
        for seq in range(first, first + size):
            moment = base + dt.timedelta(seconds=seq)
            lines.append(f"{1001 + seq % 40}\t{moment:%Y-%m-%d %H:%M:%S}\t0\t1\t0\t0\t0\t\n")
        body = _BODIES[key] = "".join(lines).encode()
    return body


async def terminal_loop(
    port: int, terminal: int, size: int, base: dt.datetime, until: float, tally: Tally
) -> None:
    serial = f"BENCH{terminal:05d}"
    connection = Connection(port)
    status, _ = await connection.request("GET", f"/iclock/cdata?SN={serial}&options=all")
    assert status == 200
    sent = 0
    try:
        while time.monotonic() < until:
            body = batch_body(sent, size, base)
            began = time.perf_counter()
            status, reply = await connection.request(
                "POST", f"/iclock/cdata?SN={serial}&table=ATTLOG&Stamp={sent + size}", body
            )
            tally.replies.append(time.perf_counter() - began)
            if status == 200 and reply.startswith(b"OK"):
                sent += size
                tally.acknowledged += size
            else:
                tally.failures += 1  # the next round sends the same batch again
    finally:
        await connection.close()


async def heartbeat_loop(
    port: int, index: int, rate: float, until: float, tally: Tally, connections: int
) -> None:
    connection = Connection(port)
    interval = connections / rate
    next_at = time.monotonic() + (index / connections) * interval
    try:
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            serial = f"HB{(index * 7919 + int(next_at * 1000)) % 3400:05d}"
            began = time.perf_counter()
            status, reply = await connection.request("GET", f"/iclock/getrequest?SN={serial}")
            tally.replies.append(time.perf_counter() - began)
            if status != 200 or not reply.startswith(b"OK"):
                tally.failures += 1
            next_at += interval
    finally:
        await connection.close()


HEARTBEAT_CONNECTIONS = 100


async def batch_load(port: int, terminals: int, size: int, until: float) -> Tally:
    base = dt.datetime.now().replace(microsecond=0) - dt.timedelta(days=60)
    tally = Tally()
    await asyncio.gather(
        *(terminal_loop(port, t, size, base, until, tally) for t in range(terminals))
    )
    return tally


async def heartbeat_load(port: int, rate: float, until: float) -> Tally:
    tally = Tally()
    await asyncio.gather(
        *(
            heartbeat_loop(port, i, rate, until, tally, HEARTBEAT_CONNECTIONS)
            for i in range(HEARTBEAT_CONNECTIONS)
        )
    )
    return tally


def _heartbeat_process(port: int, rate: float, until_wall: float, out: Queue[Tally]) -> None:
    until = time.monotonic() + (until_wall - time.time())
    out.put(asyncio.run(heartbeat_load(port, rate, until)))


def load(
    port: int, terminals: int, size: int, seconds: float, rate: float
) -> tuple[Tally, Tally, float]:
    """Batches from this process, heartbeats from a child: neither client delays the other's
    timings (the terminals are separate machines in real life)."""
    began = time.monotonic()
    results: Queue[Tally] = multiprocessing.Queue()
    beater = multiprocessing.Process(
        target=_heartbeat_process, args=(port, rate, time.time() + seconds, results)
    )
    beater.start()
    batches = asyncio.run(batch_load(port, terminals, size, began + seconds))
    beats = results.get(timeout=seconds + 60)
    beater.join()
    return batches, beats, time.monotonic() - began


def write_config(folder: Path, url: str, port: int, terminals: int) -> Path:
    data = {
        "township": "压测镇",
        "timezone": ZONE,
        "roster": "roster.csv",
        "database_url": url,
        "push": {"listen": f"127.0.0.1:{port}", "contact_flush_seconds": 5},
        "terminals": [
            {
                "id": f"b{t:05d}",
                "village": f"村{t:05d}",
                "transport": "push",
                "serial": f"BENCH{t:05d}",
                "installed": "2020-01-01",
            }
            for t in range(max(terminals, 1))
        ],
    }
    path = folder / "devices.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    roster = ["user_id,name,role"] + [f"{1001 + i},干部{i},ordinary" for i in range(40)]
    (folder / "roster.csv").write_text("\n".join(roster) + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_one(kind: str, url: str, args: argparse.Namespace) -> list[object]:
    with tempfile.TemporaryDirectory(prefix="clockd-bench-push-") as folder:
        port = free_port()
        config = write_config(Path(folder), url, port, args.terminals)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        clockd = [sys.executable, "-m", "clockd", "--config", str(config)]
        subprocess.run([*clockd, "init"], check=True, env=env, capture_output=True)
        server = subprocess.Popen(
            [*clockd, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert server.stdout is not None
            if b"ready" not in server.stdout.readline():
                raise SystemExit("clockd serve did not start")
            batches, beats, elapsed = load(
                port, args.terminals, args.batch, args.seconds, args.heartbeats
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        engine = db.make_engine(url)
        with engine.connect() as connection:
            stored = connection.scalar(select(func.count()).select_from(PunchRow)) or 0
            distinct = connection.scalar(
                select(func.count()).select_from(
                    select(PunchRow.serial, PunchRow.user_id, PunchRow.punched_at)
                    .distinct()
                    .subquery()
                )
            )
        engine.dispose()
    rate = batches.acknowledged / elapsed
    return (
        [
            kind,
            f"{rate:,.0f}",
            f"{1000 * p95(batches.replies):.0f}",
            f"{len(beats.replies) / args.seconds:,.0f}",
            f"{1000 * p95(beats.replies):.1f}",
            batches.acknowledged,
            stored,
            stored - distinct,
            batches.failures + beats.failures,
        ],
        rate,
        p95(beats.replies),
        stored == batches.acknowledged and stored == distinct,
    )


def pg_schema_url() -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(schema: str) -> None:
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--heartbeats", type=float, default=700.0, help="getrequest per second")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    table, missed = [], []
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="clockd-bench-db-") as folder:
            url = f"sqlite:///{Path(folder) / 'clockd.sqlite3'}"
            row, rate, beat_p95, exact = run_one("SQLite", url, args)
        table.append(row)
        if rate < 5000:
            missed.append(f"SQLite stored {rate:,.0f} punches/s (target 5,000)")
        if beat_p95 >= 0.100:
            missed.append(f"SQLite heartbeat p95 {1000 * beat_p95:.0f} ms (target < 100)")
        if not exact:
            missed.append("SQLite: stored punches differ from those answered OK")
    if args.database in ("postgresql", "both"):
        url, schema = pg_schema_url()
        try:
            row, _, beat_p95, exact = run_one("PostgreSQL", url, args)
        finally:
            drop_schema(schema)
        table.append(row)
        if beat_p95 >= 0.100:
            missed.append(f"PostgreSQL heartbeat p95 {1000 * beat_p95:.0f} ms (target < 100)")
        if not exact:
            missed.append("PostgreSQL: stored punches differ from those answered OK")
    print(
        f"{args.terminals} push terminals x {args.batch}-line batches for {args.seconds:g}s, "
        f"with {args.heartbeats:g} getrequest/s"
    )
    print(
        render_table(
            [
                "database",
                "punches/s",
                "batch p95 ms",
                "getrequest/s",
                "getrequest p95 ms",
                "answered OK",
                "stored",
                "twice",
                "failed replies",
            ],
            [[str(cell) for cell in row] for row in table],
        )
    )
    for line in missed:
        print(f"MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
