"""Synthetic library generation speed (clips/s, audio s/s), and the library's learnability baseline.

Writes `--n` library clips (rendering, mixing, resampling, encoding WAV/FLAC/OGG/MP3, metadata) into a
temporary folder with 1 and with `--workers` processes, then optionally (`--baseline`) runs the
log-mel-statistics logistic regression on 20 clips per class (5-fold cross-validation).

Run: .venv/bin/python -m benchmarks.bench_synth [--n 200 --workers 2 --baseline]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import machine
from evaluation.synth import generate_library
from evaluation.synth.baseline import learnability_baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", action="store_true", help="also run the learnability baseline")
    args = parser.parse_args()
    torch.set_num_threads(1)  # rendering is numpy/scipy; torch threads would only compete for the cores

    print(f"machine: {machine()}")
    print(f"library: n={args.n}, seed={args.seed}")
    print("| workers | clips | audio (min) | wall (s) | clips/s | audio s / wall s | MB written |")
    print("|---|---|---|---|---|---|---|")
    for workers in sorted({1, args.workers}):
        with tempfile.TemporaryDirectory() as tmp:
            summary = generate_library(Path(tmp) / "lib", args.n, args.seed, workers=workers, progress=False)
            size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
        print(
            f"| {workers} | {summary.clips} | {summary.audio_s / 60:.1f} | {summary.elapsed_s:.1f} "
            f"| {summary.clips / summary.elapsed_s:.1f} | {summary.audio_s / summary.elapsed_s:.0f} | {size_mb:.0f} |"
        )
    if args.baseline:
        started = time.perf_counter()
        result = learnability_baseline(clips_per_class=20, seed=args.seed, workers=args.workers)
        worst = sorted(result.per_class_accuracy.items(), key=lambda kv: kv[1])[:5]
        print(
            f"learnability baseline (log-mel mean+std, logistic regression, 20 clips/class, 5-fold CV): "
            f"accuracy {result.accuracy:.3f} (chance {result.chance:.3f}) in {time.perf_counter() - started:.0f} s"
        )
        print("hardest classes: " + ", ".join(f"{name} {acc:.2f}" for name, acc in worst))


if __name__ == "__main__":
    main()
