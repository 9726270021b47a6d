"""The index the catalog serves from: one kind (`VectorIndex`) behind a lock, swappable, optionally on a GPU.

What is the same for every kind lives here, once: input checks, filters applied before top-k (answered
exactly among the allowed vectors when the allowed set is small or the approximate search came back
short), GPU mirrors (`accelerate`), and swapping in a rebuilt index of any kind while readers keep being
served (`replace_with`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from indexer.types import FloatArray
from storage.vectors.base import (
    IdArray,
    Searcher,
    VectorIndex,
    VectorSource,
    atomic_write_index,
    empty_result,
    faiss,
    pad_result,
    top_k,
)

# Below this many allowed ids a filtered search on an approximate index is answered exactly.
EXACT_FILTER_MAX = 20_000


@contextlib.contextmanager
def _threads_for(n_queries: int) -> Iterator[None]:
    """One OpenMP thread for a handful of queries: FAISS's threads then cost more than they share
    (a single query over 20 000 vectors: 44 ms with the default threads on two busy cores, 2.6 ms with
    one; BENCHMARKS.md). Batches keep every thread."""
    before = faiss.omp_get_max_threads()
    if n_queries > 4 or before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FaissIndex:
    """A vector index of any kind, thread-safe: every method holds the lock, so a search never sees a
    half-applied add and `replace_with` swaps a rebuilt index in atomically while readers keep being served.
    """

    def __init__(self, backend: VectorIndex) -> None:
        self._backend = backend
        self._lock = threading.RLock()
        # Ids that a swap-time catch-up already added; an `add` racing the swap skips them once.
        self._added_by_swap: set[int] = set()
        self._accel: Searcher | None = None  # a GPU searcher (see `accelerate`), built lazily
        self._accel_request: str | None = None  # the device `accelerate` was asked for
        self._accel_mode: str | None = None
        self._accel_device: str | None = None
        self._accel_pending: str | None = None  # a device to `accelerate` on at the first search

    # --- description (the kind's own) ---------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self._backend.kind

    @property
    def dim(self) -> int:
        return self._backend.dim

    @property
    def exact(self) -> bool:
        return self._backend.exact

    @property
    def exact_scores(self) -> bool:
        """Whether a search's scores are the exact inner products (full vectors compared, or PQ re-ranked
        from exact ones); SQ codes give close ones."""
        return self._backend.exact_scores or self._backend.reranks

    @property
    def nlist(self) -> int:
        return self._backend.nlist

    @property
    def backend(self) -> VectorIndex:
        """The kind's own index (tests and benchmarks reach FAISS through it)."""
        return self._backend

    @property
    def vector_source(self) -> VectorSource | None:
        return self._backend.vector_source

    @vector_source.setter
    def vector_source(self, source: VectorSource | None) -> None:
        with self._lock:
            self._backend.vector_source = source
            self._accel = None

    @property
    def rerank_factor(self) -> int:
        """PQ: candidates re-ranked with exact vectors per result (`storage.index_choice.tune` raises it)."""
        return self._backend.rerank_factor

    @rerank_factor.setter
    def rerank_factor(self, value: int) -> None:
        with self._lock:
            self._backend.rerank_factor = value

    @property
    def reranks(self) -> bool:
        return self._backend.reranks

    @property
    def search_param(self) -> tuple[str, int] | None:
        return self._backend.search_param

    def set_search_param(self, value: int) -> None:
        with self._lock:
            self._backend.set_search_param(value)

    @property
    def description(self) -> str:
        return self._backend.description

    def memory_bytes(self) -> int:
        with self._lock:
            return self._backend.memory_bytes()

    # --- building ----------------------------------------------------------------------------------

    @property
    def is_trained(self) -> bool:
        return self._backend.is_trained

    def train(self, sample: FloatArray, centroids: FloatArray | None = None) -> None:
        """Train an IVF kind on a sample (a no-op for the others); `centroids` skips the coarse k-means."""
        with self._lock:
            self._backend.train(sample, centroids)

    def centroids(self) -> FloatArray | None:
        return self._backend.centroids()

    # --- the protocol ------------------------------------------------------------------------------

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        with self._lock:
            if not self._backend.is_trained:
                raise ValueError(f"{self.kind} index is not trained; call train() first")
            if self._added_by_swap:
                keep = np.array([int(i) not in self._added_by_swap for i in ids], dtype=bool)
                self._added_by_swap.difference_update(int(i) for i in ids)
                ids, vectors = ids[keep], vectors[keep]
                if len(ids) == 0:
                    return
            self._backend.add(ids, vectors)
            self._accel = None

    def remove(self, ids: IdArray) -> int:
        if len(ids) == 0:
            return 0
        with self._lock:
            self._accel = None
            return self._backend.remove(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        """Top-k by inner product, among `allowed_ids` when given: scores and ids [n_queries, k], -1 where none.

        Filters apply before top-k: k results whenever k of the allowed ids are in the index.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, k)
        with self._lock, _threads_for(len(queries)):
            # Nothing to find answers nothing, whatever the query: a reader that opened a catalog before its
            # model was bound holds an empty placeholder index until its next refresh.
            if self._backend.count() == 0 or (allowed_ids is not None and len(allowed_ids) == 0):
                return empty_result(len(queries), k)
            if queries.ndim != 2 or queries.shape[1] != self.dim:
                raise ValueError(f"expected queries of dimension {self.dim}, got shape {queries.shape}")
            if self._accel_pending is not None:
                self.accelerate(self._accel_pending)
            if allowed_ids is not None:
                allowed_ids = np.unique(np.asarray(allowed_ids, dtype=np.int64))
                return self._filtered_search(queries, k, allowed_ids)
            accel = self._accelerator()
            if accel is not None:
                return accel.search(queries, k)
            return self._backend.search(queries, k)

    def _filtered_search(self, queries: FloatArray, k: int, allowed: IdArray) -> tuple[FloatArray, IdArray]:
        backend = self._backend
        if backend.exact:
            accel = self._accelerator() if self._accel_mode == "torch" else None
            return (accel or backend).search(queries, k, allowed)
        can_read_exact = backend.stores_vectors or backend.vector_source is not None
        if can_read_exact and len(allowed) <= EXACT_FILTER_MAX:
            return self._exact_among(queries, k, allowed)
        scores, ids = backend.search(queries, k, allowed)
        short = (ids < 0).sum(axis=1) > max(0, k - len(allowed))
        if np.any(short) and can_read_exact:
            # The approximate search missed allowed vectors: answer exactly among all of them.
            return self._exact_among(queries, k, allowed)
        return scores, ids

    def _exact_among(self, queries: FloatArray, k: int, allowed: IdArray) -> tuple[FloatArray, IdArray]:
        # Only ids the index holds (a writer may have committed rows it has not added yet).
        present = np.intersect1d(allowed, self._backend.ids(), assume_unique=True)
        if len(present) == 0:
            return empty_result(len(queries), k)
        scores, cols = top_k(queries @ self._backend.reconstruct(present).T, k)
        return pad_result(scores, present[cols], k)

    def reconstruct(self, ids: IdArray) -> FloatArray:
        """Stored vectors by id, in order (unknown ids raise). Exact for flat/hnsw or with a vector source."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        backend = self._backend
        if not backend.stores_vectors and backend.vector_source is not None:
            return backend.reconstruct(ids)  # read from the database, not the index: no lock to hold
        with self._lock:
            return self._backend.reconstruct(ids)

    def save(self, path: Path, trailer: bytes = b"") -> None:
        """Write the index atomically; `trailer` follows FAISS's bytes (see `storage.index_file`)."""
        with self._lock:
            atomic_write_index(self._backend.index, path, trailer)

    def count(self) -> int:
        return self._backend.count()

    def tombstones(self) -> int:
        return self._backend.tombstones()

    def ids(self) -> IdArray:
        with self._lock:
            return self._backend.ids()

    # --- swapping in a rebuilt index ----------------------------------------------------------------

    def replace_with(self, other: FaissIndex, catch_up: Callable[[FaissIndex], None] | None = None) -> None:
        """Take over `other`'s index in one step, under the lock (readers wait, never see a gap).

        `catch_up(other)` runs first, under the same lock: it brings `other` up to date with changes
        made since it was built (the catalog passes a reconcile against its database). Ids that
        `other` holds and this index did not yet hold may still be `add`ed by a writer that committed
        them before the swap: those adds are skipped once.
        """
        with self._lock:
            if catch_up is not None:
                catch_up(other)
            pending = np.setdiff1d(other.ids(), self.ids())
            self._backend = other._backend
            self._added_by_swap = {int(i) for i in pending}
            if self._accel_request is not None:
                self.accelerate(self._accel_request)  # the new kind may need another path

    # --- GPU ---------------------------------------------------------------------------------------

    def accelerate(self, device: str = "auto") -> str | None:
        """Serve unfiltered searches (filtered ones too, for flat) from a GPU; returns the path taken.

        - "faiss-gpu": FAISS has GPU support and the GPU is one its wheels carry kernels for
          (not Hopper, compute capability 9.x): `index_cpu_to_gpu`, kept resident.
        - "torch": otherwise, exact search with torch (bf16/fp16 matmul + top-k, in chunks when the
          vectors do not fit, candidates re-scored in fp32): exact even when the index is approximate.
          `device="cpu"` forces this path onto CPU tensors (tests).
        - None: no GPU; FAISS on the CPU.
        Mirrors are rebuilt lazily after the index changes.
        """
        # Imported here: torch costs seconds to import, and only a catalog that serves searches needs it.
        from storage.vectors import torch_search

        with self._lock:
            self._accel_pending = None
            backend = self._backend
            mode = torch_search.choose_backend(device)
            if mode == "faiss-gpu" and not backend.on_faiss_gpu:
                mode = "torch"  # FAISS has no GPU HNSW
            if mode == "torch" and not (backend.stores_vectors or backend.vector_source is not None):
                mode = None  # quantised codes only: no exact vectors to mirror
            self._accel_request = device
            self._accel_mode = mode
            self._accel_device = torch_search.torch_device(device) if mode == "torch" else None
            self._accel = None
            return mode

    def accelerate_at_first_search(self, device: str = "auto") -> None:
        """`accelerate(device)` when the index is first searched, not now.

        Choosing asks torch whether there is a GPU, and importing torch takes seconds: a process that only
        counts vectors or searches names (`soundsearch status`, a text search) then never imports it.
        """
        with self._lock:
            self._accel_pending = device

    def _accelerator(self) -> Searcher | None:
        if self._accel_mode is None:
            return None
        if self._accel is None:
            if self._accel_mode == "faiss-gpu":
                self._accel = self._backend.gpu_searcher()
            else:
                from storage.vectors.torch_search import TorchExactSearch  # see `accelerate`

                ids = self._backend.ids()
                self._accel = TorchExactSearch(self.reconstruct(ids), ids, device=self._accel_device)
        return self._accel
