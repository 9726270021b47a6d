"""Search latency on a large catalog, and library-wide zero-shot classification from stored vectors.

Catalog: N files × 2 segments of clustered random unit vectors (512-d, `bench_ann.Mixture`, queries drawn
from the same mixture) written straight into the database, with UCS-like file names for the text index.
Measures, per query, `Engine.search` end to end with the query embedding cached (that is, excluding
the embedding, which is reported separately for an HTSAT/RoBERTa-sized random CLAP), in every mode and
with a broad and a selective filter, on an exact index and on the index the catalog picks for its size
(built before timing), beside the naive numpy scan; then classifying every file against 500 labels
from stored vectors. The file names use 12 words only, so every text query word matches a sixth of
the library: the text side's worst case.

Run: .venv/bin/python -m benchmarks.bench_search [--files 50000 --labels 500]
     [--db-url postgresql+psycopg://user@host/postgres --latency-only]
With --db-url the catalogs live on that PostgreSQL server, each in a scratch database dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

from benchmarks._common import machine, scratch_database
from benchmarks.bench_ann import Mixture, clustered_vectors
from indexer.types import FloatArray
from search.engine import Engine
from search.query import Filters, parse_text
from search.zeroshot import ZeroShotClassifier, classify_library
from storage.catalog import Catalog, vector_to_bytes
from storage.index_choice import IndexPolicy
from storage.schema import FileRow, Root, SegmentRow

DIM = 512
WORDS = ["glass", "door", "rain", "wind", "metal", "wood", "impact", "whoosh", "engine", "crowd", "bird", "water"]


BROAD = Filters(formats=("wav",), min_duration_s=5)


class RandomTextEncoder:
    """Text side for the latency runs: a fixed vector per string, drawn from the catalog's mixture (a
    query lands among the sounds, as a real one does); the embedding cost is excluded."""

    model_id = "bench-random"
    sample_rate = 48_000
    window_seconds = 10.0
    dim = DIM
    logit_scale = 100.0

    def __init__(self, n_segments: int = 1000) -> None:
        self.mixture = Mixture(n_segments, DIM)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self.mixture.draw(1, stream=zlib.crc32(t.encode()), kind=3) for t in texts])

    def embed_audio(self, clips: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


def build(
    home: Path,
    n_files: int,
    *,
    model_id: str = "bench-random",
    dim: int = DIM,
    policy: IndexPolicy | None = None,
    db_url: str | None = None,
) -> Catalog:
    """A catalog of `n_files` × 2 segments of clustered random unit vectors, written straight into the database
    (UCS-like names for the full-text side), bound to `model_id` of dimension `dim`. The vector index
    is the one `policy` (default: the product's) picks for that size, built before this returns."""
    catalog = Catalog.open(home, db_url=db_url)
    if policy is not None:
        catalog.index_policy = policy
    catalog.bind_model(model_id, dim, 10.0, 5.0)
    with catalog.session() as s:
        s.add(Root(id=1, path="/lib"))
        s.flush()
        files = []
        for i in range(n_files):
            a, b = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)]
            path = f"/lib/{a}/{a.upper()[:4]}_{a.title()}{b.title()}_SSYN_{i:06d}.wav"
            files.append(
                {
                    "id": i + 1,
                    "root_id": 1,
                    "path": path,
                    "size": 1,
                    "mtime_ns": 1,
                    "status": "ok",
                    "duration_s": 20.0,
                    "format": "WAV",
                    "search_text": f"{a} {b} ssyn wav",
                }
            )
        s.execute(insert(FileRow), files)
        vectors = clustered_vectors(2 * n_files, dim)
        segs = [
            {
                "file_id": j // 2 + 1,
                "start_s": 10.0 * (j % 2),
                "end_s": 10.0 * (j % 2) + 10.0,
                "vector": vector_to_bytes(v),
            }
            for j, v in enumerate(vectors)
        ]
        for start in range(0, len(segs), 20_000):
            s.execute(insert(SegmentRow), segs[start : start + 20_000])
    catalog.save_index()
    if catalog.index_rebuild is not None:
        catalog.index_rebuild.join()  # measure the index the catalog settles on, not the rebuild's CPU
    return catalog


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def p50_p99(runs: list[Callable[[], object]], repeats: int = 5) -> str:
    times = [t for run in runs for t in timed(run, repeats)]
    return f"{statistics.median(times) * 1e3:.2f} | {np.percentile(times, 99) * 1e3:.2f}"


