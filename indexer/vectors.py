"""Vector indexes behind one small interface (add, remove, search, save, load, count, ids).

Vectors are L2-normalised and compared by inner product (= cosine). Ids are the catalog's segment ids,
so every backend keeps an id map. The index file is written atomically: a reader that opens it at
any moment sees either the previous or the new complete index, never a partial one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
import numpy.typing as npt

from indexer.types import FloatArray

IdArray = npt.NDArray[np.int64]


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


class FaissIndex:
    """A FAISS index wrapped in `IndexIDMap2` (ids are ours, vectors can be reconstructed)."""

    def __init__(self, index: Any, kind: str) -> None:
        self.index = index  # a faiss.IndexIDMap2 (faiss ships no type stubs)
        self.kind = kind
        self.dim = int(index.d)

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: IdArray) -> int:
        if len(ids) == 0:
            return 0
        return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, k)
        if self.count() == 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, np.int64))
        if allowed_ids is None:
            scores, ids = self.index.search(queries, k)
        else:
            # Filtering inside the search, not after it: k results come back whenever k are allowed.
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            params = faiss.SearchParameters()
            params.sel = selector
            scores, ids = self.index.search(queries, k, params=params)
        return scores, ids

    def reconstruct(self, ids: IdArray) -> FloatArray:
        """Stored vectors by id, in order (unknown ids raise)."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)), dtype=np.float32)

    def save(self, path: Path) -> None:
        atomic_write_index(self.index, path)

    def count(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> IdArray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)


def _flat(dim: int) -> FaissIndex:
    return FaissIndex(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat")


# Backends by name; approximate ones (IVF, HNSW, PQ) and the GPU path register here as they come.
INDEX_FACTORIES: dict[str, Callable[[int], FaissIndex]] = {"flat": _flat}


def create_index(dim: int, kind: str = "flat") -> FaissIndex:
    try:
        return INDEX_FACTORIES[kind](dim)
    except KeyError:
        raise ValueError(f"unknown index type {kind!r}; known: {', '.join(INDEX_FACTORIES)}") from None


def load_index(path: Path, kind: str = "flat") -> FaissIndex:
    return FaissIndex(faiss.read_index(str(path)), kind)


def atomic_write_index(index: faiss.Index, path: Path) -> None:
    """Write to a temporary file in the same directory, fsync it, then rename over the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        faiss.write_index(index, tmp)
        with open(tmp, "rb+") as f:
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
