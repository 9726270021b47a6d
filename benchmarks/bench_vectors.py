"""Per-call cost of the vector index layer, every kind: what the catalog pays on each search, add and remove.

`bench_ann` measures kinds at scale (build, recall, memory); this measures the layer above FAISS at a size
that builds in seconds, so two checkouts can be compared run against run (`benchmarks.ab`): searches of one
query and of 64, filtered searches among 1 % of the ids (answered exactly) and among 80 % (FAISS's
selector), `reconstruct` of 100 ids, and adding then removing 1 000 vectors. Data: `bench_ann.Mixture`
(clustered unit vectors), the IVF kinds with the chooser's nlist and nprobe 16, HNSW with efSearch 64;
the vector source is the array itself. Times are medians over `--repeats` calls.

Run: .venv/bin/python -m benchmarks.bench_vectors [--n 30000 --dim 512 --repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks._common import machine
from benchmarks.bench_ann import Mixture, clustered_vectors
from indexer.types import FloatArray
from storage.index_choice import nlist_for
from storage.vectors import INDEX_KINDS, FaissIndex, IdArray, IndexSpec, create_index


def median_ms(fn: Callable[[int], object], repeats: int) -> float:
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


@dataclass(frozen=True)
class Workload:
    data: FloatArray
    ids: IdArray
    queries: FloatArray
    few: IdArray  # 1 % of the ids
    most: IdArray  # 80 % of the ids
    extra_ids: IdArray
    extra: FloatArray


def timings(index: FaissIndex, w: Workload, repeats: int) -> list[tuple[str, float]]:
    def one(r: int) -> FloatArray:
        return w.queries[r % len(w.queries)]

    step = len(w.ids) // 100

    def churn(_: int) -> None:
        index.add(w.extra_ids, w.extra)
        index.remove(w.extra_ids)

    ops: list[tuple[str, Callable[[int], object], int]] = [
        ("search 1 query, k=10", lambda r: index.search(one(r), 10), repeats),
        ("search 64 queries, k=10", lambda r: index.search(w.queries[:64], 10), repeats),
        ("search 1 query among 1 % of ids", lambda r: index.search(one(r), 10, w.few), repeats),
        ("search 1 query among 80 % of ids", lambda r: index.search(one(r), 10, w.most), repeats),
        ("reconstruct 100 ids", lambda r: index.reconstruct(w.ids[r % step :: step][:100]), repeats),
        ("add + remove 1 000 vectors", churn, max(5, repeats // 20)),
    ]
    out = []
    for name, op, reps in ops:
        op(0)  # warm
        out.append((name, median_ms(op, reps)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--kinds", default=",".join(INDEX_KINDS))
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
    print(f"machine: {machine()}; {n:,} × {dim}-d vectors, IVF{nlist}, nprobe 16")
    print("\n| kind | operation | median ms |\n|---|---|---|")
    for kind in args.kinds.split(","):
        index = create_index(dim, IndexSpec(kind, nlist=nlist, pq_m=64))
        index.vector_source = lambda wanted: w.data[np.asarray(wanted)]
        index.train(w.data[gen.choice(n, min(n, 50 * nlist), replace=False)])
        index.add(w.ids, w.data)
        if kind.startswith("ivf"):
            index.set_search_param(16)
        for name, ms in timings(index, w, args.repeats):
            print(f"| {kind} | {name} | {ms:.4f} |", flush=True)


if __name__ == "__main__":
    main()
