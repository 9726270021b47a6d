"""Deterministic windowing of a signal into the fixed-length views an encoder sees.

Rule (the same for streamed and in-memory input):
- a signal no longer than one window is a single window [0, T] (the encoder repeat-pads it);
- a longer signal gets windows starting at 0, hop, 2·hop, ... that fit entirely inside it, plus, when
  audio is left after the last of them, one final window aligned to the end, [T - window, T].
Every window therefore holds real audio only (no padding in the middle of a long file), nothing at the
end of a file is lost, and the same file always yields the same windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.encoders.base import normalise
from indexer.types import FloatArray, Seconds


@dataclass(frozen=True)
class WindowSpec:
    window_s: Seconds = 10.0
    hop_s: Seconds = 5.0

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and 0 < self.hop_s <= self.window_s):
            raise ValueError(f"need window_s > 0 and 0 < hop_s <= window_s, got {self}")

    def frames(self, sample_rate: int) -> tuple[int, int]:
        return round(self.window_s * sample_rate), round(self.hop_s * sample_rate)


@dataclass(frozen=True)
class Window:
    """A view of a signal: samples from `start_s` to `end_s` (not padded)."""

    start_s: Seconds
    end_s: Seconds
    samples: FloatArray


def window_bounds(n_samples: int, sample_rate: int, spec: WindowSpec) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of the windows of a signal of `n_samples`."""
    win, hop = spec.frames(sample_rate)
    if n_samples <= win:
        return [(0, n_samples)]
    bounds = [(s, s + win) for s in range(0, n_samples - win + 1, hop)]
    if bounds[-1][1] < n_samples:
        bounds.append((n_samples - win, n_samples))
    return bounds


def split_windows(samples: FloatArray, sample_rate: int, spec: WindowSpec) -> list[Window]:
    return [
        Window(start / sample_rate, end / sample_rate, samples[start:end])
        for start, end in window_bounds(len(samples), sample_rate, spec)
    ]


def iter_windows(blocks: Iterable[FloatArray], sample_rate: int, spec: WindowSpec) -> Iterator[Window]:
    """Window a stream of blocks, holding at most about one window plus one block in memory."""
    win, hop = spec.frames(sample_rate)
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # index in the signal of buf[0]
    next_start = 0  # start of the next regular window
    emitted_end = 0
    for block in blocks:
        buf = np.concatenate([buf, block])
        while next_start + win <= buf_start + len(buf):
            lo = next_start - buf_start
            yield Window(next_start / sample_rate, (next_start + win) / sample_rate, buf[lo : lo + win].copy())
            emitted_end = next_start + win
            next_start += hop
        # Keep the last `win` samples: the end-aligned tail window may need all of them.
        drop = min(next_start - buf_start, len(buf) - win)
        if drop > 0:
            buf = buf[drop:]
            buf_start += drop
    total = buf_start + len(buf)
    if total == 0:
        return
    if emitted_end == 0:
        yield Window(0.0, total / sample_rate, buf.copy())
    elif emitted_end < total:
        yield Window((total - win) / sample_rate, total / sample_rate, buf[len(buf) - win :].copy())


def repeat_pad(samples: FloatArray, length: int) -> FloatArray:
    """LAION-CLAP's "repeatpad": tile a short clip as many whole times as fit, then pad with zeros."""
    n = len(samples)
    if n >= length:
        return samples[:length]
    if n == 0:
        return np.zeros(length, dtype=np.float32)
    tiled = np.tile(samples, length // n)
    return np.pad(tiled, (0, length - len(tiled))).astype(np.float32, copy=False)


def embed_clips(
    clips: Sequence[FloatArray],
    sample_rate: int,
    spec: WindowSpec,
    embed_windows: Callable[[list[FloatArray]], FloatArray],
) -> FloatArray:
    """The encoder protocol's `embed_audio` on top of a window embedder: a clip up to one window is one
    window; a longer clip gets the renormalised mean of its windows' embeddings."""
    win, _ = spec.frames(sample_rate)
    views: list[FloatArray] = []
    owner: list[int] = []
    for i, clip in enumerate(clips):
        clip = np.asarray(clip, dtype=np.float32)
        if clip.ndim != 1 or clip.size == 0:
            raise ValueError(f"clip {i}: expected a non-empty 1-D array, got shape {clip.shape}")
        parts = [clip] if len(clip) <= win else [w.samples for w in split_windows(clip, sample_rate, spec)]
        views.extend(parts)
        owner.extend([i] * len(parts))
    emb = embed_windows(views)
    if len(views) == len(clips):
        return emb
    pooled = np.zeros((len(clips), emb.shape[1]), dtype=np.float32)
    np.add.at(pooled, np.asarray(owner), emb)
    return normalise(pooled)
