"""What every vector index kind promises (`VectorIndex`), what they share (`FaissKind`), and the helpers
the kinds and the serving index use alike: result padding, exact top-k, the atomic index write.

Nothing here imports another module of the package: kinds, searchers and the serving index import this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import faiss as _faiss
import numpy as np
import numpy.typing as npt

from indexer.types import FloatArray
from storage.atomic import atomic_path

faiss: Any = _faiss  # its SWIG bindings are only partly typed: treat them as dynamic

IdArray = npt.NDArray[np.int64]
VectorSource = Callable[[IdArray], FloatArray]

# `IndexIDMap2`'s reverse map (std::unordered_map<int64, int64>): about this much per entry.
ID_HASH_BYTES = 40


@dataclass(frozen=True)
class IndexSpec:
    """What to build: a kind and its structural parameters (search-time ones are tuned later)."""

    kind: str = "flat"
    nlist: int = 0  # IVF kinds: number of inverted lists
    pq_m: int = 0  # ivf_pq: bytes per vector (sub-quantizers of 8 bits)
    hnsw_m: int = 32  # hnsw: graph degree
    hnsw_quantizer: bool = False  # IVF kinds: HNSW coarse quantizer (for very large nlist)


class Searcher(Protocol):
    """Top-k by inner product, among `allowed_ids` when given: scores and ids [n_queries, k], -1 where none."""

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]: ...


class VectorIndex(Searcher, Protocol):
    """One index kind: a FAISS structure holding our ids (the catalog's segment ids), compared by inner product.

    Not thread-safe: `storage.vectors.serving.FaissIndex` serialises calls and adds what every kind shares
    (filters answered exactly when the allowed set is small, GPU mirrors, swapping in a rebuilt index).
    """

    index: Any  # the FAISS object: what is saved, what a GPU copy is made from
    dim: int
    vector_source: VectorSource | None  # ids -> exact vectors (the catalog's database), when attached
    rerank_factor: int  # PQ: candidates re-ranked per result; ignored by the other kinds

    @property
    def kind(self) -> str: ...

    @property
    def exact(self) -> bool:
        """Every search is exact (no tuning, no recall to measure)."""
        ...

    @property
    def stores_vectors(self) -> bool:
        """`reconstruct` returns the exact stored vectors without a vector source."""
        ...

    @property
    def exact_scores(self) -> bool:
        """A hit's score is its exact inner product (full vectors compared), whether or not the hits are the
        exact top k; SQ and PQ codes give close scores."""
        ...

    @property
    def reranks(self) -> bool:
        """Scores are replaced by exact ones from the vector source."""
        ...

    @property
    def nlist(self) -> int:
        """Inverted lists (0 for kinds without any): the upper bound of `nprobe`."""
        ...

    @property
    def search_param(self) -> tuple[str, int] | None:
        """The tuned search-time knob: ("nprobe", n) for IVF, ("efSearch", n) for HNSW, None for flat."""
        ...

    def set_search_param(self, value: int) -> None: ...

    @property
    def description(self) -> str:
        """Factory-style name with the search knob, e.g. `IVF4096,SQ8 nprobe=24`."""
        ...

    def memory_bytes(self) -> int:
        """Estimated resident size (codes, ids, id maps, graph, centroids)."""
        ...

    @property
    def is_trained(self) -> bool: ...

    def train(self, sample: FloatArray, centroids: FloatArray | None = None) -> None: ...

    def centroids(self) -> FloatArray | None: ...

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        """Store vectors under ids (validated, trained, contiguous: the serving index checks)."""
        ...

    def remove(self, ids: IdArray) -> int:
        """Remove ids; returns how many were held."""
        ...

    def reconstruct(self, ids: IdArray) -> FloatArray:
        """Stored vectors by id, in order; an id not held raises."""
        ...

    def count(self) -> int: ...

    def tombstones(self) -> int:
        """Removed ids still taking room until a rebuild (HNSW cannot delete from its graph)."""
        ...

    def ids(self) -> IdArray: ...

    @property
    def on_faiss_gpu(self) -> bool:
        """FAISS has a GPU version of this kind (`gpu_searcher`)."""
        ...

    def gpu_searcher(self) -> Searcher:
        """A copy of the index on the GPU with FAISS (`storage.vectors.faiss_gpu`)."""
        ...


class FaissKind(ABC):
    """Defaults the kinds share: a FAISS index that takes ids in `add_with_ids`, exact only when it says so."""

    kind: ClassVar[str]
    exact: ClassVar[bool] = False
    stores_vectors: ClassVar[bool] = False
    exact_scores: ClassVar[bool] = False
    on_faiss_gpu: ClassVar[bool] = False

    def __init__(self, index: Any, vector_source: VectorSource | None = None) -> None:
        self.index = index  # faiss ships no type stubs
        self.dim = int(index.d)
        self.vector_source = vector_source
        self.rerank_factor = 0

    @classmethod
    @abstractmethod
    def factory_string(cls, spec: IndexSpec) -> str:
        """FAISS's `index_factory` description of `spec`."""

    @classmethod
    @abstractmethod
    def bytes_per_vector(cls, spec: IndexSpec, dim: int) -> float:
        """Estimated resident bytes per vector (codes, ids, id maps, graph links)."""

    @classmethod
    def fixed_bytes(cls, spec: IndexSpec, dim: int) -> int:
        """Bytes independent of the row count (coarse centroids, PQ codebooks)."""
        return 0

    @classmethod
    def check(cls, spec: IndexSpec, dim: int) -> None:
        """Raise ValueError when `spec` cannot be built at `dim`."""
        return None

    @classmethod
    @abstractmethod
    def recognises(cls, index: Any) -> bool:
        """Whether a FAISS index read from a file (downcast) is of this kind."""

    @classmethod
    def create(cls, dim: int, spec: IndexSpec) -> Self:
        """An empty index of this kind (untrained for IVF kinds)."""
        cls.check(spec, dim)
        return cls(faiss.index_factory(dim, cls.factory_string(spec), faiss.METRIC_INNER_PRODUCT))

    @property
    def reranks(self) -> bool:
        return False

    @property
    def nlist(self) -> int:
        return 0

    @property
    def search_param(self) -> tuple[str, int] | None:
        return None

    def set_search_param(self, value: int) -> None:
        """Nothing to tune by default."""
        return None

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: FloatArray, centroids: FloatArray | None = None) -> None:
        """Nothing to train by default."""
        return None

    def centroids(self) -> FloatArray | None:
        return None

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: IdArray) -> int:
        return int(self.index.remove_ids(ids))

    def count(self) -> int:
        return int(self.index.ntotal)

    def tombstones(self) -> int:
        return 0

    def gpu_searcher(self) -> Searcher:
        raise ValueError(f"FAISS has no GPU {self.kind} index")

    @property
    @abstractmethod
    def description(self) -> str: ...

    @abstractmethod
    def memory_bytes(self) -> int: ...

    @abstractmethod
    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]: ...

    @abstractmethod
    def reconstruct(self, ids: IdArray) -> FloatArray: ...

    @abstractmethod
    def ids(self) -> IdArray: ...


