"""Train the shipped offline captioner: `mini` encoder (frozen) + small decoder, on the synthetic library.

Clips are synthesised in memory (`training.clips`, 16 kHz) in worker processes and cached in blocks, and
resampled to the encoder's rate (44.1 kHz for a two-tower mini); training clips use seed 0 (the same caches
`training.build_mini` writes, reused when present), validation clips seed 7, and the held-out benchmark
library seed 2026, so no clip is shared.

`--real DIR` adds the weakly captioned real recordings of `training.real_sounds`' train and dev packages
(`training.build_mini3.real_pairs`: captions from names, folders and embedded text), every caption of a
clip kept and visited `--real-repeat` times per epoch; the test packages are never read. Validation and
selection stay on the synthetic clips.

Run:  .venv/bin/python -m captioning.build_default --out build/captioner --install [--real /work/data/real]
then: .venv/bin/python -m benchmarks.eval_captioner --data /work/data/heldout --update-card
      .venv/bin/python -m benchmarks.eval_captioner --real /work/data/real
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from captioning.data import AudioSource, CaptionClip, decode_file
from captioning.features import MiniTowers, feature_extractor
from captioning.model import DecodeConfig
from captioning.store import MODEL_FILE, WEIGHTS_DIR
from captioning.train import CaptionTrainConfig, train_captioner
from indexer.audio import resample
from indexer.types import FloatArray
from training.clips import SAMPLE_RATE, rendered_clips

REAL_SPLITS = ("train", "dev")  # never "test": those packages are the real-sound benchmark
# Windows per clip with real recordings: they run past 10 s (20 of the 526 train+dev clips, up to 162 s),
# and a whole file is captioned from as many windows, evenly spread (`clip_windows`), as it was trained on.
REAL_MAX_WINDOWS = 3


def real_clips(real: Path, repeat: int = 1) -> list[CaptionClip]:
    """The train and dev packages' weakly captioned clips, each caption listed `repeat` times.

    Repeating a clip's captions makes training visit each of its (clip, caption) pairs `repeat` times an
    epoch: the few hundred real clips against thousands of synthetic ones.
    """
    from training.build_mini3 import real_pairs

    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    return [CaptionClip(str(p.path), p.captions * repeat) for p in real_pairs(real, REAL_SPLITS)]


def default_config(*, with_real: bool, epochs: int = 15, batch_size: int = 64, lr: float = 1e-3) -> CaptionTrainConfig:
    """The shipped captioner's training settings; `with_real`: what real recordings in the data change."""
    return CaptionTrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=200,
        vocab_size=2000,
        # Real clips' name words are often one-offs ("yoohoo"): kept, or the captioner could never say them.
        vocab_min_count=1 if with_real else 2,
        d_model=256,
        layers=3,
        max_windows=REAL_MAX_WINDOWS if with_real else 1,  # synthetic clips are at most 10 s: one window
        val_decode=DecodeConfig(num_beams=3, no_repeat_ngram_size=2, min_length=3, max_length=24),
    )


def clip_source(synthetic: dict[str, FloatArray]) -> AudioSource:
    """Rendered synthetic clips (16 kHz) by key, resampled; any other key is a file decoded at `sr`."""

    def source(key: str, sr: int) -> FloatArray:
        if key in synthetic:
            return resample(synthetic[key], SAMPLE_RATE, sr)
        return decode_file(key, sr)

    return source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--val-clips", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--encoder", default="mini")
    parser.add_argument("--clip-cache", type=Path, default=Path("build/mini"), help="training.clips block caches")
    parser.add_argument("--out", type=Path, default=Path("build/captioner"))
    parser.add_argument("--real", type=Path, default=None, help="training.real_sounds output: add train+dev clips")
    parser.add_argument("--real-repeat", type=int, default=3, help="visits of each real (clip, caption) an epoch")
    parser.add_argument(
        "--feature-cache", type=Path, default=None, help="folder keeping the clips' tower features between runs"
    )
    parser.add_argument("--install", action="store_true", help=f"copy the best model into {WEIGHTS_DIR}")
    args = parser.parse_args()

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from indexer.encoders.registry import load_encoder

    extractor = feature_extractor(load_encoder(args.encoder))
    say(f"training clips (seed 0): {args.clips}, validation clips (seed 7): {args.val_clips}")
    train = rendered_clips(0, args.clips, args.clip_cache, workers=args.workers, say=say)
    val = rendered_clips(7, args.val_clips, args.clip_cache, workers=args.workers, say=say)
    audio = {f"synth:0:{i}": r[0] for i, r in enumerate(train)} | {f"synth:7:{i}": r[0] for i, r in enumerate(val)}
    train_clips = [CaptionClip(f"synth:0:{i}", r[1]) for i, r in enumerate(train)]
    val_clips = [CaptionClip(f"synth:7:{i}", r[1]) for i, r in enumerate(val)]
    real = real_clips(args.real, args.real_repeat) if args.real else []
    if args.real:
        say(f"real clips ({'+'.join(REAL_SPLITS)} of {args.real}): {len(real)}, captions x{args.real_repeat}")
    cfg = default_config(with_real=bool(real), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    tokens = "mini's CNN tower frame tokens (frozen, 15 x 128 per 10 s)"
    if isinstance(extractor, MiniTowers):
        tokens = (
            "mini's frozen towers: CNN frame tokens (15 x 128 per 10 s), each with the aiSFX vector (512) of the "
            "2.3 s block nearest in time"
        )
    card = {
        "name": "soundsearch offline captioner",
        "architecture": f"{tokens} -> 2-layer MLP mapping -> 3-layer BART-style decoder (d=256, from scratch, "
        "word-level vocabulary from the training captions)",
        "training_data": f"{len(train_clips)} synthetic clips (evaluation.synth, seed 0, up to 10 s, 5 captions each)"
        + (
            f" + {len(real)} real recordings (training.real_sounds {'+'.join(REAL_SPLITS)} packages, weak captions "
            f"from names, folders and embedded text, each visited x{args.real_repeat} an epoch)"
            if real
            else ""
        ),
        "validation_data": f"{len(val_clips)} synthetic clips (seed 7); best epoch by CIDEr-D (SPICE unavailable)",
        "intended_use": "offline captions for the demo and as a searchable description; not a general captioner",
        "limitations": (
            "knows the synthetic library's sound classes and wording and the real training packages' sound names "
            "(game sound effects, named by their files); other recordings get guesses within that vocabulary. "
            if real
            else "knows only the synthetic library's sound classes and wording; captions of real recordings "
            "are guesses within that vocabulary. "
        )
        + "Metrics reward short generic captions: see vocab_size/mean_length.",
    }
    result = train_captioner(
        extractor,
        args.encoder,
        "small",
        train_clips + real,
        val_clips,
        args.out,
        cfg,
        source=clip_source(audio),
        progress=say,
        card=card,
        feature_cache=args.feature_cache,
    )
    say(f"best epoch {result.best['epoch']}: CIDEr-D {result.best.get('cider_d')}")
    if args.install:
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        for name in (MODEL_FILE, "captioner.json"):
            shutil.copy2(result.best_dir / name, WEIGHTS_DIR / name)
        say(f"installed in {WEIGHTS_DIR} ({(WEIGHTS_DIR / MODEL_FILE).stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
