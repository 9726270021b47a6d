"""Inverted-file kinds: `IVF{nlist}[_HNSW32],{codes}`, each list storing our ids beside the codes.

| kind         | codes    | bytes per vector (d = 512) | `reconstruct`                        |
|--------------|----------|----------------------------|--------------------------------------|
| `ivf_flat`   | `Flat`   | 4d + 8                     | exact                                |
| `ivf_sqfp16` | `SQfp16` | 2d + 8                     | from the vector source, else decoded |
| `ivf_sq8`    | `SQ8`    | d + 8                      | from the vector source, else decoded |

(`ivf_pq`, re-ranked from exact vectors, is `storage.vectors.pq`.) Removal is real. Coarse centroids take
nlist × 4d bytes (twice that with the HNSW coarse quantizer used for very large nlist).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np

from indexer.types import FloatArray
from storage.vectors.base import FaissKind, IdArray, IndexSpec, Searcher, VectorSource, faiss
from storage.vectors.faiss_gpu import FaissGpuSearcher

# From this many lists on, coarse centroids come from two-level k-means (√nlist clusters, each split in
# proportion to its size): at 1M vectors and 4096 lists it trained in 5 s instead of 42 s for the same
# nprobe and recall@10 (0.967 vs 0.970); one flat k-means over 16 384 lists takes most of an hour here.
TWO_LEVEL_MIN_NLIST = 1024


class IvfIndex(FaissKind):
    """What the IVF kinds share; a subclass names its codes."""

    codes: ClassVar[str]  # the factory string's code part
    on_faiss_gpu = True

    def __init__(self, index: Any, vector_source: VectorSource | None = None) -> None:
        super().__init__(index, vector_source)
        self.ivf = faiss.extract_index_ivf(index)
        quantizer = faiss.downcast_index(self.ivf.quantizer)
        self._hnsw_quantizer = quantizer if isinstance(quantizer, faiss.IndexHNSW) else None

    @classmethod
    def codes_of(cls, spec: IndexSpec) -> str:
        return cls.codes

    @classmethod
    @abstractmethod
    def code_bytes(cls, spec: IndexSpec, dim: int) -> int: ...

    @classmethod
    def factory_string(cls, spec: IndexSpec) -> str:
        coarse = f"IVF{spec.nlist}_HNSW32" if spec.hnsw_quantizer else f"IVF{spec.nlist}"
        return f"{coarse},{cls.codes_of(spec)}"

    @classmethod
    def bytes_per_vector(cls, spec: IndexSpec, dim: int) -> float:
        return cls.code_bytes(spec, dim) + 8

    @classmethod
    def fixed_bytes(cls, spec: IndexSpec, dim: int) -> int:
        return spec.nlist * dim * 4 * (2 if spec.hnsw_quantizer else 1)

    @classmethod
    def check(cls, spec: IndexSpec, dim: int) -> None:
        if spec.nlist < 1:
            raise ValueError(f"{cls.kind} needs nlist >= 1 (see storage.index_choice.choose_index)")

    @property
    def nlist(self) -> int:
        return int(self.ivf.nlist)

    @property
    def search_param(self) -> tuple[str, int]:
        return "nprobe", int(self.ivf.nprobe)

    def set_search_param(self, value: int) -> None:
        self.ivf.nprobe = int(max(1, min(value, self.ivf.nlist)))

    @property
    def description(self) -> str:
        coarse = f"IVF{self.ivf.nlist}" + ("_HNSW" if self._hnsw_quantizer is not None else "")
        return f"{coarse},{self._codes_description()} nprobe={self.ivf.nprobe}"

    def _codes_description(self) -> str:
        return self.codes

    def memory_bytes(self) -> int:
        centroids = int(self.ivf.quantizer.ntotal) * self.dim * 4
        return self.count() * (int(self.ivf.code_size) + 8) + centroids

    def train(self, sample: FloatArray, centroids: FloatArray | None = None) -> None:
        """k-means for the lists, then the codes (SQ ranges, PQ codebooks).

        `centroids` reuses already-trained coarse centroids (k-means is skipped); from
        `TWO_LEVEL_MIN_NLIST` lists on they come from `two_level_centroids`.
        """
        self.ivf.cp.niter = 10  # 10 k-means iterations: within noise of 25 for search quality, 2.5× faster
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if centroids is None and self.nlist >= TWO_LEVEL_MIN_NLIST and len(sample) >= self.nlist:
            centroids = two_level_centroids(sample, self.nlist)
        if centroids is not None:
            self.ivf.quantizer.reset()
            self.ivf.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        self.index.train(sample)

    def centroids(self) -> FloatArray | None:
        quantizer = self.ivf.quantizer
        if quantizer.ntotal == 0:
            return None
        return np.asarray(quantizer.reconstruct_n(0, quantizer.ntotal), dtype=np.float32)

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        selector = faiss.IDSelectorBatch(allowed_ids) if allowed_ids is not None else None
        nprobe = int(self.ivf.nprobe)
        scores, ids = self.index.search(queries, k, params=self._params(nprobe, selector))
        while nprobe < self.nlist and np.any(ids[:, : min(k, self.count())] < 0):
            # The probed lists held fewer than k (allowed) vectors: probe 4× more lists, up to all of them.
            nprobe = min(self.nlist, nprobe * 4)
            scores, ids = self.index.search(queries, k, params=self._params(nprobe, selector))
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    def _params(self, nprobe: int, selector: Any = None) -> Any:
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        if self._hnsw_quantizer is not None:
            # An HNSW graph searched with efSearch < k returns fewer than k lists (ef 16 gave 827 of
            # 1024): the coarse search must look at least as wide as the lists it is asked for.
            coarse = faiss.SearchParametersHNSW()
            coarse.efSearch = max(int(self._hnsw_quantizer.hnsw.efSearch), nprobe)
            params.quantizer_params = coarse
            params._keep_coarse = coarse  # SWIG holds a raw pointer: keep the object alive with params
        if selector is not None:
            params.sel = selector
        return params

    def reconstruct(self, ids: IdArray) -> FloatArray:
        if self.vector_source is not None:
            return np.asarray(self.vector_source(ids), dtype=np.float32)
        # No source: decode the codes (approximate but for IVF,Flat) through a temporary hash direct map.
        self.ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        try:
            return np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)
        finally:
            self.ivf.set_direct_map_type(faiss.DirectMap.NoMap)

    def ids(self) -> IdArray:
        invlists = self.ivf.invlists
        parts = []
        for lst in range(invlists.nlist):
            size = invlists.list_size(lst)
            if size:
                parts.append(np.array(faiss.rev_swig_ptr(invlists.get_ids(lst), size), dtype=np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def gpu_searcher(self) -> Searcher:
        return FaissGpuSearcher(self.index)  # whole: its lists store our ids


class IvfFlatIndex(IvfIndex):
    kind = "ivf_flat"
    codes = "Flat"
    exact_scores = True

    @classmethod
    def code_bytes(cls, spec: IndexSpec, dim: int) -> int:
        return 4 * dim

    @classmethod
    def recognises(cls, index: Any) -> bool:
        return isinstance(index, faiss.IndexIVFFlat)


class _IvfScalarQuantizer(IvfIndex):
    qtype: ClassVar[str]  # `faiss.ScalarQuantizer`'s QT_* name
    bytes_per_dim: ClassVar[int]

    @classmethod
    def recognises(cls, index: Any) -> bool:
        return isinstance(index, faiss.IndexIVFScalarQuantizer) and index.sq.qtype == getattr(
            faiss.ScalarQuantizer, cls.qtype
        )

    @classmethod
    def code_bytes(cls, spec: IndexSpec, dim: int) -> int:
        return cls.bytes_per_dim * dim


class IvfSqfp16Index(_IvfScalarQuantizer):
    kind = "ivf_sqfp16"
    codes = "SQfp16"
    qtype = "QT_fp16"
    bytes_per_dim = 2


class IvfSq8Index(_IvfScalarQuantizer):
    kind = "ivf_sq8"
    codes = "SQ8"
    qtype = "QT_8bit"
    bytes_per_dim = 1


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
