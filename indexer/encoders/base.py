"""The encoder protocol every embedding backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.types import FloatArray


@runtime_checkable
class Encoder(Protocol):
    """A joint audio-text embedding model.

    `embed_audio` takes mono float32 clips at `sample_rate`. Clips up to `window_seconds` are embedded
    as one window (shorter ones repeat-padded, as LAION-CLAP does); longer clips are cut into
    deterministic windows whose embeddings are averaged. Both methods return L2-normalised float32
    arrays of shape [n, dim].
    """

    model_id: str
    sample_rate: int
    window_seconds: float
    dim: int

    def embed_audio(self, clips: Sequence[FloatArray]) -> FloatArray: ...

    def embed_text(self, texts: Sequence[str]) -> FloatArray: ...


def normalise(x: np.ndarray) -> FloatArray:
    """Rows (or one vector) scaled to unit L2 norm, as float32; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
