"""Indexing throughput, local pipeline vs the Ray engine (1 and 2 embed actors on one node, and one actor on
each node of a two-node cluster), in one run, on the same library and model (benchmarks/bench_index.py's:
HTSAT-tiny-sized CLAP with random weights, mixed formats and rates). With `--gpu`, the Ray engine with one
actor per GPU the cluster has (run it on a machine with GPUs).

Every Ray variant runs on a cluster that is already up (a real cluster is), so the times include what each
run pays: the Ray Data plan, starting the actors (process, torch import, model load) and the decoders.
Each variant is also timed a second time on a library twice as large: the difference between the two runs
is the steady throughput, free of the start-up cost.

Run: .venv/bin/python -m benchmarks.bench_ray [--files 60] [--gpu]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._common import machine
from benchmarks.bench_index import save_htsat_tiny, write_library
from indexer import load_encoder
from indexer.encoders.base import Encoder
from indexer.pipeline import Executor, index_paths
from indexer.ray_engine import RayExecutor, import_ray
from storage.catalog import Catalog
from tests.ray_cluster import local_cluster


def timed(encoder: Encoder, library: Path, home: Path, executor: Executor | None) -> tuple[float, int]:
    shutil.rmtree(home, ignore_errors=True)
    with Catalog.open(home) as catalog:
        t0 = time.perf_counter()
        summary = index_paths(catalog, encoder, [library], executor=executor)
        return time.perf_counter() - t0, summary.segments


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=60, help="files in the small library (the large: twice)")
    parser.add_argument("--gpu", action="store_true", help="also one actor per GPU (a machine with GPUs)")
    args = parser.parse_args()
    import_ray(loopback=True)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        small, large = tmp / "small", tmp / "large"
        write_library(small, args.files)
        write_library(large, 2 * args.files)
        model = save_htsat_tiny(tmp / "model")
        encoder = load_encoder(str(model))

        rows: list[tuple[str, float, float, int]] = []

        def measure(name: str, make: Callable[[], Executor | None]) -> None:
            t_small, n_small = timed(encoder, small, tmp / "home", make())
            t_large, n_large = timed(encoder, large, tmp / "home", make())
            # On a busy machine the larger run can take no longer than the smaller: no estimate then.
            steady = (n_large - n_small) / (t_large - t_small) if t_large > t_small else float("nan")
            rows.append((name, n_large / t_large, steady, n_large))
            print(f"{name:<38} {n_large / t_large:7.1f} windows/s ({n_large} in {t_large:.1f} s), steady {steady:6.1f}")

        measure("local pipeline", lambda: None)
        with local_cluster(nodes=1, cpus_per_node=4):
            measure("ray, 1 node, 1 actor", lambda: RayExecutor(actors=1))
            measure("ray, 1 node, 2 actors", lambda: RayExecutor(actors=2))
        with local_cluster(nodes=2, cpus_per_node=2):
            measure("ray, 2 nodes, 2 actors", lambda: RayExecutor(actors=2))
        if args.gpu:
            import ray

            ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", configure_logging=False)
            gpus = int(ray.cluster_resources().get("GPU", 0))
            gpu_encoder = load_encoder(str(model), device="cuda")
            t, n = timed(gpu_encoder, large, tmp / "home", None)
            print(f"{'local pipeline, 1 GPU':<38} {n / t:7.1f} windows/s ({n} in {t:.1f} s)")
            measure(f"ray, 1 node, {gpus} GPU actor(s)", lambda: RayExecutor())
            ray.shutdown()
        print("\n| engine | windows/s (incl. start-up) | steady windows/s | windows |")
        print("| --- | ---: | ---: | ---: |")
        for name, overall, steady, n in rows:
            print(f"| {name} | {overall:.1f} | {steady:.1f} | {n} |")


if __name__ == "__main__":
    main()
