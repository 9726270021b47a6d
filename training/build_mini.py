"""Train the shipped `mini` model on the synthetic sound library (the recipe behind its model card).

Clips are synthesised in memory (`training.clips`, seed 0) in worker processes and go straight to
log-mels; the foreground class of each clip is its keyword (see `training.loop`).

Run: .venv/bin/python -m training.build_mini --clips 4000 --epochs 30 --out build/mini
then copy build/mini/best/mini.* into indexer/encoders/weights/ (and evaluate with training.evaluate_mini).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.clips import rendered_clips
from training.data import Pair
from training.loop import TrainConfig, train
from training.models import MiniTrainable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("build/mini"))
    args = parser.parse_args()

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rendered = rendered_clips(
        args.seed, args.clips, args.out, workers=args.workers, max_duration_s=args.max_duration, say=say
    )
    audio = {f"synth:{args.seed}:{i}": r[0] for i, r in enumerate(rendered)}
    # Keyword: the foreground class, the first entry of the positive group.
    pairs = [Pair(Path(f"synth:{args.seed}:{i}"), r[1], r[2], r[2][:1]) for i, r in enumerate(rendered)]
    trainable = MiniTrainable.create("scratch")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    train(trainable, pairs, args.out, cfg, progress=say, source=lambda pair, sr: audio[str(pair.path)])


if __name__ == "__main__":
    main()
