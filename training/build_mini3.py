"""Train the shipped `mini@5` (the recipe behind its model card).

mini@5 = mini@4's towers and head: the frozen aiSFX CNN (pretrained on commercial sound-effects libraries)
+ the frozen mini@2 CNN, their window features mapped by a trained head into the joint space of the
frozen MiniLM text tower. What changed from mini@4: the synthetic clips are *anchored* (`--anchor`: the
head's residual on them is penalised, so the synthetic classes stay where mini@2 put them), 1000 synthetic
clips instead of 500, Colobot's sounds join the real training data (captioned from the game's sound
table), and the audio vectors carry the acoustic block (`--acoustic-share`) for search by example.
Training data: the synthetic library (seed 0, its captions and class keywords) and the real recorded
sounds of the train/dev packages (`training.real_sounds`) with weak captions from their own metadata
(`training.data.load_pairs(..., captions_from_metadata=True)`). Tower features are computed once per clip
into a cache; epochs then only run the head (seconds each).

Run: .venv/bin/python -m training.real_sounds --out /work/data/real
     .venv/bin/python -m training.build_mini3 --real /work/data/real --aisfx AISFX_CHECKPOINT --out build/mini5 --final
then copy build/mini5/best/mini.* into indexer/encoders/weights/.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from indexer.audio import resample
from indexer.encoders import aisfx
from indexer.encoders.aisfx import SAMPLE_RATE, checkpoint_state
from indexer.encoders.mini import (
    WEIGHTS_DIR,
    MiniClap,
    MiniConfig,
    SentenceEncoder,
    load_mini,
    minilm_dir,
    save_mini,
    with_acoustic_block,
)
from training.clips import CHUNK, rendered_clips
from training.clips import SAMPLE_RATE as SYNTH_RATE
from training.data import Pair, load_pairs
from training.loop import FeatureCache, TrainConfig, clip_features, decode_pair, train
from training.models import MiniTrainable

# What the cached features depend on (the frozen towers and their front ends), not the head's version:
# a head retrained on the same towers reuses the cache.
TOWERS = "aisfx 0.1.2 (mini@4 front end) + mini@2 CNN"


def initial_model(aisfx_checkpoint: Path, cnn_from: Path) -> MiniClap:
    """A two-tower mini: aiSFX weights from its package's checkpoint, the CNN tower from a mini folder."""
    cnn = load_mini(cnn_from, device="cpu").model
    settings = cnn.cfg.to_json()
    settings.update(
        sample_rate=SAMPLE_RATE, cnn_rate=cnn.cfg.cnn_sr, audio_tower="aisfx+cnn", model_id="mini@5", card={}
    )
    model = MiniClap(MiniConfig.from_json(settings))
    model.audio.load_state_dict(cnn.audio.state_dict())
    model.text_projection.load_state_dict(cnn.text_projection.state_dict())
    model.aisfx.load_state_dict(checkpoint_state(str(aisfx_checkpoint)))
    return model


def real_pairs(real: Path, splits: tuple[str, ...]) -> list[Pair]:
    """Weakly captioned pairs of the given splits, package by package (each package its own root)."""
    with (real / "manifest.csv").open() as f:
        packages = sorted({(r["split"], r["package"]) for r in csv.DictReader(f) if r["split"] in splits})
    pairs: list[Pair] = []
    for split, package in packages:
        root = real / "library" / split / package
        if root.is_dir():
            pairs += _quiet_load(root)
    return pairs


