"""Vector index benchmark: build time, memory per vector, query latency and recall@10 for each index kind.

Data: random but clustered unit vectors (`clustered_chunks`): a mixture of Gaussians with low-rank
clusters, so approximate search has structure to find, as in real embedding spaces:
- C = clamp(n / 1000, 8, 4096) cluster centres, unit Gaussian directions; each vector picks one uniformly;
- within a cluster, a rank-16 Gaussian spread (random basis, norm ≈ 0.6) plus isotropic noise (norm ≈ 0.25);
- the sum is L2-normalised (cosine to its centre ≈ 0.84).
Chunk j of the data is drawn from its own seeded stream, so the data is the same whatever the chunking.
Up to `--in-memory-max` it is kept in memory; beyond (10M × 512 float32 is 20 GB) it is written once to a
float32 file (`--data-file`, reused by later runs with the same n, dim and seed) and memory-mapped: that
file plays the catalog's database, from which PQ re-ranks with exact vectors. Queries are held out: fresh
draws from the same mixture (one set tunes nprobe/efSearch, another set measures recall and latency).

For each kind: build (train on a random sample, add in chunks; IVF kinds share one k-means, whose time is
added to each), tune the search knob to the recall target on the tuning queries, then measure recall@10
against exact search, p50/p99 latency for a single query and for a batch of 64, and memory (the index's
own estimate, its file size, and the resident size of loading the file in a fresh process).

Run: nice -n 5 .venv/bin/python -m benchmarks.bench_ann --n 1000000 [--kinds ivf_sq8,ivf_pq,...]
     [--max-index-memory 600MB] [--recall-target 0.95] [--data-file build/ann.f32] [--out results.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks._common import machine, percentile_ms
from indexer.settings import parse_bytes
from indexer.types import FloatArray
from storage.atomic import atomic_path
from storage.index_choice import (
    ExactNeighbours,
    IndexPlan,
    IndexPolicy,
    choose_index,
    default_memory_budget,
    measure_recall,
    nlist_for,
    tune,
)
from storage.vectors import FaissIndex, IdArray, IndexSpec, create_index

RANK = 16


class Mixture:
    """The clustered generator (see the module docstring); `chunk(j)` is deterministic."""

    def __init__(self, n: int, dim: int, seed: int = 0, chunk_rows: int = 100_000) -> None:
        self.n, self.dim, self.seed, self.chunk_rows = n, dim, seed, chunk_rows
        self.n_clusters = int(min(4096, max(8, n // 1000)))
        gen = np.random.default_rng([seed, 0])
        centres = gen.standard_normal((self.n_clusters, dim)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.bases = (gen.standard_normal((self.n_clusters, dim, RANK)) / np.sqrt(dim)).astype(np.float32)

    def draw(self, m: int, stream: int, kind: int = 1) -> FloatArray:
        gen = np.random.default_rng([self.seed, kind, stream])
        owner = gen.integers(self.n_clusters, size=m)
        z = gen.standard_normal((m, RANK), dtype=np.float32) * np.float32(0.6 / np.sqrt(RANK))
        x = gen.standard_normal((m, self.dim), dtype=np.float32)
        x *= np.float32(0.25 / np.sqrt(self.dim))
        x += self.centres[owner]
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(self.n_clusters + 1))
        for c in range(self.n_clusters):
            rows = order[bounds[c] : bounds[c + 1]]
            if len(rows):
                x[rows] += z[rows] @ self.bases[c].T
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunk(self, j: int) -> tuple[IdArray, FloatArray]:
        start = j * self.chunk_rows
        m = min(self.chunk_rows, self.n - start)
        return np.arange(start, start + m, dtype=np.int64), self.draw(m, stream=j)

    def chunks(self) -> Iterator[tuple[IdArray, FloatArray]]:
        for j in range((self.n + self.chunk_rows - 1) // self.chunk_rows):
            yield self.chunk(j)

    def queries(self, m: int, which: int) -> FloatArray:
        return self.draw(m, stream=which, kind=2)  # streams no data chunk uses: held out


def clustered_vectors(n: int, dim: int, seed: int = 0, workers: int = 1) -> FloatArray:
    """All n vectors at once, chunks drawn by `workers` processes (each chunk has its own seeded stream)."""
    mix = Mixture(n, dim, seed)
    if not n:
        return np.zeros((0, dim), np.float32)
    if workers <= 1:
        return np.concatenate([v for _, v in mix.chunks()])
    n_chunks = (n + mix.chunk_rows - 1) // mix.chunk_rows
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_draw_chunk, [mix] * n_chunks, range(n_chunks))))


def _draw_chunk(mix: Mixture, j: int) -> FloatArray:
    return mix.chunk(j)[1]


def rss_of_loading(path: Path) -> int:
    """Resident bytes that reading the index file adds to a fresh process."""
    code = (
        "import faiss,sys\n"
        "def rss():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])*1024\n"
        "a=rss(); i=faiss.read_index(sys.argv[1]); print(rss()-a)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def latencies(index: FaissIndex, queries: FloatArray, batch: int, rounds: int) -> list[float]:
    out = []
    for r in range(rounds):
        q = queries[(r * batch) % len(queries) :][:batch]
        if len(q) < batch:
            q = queries[:batch]
        t0 = time.perf_counter()
        index.search(q, 10)
        out.append(time.perf_counter() - t0)
    return out


def spec_for(kind: str, n: int, dim: int, pq_m: int | None, picks: list[IndexPlan], policy: IndexPolicy) -> IndexSpec:
    """The chooser's spec for `kind` at the largest budget that picks it, else the default layout."""
    chosen = next((plan.spec for plan in picks if plan.kind == kind), None)
    if chosen is not None and (pq_m is None or kind != "ivf_pq"):
        return chosen
    nlist = nlist_for(n)
    return IndexSpec(kind, nlist=nlist, pq_m=pq_m or 64, hnsw_quantizer=nlist >= policy.hnsw_quantizer_min_nlist)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--kinds", default="auto", help="comma list, or 'auto': every kind the chooser can pick at this n")
    p.add_argument("--max-index-memory", default=None, help="budget for the chooser line (default: RAM/4)")
    p.add_argument("--recall-target", type=float, default=0.95)
    p.add_argument("--pq-m", type=int, default=None, help="PQ sub-quantizers (default: the chooser's)")
    p.add_argument("--queries", type=int, default=1000, help="held-out evaluation queries")
    p.add_argument("--tune-queries", type=int, default=200)
    p.add_argument(
        "--rounds", type=int, default=300, help="single-query latency samples (one thread; batches use all cores)"
    )
    p.add_argument("--in-memory-max", default="6GB", help="keep the data in memory up to this size (else a file)")
    p.add_argument("--data-file", type=Path, default=None, help="where larger data is kept (default build/ann-N.f32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    n, dim = args.n, args.dim
    policy = IndexPolicy(recall_target=args.recall_target)
    budget = parse_bytes(args.max_index_memory) if args.max_index_memory else default_memory_budget()
    print(f"# bench_ann: {n:,} × {dim}-d clustered unit vectors; {machine()}")
    print(f"chooser at the budget {budget / 1e9:.2f} GB: {choose_index(n, dim, budget, policy).reason}")
    budgets = [12 << 30, 4 << 30, 2 << 30, 1 << 30, 600_000_000, 200_000_000]
    picks = {b: choose_index(n, dim, b, policy) for b in budgets}
    for b, plan in picks.items():
        print(f"  budget {b / 2**30:6.2f} GiB → {plan.factory}: {plan.reason}")
    kinds = sorted({pl.kind for pl in picks.values()}) if args.kinds == "auto" else args.kinds.split(",")

    mix = Mixture(n, dim, args.seed)
    t0 = time.perf_counter()
    truth_file: Path | None = None
    if n * dim * 4 <= parse_bytes(args.in_memory_max):
        data = clustered_vectors(n, dim, args.seed)
        where = "in memory"
    else:
        path = args.data_file or Path("build") / f"ann-{n}x{dim}-seed{args.seed}.f32"
        data = mapped_data(mix, path)
        where = f"memory-mapped from {path}"
        truth_file = path.with_name(f"{path.stem}-truth-{args.queries}-{args.tune_queries}.npz")
    gen_s = time.perf_counter() - t0
    eval_q, tune_q = mix.queries(args.queries, 0), mix.queries(args.tune_queries, 1)
    t0 = time.perf_counter()
    if truth_file is not None and truth_file.exists():  # written beside the data file by an earlier run
        with np.load(truth_file) as saved:
            gt_eval, gt_tune = saved["eval"], saved["tune"]
    else:
        truth_eval, truth_tune = ExactNeighbours(eval_q, 10), ExactNeighbours(tune_q, 10)
        for ids, vectors in chunks_of(data):
            truth_eval.add(ids, vectors)
            truth_tune.add(ids, vectors)
        _, gt_eval = truth_eval.result()
        _, gt_tune = truth_tune.result()
        if truth_file is not None:
            np.savez(truth_file, eval=gt_eval, tune=gt_tune)
    exact_s = time.perf_counter() - t0
    print(
        f"data: {where}, ready in {gen_s:.1f} s; "
        f"exact top-10 of {len(eval_q) + len(tune_q)} queries in {exact_s:.1f} s",
        flush=True,
    )

    rng = np.random.default_rng(args.seed)
    centroids: dict[int, tuple[FloatArray, float]] = {}
    results: list[dict[str, Any]] = []
    for kind in kinds:
        spec = spec_for(kind, n, dim, args.pq_m, list(picks.values()), policy)
        index = create_index(dim, spec)
        index.vector_source = lambda ids: np.asarray(data[np.asarray(ids)], dtype=np.float32)
        t0 = time.perf_counter()
        kmeans_s = 0.0
        if not index.is_trained:
            size = min(n, max(50 * spec.nlist, 10_000))
            sample_ids = np.sort(rng.choice(n, size, replace=False))
            sample = np.asarray(data[sample_ids], dtype=np.float32)
            shared = centroids.get(spec.nlist)
            index.train(sample, centroids=shared[0] if shared else None)
            if shared is None:
                centroids[spec.nlist] = (index.centroids(), time.perf_counter() - t0)  # type: ignore[assignment]
            else:
                kmeans_s = shared[1]
        for ids, vectors in chunks_of(data):
            index.add(ids, np.asarray(vectors))
        build_s = time.perf_counter() - t0 + kmeans_s
        tuned = tune(index, tune_q, gt_tune, args.recall_target)
        recall = measure_recall(index, eval_q, gt_eval)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # single queries: one thread (OpenMP start-up costs more than it saves)
        single = latencies(index, eval_q, 1, args.rounds)
        faiss.omp_set_num_threads(threads)
        batch = latencies(index, eval_q, 64, max(10, args.rounds // 10))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index.faiss"
            index.save(path)
            file_bytes = path.stat().st_size
            rss = rss_of_loading(path)
        row = {
            "kind": kind,
            "index": index.description,
            "n": index.count(),
            "build_s": round(build_s, 1),
            "kmeans_shared_s": round(kmeans_s, 1),
            "param": tuned.param,
            "param_value": tuned.value,
            "tune_recall": round(tuned.recall_at_10, 4),
            "recall_at_10": round(recall, 4),
            "single_p50_ms": round(percentile_ms(single, 50), 3),
            "single_p99_ms": round(percentile_ms(single, 99), 3),
            "batch64_p50_ms": round(percentile_ms(batch, 50), 2),
            "batch64_p99_ms": round(percentile_ms(batch, 99), 2),
            "bytes_per_vector_estimate": round(index.memory_bytes() / n, 1),
            "bytes_per_vector_file": round(file_bytes / n, 1),
            "bytes_per_vector_rss": round(rss / n, 1),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
        del index
        gc.collect()

    cols = [
        "index",
        "build_s",
        "recall_at_10",
        "single_p50_ms",
        "single_p99_ms",
        "batch64_p50_ms",
        "batch64_p99_ms",
        "bytes_per_vector_rss",
        "bytes_per_vector_file",
    ]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for row in results:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "n": n, "dim": dim, "results": results}, indent=1))


def chunks_of(data: FloatArray, rows: int = 100_000) -> Iterator[tuple[IdArray, FloatArray]]:
    for start in range(0, len(data), rows):
        yield np.arange(start, min(len(data), start + rows), dtype=np.int64), data[start : start + rows]


def mapped_data(mix: Mixture, path: Path) -> FloatArray:
    """The mixture's n vectors in a float32 file, written once (whole: a killed run leaves none)."""
    shape = (mix.n, mix.dim)
    if not (path.exists() and path.stat().st_size == mix.n * mix.dim * 4):
        with atomic_path(path) as partial:
            out = np.memmap(partial, dtype=np.float32, mode="w+", shape=shape)
            for ids, vectors in mix.chunks():
                out[ids[0] : ids[-1] + 1] = vectors
            out.flush()
            del out
    return np.memmap(path, dtype=np.float32, mode="r", shape=shape)


if __name__ == "__main__":
    main()
