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


def mean_pool(vectors: FloatArray, owners: np.ndarray, n_groups: int) -> FloatArray:
    """One vector per group, row i the renormalised mean of the `vectors` whose owner is i (a file's
    vector from its windows')."""
    import torch  # here, not at the top: the catalog imports this module, and `status` needs no torch

    # torch's index_add_ is several times faster than numpy's reduceat on 100k x 512 vectors.
    sums = torch.zeros((n_groups, vectors.shape[1])).index_add_(
        0,
        torch.from_numpy(np.asarray(owners, dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)),
    )
    return torch.nn.functional.normalize(sums, dim=1, eps=1e-12).numpy()
