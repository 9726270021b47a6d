"""`soundsearch train-encoder`: train or fine-tune a CLAP-style encoder on audio + caption pairs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("train-encoder", help="train or fine-tune an encoder on audio + captions")
    p.add_argument(
        "--data",
        required=True,
        help="synthetic library folder, a path,caption CSV, KIND:ROOT (clotho, ...), or a folder",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoints, best model, curves.png)")
    p.add_argument("--init", default="mini", help="mini (default), scratch, a mini folder, or a HF CLAP id/folder")
    p.add_argument(
        "--captions-from-metadata",
        "--captions-from-filenames",
        dest="captions_from_metadata",
        action="store_true",
        help="weak captions from file/folder names (UCS, camelCase, numbering removed) and embedded tags "
        "(ID3/Vorbis title and comment, BWF description, iXML note)",
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="default: 2e-3 from scratch, 1e-4 when fine-tuning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from training.data import load_pairs
    from training.loop import TrainConfig, train
    from training.models import create_trainable

    pairs = load_pairs(args.data, captions_from_metadata=args.captions_from_metadata)
    trainable = create_trainable(args.init)
    lr = args.lr if args.lr is not None else (2e-3 if args.init == "scratch" else 1e-4)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, seed=args.seed)
    steps = max(1, -(-round(len(pairs) * (1 - cfg.val_fraction)) // cfg.batch_size))
    bar = tqdm(total=steps * cfg.epochs, unit="step", desc="training", disable=not sys.stderr.isatty())

    def on_step(epoch: int, step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix_str(f"epoch {epoch + 1} loss {loss:.3f}", refresh=False)

    history = train(trainable, pairs, args.out, cfg, resume=not args.no_resume, progress=bar.write, on_step=on_step)
    bar.close()
    if history.epochs:
        last = history.epochs[-1]
        print(f"best model: {args.out / 'best'}   curves: {args.out / 'curves.png'}")
        print(f"last epoch: loss {last['loss']:.3f}, text→audio R@10 {last['t2a_R@10']:.3f}")
    return 0
