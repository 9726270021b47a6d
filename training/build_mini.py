"""Train the shipped `mini` model on the synthetic sound library (the recipe behind its model card).

Clips are synthesised in memory (`evaluation.synth.synthesize_clip`, seed 0) in worker processes and
go straight to log-mels: the same audio the library writer would encode to files, without the disk.

Run: .venv/bin/python -m training.build_mini --clips 2000 --epochs 30 --out build/mini
then copy build/mini/best/mini.* into indexer/encoders/weights/ (and evaluate with training.evaluate_mini).
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import sys
from pathlib import Path

import numpy as np

from indexer.audio import resample
from training.data import Pair
from training.loop import TrainConfig, train
from training.models import MiniTrainable

SAMPLE_RATE = 16_000
CHUNK = 1000


def _render(args: tuple[int, int, float]) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    from evaluation.synth import synthesize_clip

    seed, index, max_s = args
    clip = synthesize_clip(seed, index, max_duration_s=max_s)
    mono = clip.audio.mean(axis=1).astype(np.float32)
    spec = clip.truth.spec
    # Positives share classes *and* modifiers: "a distant siren" and "a loud siren" stay apart.
    group = (*spec.classes, repr(spec.modifiers))
    return resample(mono, spec.sample_rate, SAMPLE_RATE), tuple(clip.truth.captions), group


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("build/mini"))
    args = parser.parse_args()

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rendered = []
    # Cached in blocks of CHUNK clips, so a larger run reuses what a smaller one synthesised.
    for start in range(0, args.clips, CHUNK):
        stop = min(start + CHUNK, args.clips)
        cache = args.out / f"clips-{args.seed}-{start}-{stop}.pkl"
        if cache.exists():
            rendered += pickle.loads(cache.read_bytes())
            continue
        say(f"synthesising clips {start}-{stop} (seed {args.seed})")
        jobs = [(args.seed, i, args.max_duration) for i in range(start, stop)]
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            block = pool.map(_render, jobs, chunksize=16)
        args.out.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(block))  # a crash after this point need not synthesise again
        rendered += block
    audio = {f"synth:{args.seed}:{i}": r[0] for i, r in enumerate(rendered)}
    # Keyword: the foreground class, the first entry of the positive group.
    pairs = [Pair(Path(f"synth:{args.seed}:{i}"), r[1], r[2], r[2][:1]) for i, r in enumerate(rendered)]
    trainable = MiniTrainable.create("scratch")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    train(trainable, pairs, args.out, cfg, progress=say, source=lambda pair, sr: audio[str(pair.path)])


if __name__ == "__main__":
    main()