def empty_result(n: int, k: int) -> tuple[FloatArray, IdArray]:
    return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, np.int64)


def pad_result(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[FloatArray, IdArray]:
    """Exactly k columns: cut, or filled with (-inf, -1)."""
    if scores.shape[1] >= k:
        return scores[:, :k].astype(np.float32), ids[:, :k].astype(np.int64)
    out_s, out_i = empty_result(len(scores), k)
    out_s[:, : scores.shape[1]] = scores
    out_i[:, : ids.shape[1]] = ids
    return out_s, out_i


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best min(k, columns) scores of each row, best first, and their columns (a partial sort)."""
    kk = min(k, scores.shape[1])
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part_scores, order, axis=1), np.take_along_axis(part, order, axis=1)


def reconstruct_by_id(index: Any, ids: IdArray) -> FloatArray:
    """Stored vectors of an `IndexIDMap2` by id (its reverse map raises for an id it does not hold)."""
    if np.any(ids < 0):
        raise KeyError("negative id")  # -1 marks HNSW's tombstones in the id map: never a stored vector
    return np.asarray(index.reconstruct_batch(ids), dtype=np.float32)


def atomic_write_index(index: Any, path: Path, trailer: bytes = b"") -> None:
    """Write a FAISS index (`trailer` after its bytes, see `storage.index_file`) so that a reader sees the
    previous file or the new one, never a partial one (`storage.atomic.atomic_path`)."""
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
        with open(tmp, "ab") as f:
            f.write(trailer)
