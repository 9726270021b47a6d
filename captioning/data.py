"""Training and evaluation clips for the captioner, from every source the evaluation loaders read.

`--data` takes `KIND:ROOT` (audiocaps, clotho, wavcaps, synth, csv; `split` picks a split), a
synthetic library folder (`metadata.csv`) or a `path,caption` CSV. All captions of a clip are kept:
training visits every (clip, caption) pair once per epoch. Missing audio files are collected and named
all at once, so a partial download is fixed in one go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioning.errors import CaptioningError
from evaluation.datasets import DATASET_KINDS, Dataset, load_dataset
from indexer.types import FloatArray

MAX_NAMED_MISSING = 20


@dataclass(frozen=True)
class CaptionClip:
    """A clip to caption: a key its audio source understands (usually the file path) and its references."""

    key: str
    captions: tuple[str, ...]


AudioSource = Callable[[str, int], FloatArray]


def decode_file(key: str, sample_rate: int) -> FloatArray:
    from indexer.audio import load_audio

    samples: FloatArray = load_audio(key, sample_rate).samples
    return samples


def load_caption_data(data: str, *, split: str | None = None, skip_missing: bool = False) -> list[CaptionClip]:
    """Clips with captions from `data` (see the module docstring)."""
    dataset = _load(data, split)
    clips = [CaptionClip(str(item.path), tuple(item.captions)) for item in dataset.items if item.captions]
    if not clips:
        raise CaptioningError(f"{data}: no clips with captions")
    missing = [c.key for c in clips if not Path(c.key).is_file()]
    if missing and not skip_missing:
        named = "\n  ".join(missing[:MAX_NAMED_MISSING])
        more = f"\n  ... and {len(missing) - MAX_NAMED_MISSING} more" if len(missing) > MAX_NAMED_MISSING else ""
        raise CaptioningError(
            f"{data}: {len(missing)} of {len(clips)} audio files are missing "
            f"(pass --skip-missing to train on the rest):\n  {named}{more}"
        )
    return [c for c in clips if c.key not in set(missing)]


def _load(data: str, split: str | None) -> Dataset:
    path = Path(data)
    kind, sep, rest = data.partition(":")
    if sep and kind.lower() in DATASET_KINDS and not path.exists():
        return load_dataset(kind, Path(rest), split, check_files=False)
    if path.is_dir() and (path / "metadata.csv").is_file():
        return load_dataset("synth", path, check_files=False)
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_dataset("csv", path, check_files=False)
    raise CaptioningError(
        f"{data}: give KIND:ROOT (one of {', '.join(DATASET_KINDS)}), a synthetic library folder or a path,caption CSV"
    )


def split_clips(
    clips: Sequence[CaptionClip], fraction: float, seed: int
) -> tuple[list[CaptionClip], list[CaptionClip]]:
    """A seeded train/validation split by clip (never by caption: a clip's captions stay together)."""
    if len(clips) < 2:
        raise CaptioningError(f"need at least 2 captioned clips to train and validate, got {len(clips)}")
    order = np.random.default_rng(seed).permutation(len(clips))
    n_val = min(len(clips) - 1, max(1, round(fraction * len(clips))))
    return [clips[i] for i in order[n_val:]], [clips[i] for i in order[:n_val]]
