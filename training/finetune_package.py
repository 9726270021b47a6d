"""Does fine-tuning on one library's own names improve search within that library?

The package's files are split 70/30 (`--by family` keeps all takes of a sound on one side: the stricter
test), the two-tower mini is fine-tuned on the 70 % with weak captions from their metadata (its head
and text projection; towers frozen, features cached), and text → audio search is measured on the 30 %
before and after: every distinct name caption of a test file is a query, the test files carrying it are
its relevant files, and the test files are the library searched.

Run: .venv/bin/python -m training.finetune_package --root /work/data/real/library/test/lincity-ng-data
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer.encoders.base import normalise
from indexer.encoders.mini import load_mini
from training.build_mini3 import TOWERS
from training.data import Pair, load_pairs
from training.evaluate_real import text_metrics
from training.loop import FeatureCache, TrainConfig, clip_features, train
from training.models import MiniTrainable


def split(pairs: Sequence[Pair], fraction: float, by: str, seed: int) -> tuple[list[Pair], list[Pair]]:
    rng = np.random.default_rng(seed)
    if by == "file":
        order = rng.permutation(len(pairs))
        cut = round(fraction * len(pairs))
        return [pairs[i] for i in order[:cut]], [pairs[i] for i in order[cut:]]
    families = sorted({p.classes for p in pairs})
    chosen = {families[i] for i in rng.permutation(len(families))[: round(fraction * len(families))]}
    return [p for p in pairs if p.classes in chosen], [p for p in pairs if p.classes not in chosen]


@torch.no_grad()
def search_metrics(trainable: MiniTrainable, features: list[torch.Tensor], test: Sequence[Pair]) -> dict[str, float]:
    """Vector search over the test files: each file's windows embedded and averaged as `embed_audio` does."""
    model = trainable.model.eval()
    audio = normalise(np.stack([model.embed_features(f).mean(dim=0).numpy() for f in features]))
    names = sorted({p.keywords[0] for p in test if p.keywords})
    relevant = [np.array([i for i, p in enumerate(test) if p.keywords[:1] == (n,)]) for n in names]
    text = model.embed_sentence_vectors(trainable.sentences.encode(names)).numpy()
    return {**text_metrics(audio, text, relevant), "queries": float(len(names))}


def run(root: Path, init: Path | None, cache_path: Path, out: Path, by: str, seed: int, epochs: int) -> dict[str, Any]:
    pairs = load_pairs(str(root), captions_from_metadata=True)
    train_pairs, test_pairs = split(pairs, 0.7, by, seed)
    encoder = load_mini(init, device="cpu")
    trainable = MiniTrainable(encoder.model, encoder.sentences)
    cache = FeatureCache(cache_path, TOWERS)  # the frozen towers' features: shared with build_mini3
    test_features = clip_features(trainable, test_pairs, cache=cache)
    before = search_metrics(trainable, test_features, test_pairs)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=3e-4, warmup_steps=5, seed=seed, val_fraction=0.15)
    train(trainable, train_pairs, out, cfg, cache=cache, resume=False)
    tuned = load_mini(out / "best", device="cpu")
    after = search_metrics(MiniTrainable(tuned.model, tuned.sentences), test_features, test_pairs)
    return {
        "package": root.name,
        "split": by,
        "train": len(train_pairs),
        "test": len(test_pairs),
        "before": before,
        "after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True, help="one package's folder (or any library)")
    parser.add_argument("--init", type=Path, help="a two-tower mini folder (default: the shipped mini)")
    parser.add_argument("--cache", type=Path, default=Path("/work/data/features/real.pt"))
    parser.add_argument("--by", choices=("file", "family"), default="file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("/tmp/finetune-package"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(args.root, args.init, args.cache, args.out, args.by, args.seed, args.epochs)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
