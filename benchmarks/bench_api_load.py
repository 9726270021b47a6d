"""Load on the HTTP API: concurrent clients searching a 10 000-file catalog through `soundsearch serve`.

The catalog is written straight into the database (two segments of random unit vectors per file,
UCS-like names for the full-text side), bound to the built-in `tiny-random` model so that a plain
`soundsearch serve --home DIR` opens it with its real model. The server runs as its own process
(uvicorn, one worker); the clients are asyncio tasks over httpx keep-alive connections, each
sending its next query as soon as the previous answer arrives (closed loop). Queries come from a
fixed list and are embedded once each in a short warm-up that is not measured: what is measured is
the API, FAISS, full-text search and SQLite under concurrency, not the text tower.

Run: .venv/bin/python -m benchmarks.bench_api_load [--files 10000 --clients 32 --seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._common import machine, percentile_ms
from benchmarks.bench_search import WORDS, build

MODEL = "tiny-random"
DIM = 32  # tiny-random's projection size
QUERIES = [f"{a} {b}" for a in WORDS[:8] for b in ("close", "distant", "heavy", "soft", "-wind")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "api.cli", "serve", "--home", str(home), "--port", str(port)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {server.stderr.read().decode() if server.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("server did not start within 120 s")


async def run_load(base: str, clients: int, seconds: float, k: int, mode: str) -> tuple[list[float], list[str], int]:
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        for q in QUERIES:  # warm-up, not measured: each query embedded once, connections opened
            (await http.get("/api/search", params={"q": q, "k": k, "mode": mode})).raise_for_status()
        stop = time.perf_counter() + seconds

        async def client(n: int) -> None:
            i = n
            while time.perf_counter() < stop:
                q = QUERIES[i % len(QUERIES)]
                i += 7
                t0 = time.perf_counter()
                try:
                    r = await http.get("/api/search", params={"q": q, "k": k, "mode": mode})
                    if r.status_code != 200 or len(r.json()["hits"]) != k:
                        errors.append(f"HTTP {r.status_code}")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - t0
    return latencies, errors, round(len(latencies) / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--modes", default="hybrid,vector")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        build(home, args.files, model_id=MODEL, dim=DIM).close()
        print(f"catalog: {args.files} files, {2 * args.files} segments, built in {time.perf_counter() - t0:.0f} s")
        port = free_port()
        server = start_server(home, port)
        try:
            print(f"\n{args.clients} clients, {args.seconds:.0f} s each run, k={args.k}\n")
            print("| mode | requests | req/s | errors | p50 ms | p99 ms | p99 / p50 | max ms |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            for mode in args.modes.split(","):
                lat, errors, rate = asyncio.run(
                    run_load(f"http://127.0.0.1:{port}", args.clients, args.seconds, args.k, mode)
                )
                p50, p99 = statistics.median(lat) * 1e3, percentile_ms(lat, 99)
                print(
                    f"| {mode} | {len(lat)} | {rate} | {len(errors)} | {p50:.1f} | {p99:.1f} | {p99 / p50:.2f} "
                    f"| {max(lat) * 1e3:.0f} |"
                )
                if errors:
                    print(f"errors: {sorted(set(errors))}")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
