"""Kinds by name: build one from an `IndexSpec`, recognise one in a file, estimate one's size."""

from __future__ import annotations

from pathlib import Path

from storage.vectors.base import FaissKind, IndexSpec, VectorSource, faiss
from storage.vectors.flat import FlatIndex
from storage.vectors.hnsw import HnswIndex
from storage.vectors.ivf import IvfFlatIndex, IvfSq8Index, IvfSqfp16Index
from storage.vectors.pq import IvfPqIndex
from storage.vectors.serving import FaissIndex

KINDS: dict[str, type[FaissKind]] = {
    cls.kind: cls for cls in (FlatIndex, HnswIndex, IvfFlatIndex, IvfSqfp16Index, IvfSq8Index, IvfPqIndex)
}
INDEX_KINDS = tuple(KINDS)


def kind_class(kind: str) -> type[FaissKind]:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown index type {kind!r}; known: {', '.join(INDEX_KINDS)}") from None


def factory_string(spec: IndexSpec) -> str:
    """FAISS's `index_factory` description of `spec`, e.g. `IVF4096,SQ8`."""
    return kind_class(spec.kind).factory_string(spec)


def estimated_bytes(spec: IndexSpec, dim: int, n_vectors: int) -> float:
    """Estimated resident size of `n_vectors` in an index built from `spec`."""
    cls = kind_class(spec.kind)
    return n_vectors * cls.bytes_per_vector(spec, dim) + cls.fixed_bytes(spec, dim)


def create_index(dim: int, kind: str | IndexSpec = "flat") -> FaissIndex:
    """An empty index (untrained for IVF kinds: `train` before `add`)."""
    spec = kind if isinstance(kind, IndexSpec) else IndexSpec(kind)
    return FaissIndex(kind_class(spec.kind).create(dim, spec))


def load_index(path: Path, kind: str | None = None, *, vector_source: VectorSource | None = None) -> FaissIndex:
    """Read an index file; its kind is read from the file itself (`kind`, when given, must match)."""
    index = faiss.read_index(str(path))  # downcast already, and the owner of the C++ object: keep this one
    found = next((cls for cls in KINDS.values() if cls.recognises(index)), None)
    if found is None:
        raise ValueError(f"{path} holds an unsupported FAISS index ({type(index).__name__})")
    if kind is not None and kind != found.kind:
        raise ValueError(f"{path} holds a {found.kind} index, not {kind}")
    return FaissIndex(found(index, vector_source))
