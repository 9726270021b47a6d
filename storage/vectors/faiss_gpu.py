"""FAISS on the GPU: a copy of a CPU index made with `index_cpu_to_gpu`, kept resident.

Used where FAISS has GPU support and kernels for the GPU (`storage.vectors.torch_search.choose_backend`);
the PyPI wheels have none for Hopper, and this project's test machines have no GPU build of FAISS, so this
path runs only where one is installed (`tests/test_vector_indexes.py` skips it elsewhere).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.types import FloatArray
from storage.vectors.base import IdArray, faiss


class FaissGpuSearcher:
    """Unfiltered searches on a GPU copy of `cpu_index`; `id_map` labels its positions when it stores no ids."""

    def __init__(self, cpu_index: Any, id_map: IdArray | None = None) -> None:
        self.res = faiss.StandardGpuResources()
        self.gpu: Any = faiss.index_cpu_to_gpu(self.res, 0, cpu_index)
        self.id_map = id_map

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        if allowed_ids is not None:
            raise ValueError("filtered searches run on the CPU index")
        scores, found = self.gpu.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        if self.id_map is not None:
            found = np.where(found >= 0, self.id_map[np.maximum(found, 0)], -1)
        return np.asarray(scores, dtype=np.float32), np.asarray(found, dtype=np.int64)
