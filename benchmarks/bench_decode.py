"""Decode + resample throughput: 44.1 kHz stereo FLAC and MP3 → 48 kHz mono.

Compares `indexer.audio.load_audio` (libsndfile blocks + streaming sinc resampler) with the naive
`librosa.load(path, sr=48000)` in the same run. librosa is a benchmark-only dependency:
`.venv/bin/pip install librosa`.

Run: .venv/bin/python -m benchmarks.bench_decode [--files 12 --seconds 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks._common import best_of, machine
from indexer.audio import load_audio


def write_library(root: Path, n_files: int, seconds: float, fmt: str) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_files):
        t = np.arange(int(seconds * 44_100)) / 44_100
        tone = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
        x = np.stack([tone, tone[::-1]], axis=1) + 0.02 * rng.standard_normal((len(t), 2))
        path = root / f"clip{i}.{fmt.lower()}"
        sf.write(path, x.astype(np.float32), 44_100, format=fmt)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    try:
        import librosa
    except ImportError:
        librosa = None
    print(f"machine: {machine()}")
    print("| format | path | audio s / wall s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("FLAC", "MP3"):
            paths = write_library(Path(tmp), args.files, args.seconds, fmt)
            total = args.files * args.seconds

            def ours(paths: list[Path] = paths) -> None:
                for p in paths:
                    load_audio(p, 48_000)

            print(f"| {fmt} 44.1k stereo | soundsearch load_audio | {total / best_of(ours):.0f} |")
            if librosa is not None:

                def naive(paths: list[Path] = paths) -> None:
                    for p in paths:
                        librosa.load(p, sr=48_000, mono=True)

                print(f"| {fmt} 44.1k stereo | librosa.load(sr=48000) | {total / best_of(naive):.0f} |")


if __name__ == "__main__":
    main()
