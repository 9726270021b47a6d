"""Vector indexes: one class per kind behind one protocol (`VectorIndex`), served through `FaissIndex`.

Vectors are L2-normalised and compared by inner product (= cosine). Ids are the catalog's segment ids,
so every kind keeps an id map. The index file is FAISS's own, written atomically (a reader that opens it at
any moment sees either the previous or the new complete index), followed by the catalog's trailer
(`storage.index_file`); `load_index` tells the kind from the file.

Kinds (FAISS factory strings in brackets; `storage.index_choice` picks one from the size and a memory
budget):

| kind         | module | structure             | bytes per vector (d = 512)  | removal    | `reconstruct`      |
|--------------|--------|-----------------------|-----------------------------|------------|--------------------|
| `flat`       | flat   | `IDMap2,Flat` (exact) | 4d + id map (≈ 2.1 KB)      | real       | exact              |
| `hnsw`       | hnsw   | `IDMap2,HNSW32`       | 4d + graph (≈ 2.4 KB)       | tombstones | exact              |
| `ivf_flat`   | ivf    | `IVF{nlist},Flat`     | 4d + 8                      | real       | exact              |
| `ivf_sqfp16` | ivf    | `IVF{nlist},SQfp16`   | 2d + 8                      | real       | from vector source |
| `ivf_sq8`    | ivf    | `IVF{nlist},SQ8`      | d + 8                       | real       | from vector source |
| `ivf_pq`     | pq     | `IVF{nlist},PQ{m}`    | m + 8, re-ranked from exact | real       | from vector source |

The *vector source* is a function `ids -> exact vectors` (the catalog attaches its database:
`Catalog.vectors`). Quantised kinds read exact vectors from it for `reconstruct`, for PQ re-ranking and
for exact search among a small allowed set; without one, `reconstruct` decodes FAISS's codes
(approximate for SQ/PQ) and PQ scores stay approximate.

On a machine with a GPU, `FaissIndex.accelerate()` moves search there: `faiss_gpu` (FAISS's own GPU
indexes) or `torch_search` (exact search with torch, where FAISS has no kernels for the GPU).

Modules import downwards only: `base` ← the kinds and searchers ← `serving` ← `factory` ← this package.
"""

from storage.vectors.base import IdArray, IndexSpec, Searcher, VectorIndex, VectorSource, atomic_write_index
from storage.vectors.factory import (
    INDEX_KINDS,
    create_index,
    estimated_bytes,
    factory_string,
    kind_class,
    load_index,
)
from storage.vectors.ivf import two_level_centroids
from storage.vectors.serving import FaissIndex

__all__ = [
    "INDEX_KINDS",
    "FaissIndex",
    "IdArray",
    "IndexSpec",
    "Searcher",
    "VectorIndex",
    "VectorSource",
    "atomic_write_index",
    "create_index",
    "estimated_bytes",
    "factory_string",
    "kind_class",
    "load_index",
    "two_level_centroids",
]