def _quiet_load(root: Path) -> list[Pair]:
    from evaluation.datasets import DatasetError

    try:
        return load_pairs(str(root), captions_from_metadata=True)
    except DatasetError:  # a package whose sounds all have uninformative names
        return []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real", type=Path, default=Path("/work/data/real"))
    parser.add_argument("--aisfx", type=Path, required=True, help="aisfx/models/checkpoint.pth of aisfx 0.1.2")
    parser.add_argument("--cnn-from", type=Path, default=WEIGHTS_DIR, help="mini folder whose CNN tower is kept")
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument(
        "--synth-seconds", type=float, default=5.0, help="synthetic clips cut to this (the aiSFX tower's CPU time)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--train-text", action="store_true", help="train the text projection (default: mini@2's)")
    parser.add_argument(
        "--anchor", type=float, default=100.0, help="penalty on the head's residual for synthetic clips (0: none)"
    )
    parser.add_argument(
        "--acoustic-share",
        type=float,
        default=0.5,
        help="share of each audio vector given to the aiSFX tower's own view (search by example); 0: none",
    )
    parser.add_argument("--real-weight", type=int, default=1, help="how many times each real clip is shown per epoch")
    parser.add_argument("--final", action="store_true", help="train on train+dev, validate on dev (final fit)")
    parser.add_argument("--features-only", choices=("real", "synth"), help="fill the feature cache and stop")
    parser.add_argument("--cache", type=Path, default=Path("/work/data/features"))
    parser.add_argument("--out", type=Path, default=Path("build/mini5"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    model = initial_model(args.aisfx, args.cnn_from)
    trainable = MiniTrainable(model, SentenceEncoder(minilm_dir(), torch.device("cpu")))
    real_cache = FeatureCache(args.cache / "real.pt", TOWERS)
    synth_cache = FeatureCache(args.cache / f"synth-{args.seed}-{args.clips}-{args.synth_seconds:g}s.pt", TOWERS)
    if args.features_only == "real":
        everything = real_pairs(args.real, ("train", "dev", "test"))
        clip_features(trainable, everything, say, decode_pair, real_cache)
        return

    # Rendered (and cached) in blocks of CHUNK clips; the first --clips are used.
    rendered = rendered_clips(args.seed, max(args.clips, CHUNK), args.cache, workers=1, say=say)[: args.clips]
    synth_audio = {f"synth:{args.seed}:{i}": r[0] for i, r in enumerate(rendered)}
    synth = [Pair(Path(f"synth:{args.seed}:{i}"), r[1], r[2], r[2][:1]) for i, r in enumerate(rendered)]

    def synth_source(pair: Pair, sample_rate: int) -> np.ndarray:
        clip = synth_audio[str(pair.path)][: round(args.synth_seconds * SYNTH_RATE)]
        return resample(clip, SYNTH_RATE, sample_rate)

    if args.features_only == "synth":
        clip_features(trainable, synth, say, synth_source, synth_cache)
        return
    del rendered
    train_real = real_pairs(args.real, ("train", "dev") if args.final else ("train",))
    dev_real = real_pairs(args.real, ("dev",))
    n_val = len(synth) // 10
    pairs = synth[n_val:] + train_real * args.real_weight
    val = synth[:n_val] + dev_real
    say(f"{len(synth) - n_val} synthetic + {len(train_real)} real training clips, {len(val)} validation clips")
    cache = _Both(synth_cache, real_cache)
    source: Callable[[Pair, int], np.ndarray] = lambda p, sr: (  # noqa: E731
        synth_source(p, sr) if str(p.path).startswith("synth:") else decode_pair(p, sr)
    )
    if not args.train_text:
        model.text_projection.requires_grad_(False)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        warmup_steps=20,
        anchor=args.anchor,
    )
    train(
        trainable,
        pairs,
        args.out,
        cfg,
        progress=say,
        source=source,
        cache=cache,
        val_pairs=val,
        anchored=lambda p: str(p.path).startswith("synth:"),
    )
    if args.acoustic_share > 0:
        best = load_mini(args.out / "best", device="cpu")
        # Each training clip once (a real clip shown several times per epoch would weigh more), from the cache.
        features = torch.cat(clip_features(trainable, list(dict.fromkeys(pairs)), None, source, cache))
        block_max = features[:, aisfx.DIM : 2 * aisfx.DIM]
        save_mini(with_acoustic_block(best.model, block_max, args.acoustic_share), args.out / "best")
        say(f"acoustic block (share {args.acoustic_share}) standardised on {len(features)} training windows")


class _Both:
    """Synthetic clips from one cache, real files from the other."""

    def __init__(self, synth: FeatureCache, real: FeatureCache) -> None:
        self.synth, self.real = synth, real

    def get(self, pair: Pair, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        return (self.synth if str(pair.path).startswith("synth:") else self.real).get(pair, compute)

    def save(self) -> None:
        self.synth.save()
        self.real.save()


if __name__ == "__main__":
    main()
