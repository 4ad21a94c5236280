"""Emulated terminals for tests: devices on loopback, and the Settings that point at them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select

from clockd.config import Settings
from clockd.sim.emulator import EmulatedDevice, EmulatorServer, Endpoint
from clockd.store.models import PunchRow

ZONE = "Asia/Shanghai"
# Record layouts like a mixed fleet of firmware: (attendance record size, user record size).
LAYOUTS = [(40, 72), (16, 28), (8, 28), (49, 72)]


@dataclass
class Site:
    server: EmulatorServer
    devices: list[EmulatedDevice]
    endpoints: list[Endpoint]
    terminals: list[dict[str, Any]]

    def settings(self, database_url: str, **poll: Any) -> Settings:
        return Settings.model_validate(
            {
                "township": "测试镇",
                "timezone": ZONE,
                "roster": "roster.csv",
                "database_url": database_url,
                "poll": {"timeout_seconds": 3, "retry_backoff_seconds": 0.2, **poll},
                "terminals": self.terminals,
            }
        )

    def write_config(self, folder: Path, database_url: str, **poll: Any) -> Path:
        """devices.yaml and a roster for a `clockd` process in another process."""
        data = {
            "township": "测试镇",
            "timezone": ZONE,
            "roster": "roster.csv",
            "database_url": database_url,
            "reports_dir": str(folder / "reports"),
            "poll": {"timeout_seconds": 3, "retry_backoff_seconds": 0.2, **poll},
            "terminals": self.terminals,
        }
        path = folder / "devices.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        roster = ["user_id,name,role"] + [
            f"{user.user_id},{user.name or 'NN'},ordinary" for user in self.devices[0].users()
        ]
        (folder / "roster.csv").write_text("\n".join(roster) + "\n", encoding="utf-8")
        return path


def fill(device: EmulatedDevice, users: int, punches: int, start: dt.datetime) -> None:
    """Enrol `users` cadres (PINs 1001..) and record `punches` distinct punches from `start`."""
    for number in range(users):
        device.add_user(str(1001 + number), f"干部{number:02d}")
    for index in range(punches):
        device.add_punch(
            str(1001 + index % users), start + dt.timedelta(minutes=3 * index), verify=1
        )


@contextmanager
def emulated_site(
    count: int,
    *,
    punches: int = 200,
    users: int = 20,
    start: dt.datetime = dt.datetime(2026, 11, 2, 8, 0),
    transports: Sequence[str] = ("tcp", "udp"),
    comm_keys: dict[int, tuple[str, int]] | None = None,
) -> Iterator[Site]:
    """`count` emulated terminals on loopback with mixed layouts and transports.

    `comm_keys` maps a terminal index to (environment variable name, key).
    """
    devices, terminals = [], []
    with EmulatorServer() as server:
        endpoints = []
        for index in range(count):
            record_size, user_size = LAYOUTS[index % len(LAYOUTS)]
            key_env, key = (comm_keys or {}).get(index, (None, 0))
            device = EmulatedDevice(
                f"EMU{index:04d}",
                attendance_record_size=record_size,
                user_record_size=user_size,
                comm_key=key,
                zone=ZONE,
                session_timeout=1.0,  # a killed poller's UDP session frees the device soon
            )
            fill(device, users, punches, start)
            transport = transports[index % len(transports)]
            endpoint = server.add(device, transport=transport)  # type: ignore[arg-type]
            devices.append(device)
            endpoints.append(endpoint)
            terminal: dict[str, Any] = {
                "id": f"t{index + 1:02d}",
                "village": f"村{index + 1:02d}",
                "host": "127.0.0.1",
                "port": endpoint.port,
                "transport": transport,
                "serial": device.serial,
                "installed": "2025-01-01",
            }
            if key_env:
                terminal["comm_key_env"] = key_env
            terminals.append(terminal)
        yield Site(server, devices, endpoints, terminals)


def stored(engine: Engine, serial: str) -> list[tuple[str, dt.datetime, int, int]]:
    """Every punch stored for a serial, as (user ID, time, status, punch state), sorted."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(PunchRow.user_id, PunchRow.punched_at, PunchRow.verify, PunchRow.state)
            .where(PunchRow.serial == serial)
            .order_by(PunchRow.punched_at, PunchRow.user_id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def on_device(device: EmulatedDevice) -> list[tuple[str, dt.datetime, int, int]]:
    """What the terminal holds, in the same shape as `stored`."""
    unique = {(r.user_id, r.timestamp, r.verify, r.state) for r in device.attendance()}
    return sorted(unique, key=lambda r: (r[1], r[0]))
