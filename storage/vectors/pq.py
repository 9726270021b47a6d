"""`ivf_pq`: `IVF{nlist},PQ{m}`, m bytes per vector + 8 for the id, re-ranked from exact vectors.

PQ codes blur a neighbourhood: with a vector source attached (the catalog's database) a search fetches
`rerank_factor` × k candidates by code and orders them by their exact inner products; without one the PQ
scores are returned as they are. `reconstruct` reads the source too, else decodes the codes (approximate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.types import FloatArray
from storage.vectors.base import IdArray, IndexSpec, VectorSource, faiss, pad_result
from storage.vectors.ivf import IvfIndex

# Candidates re-ranked per result until tuning raises it. Dense data needs more (10M clustered vectors:
# recall@10 stalled at 0.90 with 10× whatever the nprobe); `index_choice.tune` doubles it when it must.
PQ_RERANK_FACTOR = 10
# The 8-bit sub-quantizers' codebooks: 256 centroids of d/m floats each, d floats per centroid row in all.
CODEBOOK_ROWS = 256


class IvfPqIndex(IvfIndex):
    kind = "ivf_pq"

    def __init__(self, index: Any, vector_source: VectorSource | None = None) -> None:
        super().__init__(index, vector_source)
        self.pq = faiss.downcast_index(self.ivf).pq
        self.rerank_factor = PQ_RERANK_FACTOR

    @classmethod
    def codes_of(cls, spec: IndexSpec) -> str:
        return f"PQ{spec.pq_m}"

    @classmethod
    def code_bytes(cls, spec: IndexSpec, dim: int) -> int:
        return spec.pq_m

    @classmethod
    def fixed_bytes(cls, spec: IndexSpec, dim: int) -> int:
        return super().fixed_bytes(spec, dim) + CODEBOOK_ROWS * dim * 4

    @classmethod
    def check(cls, spec: IndexSpec, dim: int) -> None:
        super().check(spec, dim)
        if spec.pq_m < 1 or dim % spec.pq_m:
            raise ValueError(f"ivf_pq needs pq_m dividing the dimension {dim}, got {spec.pq_m}")

    @classmethod
    def recognises(cls, index: Any) -> bool:
        return isinstance(index, faiss.IndexIVFPQ)

    @property
    def reranks(self) -> bool:
        return self.vector_source is not None

    def _codes_description(self) -> str:
        return f"PQ{self.pq.M}" + (f" re-ranked×{self.rerank_factor}" if self.reranks else "")

    def memory_bytes(self) -> int:
        return super().memory_bytes() + int(self.pq.centroids.size()) * 4

    def train(self, sample: FloatArray, centroids: FloatArray | None = None) -> None:
        # We never search by Hamming distance, and polysemous training costs minutes.
        faiss.downcast_index(self.ivf).do_polysemous_training = False
        super().train(sample, centroids)

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        source = self.vector_source
        if source is None:
            return super().search(queries, k, allowed_ids)
        _, candidates = super().search(queries, k * self.rerank_factor, allowed_ids)
        return _rerank(queries, candidates, k, source)


def _rerank(queries: FloatArray, candidates: IdArray, k: int, source: VectorSource) -> tuple[FloatArray, IdArray]:
    """Exact inner products for the candidates (read from `source`), best k kept."""
    valid = candidates >= 0
    unique = np.unique(candidates[valid])
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    if len(unique):
        exact = np.asarray(source(unique), dtype=np.float32)
        rows = np.searchsorted(unique, candidates[valid])
        qi = np.nonzero(valid)[0]
        scores[valid] = np.einsum("ij,ij->i", queries[qi], exact[rows])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, axis=1), -1)
    return pad_result(top_scores, top_ids, k)
