"""Synthetic training clips rendered in memory at 16 kHz, cached in blocks on disk.

Both shipped models (`training.build_mini`, `captioning.build_default`) train on the same clips: the audio
the library writer would encode to files, without the disk or the codec. Blocks of `CHUNK` clips are
cached as `clips-{seed}-{start}-{stop}.pkl`, so a larger run reuses what a smaller one synthesised and a
crash after a block loses nothing of it.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from indexer.audio import resample

SAMPLE_RATE = 16_000
CHUNK = 1000
# (16 kHz mono audio, its captions, its positive group: the classes, foreground first, then the modifiers)
Rendered = tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]


def _render(job: tuple[int, int, float]) -> Rendered:
    from evaluation.synth import synthesize_clip

    seed, index, max_s = job
    clip = synthesize_clip(seed, index, max_duration_s=max_s)
    mono = clip.audio.mean(axis=1).astype(np.float32)
    spec = clip.truth.spec
    # Positives share classes *and* modifiers: "a distant siren" and "a loud siren" stay apart.
    group = (*spec.classes, repr(spec.modifiers))
    return resample(mono, spec.sample_rate, SAMPLE_RATE), tuple(clip.truth.captions), group


def rendered_clips(
    seed: int,
    n: int,
    cache_dir: Path,
    *,
    workers: int = 2,
    max_duration_s: float = 10.0,
    say: Callable[[str], None] | None = None,
) -> list[Rendered]:
    """Clips 0..n-1 of the synthetic library `seed`, from the block caches in `cache_dir` where present."""
    rendered: list[Rendered] = []
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        cache = cache_dir / f"clips-{seed}-{start}-{stop}.pkl"
        if cache.exists():
            rendered += pickle.loads(cache.read_bytes())
            continue
        if say:
            say(f"synthesising clips {start}-{stop} (seed {seed})")
        jobs = [(seed, i, max_duration_s) for i in range(start, stop)]
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            block = pool.map(_render, jobs, chunksize=16)
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(block))
        rendered += block
    return rendered
