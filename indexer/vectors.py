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

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """Top-k by inner product: scores and ids of shape [n_queries, k]; missing slots have id -1."""
        ...

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

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, k)
        if self.count() == 0:
            return (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, np.int64))
        scores, ids = self.index.search(queries, k)
        return scores, ids

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
