"""Vector indexes behind one small interface (add, remove, search, save, load, count, ids).

Vectors are L2-normalised and compared by inner product (= cosine). Ids are the catalog's segment ids,
so every backend keeps an id map. The index file is written atomically: a reader that opens it at
any moment sees either the previous or the new complete index, never a partial one.

Kinds (FAISS factory strings in brackets; `storage.index_choice` picks one from the size and a memory
budget):

| kind         | structure              | bytes per vector (d = 512)      | removal     | `reconstruct`            |
|--------------|------------------------|---------------------------------|-------------|--------------------------|
| `flat`       | `IDMap2,Flat` (exact)  | 4d + id map (≈ 2.1 KB)          | real        | exact                    |
| `hnsw`       | `IDMap2,HNSW32`        | 4d + graph (≈ 2.4 KB)           | tombstones  | exact                    |
| `ivf_flat`   | `IVF{nlist},Flat`      | 4d + 8                          | real        | exact                    |
| `ivf_sqfp16` | `IVF{nlist},SQfp16`    | 2d + 8                          | real        | from the vector source   |
| `ivf_sq8`    | `IVF{nlist},SQ8`       | d + 8                           | real        | from the vector source   |
| `ivf_pq`     | `IVF{nlist},PQ{m}`     | m + 8, re-ranked from exact     | real        | from the vector source   |

The *vector source* is a function `ids -> exact vectors` (the catalog attaches its database:
`Catalog.vectors`). Quantised kinds read exact vectors from it for `reconstruct`, for PQ re-ranking
and for exact search among a small allowed set; without one, `reconstruct` decodes FAISS's codes
(approximate for SQ/PQ) and PQ scores stay approximate.

Filters are applied before top-k: a search with `allowed_ids` returns k results whenever k of the
allowed ids are in the index. Approximate kinds use FAISS's `IDSelector` inside the search and fall
back to exact search over the allowed vectors when the allowed set is small or the approximate
search came back short.

HNSW cannot delete from its graph: removed ids become tombstones (their id-map entry is set to -1,
so they persist in the file and every search skips them); `tombstones()` says how many, and the
catalog's background rebuild compacts them away.

On a machine with a GPU, `accelerate()` moves search there (see `storage.torch_search`).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faiss as _faiss
import numpy as np
import numpy.typing as npt

from indexer.types import FloatArray

faiss: Any = _faiss  # its SWIG bindings are only partly typed: treat them as dynamic

IdArray = npt.NDArray[np.int64]
VectorSource = Callable[[IdArray], FloatArray]

# Below this many allowed ids a filtered search on an approximate index is answered exactly.
EXACT_FILTER_MAX = 20_000
# A flat index answers a batch with one BLAS product while its score matrix stays under this many
# floats (128 MB); past it, FAISS's own blocked search.
FLAT_SCAN_MAX_SCORES = 32_000_000
# PQ candidates re-ranked with exact vectors: k × this, until tuning raises it (`FaissIndex.rerank_factor`).
PQ_RERANK_FACTOR = 10
# From this many lists on, coarse centroids come from two-level k-means (√nlist clusters, each split in
# proportion to its size): at 1M vectors and 4096 lists it trained in 5 s instead of 42 s for the same
# nprobe and recall@10 (0.967 vs 0.970); one flat k-means over 16 384 lists takes most of an hour here.
TWO_LEVEL_MIN_NLIST = 1024


class VectorIndex(Protocol):
    kind: str
    dim: int

    def add(self, ids: IdArray, vectors: FloatArray) -> None: ...

    def remove(self, ids: IdArray) -> int: ...

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        """Top-k by inner product, among `allowed_ids` when given: scores and ids [n_queries, k], -1 where none."""
        ...

    def reconstruct(self, ids: IdArray) -> FloatArray: ...

    def save(self, path: Path) -> None: ...

    def count(self) -> int: ...

    def ids(self) -> IdArray: ...


@dataclass(frozen=True)
class IndexSpec:
    """What to build: a kind and its structural parameters (search-time ones are tuned later)."""

    kind: str = "flat"
    nlist: int = 0  # IVF kinds: number of inverted lists
    pq_m: int = 0  # ivf_pq: bytes per vector (sub-quantizers of 8 bits)
    hnsw_m: int = 32  # hnsw: graph degree
    hnsw_quantizer: bool = False  # IVF kinds: HNSW coarse quantizer (for very large nlist)

    @property
    def factory(self) -> str:
        if self.kind == "flat":
            return "IDMap2,Flat"
        if self.kind == "hnsw":
            return f"IDMap2,HNSW{self.hnsw_m}"
        coarse = f"IVF{self.nlist}_HNSW32" if self.hnsw_quantizer else f"IVF{self.nlist}"
        codes = {"ivf_flat": "Flat", "ivf_sq8": "SQ8", "ivf_sqfp16": "SQfp16", "ivf_pq": f"PQ{self.pq_m}"}
        if self.kind not in codes:
            raise ValueError(f"unknown index type {self.kind!r}; known: {', '.join(INDEX_KINDS)}")
        return f"{coarse},{codes[self.kind]}"

    def bytes_per_vector(self, dim: int) -> float:
        """Estimated resident bytes per vector (codes, ids, id maps, graph links)."""
        return {
            "flat": 4 * dim + 8 + ID_HASH_BYTES,
            "hnsw": 4 * dim + 8 + ID_HASH_BYTES + 4 * 2 * self.hnsw_m * 1.05 + 12,
            "ivf_flat": 4 * dim + 8,
            "ivf_sqfp16": 2 * dim + 8,
            "ivf_sq8": dim + 8,
            "ivf_pq": self.pq_m + 8,
        }[self.kind]

    def fixed_bytes(self, dim: int) -> int:
        """Bytes independent of the row count (coarse centroids, PQ codebooks)."""
        if self.kind in ("flat", "hnsw"):
            return 0
        extra = 256 * dim * 4 if self.kind == "ivf_pq" else 0
        return self.nlist * dim * 4 * (2 if self.hnsw_quantizer else 1) + extra


# `IndexIDMap2`'s reverse map (std::unordered_map<int64, int64>): about this much per entry.
ID_HASH_BYTES = 40
INDEX_KINDS = ("flat", "hnsw", "ivf_flat", "ivf_sqfp16", "ivf_sq8", "ivf_pq")
EXACT_KINDS = ("flat",)


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
    """A FAISS index with our ids: `IndexIDMap2` over Flat/HNSW, or an IVF index storing ids itself.

    Thread-safe: every method holds the index's lock, so a search never sees a half-applied add and
    `replace_with` swaps a rebuilt index in atomically while readers keep being served.
    """

    def __init__(self, index: Any, kind: str | None = None, *, vector_source: VectorSource | None = None) -> None:
        self.index = index  # faiss ships no type stubs
        self.kind = kind or detect_kind(index)
        self.dim = int(index.d)
        self.vector_source = vector_source
        self._lock = threading.RLock()
        self._tombstones = self._count_tombstones()
        # Ids that a swap-time catch-up already added; an `add` racing the swap skips them once.
        self._added_by_swap: set[int] = set()
        # PQ: candidates re-ranked per result. Dense data needs more than the default (10M clustered
        # vectors: recall@10 stalled at 0.90 with 10× whatever the nprobe); `index_choice.tune` raises it.
        self.rerank_factor = PQ_RERANK_FACTOR
        self._accel: Any = None  # a GPU searcher (see `accelerate`)
        self._accel_mode: str | None = None
        self._accel_device: str | None = None
        self._accel_pending: str | None = None  # a device to `accelerate` on at the first search

    # --- description -------------------------------------------------------------------------------

    @property
    def ivf(self) -> Any:
        return faiss.extract_index_ivf(self.index) if self.kind.startswith("ivf") else None

    @property
    def hnsw(self) -> Any:
        return faiss.downcast_index(self.index.index).hnsw if self.kind == "hnsw" else None

    @property
    def exact(self) -> bool:
        return self.kind in EXACT_KINDS

    @property
    def exact_scores(self) -> bool:
        """Whether a search's scores are the exact inner products (full vectors stored, or PQ re-ranked
        from exact ones); SQ codes give close ones."""
        return self.kind in ("flat", "hnsw", "ivf_flat") or self.reranks

    @property
    def search_param(self) -> tuple[str, int] | None:
        """The tuned search-time knob: ("nprobe", n) for IVF, ("efSearch", n) for HNSW, None for flat."""
        if self.ivf is not None:
            return "nprobe", int(self.ivf.nprobe)
        if self.hnsw is not None:
            return "efSearch", int(self.hnsw.efSearch)
        return None

    def set_search_param(self, value: int) -> None:
        with self._lock:
            if self.ivf is not None:
                self.ivf.nprobe = int(max(1, min(value, self.ivf.nlist)))
            elif self.hnsw is not None:
                self.hnsw.efSearch = int(max(1, value))

    @property
    def description(self) -> str:
        """Factory-style name with the search knob, e.g. `IVF4096,SQ8 nprobe=24`."""
        if self.kind == "flat":
            return "IDMap2,Flat"
        if self.kind == "hnsw":
            return f"IDMap2,HNSW{self.hnsw.nb_neighbors(1)} efSearch={self.hnsw.efSearch}"
        ivf = self.ivf
        codes = {"ivf_flat": "Flat", "ivf_sq8": "SQ8", "ivf_sqfp16": "SQfp16"}.get(self.kind)
        if codes is None:
            codes = f"PQ{faiss.downcast_index(ivf).pq.M}" + (f" re-ranked×{self.rerank_factor}" if self.reranks else "")
        coarse = f"IVF{ivf.nlist}" + ("_HNSW" if self._hnsw_quantizer() is not None else "")
        return f"{coarse},{codes} nprobe={ivf.nprobe}"

    def memory_bytes(self) -> int:
        """Estimated resident size of the index (codes, ids, id maps, graph, centroids)."""
        with self._lock:
            n = int(self.index.ntotal)
            if self.kind == "flat":
                return n * (4 * self.dim + 8 + ID_HASH_BYTES)
            if self.kind == "hnsw":
                hnsw = self.hnsw
                links = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
                return int(n * (4 * self.dim + 8 + ID_HASH_BYTES) + links)
            ivf = self.ivf
            centroids = int(ivf.quantizer.ntotal) * self.dim * 4
            extra = 0
            if self.kind == "ivf_pq":
                extra = int(faiss.downcast_index(ivf).pq.centroids.size()) * 4
            return n * (int(ivf.code_size) + 8) + centroids + extra

    # --- building ----------------------------------------------------------------------------------

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: FloatArray, centroids: FloatArray | None = None) -> None:
        """Train an IVF kind on a sample (k-means for the lists, SQ ranges / PQ codebooks).

        `centroids` reuses already-trained coarse centroids (k-means is skipped); from
        `TWO_LEVEL_MIN_NLIST` lists on they come from `two_level_centroids`.
        """
        with self._lock:
            if self.ivf is None:
                return
            ivf = self.ivf
            ivf.cp.niter = 10  # 10 k-means iterations: within noise of 25 for search quality, 2.5× faster
            if self.kind == "ivf_pq":
                faiss.downcast_index(
                    ivf
                ).do_polysemous_training = False  # we never search by Hamming distance; it costs minutes
            sample = np.ascontiguousarray(sample, dtype=np.float32)
            if centroids is None and ivf.nlist >= TWO_LEVEL_MIN_NLIST and len(sample) >= ivf.nlist:
                centroids = two_level_centroids(sample, int(ivf.nlist))
            if centroids is not None:
                ivf.quantizer.reset()
                ivf.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
            self.index.train(sample)

    def centroids(self) -> FloatArray | None:
        ivf = self.ivf
        if ivf is None or ivf.quantizer.ntotal == 0:
            return None
        return np.asarray(ivf.quantizer.reconstruct_n(0, ivf.quantizer.ntotal), dtype=np.float32)

    # --- the protocol ------------------------------------------------------------------------------

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        with self._lock:
            if not self.index.is_trained:
                raise ValueError(f"{self.kind} index is not trained; call train() first")
            if self._added_by_swap:
                keep = np.array([int(i) not in self._added_by_swap for i in ids], dtype=bool)
                self._added_by_swap.difference_update(int(i) for i in ids)
                ids, vectors = ids[keep], vectors[keep]
                if len(ids) == 0:
                    return
            self.index.add_with_ids(vectors, ids)
            self._accel_stale()

    def remove(self, ids: IdArray) -> int:
        if len(ids) == 0:
            return 0
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            self._accel_stale()
            if self.kind != "hnsw":
                return int(self.index.remove_ids(ids))
            id_map = faiss.vector_to_array(self.index.id_map)
            hit = np.isin(id_map, ids) & (id_map >= 0)
            removed = int(hit.sum())
            if removed:
                id_map[hit] = -1
                faiss.copy_array_to_vector(id_map, self.index.id_map)
                self.index.construct_rev_map()
                self._tombstones += removed
            return removed

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, k)
        with self._lock, _threads_for(len(queries)):
            if self._accel_pending is not None:
                self.accelerate(self._accel_pending)
            if self.count() == 0 or (allowed_ids is not None and len(allowed_ids) == 0):
                return _empty(len(queries), k)
            if allowed_ids is not None:
                allowed_ids = np.unique(np.asarray(allowed_ids, dtype=np.int64))
                return self._filtered_search(queries, k, allowed_ids)
            accel = self._accelerator()
            if accel is not None:
                return accel.search(queries, k)
            if self.kind == "flat" and (len(queries) <= 4 or len(queries) * self.count() <= FLAT_SCAN_MAX_SCORES):
                return self._flat_scan(queries, k)
            return self._search(queries, k)

    def _flat_scan(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """Exact search for a few queries: one BLAS product over FAISS's own storage (a view, no copy)
        and a partial sort. FAISS scans for a single query on one thread; BLAS uses every core
        (100 000 × 512-d: 5.0 ms against 7.5 ms, benchmarks/bench_search.py). A batch (an example's
        windows) too, while its score matrix stays small: 32 queries × 40 000 × 512-d took a third of
        FAISS's own batched search's time (benchmarks/bench_example.py, BENCHMARKS.md)."""
        flat = faiss.downcast_index(self.index.index)
        n = int(flat.ntotal)
        stored = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        scores = queries @ stored.T
        k_found = min(k, n)
        top = np.argpartition(-scores, k_found - 1, axis=1)[:, :k_found]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ids = faiss.rev_swig_ptr(self.index.id_map.data(), n)
        return _pad(np.take_along_axis(top_scores, order, axis=1), ids[np.take_along_axis(top, order, axis=1)], k)

    def reconstruct(self, ids: IdArray) -> FloatArray:
        """Stored vectors by id, in order (unknown ids raise). Exact for flat/hnsw or with a vector source."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.vector_source is not None and self.kind not in ("flat", "hnsw"):
            return np.asarray(self.vector_source(ids), dtype=np.float32)
        with self._lock:
            if self.kind in ("flat", "hnsw"):
                if len(ids) and np.any(ids < 0):
                    raise KeyError("negative id")
                return np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)
            # IVF without a source: decode the codes through a temporary hash direct map.
            ivf = self.ivf
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            try:
                return np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)
            finally:
                ivf.set_direct_map_type(faiss.DirectMap.NoMap)

    def save(self, path: Path, trailer: bytes = b"") -> None:
        """Write the index atomically; `trailer` follows FAISS's bytes (see `storage.index_file`)."""
        with self._lock:
            atomic_write_index(self.index, path, trailer)

    def count(self) -> int:
        return int(self.index.ntotal) - self._tombstones

    def tombstones(self) -> int:
        return self._tombstones

    def ids(self) -> IdArray:
        with self._lock:
            if self.kind in ("flat", "hnsw"):
                ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
                return ids[ids >= 0] if self._tombstones else ids
            invlists = self.ivf.invlists
            parts = []
            for lst in range(invlists.nlist):
                size = invlists.list_size(lst)
                if size:
                    parts.append(np.array(faiss.rev_swig_ptr(invlists.get_ids(lst), size), dtype=np.int64))
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    # --- swapping in a rebuilt index ----------------------------------------------------------------

    def replace_with(self, other: FaissIndex, catch_up: Callable[[FaissIndex], None] | None = None) -> None:
        """Take over `other`'s structure in one step, under the lock (readers wait, never see a gap).

        `catch_up(other)` runs first, under the same lock: it brings `other` up to date with changes
        made since it was built (the catalog passes a reconcile against its database). Ids that
        `other` holds and this index did not yet hold may still be `add`ed by a writer that committed
        them before the swap: those adds are skipped once.
        """
        with self._lock:
            if catch_up is not None:
                catch_up(other)
            pending = np.setdiff1d(other.ids(), self.ids())
            self.index = other.index
            self.kind = other.kind
            self.dim = other.dim
            self.rerank_factor = other.rerank_factor
            self._tombstones = other._tombstones
            self._added_by_swap = {int(i) for i in pending}
            self._accel_stale()

    # --- internals ---------------------------------------------------------------------------------

    def _count_tombstones(self) -> int:
        if self.kind != "hnsw":
            return 0
        return int((faiss.vector_to_array(self.index.id_map) < 0).sum())

    def _hnsw_quantizer(self) -> Any:
        quantizer = faiss.downcast_index(self.ivf.quantizer) if self.ivf is not None else None
        return quantizer if isinstance(quantizer, faiss.IndexHNSW) else None

    def _params(self, selector: Any = None, *, nprobe: int | None = None) -> Any:
        if self.ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = int(nprobe or self.ivf.nprobe)
            if (quantizer := self._hnsw_quantizer()) is not None:
                # An HNSW graph searched with efSearch < k returns fewer than k lists (ef 16 gave 827 of
                # 1024): the coarse search must look at least as wide as the lists it is asked for.
                coarse = faiss.SearchParametersHNSW()
                coarse.efSearch = max(int(quantizer.hnsw.efSearch), params.nprobe)
                params.quantizer_params = coarse
                params._keep_coarse = coarse  # SWIG holds a raw pointer: keep the object alive with params
        elif self.hnsw is not None:
            params = faiss.SearchParametersHNSW()
            params.efSearch = int(self.hnsw.efSearch)
        else:
            params = faiss.SearchParameters()
        if self._tombstones:
            dead = faiss.IDSelectorBatch(np.array([-1], dtype=np.int64))
            selector = faiss.IDSelectorNot(dead) if selector is None else selector
            params._keep = dead  # keep the wrapped selector alive as long as the params
        if selector is not None:
            params.sel = selector
        return params

    def _search(self, queries: FloatArray, k: int, selector: Any = None) -> tuple[FloatArray, IdArray]:
        fetch = k * self.rerank_factor if self.reranks else k
        params = self._params(selector)
        scores, ids = self.index.search(queries, fetch, params=params)
        nprobe = int(self.ivf.nprobe) if self.ivf is not None else 0
        while self.ivf is not None and nprobe < self.ivf.nlist and np.any(ids[:, : min(fetch, self.count())] < 0):
            # The probed lists held fewer than k (allowed) vectors: probe 4× more lists, up to all of them.
            nprobe = min(int(self.ivf.nlist), nprobe * 4)
            scores, ids = self.index.search(queries, fetch, params=self._params(selector, nprobe=nprobe))
        if self.reranks:
            scores, ids = self._rerank(queries, ids, k)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    @property
    def reranks(self) -> bool:
        """PQ scores are replaced by exact ones read from the vector source (see `rerank_factor`)."""
        return self.kind == "ivf_pq" and self.vector_source is not None

    def _rerank(self, queries: FloatArray, candidates: IdArray, k: int) -> tuple[FloatArray, IdArray]:
        """Exact inner products for the candidates (from the vector source), best k kept."""
        valid = candidates >= 0
        unique = np.unique(candidates[valid])
        source = self.vector_source
        exact = np.asarray(source(unique), dtype=np.float32) if source is not None and len(unique) else None
        scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
        if exact is not None:
            rows = np.searchsorted(unique, candidates[valid])
            qi = np.nonzero(valid)[0]
            scores[valid] = np.einsum("ij,ij->i", queries[qi], exact[rows])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(scores, order, axis=1)
        top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, axis=1), -1)
        return _pad(top_scores, top_ids, k)

    def _filtered_search(self, queries: FloatArray, k: int, allowed: IdArray) -> tuple[FloatArray, IdArray]:
        can_read_exact = self.kind in ("flat", "hnsw") or self.vector_source is not None
        if self.exact:
            accel = self._accelerator() if self._accel_mode == "torch" else None
            if accel is not None:
                return accel.search(queries, k, allowed)
            return self._search(queries, k, faiss.IDSelectorBatch(allowed))
        if can_read_exact and len(allowed) <= EXACT_FILTER_MAX:
            return self._exact_among(queries, k, allowed)
        scores, ids = self._search(queries, k, faiss.IDSelectorBatch(allowed))
        short = (ids < 0).sum(axis=1) > max(0, k - len(allowed))
        if np.any(short) and can_read_exact:
            # The approximate search missed allowed vectors: answer exactly among all of them.
            return self._exact_among(queries, k, allowed)
        return scores, ids

    def _exact_among(self, queries: FloatArray, k: int, allowed: IdArray) -> tuple[FloatArray, IdArray]:
        # Only ids the index holds (a writer may have committed rows it has not added yet).
        present = np.intersect1d(allowed, self.ids(), assume_unique=True)
        vectors = self.reconstruct(present) if len(present) else np.zeros((0, self.dim), np.float32)
        scores = queries @ vectors.T
        kk = min(k, len(present))
        if kk == 0:
            return _empty(len(queries), k)
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        return _pad(np.take_along_axis(part_scores, order, axis=1), present[top], k)

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
        from storage import torch_search

        with self._lock:
            self._accel_pending = None
            mode = torch_search.choose_backend(device)
            if mode == "faiss-gpu" and self.kind == "hnsw":
                mode = "torch"  # FAISS has no GPU HNSW
            if mode == "torch" and not (self.exact or self.kind == "hnsw" or self.vector_source is not None):
                mode = None  # quantised codes only: no exact vectors to mirror
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

    def _accel_stale(self) -> None:
        self._accel = None

    def _accelerator(self) -> Any:
        if self._accel_mode is None:
            return None
        if self._accel is None:
            from storage import torch_search

            if self._accel_mode == "faiss-gpu":
                self._accel = torch_search.FaissGpuSearcher(self)
            else:
                ids = self.ids()
                self._accel = torch_search.TorchExactSearch(self.reconstruct(ids), ids, device=self._accel_device)
        return self._accel


