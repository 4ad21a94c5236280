"""Benchmark: the console's 首页 and the week API for a district, over real HTTP.

Builds (or reuses) the district of scripts/bench/reports.py (10,000 cadres by default, about
3,400 terminals, 56 weeks of punches in SQLite), starts `clockd serve` on it in a fresh
process, signs in through the login form and creates an API token, then measures:

- the first 首页 after start (computes the week), then 50 requests each of 首页 and
  `GET /api/v1/weeks/<week>`: median and p95; target median < 300 ms;
- 50 concurrent clients on the week API for 30 s: requests, errors (must be 0), p95.

    .venv/bin/python scripts/bench/web.py [--cadres 10000] [--folder DIR] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from clockd.textui import render_table

WEEK = "2026-W43"  # the district's weekly benchmark week
TARGET_MS = 300.0
SECRET = "bench-" + "k" * 40
REPORTS_BENCH = Path(__file__).with_name("reports.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(folder: Path, cadres: int, port: int) -> Path:
    """The district (built once), a config with `web:` on `port`, an hr account."""
    if not (folder / "clockd.sqlite3").exists():
        folder.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        build = ["--build", "district", "--folder", str(folder), "--cadres", str(cadres)]
        subprocess.run([sys.executable, str(REPORTS_BENCH), *build], check=True)
        print(f"built the district in {time.perf_counter() - began:.0f}s", flush=True)
    config = folder / "web-bench.yaml"
    base = (folder / "devices.yaml").read_text(encoding="utf-8")
    config.write_text(base + f"web:\n  listen: 127.0.0.1:{port}\n", encoding="utf-8")
    environ = clean_environ()
    subprocess.run(
        [sys.executable, "-m", "clockd", "--config", str(config), "init"],
        cwd=folder,
        env=environ,
        check=True,
        capture_output=True,
    )
    listed = subprocess.run(
        [sys.executable, "-m", "clockd", "--config", str(config), "user", "list"],
        cwd=folder,
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "bench-hr" not in listed:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "clockd",
                "--config",
                str(config),
                "user",
                "add",
                "bench-hr",
                "--role",
                "hr",
            ],
            cwd=folder,
            env={**environ, "CLOCKD_PASSWORD": "bench-password"},
            check=True,
            capture_output=True,
        )
    return config


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CLOCKD_")}


def api_token(folder: Path, config: Path) -> str:
    created = subprocess.run(
        [sys.executable, "-m", "clockd", "--config", str(config), "token", "create", "bench-hr"],
        cwd=folder,
        env=clean_environ(),
        check=True,
        capture_output=True,
        text=True,
    )
    return created.stdout.strip()


def signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=120)
    page = client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    response = client.post(
        "/login",
        data={"username": "bench-hr", "password": "bench-password", "csrf": found.group(1)},
    )
    if response.status_code != 303:
        raise SystemExit(f"sign-in failed: {response.status_code}")
    return client


def timed(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    response = client.get(path, headers=headers)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {path}: {response.status_code}")
    return elapsed


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def hammer(
    base: str, headers: dict[str, str], clients: int, seconds: float
) -> tuple[list[float], int]:
    """`clients` threads, each its own connection, on the week API until the deadline."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run() -> None:
        with httpx.Client(base_url=base, timeout=60, headers=headers) as client:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    with client.stream("GET", f"/api/v1/weeks/{WEEK}") as response:
                        for _ in response.iter_bytes():
                            pass
                        ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cadres", type=int, default=10_000)
    parser.add_argument("--folder", type=Path, help="build here, or reuse an earlier build")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clockd-webbench-") as temporary:
        folder = args.folder or Path(temporary)
        port = free_port()
        config = prepare(folder, args.cadres, port)
        token = api_token(folder, config)
        headers = {"Authorization": f"Bearer {token}"}
        server = subprocess.Popen(
            [sys.executable, "-m", "clockd", "--config", str(config), "serve"],
            cwd=folder,
            env={**clean_environ(), "CLOCKD_WEB_SECRET": SECRET},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise SystemExit("clockd serve did not start")
            base = f"http://127.0.0.1:{port}"
            client = signed_in(base)
            try:
                cold = timed(client, f"/?week={WEEK}")
                home = [timed(client, f"/?week={WEEK}") for _ in range(args.requests)]
                api = [
                    timed(client, f"/api/v1/weeks/{WEEK}", headers) for _ in range(args.requests)
                ]
            finally:
                client.close()
            latencies, errors = hammer(base, headers, args.clients, args.seconds)
        finally:
            server.terminate()
            server.wait(timeout=60)

    rows = []
    missed = False
    for name, values, target in (
        ("首页 (ms)", home, TARGET_MS),
        (f"GET /api/v1/weeks/{WEEK} (ms)", api, TARGET_MS),
    ):
        median = statistics.median(values)
        ok = median < target
        missed |= not ok
        rows.append(
            [name, f"{median:.0f}", f"{p95(values):.0f}", f"< {target:g}", "ok" if ok else "MISSED"]
        )
    print(f"cadres: {args.cadres}; first 首页 after start (computes the week): {cold:.0f} ms")
    print(render_table(["measure", "median", "p95", "target", "ok"], rows))
    rate = len(latencies) / args.seconds
    print(
        f"{args.clients} concurrent clients, {args.seconds:g}s on the week API: "
        f"{len(latencies)} answers ({rate:.1f}/s), {errors} errors, "
        f"median {statistics.median(latencies):.0f} ms, p95 {p95(latencies):.0f} ms"
    )
    return 1 if missed or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