def naive_search(vectors: FloatArray, owners: np.ndarray, query: FloatArray, k: int) -> list[int]:
    """What a user would write: score every segment with numpy, sort all, keep each file's best."""
    order = np.argsort(-(vectors @ query))
    out: list[int] = []
    for i in order:
        if owners[i] not in out:
            out.append(int(owners[i]))
            if len(out) == k:
                break
    return out


def latency(catalog: Catalog, name: str, queries: list[str], cases: tuple[tuple[str, dict[str, Any]], ...]) -> None:
    """One table row per query kind on `catalog`; the naive numpy scan beside the exact index."""
    label = f"{catalog.index.kind} ({catalog.index.count()} segments)"
    engine = Engine(catalog, RandomTextEncoder(catalog.index.count()))  # type: ignore[arg-type]
    for case, kwargs in cases:
        for q in queries:
            engine.search(q, 20, **kwargs)  # warm: embeddings cached
        runs = [partial(engine.search, q, 20, **kwargs) for q in queries]
        print(f"| {label} | {case} | {p50_p99(runs)} |")
    if name == "exact":
        seg_ids, owners = catalog.segment_owners()
        vectors = catalog.vectors(seg_ids)
        qv = [engine._text_vector(parse_text(q)) for q in queries]
        runs = [partial(naive_search, vectors, owners, v, 20) for v in qv]
        print(f"| numpy, every segment scored and sorted (naive) | vector, k=20 | {p50_p99(runs)} |")
    catalog.close()


@contextmanager
def database(server_url: str | None) -> Iterator[str | None]:
    """Where one benchmark catalog lives: SQLite in its home (None), or a scratch database on `server_url`."""
    if server_url is None:
        yield None
    else:
        with scratch_database(server_url) as url:
            yield url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--classify-files", type=int, default=10_000)
    parser.add_argument("--db-url", help="a PostgreSQL server (SQLAlchemy URL): catalogs in scratch databases there")
    parser.add_argument("--latency-only", action="store_true", help="skip query embedding and classification")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    queries = [f"{WORDS[i % 12]} {WORDS[(i * 5) % 12]} close" for i in range(20)]
    cases: tuple[tuple[str, dict[str, Any]], ...] = (
        ("vector, k=20", {"mode": "vector"}),
        ("text (BM25), k=20", {"mode": "text"}),
        ("hybrid (default), k=20", {"mode": "hybrid"}),
        ("hybrid + broad filter (`--format wav --min-duration 5`: every file)", {"filters": BROAD}),
        ("hybrid + selective filter (`--folder glass`: 1 file in 12)", {"filters": Filters(folder="glass")}),
    )
    with tempfile.TemporaryDirectory() as tmp:
        print("\n| index | query (embedding cached) | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for name, policy in (("exact", IndexPolicy(exact_max_bytes=1 << 62)), ("chosen", None)):
            with database(args.db_url) as db_url:
                catalog = build(Path(tmp) / name, args.files, policy=policy, db_url=db_url)
                latency(catalog, name, queries, cases)
        if args.latency_only:
            return

        from transformers import ClapConfig, ClapModel

        from indexer.encoders.clap import ClapEncoder, MelFrontend
        from indexer.encoders.tiny import byte_level_tokenizer

        clap = ClapEncoder(
            ClapModel(ClapConfig()), byte_level_tokenizer(), model_id="htsat-roberta-random", frontend=MelFrontend()
        )
        clap.embed_text(["warm up"])
        emb = timed(lambda: clap.embed_text(["glass shattering on concrete, close"]), 20)
        print(
            "\nquery embedding, RoBERTa-base-sized text tower (random weights): "
            f"p50 {statistics.median(emb) * 1e3:.1f} ms"
        )

        small = build(Path(tmp) / "classify", args.classify_files)
        labels = [f"label {i} {WORDS[i % 12]}" for i in range(args.labels)]
        t0 = time.perf_counter()
        classifier = ZeroShotClassifier(RandomTextEncoder(), labels)  # type: ignore[arg-type]
        prompt_s = time.perf_counter() - t0
        runs = timed(lambda: classify_library(small, classifier), 3)
        print(
            f"\nclassify {args.classify_files} files ({small.index.count()} segments) x {args.labels} labels "
            f"from stored vectors: best {min(runs):.2f} s (prompt embeddings: {prompt_s:.2f} s, random text side)"
        )
        small.close()


if __name__ == "__main__":
    main()