def _empty(n: int, k: int) -> tuple[FloatArray, IdArray]:
    return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, np.int64)


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[FloatArray, IdArray]:
    if scores.shape[1] >= k:
        return scores[:, :k].astype(np.float32), ids[:, :k].astype(np.int64)
    out_s, out_i = _empty(len(scores), k)
    out_s[:, : scores.shape[1]] = scores
    out_i[:, : ids.shape[1]] = ids
    return out_s, out_i


def detect_kind(index: Any) -> str:
    """The kind of a FAISS index read from disk (the file describes itself)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        raise ValueError(f"unsupported index inside IndexIDMap2: {type(inner).__name__}")
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf_flat"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        qtype = index.sq.qtype
        if qtype == faiss.ScalarQuantizer.QT_8bit:
            return "ivf_sq8"
        if qtype == faiss.ScalarQuantizer.QT_fp16:
            return "ivf_sqfp16"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf_pq"
    raise ValueError(f"unsupported FAISS index {type(index).__name__}")


def _build(dim: int, spec: IndexSpec) -> FaissIndex:
    index = faiss.index_factory(dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    if spec.kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = 64
    return FaissIndex(index, spec.kind)


def _flat(dim: int) -> FaissIndex:
    return _build(dim, IndexSpec("flat"))


# Backends by name, each `(dim, spec) -> FaissIndex` (untrained for IVF kinds).
INDEX_FACTORIES: dict[str, Callable[[int, IndexSpec], FaissIndex]] = {kind: _build for kind in INDEX_KINDS}


def two_level_centroids(sample: FloatArray, nlist: int, niter: int = 10) -> FloatArray:
    """`nlist` spherical k-means centroids of `sample` in two levels, as FAISS's `two_level_clustering`.

    √nlist clusters first, then each is split into lists in proportion to its size (largest remainder,
    never more lists than points), so a k-means never sees more than its share of the sample. Unlike the
    FAISS helper, a first-level cluster too small for a list of its own is simply not split (no k = 0).
    """
    dim = sample.shape[1]
    first = faiss.Kmeans(dim, max(1, math.isqrt(nlist)), niter=niter, spherical=True, max_points_per_centroid=2000)
    first.train(sample)
    assign = first.index.search(sample, 1)[1].ravel()
    sizes = np.bincount(assign, minlength=first.k)
    share = sizes * (nlist / len(sample))
    lists = np.minimum(np.floor(share).astype(np.int64), sizes)
    while (missing := nlist - int(lists.sum())) > 0:
        room = np.where(lists < sizes, share - lists, -np.inf)
        best = np.argsort(-room)[:missing]
        best = best[np.isfinite(room[best])]
        if len(best) == 0:
            raise ValueError(f"{nlist} lists need at least {nlist} training vectors, got {len(sample)}")
        lists[best] += 1
    parts = []
    for cluster in np.nonzero(lists)[0]:
        members = sample[assign == cluster]
        if lists[cluster] >= len(members):
            parts.append(members)
            continue
        km = faiss.Kmeans(dim, int(lists[cluster]), niter=niter, spherical=True)
        km.train(members)
        parts.append(km.centroids)
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


def create_index(dim: int, kind: str | IndexSpec = "flat") -> FaissIndex:
    spec = kind if isinstance(kind, IndexSpec) else IndexSpec(kind)
    if spec.kind not in INDEX_FACTORIES:
        raise ValueError(f"unknown index type {spec.kind!r}; known: {', '.join(INDEX_FACTORIES)}")
    if spec.kind.startswith("ivf") and spec.nlist < 1:
        raise ValueError(f"{spec.kind} needs nlist >= 1 (see storage.index_choice.choose_index)")
    if spec.kind == "ivf_pq" and (spec.pq_m < 1 or dim % spec.pq_m):
        raise ValueError(f"ivf_pq needs pq_m dividing the dimension {dim}, got {spec.pq_m}")
    return INDEX_FACTORIES[spec.kind](dim, spec)


def load_index(path: Path, kind: str | None = None, *, vector_source: VectorSource | None = None) -> FaissIndex:
    """Read an index file; its kind is read from the file itself (`kind`, when given, must match)."""
    index = FaissIndex(faiss.read_index(str(path)), vector_source=vector_source)
    if kind is not None and kind != index.kind:
        raise ValueError(f"{path} holds a {index.kind} index, not {kind}")
    return index


def atomic_write_index(index: Any, path: Path, trailer: bytes = b"") -> None:
    """Write to a temporary file in the same directory (`trailer` after the index), fsync it, then
    rename over the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        faiss.write_index(index, tmp)
        with open(tmp, "ab") as f:
            f.write(trailer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
