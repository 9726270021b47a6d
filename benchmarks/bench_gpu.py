"""GPU benchmark: encoder throughput, end-to-end indexing, and exact search over millions of vectors.

Three numbers the scale issue asks for whenever a GPU is at hand (on a CPU the script runs the same code
at whatever sizes it is given, which is how the test suite keeps it working):

1. **Bare encoder**: 10-second windows per second through `ClapEncoder.embed_windows` on pre-decoded
   batches (an HTSAT-tiny-sized `ClapModel` with random weights, bf16 on a GPU, batch size measured
   against free memory as the indexer does).
2. **End-to-end indexing**: `index_paths` over a generated library of `--clips` files (WAV/FLAC/OGG at
   22.05-48 kHz, 10 s each, so one window per file), decoders as the indexer picks them (worker
   processes beside a GPU). Target: at least 70 % of the bare encoder's windows per second.
3. **Exact search**: `TorchExactSearch` over `--vectors` clustered 512-d unit vectors (the generator of
   benchmarks/bench_ann.py), queries per second at batch 1 and 256, checked against FAISS exact search on
   a sample of queries (recall@10 must be 1.0 up to ties).

Run (GPU): .venv/bin/python -m benchmarks.bench_gpu [--clips 20000] [--vectors 10000000] [--out gpu.json]
Run (CPU, small): .venv/bin/python -m benchmarks.bench_gpu --device cpu --clips 40 --vectors 200000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import soundfile as sf
import torch

from benchmarks._common import machine, percentile_ms
from benchmarks.bench_ann import Mixture, clustered_vectors
from benchmarks.bench_index import FORMATS as INDEX_FORMATS
from benchmarks.bench_index import save_htsat_tiny
from indexer.encoders.clap import ClapEncoder
from indexer.encoders.registry import load_encoder
from indexer.pipeline import IndexOptions, index_paths
from indexer.types import FloatArray
from storage.catalog import Catalog
from storage.index_choice import recall_at_k
from storage.vectors.torch_search import TorchExactSearch

FORMATS = [f for f in INDEX_FORMATS if f[0] != "mp3"]  # MP3 encoding would dominate writing 20 000 clips


def write_clip(root: str, i: int) -> None:
    gen = np.random.default_rng(i)
    ext, fmt, subtype = FORMATS[i % len(FORMATS)]
    sr = (44_100, 48_000, 22_050)[i % 3]
    t = np.arange(10 * sr) / sr
    x = 0.3 * np.sin(2 * np.pi * gen.uniform(100, 3000) * t) + 0.02 * gen.standard_normal(len(t))
    path = Path(root) / f"folder{i % 50}" / f"clip{i:05d}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, format=fmt, subtype=subtype)


def write_library(root: Path, n: int, workers: int) -> None:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(write_clip, [str(root)] * n, range(n), chunksize=64))


def encoder_throughput(encoder: ClapEncoder, n_windows: int) -> float:
    win = encoder.windows.frames(encoder.sample_rate)[0]
    gen = np.random.default_rng(0)
    windows = [(0.1 * gen.standard_normal(win)).astype(np.float32) for _ in range(n_windows)]
    encoder.embed_windows(windows[: encoder.batch_size])  # warm-up: kernels, allocator
    _sync(encoder.device)
    t0 = time.perf_counter()
    encoder.embed_windows(windows)
    _sync(encoder.device)
    return n_windows / (time.perf_counter() - t0)


def search_rates(vectors: FloatArray, device: str, batches: list[int], rounds: int) -> dict[str, Any]:
    ids = np.arange(len(vectors), dtype=np.int64)
    t0 = time.perf_counter()
    search = TorchExactSearch(vectors, ids, device=device)
    load_s = time.perf_counter() - t0
    queries = Mixture(len(vectors), vectors.shape[1], seed=0).queries(max(batches) * 4, which=0)
    out: dict[str, Any] = {"load_s": round(load_s, 1), "resident": search.resident, "dtype": str(search.dtype)}
    for batch in batches:
        search.search(queries[:batch], 10)  # warm-up
        times = []
        for r in range(rounds):
            q = queries[(r * batch) % len(queries) :][:batch]
            t0 = time.perf_counter()
            search.search(q, 10)
            times.append(time.perf_counter() - t0)
        out[f"batch{batch}_qps"] = round(batch / float(np.median(times)), 1)
        out[f"batch{batch}_p50_ms"] = round(percentile_ms(times, 50), 2)
    sample = queries[:64]
    _, found = search.search(sample, 10)
    _, truth = faiss.knn(sample, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    out["recall_at_10_vs_faiss"] = round(recall_at_k(found, truth), 4)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--clips", type=int, default=20_000, help="files in the generated library (10 s each)")
    p.add_argument("--bare-windows", type=int, default=4096, help="windows for the bare encoder measurement")
    p.add_argument("--vectors", type=int, default=10_000_000)
    p.add_argument("--batches", default="1,256")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none"
    result: dict[str, Any] = {"machine": machine(), "gpu": gpu, "device": args.device}
    print(f"# bench_gpu: {result['machine']}; GPU: {gpu}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        encoder = load_encoder(str(save_htsat_tiny(tmp / "model")), device=args.device)
        assert isinstance(encoder, ClapEncoder)
        bare = encoder_throughput(encoder, min(args.bare_windows, max(args.clips, encoder.batch_size)))
        result["encoder"] = {"dtype": str(encoder.dtype), "batch_size": encoder.batch_size, "windows_per_s": bare}
        print(f"bare encoder: {bare:.1f} windows/s ({encoder.dtype}, batch {encoder.batch_size})", flush=True)

        if args.clips:
            t0 = time.perf_counter()
            write_library(tmp / "lib", args.clips, cores)
            written_s = time.perf_counter() - t0
            options = IndexOptions()
            with Catalog.open(tmp / "home") as catalog:
                summary = index_paths(catalog, encoder, [tmp / "lib"], options=options)
            rate = summary.segments / summary.seconds
            result["indexing"] = {
                "clips": args.clips,
                "library_written_s": round(written_s, 1),
                "decoders": options.workers_for(encoder.device.type),
                "processes": options.processes_for(encoder.device.type),
                "seconds": round(summary.seconds, 1),
                "windows_per_s": round(rate, 1),
                "share_of_bare": round(rate / bare, 3),
                "failed": summary.failed,
            }
            print(f"indexing: {json.dumps(result['indexing'])}", flush=True)

    if args.vectors:
        t0 = time.perf_counter()
        vectors = clustered_vectors(args.vectors, 512, workers=cores)
        gen_s = time.perf_counter() - t0
        batches = [int(b) for b in args.batches.split(",")]
        result["search"] = {"vectors": args.vectors, "generated_s": round(gen_s, 1)}
        result["search"].update(search_rates(vectors, args.device, batches, args.rounds))
        print(f"exact search: {json.dumps(result['search'])}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
