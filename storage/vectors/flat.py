"""`flat`: exact search, `IDMap2,Flat` (4d bytes per vector + the id map; d = 512: ≈ 2.1 KB)."""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.types import FloatArray
from storage.vectors.base import (
    ID_HASH_BYTES,
    FaissKind,
    IdArray,
    IndexSpec,
    Searcher,
    faiss,
    pad_result,
    reconstruct_by_id,
    top_k,
)
from storage.vectors.faiss_gpu import FaissGpuSearcher

# Up to this many queries an unfiltered search is one BLAS product instead of FAISS's scan.
BLAS_MAX_QUERIES = 4
# A batch (an example's windows) too, while its score matrix stays under this many floats (128 MB); past it,
# FAISS's own blocked search.
FLAT_SCAN_MAX_SCORES = 32_000_000


class FlatIndex(FaissKind):
    kind = "flat"
    exact = True
    stores_vectors = True
    exact_scores = True
    on_faiss_gpu = True

    @classmethod
    def factory_string(cls, spec: IndexSpec) -> str:
        return "IDMap2,Flat"

    @classmethod
    def bytes_per_vector(cls, spec: IndexSpec, dim: int) -> float:
        return 4 * dim + 8 + ID_HASH_BYTES

    @classmethod
    def recognises(cls, index: Any) -> bool:
        return isinstance(index, faiss.IndexIDMap2) and isinstance(faiss.downcast_index(index.index), faiss.IndexFlat)

    @property
    def description(self) -> str:
        return "IDMap2,Flat"

    def memory_bytes(self) -> int:
        return self.count() * int(self.bytes_per_vector(IndexSpec(), self.dim))

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        small = len(queries) <= BLAS_MAX_QUERIES or len(queries) * self.count() <= FLAT_SCAN_MAX_SCORES
        if allowed_ids is None and small:
            return self._blas_scan(queries, k)
        params = faiss.SearchParameters()
        if allowed_ids is not None:
            params.sel = faiss.IDSelectorBatch(allowed_ids)
        scores, ids = self.index.search(queries, k, params=params)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    def _blas_scan(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """Exact search for a few queries: one BLAS product over FAISS's own storage (a view, no copy)
        and a partial sort. FAISS scans for a single query on one thread; BLAS uses every core
        (100 000 × 512-d: 5.0 ms against 7.5 ms, benchmarks/bench_search.py). A batch of an example's windows
        too: 32 queries × 40 000 × 512-d took a third of FAISS's own batched search's time
        (benchmarks/bench_example.py, BENCHMARKS.md)."""
        flat = faiss.downcast_index(self.index.index)
        n = int(flat.ntotal)
        stored = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        scores, rows = top_k(queries @ stored.T, k)
        ids = faiss.rev_swig_ptr(self.index.id_map.data(), n)
        return pad_result(scores, ids[rows], k)

    def reconstruct(self, ids: IdArray) -> FloatArray:
        return reconstruct_by_id(self.index, ids)

    def ids(self) -> IdArray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def gpu_searcher(self) -> Searcher:
        # The inner `IndexFlatIP` goes to the GPU; its positions are mapped to our ids on the way out.
        return FaissGpuSearcher(faiss.downcast_index(self.index.index), self.ids())
