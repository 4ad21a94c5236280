"""A push receiver on loopback for tests: in this process (uvicorn in a thread, so a test can
reach the receiver's queue), or as a `clockd serve` process that a test may SIGKILL."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select

from clockd.config import Settings
from clockd.ingest.push import PushReceiver
from clockd.store import db
from clockd.store.models import PunchRow
from clockd.web.push_app import build_push_app
from clockd.web.serve import REQUEST_HEAD_SECONDS, serving_in_thread

ZONE = "Asia/Shanghai"
PUSH_SERIAL = "CQZ7231060042"
USERS = ["1001", "1002", "1003", "1004"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config_data(
    database_url: str,
    port: int,
    *,
    extra_terminals: list[dict[str, Any]] | None = None,
    **push: Any,
) -> dict[str, Any]:
    return {
        "township": "测试镇",
        "timezone": ZONE,
        "roster": "roster.csv",
        "database_url": database_url,
        "push": {"listen": f"127.0.0.1:{port}", **push},
        "terminals": [
            {
                "id": "p01",
                "village": "港口村",
                "transport": "push",
                "serial": PUSH_SERIAL,
                "installed": "2025-01-01",
            },
        ],
    }


def write_config(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "devices.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    roster = ["user_id,name,role"] + [f"{user},干部{user},ordinary" for user in USERS]
    (folder / "roster.csv").write_text("\n".join(roster) + "\n", encoding="utf-8")
    return path


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@dataclass
class Receiver:
    url: str
    settings: Settings
    engine: Engine
    receiver: PushReceiver


@contextmanager
def running_receiver(
    database_url: str, *, head_seconds: float = REQUEST_HEAD_SECONDS, **push: Any
) -> Iterator[Receiver]:
    """The push app under uvicorn on a loopback port, in a background thread, with the
    HTTP protocol `clockd serve` uses."""
    port = free_port()
    settings = Settings.model_validate(config_data(database_url, port, **push))
    engine = db.make_engine(database_url)
    db.migrate(engine)
    receiver = PushReceiver(settings, engine)
    app = build_push_app(settings, engine, receiver)
    try:
        with serving_in_thread(app, "127.0.0.1", port, head_seconds=head_seconds):
            yield Receiver(f"http://127.0.0.1:{port}", settings, engine, receiver)
    finally:
        engine.dispose()


@contextmanager
def serve_process(config: Path) -> Iterator[subprocess.Popen[str]]:
    """`clockd serve` in its own process, once it says it is ready."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.Popen(
        [sys.executable, "-m", "clockd", "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "ready" not in line:
            process.kill()
            _, err = process.communicate(timeout=10)
            raise AssertionError(f"clockd serve did not start: {line!r} {err[-2000:]}")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


Row = tuple[str, str, dt.datetime, int, int, int]


def rows(engine: Engine, serial: str) -> list[Row]:
    """Every stored punch of a serial with all its fields, sorted."""
    with engine.connect() as connection:
        result = connection.execute(
            select(
                PunchRow.serial,
                PunchRow.user_id,
                PunchRow.punched_at,
                PunchRow.verify,
                PunchRow.state,
                PunchRow.workcode,
            )
            .where(PunchRow.serial == serial)
            .order_by(PunchRow.punched_at, PunchRow.user_id)
        )
        return [tuple(row) for row in result]  # type: ignore[misc]
