"""The catalog's FAISS file and the identity it carries: whose vectors these are.

Ids alone cannot tell a catalog's own index from another one: two catalogs built the same way hold
the same segment ids, and a file copied from one into the other would silently answer with the other
library's vectors. So the file ends with a trailer (after FAISS's own bytes, which FAISS never reads
past): the catalog's random id (settings `catalog_id`), the model whose vectors it holds, and a
checksum of the ids stored. `mismatch` says why a file does not belong to a catalog; the catalog then
rebuilds it from the database, which stores every vector.

Trailer layout: UTF-8 JSON, then its length (8 bytes, little-endian), then `MAGIC`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from storage.vectors import IdArray

MAGIC = b"SSCATID1"
_TAIL = 8 + len(MAGIC)
_MAX_TRAILER = 1 << 16


@dataclass(frozen=True)
class IndexIdentity:
    catalog_id: str
    model_id: str
    dim: int
    ids_checksum: str

    def trailer(self) -> bytes:
        body = json.dumps(asdict(self), sort_keys=True).encode()
        return body + len(body).to_bytes(8, "little") + MAGIC


def ids_checksum(ids: IdArray) -> str:
    """Order-independent digest of a set of ids (FAISS lists them in storage order, not sorted)."""
    x = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    # splitmix64's finaliser: every id changes every bit, so sums and xors of the mixed ids
    # do not cancel out the way sums of raw, consecutive ids would.
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    summary = f"{len(x)}:{int(x.sum(dtype=np.uint64))}:{int(np.bitwise_xor.reduce(x)) if len(x) else 0}"
    return hashlib.blake2b(summary.encode(), digest_size=12).hexdigest()


def read_identity(path: Path) -> IndexIdentity | None:
    """The identity at the end of a saved index, or None when it carries none (foreign, or written before schema 4)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < _TAIL:
            return None
        f.seek(size - _TAIL)
        tail = f.read(_TAIL)
        if tail[8:] != MAGIC:
            return None
        length = int.from_bytes(tail[:8], "little")
        if length > min(_MAX_TRAILER, size - _TAIL):
            return None
        f.seek(size - _TAIL - length)
        try:
            fields = json.loads(f.read(length))
            return IndexIdentity(
                catalog_id=str(fields["catalog_id"]),
                model_id=str(fields["model_id"]),
                dim=int(fields["dim"]),
                ids_checksum=str(fields["ids_checksum"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def mismatch(found: IndexIdentity | None, expected: IndexIdentity) -> str | None:
    """Why a saved index is not the catalog's own (None when it is); `expected.ids_checksum` is the file's ids'."""
    if found is None:
        return "it carries no catalog identity (a foreign file, or one written before schema 4)"
    if found.catalog_id != expected.catalog_id:
        return f"it belongs to another catalog ({found.catalog_id}, this one is {expected.catalog_id})"
    if (found.model_id, found.dim) != (expected.model_id, expected.dim):
        return (
            f"it holds vectors of model {found.model_id!r} (dim {found.dim}), "
            f"the catalog's model is {expected.model_id!r} (dim {expected.dim})"
        )
    if found.ids_checksum != expected.ids_checksum:
        return "the ids it holds do not match its identity record (the file was altered)"
    return None
