"""Search by example, window against window, against the mean-pooled example it replaced.

Catalog: N files × 2 segments of clustered random unit vectors (`bench_search.build`). Examples are
WAV files outside the catalog of 5 s (one window), 30 s (5 windows), 2:45 (32 windows, the most searched
one by one) and 16:40 (199 windows, pooled into 32 parts); the benchmark encoder maps each window to a
vector drawn from the catalog's mixture (its cost is nil, so what is timed is decoding, windowing, the
vector search and the per-file ranking). "pooled" is the same code with every window pooled into one
query row (`MAX_EXAMPLE_WINDOWS = 1`): the old behaviour. The two run interleaved, on an exact index and
on an HNSW index (whose candidates are re-scored exactly from the stored vectors).

Run: .venv/bin/python -m benchmarks.bench_example [--files 20000 --repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

import search.engine
from benchmarks._common import machine
from benchmarks.bench_search import RandomTextEncoder, build
from indexer.windows import WindowSpec, window_bounds
from search.engine import Engine
from storage.index_choice import IndexPolicy

RATE = 8_000
EXAMPLES_S = (5.0, 30.0, 165.0, 1000.0)


class RandomAudioEncoder(RandomTextEncoder):
    """A vector per window, from its bytes, drawn from the catalog's mixture (lands among the sounds)."""

    sample_rate = RATE

    def embed_audio(self, clips: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.mixture.draw(1, stream=zlib.crc32(c.tobytes()), kind=4) for c in clips])


def interleaved_ms(engine: Engine, example: Path, repeats: int) -> tuple[float, float, int]:
    """Best ms pooled and windowed (the least disturbed run on shared cores), timed in turns, and how
    many top-20 files the two share."""
    windowed_rows = search.engine.MAX_EXAMPLE_WINDOWS
    times: dict[int, list[float]] = {1: [], windowed_rows: []}
    found: dict[int, set[int]] = {}
    try:
        for _ in range(repeats):
            for rows in times:
                search.engine.MAX_EXAMPLE_WINDOWS = rows
                t0 = time.perf_counter()
                found[rows] = {h.file_id for h in engine.similar(example, 20)}
                times[rows].append(time.perf_counter() - t0)
    finally:
        search.engine.MAX_EXAMPLE_WINDOWS = windowed_rows
    pooled, windowed = (min(t) * 1e3 for t in times.values())
    return pooled, windowed, len(found[1] & found[windowed_rows])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        examples = []
        for seconds in EXAMPLES_S:
            path = Path(tmp) / f"example_{seconds:.0f}s.wav"
            noise = np.random.default_rng(int(seconds)).standard_normal(int(seconds * RATE)).astype(np.float32)
            sf.write(path, 0.1 * noise, RATE)
            examples.append((seconds, path))
        print("\n| index | example | windows | pooled, best ms | windowed, best ms | top-20 files shared |")
        print("|---|---|---|---|---|---|")
        for name, policy in (("exact", IndexPolicy(exact_max_bytes=1 << 62)), ("hnsw", IndexPolicy(exact_max_bytes=0))):
            catalog = build(Path(tmp) / name, args.files, policy=policy)
            engine = Engine(catalog, RandomAudioEncoder(catalog.index.count()))  # type: ignore[arg-type]
            label = f"{catalog.index.kind} ({catalog.index.count()} segments)"
            for seconds, path in examples:
                windows = len(window_bounds(int(seconds * RATE), RATE, WindowSpec()))
                engine.similar(path, 20)  # warm
                pooled, windowed, shared = interleaved_ms(engine, path, args.repeats)
                print(f"| {label} | {seconds:.0f} s | {windows} | {pooled:.1f} | {windowed:.1f} | {shared} |")
            catalog.close()


if __name__ == "__main__":
    main()
