"""Benchmark: a full attendance log (100,000 40-byte records) read from an emulated terminal.

Times pyzk 0.9's raw `read_with_buffer` over loopback TCP (the poller's transport) and
clockd's decoder on the result, best of a few runs. Exits 1 if the transfer takes 0.5 s or
more, since a poll cycle over many villages is bounded by it.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta

from zk import ZK

from clockd.domain import Punch
from clockd.sim.emulator import EmulatedDevice, EmulatorServer
from clockd.zk import wire

LIMIT_SECONDS = 0.5


def build_device(records: int, users: int) -> EmulatedDevice:
    device = EmulatedDevice("BENCH000001", attendance_record_size=40, record_capacity=records)
    user_ids = [str(1001 + n) for n in range(users)]
    for user_id in user_ids:
        device.add_user(user_id, f"干部{user_id}")
    start = datetime(2026, 1, 5, 7, 0)
    device.add_punches(
        Punch("", user_ids[i % users], start + timedelta(seconds=61 * i), 1, i % 2)
        for i in range(records)
    )
    return device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=47)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    device = build_device(args.records, args.users)
    transfers: list[float] = []
    decodes: list[float] = []
    with EmulatorServer() as server:
        endpoint = server.add(device, transport="tcp")
        conn = ZK(endpoint.host, endpoint.port, timeout=10, ommit_ping=True).connect()
        try:
            conn.read_sizes()
            uid_map = {user.uid: user.user_id for user in conn.get_users()}
            for _ in range(args.runs):
                began = time.perf_counter()
                data, size = conn.read_with_buffer(wire.Cmd.ATTLOG_RRQ)
                transfers.append(time.perf_counter() - began)
                began = time.perf_counter()
                decoded = wire.decode_attendance_buffer(data, conn.records, uid_map)
                records = list(decoded.records)  # every record built, not only its columns
                decodes.append(time.perf_counter() - began)
                if len(records) != args.records or decoded.problems:
                    print(f"wrong result: {len(records)} records", file=sys.stderr)
                    return 1
        finally:
            conn.disconnect()

    transfer, decode = min(transfers), min(decodes)
    megabytes = size / 1e6
    rows = [
        ("records", f"{args.records:,} x 40 bytes"),
        ("buffer", f"{megabytes:.2f} MB"),
        ("transfer (best)", f"{transfer * 1000:.1f} ms  ({megabytes / transfer:.0f} MB/s)"),
        ("transfer (worst)", f"{max(transfers) * 1000:.1f} ms"),
        ("decode (best)", f"{decode * 1000:.1f} ms"),
        ("total (best)", f"{(transfer + decode) * 1000:.1f} ms"),
        (
            "target",
            f"transfer < {LIMIT_SECONDS} s: {'ok' if transfer < LIMIT_SECONDS else 'MISSED'}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if transfer >= LIMIT_SECONDS:
        print(f"FAIL: transfer took {transfer:.3f} s (limit {LIMIT_SECONDS} s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
