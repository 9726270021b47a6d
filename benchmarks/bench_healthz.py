"""/healthz latency while long uploads are processed: no request may hold up the server's event loop.

Four 20-minute mono 48 kHz FLAC files (tones over quiet noise, generated block by block in /tmp) are
posted at once to POST /api/search/audio of `soundsearch serve` (its own process, loopback only, the
`tiny-random` model over a 1000-file catalog). Each is received, checked against the length limit,
decoded, embedded window by window (the encoder is shared: one model call at a time) and searched.
Meanwhile a client searches by text, each query new (its embedding waits for the model), and a probe
thread asks GET /healthz every 20 ms over one keep-alive connection, a fixed number of times.
Target: /healthz p99 < 100 ms. (Before searches left the event loop, each one waiting for the model
held every other request up with it.)

Run: .venv/bin/python -m benchmarks.bench_healthz [--uploads 4 --minutes 20 --probes 1500]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from benchmarks._common import machine, percentile_ms
from benchmarks.bench_api_load import DIM, MODEL, free_port, start_server
from benchmarks.bench_search import build

SR = 48_000
PROBE_EVERY_S = 0.02


def long_flac(path: Path, minutes: float, seed: int) -> None:
    """Minutes of a slowly changing tone over quiet noise, written 10 s at a time (memory stays flat)."""
    gen = np.random.default_rng(seed)
    block = 10 * SR
    with sf.SoundFile(path, "w", SR, 1, format="FLAC", subtype="PCM_16") as out:
        for start in range(0, int(minutes * 60 * SR), block):
            t = (start + np.arange(block)) / SR
            freq = 220.0 * (1 + seed) * (1 + 0.5 * np.sin(2 * np.pi * t / 60))
            out.write(0.3 * np.sin(2 * np.pi * freq * t) + 0.002 * gen.standard_normal(block))


def upload(base: str, path: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with path.open("rb") as f:
        r = httpx.post(f"{base}/api/search/audio", files={"file": (path.name, f, "audio/flac")}, timeout=1800)
    return r.status_code, time.perf_counter() - t0


def search(base: str, stop: threading.Event) -> list[float]:
    latencies: list[float] = []
    with httpx.Client(base_url=base, timeout=1800) as http:
        while not stop.is_set() and len(latencies) < 10_000:
            t0 = time.perf_counter()
            http.get("/api/search", params={"q": f"distant thunder take {len(latencies)}"}).raise_for_status()
            latencies.append(time.perf_counter() - t0)
    return latencies


def probe(base: str, count: int, stop: threading.Event) -> list[float]:
    latencies: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(count):
            if stop.is_set():
                break
            t0 = time.perf_counter()
            http.get("/healthz").raise_for_status()
            latencies.append(time.perf_counter() - t0)
            time.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - t0)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--probes", type=int, default=1500, help="at most this many /healthz requests")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        files = [Path(tmp) / f"long_{i}.flac" for i in range(args.uploads)]
        for i, path in enumerate(files):
            long_flac(path, args.minutes, seed=i)
        sizes = ", ".join(f"{p.stat().st_size / 1e6:.1f}" for p in files)
        print(f"uploads: {args.uploads} x {args.minutes:g} min mono {SR} Hz FLAC ({sizes} MB)")
        home = Path(tmp) / "home"
        build(home, 1000, model_id=MODEL, dim=DIM).close()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(home, port)
        try:
            quiet = probe(base, 100, threading.Event())
            stop = threading.Event()
            with ThreadPoolExecutor(args.uploads + 2) as pool:
                probing = pool.submit(probe, base, args.probes, stop)
                searching = pool.submit(search, base, stop)
                t0 = time.perf_counter()
                results = list(pool.map(lambda p: upload(base, p), files))
                busy_s = time.perf_counter() - t0
                stop.set()
                busy, searches = probing.result(), searching.result()
        finally:
            server.terminate()
            server.wait(10)
    statuses = sorted({status for status, _ in results})
    print(f"uploads answered {statuses} in {', '.join(f'{s:.1f}' for _, s in results)} s (all done in {busy_s:.1f} s)")
    print("\n| request | count | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    rows = (
        ("/healthz, idle server", quiet),
        (f"/healthz, during {args.uploads} uploads and searches", busy),
        ("/api/search (new text), during the uploads", searches),
    )
    for name, lat in rows:
        p99 = f"{percentile_ms(lat, 99):.1f}" if len(lat) >= 100 else "-"  # too few for a 99th percentile
        print(f"| {name} | {len(lat)} | {statistics.median(lat) * 1e3:.1f} | {p99} | {max(lat) * 1e3:.0f} |")


if __name__ == "__main__":
    main()
