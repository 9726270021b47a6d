"""The indexer's catalog writes, timed without a model's cost: index, re-scan, move and remove tiny files.

N tiny WAV files (64 samples each, one window) in 100 folders, embedded by the fast `tiny-random` encoder,
so each run's time is mostly the catalog's: the diff against the database, hashing, the row, segment and
vector writes and the vector index updates. Then a re-scan with nothing changed, every folder renamed (each
file a move: same hash, new path), and half the files deleted. Uses only `index_paths`, so the same script
times any two versions of the code (run it from each checkout, interleaved: see BENCHMARKS.md).

Run: .venv/bin/python -m benchmarks.bench_catalog_writes [--files 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer import load_encoder
from indexer.pipeline import index_paths
from storage.catalog import Catalog


def write_tiny(lib: Path, n: int) -> None:
    for i in range(n):
        folder = lib / f"d{i % 100}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"t{i}.wav", np.full(64, i / n, dtype=np.float32), 8_000)


def one_round(tmp: Path, n: int) -> dict[str, float]:
    """Milliseconds per file of each step."""
    lib = tmp / "lib"
    write_tiny(lib, n)
    encoder = load_encoder("tiny-random")
    out: dict[str, float] = {}
    with Catalog.open(tmp / "home") as catalog:
        out["index"] = index_paths(catalog, encoder, [lib]).seconds
        out["rescan"] = index_paths(catalog, encoder, [lib]).seconds
        for folder in sorted(lib.iterdir()):
            folder.rename(folder.with_name("moved-" + folder.name))
        out["move"] = index_paths(catalog, encoder, [lib]).seconds
        for path in sorted(lib.rglob("*.wav"))[::2]:
            path.unlink()
        out["remove"] = index_paths(catalog, encoder, [lib]).seconds
    return {step: round(seconds * 1e3 / n, 4) for step, seconds in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            times = one_round(Path(tmp), args.files)
        best = {k: min(v, best.get(k, v)) for k, v in times.items()}
        print(json.dumps({"round": r, "ms_per_file": times}))
    print(json.dumps({"best_ms_per_file": best}))


if __name__ == "__main__":
    main()
