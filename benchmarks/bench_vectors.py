"""Per-call cost of the vector index layer, every kind: what the catalog pays on each search, add and remove.

`bench_ann` measures kinds at scale (build, recall, memory); this measures the layer above FAISS at a size
that builds in seconds: searches of one query and of 64, filtered searches among 1 % and 80 % of the ids,
`reconstruct` of 100 ids, and adding then removing 1 000 vectors. Data: `bench_ann.Mixture` (clustered unit
vectors), the IVF kinds with the chooser's nlist and nprobe 16, HNSW with efSearch 64; the vector source is
the array itself. Times are medians over `--repeats` calls.

`--against CHECKOUT` imports that checkout's `storage.vectors` beside this one's, builds the same indexes with
both and alternates the calls (this, other, other, this, ...): on a shared machine both sides see the same
load, so the ratio holds even when the absolute times do not.

Run: .venv/bin/python -m benchmarks.bench_vectors [--n 30000 --dim 512 --repeats 200] [--against /tmp/old]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import storage.vectors
from benchmarks._common import machine
from benchmarks.bench_ann import Mixture, clustered_vectors
from indexer.types import FloatArray
from storage.index_choice import nlist_for
from storage.vectors import INDEX_KINDS, IdArray


@dataclass(frozen=True)
class Workload:
    data: FloatArray
    ids: IdArray
    queries: FloatArray
    few: IdArray  # 1 % of the ids
    most: IdArray  # 80 % of the ids
    extra_ids: IdArray
    extra: FloatArray


Op = Callable[[Any, int], object]  # (index, repetition) -> anything


def operations(w: Workload, repeats: int) -> list[tuple[str, Op, int]]:
    def one(r: int) -> FloatArray:
        return w.queries[r % len(w.queries)]

    def churn(index: Any, _: int) -> None:
        index.add(w.extra_ids, w.extra)
        index.remove(w.extra_ids)

    step = len(w.ids) // 100
    return [
        ("search 1 query, k=10", lambda index, r: index.search(one(r), 10), repeats),
        ("search 64 queries, k=10", lambda index, r: index.search(w.queries[:64], 10), repeats),
        ("search 1 query among 1 % of ids", lambda index, r: index.search(one(r), 10, w.few), repeats),
        ("search 1 query among 80 % of ids", lambda index, r: index.search(one(r), 10, w.most), repeats),
        ("reconstruct 100 ids", lambda index, r: index.reconstruct(w.ids[r % step :: step][:100]), repeats),
        ("add + remove 1 000 vectors", churn, max(5, repeats // 20)),
    ]


def build(vectors: ModuleType, kind: str, nlist: int, w: Workload, sample: IdArray) -> Any:
    index = vectors.create_index(w.data.shape[1], vectors.IndexSpec(kind, nlist=nlist, pq_m=64))
    index.vector_source = lambda wanted: w.data[np.asarray(wanted)]
    index.train(w.data[sample])
    index.add(w.ids, w.data)
    if kind.startswith("ivf"):
        index.set_search_param(16)
    return index


def interleaved_ms(op: Op, indexes: list[Any], repeats: int) -> list[float]:
    """Median ms of `op` on each index, the calls alternating between them (the order flips every round)."""
    times: list[list[float]] = [[] for _ in indexes]
    for index in indexes:
        op(index, 0)  # warm
    for r in range(repeats):
        order = range(len(indexes)) if r % 2 == 0 else reversed(range(len(indexes)))
        for i in order:
            t0 = time.perf_counter()
            op(indexes[i], r)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) * 1e3 for t in times]


def import_vectors_from(checkout: Path) -> ModuleType:
    """Another checkout's `storage.vectors`, imported beside this one's: its `storage` modules are loaded
    with ours set aside, then ours are put back (the other's keep the references they were built with)."""

    def storage_modules() -> list[str]:
        return [name for name in sys.modules if name == "storage" or name.startswith("storage.")]

    ours = {name: sys.modules.pop(name) for name in storage_modules()}
    sys.path.insert(0, str(checkout.resolve()))
    try:
        return importlib.import_module("storage.vectors")
    finally:
        sys.path.pop(0)
        for name in storage_modules():
            del sys.modules[name]
        sys.modules.update(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--kinds", default=",".join(INDEX_KINDS))
    parser.add_argument("--against", type=Path, help="another checkout: its vector indexes, calls interleaved")
    args = parser.parse_args()
    n, dim = args.n, args.dim
    gen = np.random.default_rng(0)
    ids = np.arange(n, dtype=np.int64)
    mix = Mixture(n, dim)
    w = Workload(
        data=clustered_vectors(n, dim),
        ids=ids,
        queries=mix.queries(max(256, args.repeats), 0),
        few=np.sort(gen.choice(ids, n // 100, replace=False)),
        most=np.sort(gen.choice(ids, n * 4 // 5, replace=False)),
        extra_ids=np.arange(n, n + 1000, dtype=np.int64),
        extra=mix.queries(1000, 1),
    )
    nlist = nlist_for(n)
    sample = gen.choice(n, min(n, 50 * nlist), replace=False)
    sides = [storage.vectors] + ([import_vectors_from(args.against)] if args.against else [])
    print(f"machine: {machine()}; {n:,} × {dim}-d vectors, IVF{nlist}, nprobe 16")
    if args.against:
        print(f"other: {sides[1].__file__}, calls interleaved\n")
        print("| kind | operation | this ms | other ms | this / other |\n|---|---|---|---|---|")
    else:
        print("\n| kind | operation | median ms |\n|---|---|---|")
    for kind in args.kinds.split(","):
        indexes = [build(side, kind, nlist, w, sample) for side in sides]
        for name, op, reps in operations(w, args.repeats):
            ms = interleaved_ms(op, indexes, reps)
            cells = " | ".join(f"{m:.4f}" for m in ms) + (f" | {ms[0] / ms[1]:.3f}" if len(ms) == 2 else "")
            print(f"| {kind} | {name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
