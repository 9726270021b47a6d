"""Search latency of two checkouts of this project, interleaved query by query on the same machine.

A before/after comparison on a busy machine: each checkout gets a worker process that builds
`bench_search`'s catalog with its own code (same files, same vectors) and then answers "run" requests;
the driver alternates the two workers batch by batch, so drift in the machine's speed falls on both alike.
Reports, per query kind, each checkout's p50 over every batch and their ratio.

Run: .venv/bin/python -m benchmarks.compare_search OLD_CHECKOUT NEW_CHECKOUT [--files 20000 --rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = """
import json, sys, tempfile, time
from functools import partial
from pathlib import Path
from benchmarks.bench_search import BROAD, RandomTextEncoder, WORDS, build
from search.engine import Engine
from search.query import Filters
from storage.index_choice import IndexPolicy

cases = {
    "vector": {"mode": "vector"},
    "text": {"mode": "text"},
    "hybrid": {"mode": "hybrid"},
    "hybrid + broad filter": {"filters": BROAD},
    "hybrid + selective filter": {"filters": Filters(folder="glass")},
}
queries = [f"{WORDS[i % 12]} {WORDS[(i * 5) % 12]} close" for i in range(20)]
with tempfile.TemporaryDirectory() as tmp:
    catalog = build(Path(tmp) / "c", int(sys.argv[1]), policy=IndexPolicy(exact_max_bytes=1 << 62))
    engine = Engine(catalog, RandomTextEncoder(catalog.index.count()))
    for kwargs in cases.values():
        for q in queries:
            engine.search(q, 20, **kwargs)  # warm: embeddings cached
    print("ready", flush=True)
    for _ in sys.stdin:
        out = {}
        for case, kwargs in cases.items():
            times = []
            for q in queries:
                t0 = time.perf_counter()
                engine.search(q, 20, **kwargs)
                times.append(time.perf_counter() - t0)
            out[case] = times
        print(json.dumps(out), flush=True)
    catalog.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    workers = {
        name: subprocess.Popen(
            [sys.executable, "-c", WORKER, str(args.files)],
            cwd=tree,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, tree in (("old", args.old), ("new", args.new))
    }
    for proc in workers.values():
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    times: dict[str, dict[str, list[float]]] = {name: {} for name in workers}
    for r in range(args.rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            proc = workers[name]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("run\n")
            proc.stdin.flush()
            for case, batch in json.loads(proc.stdout.readline()).items():
                times[name].setdefault(case, []).extend(batch)
    for proc in workers.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    print(f"{args.files} files x 2 segments, exact index, {args.rounds} interleaved rounds x 20 queries")
    print("| query (embedding cached) | old p50 ms | new p50 ms | new / old |")
    print("|---|---|---|---|")
    for case in times["old"]:
        old, new = statistics.median(times["old"][case]), statistics.median(times["new"][case])
        print(f"| {case} | {old * 1e3:.2f} | {new * 1e3:.2f} | {new / old:.3f} |")


if __name__ == "__main__":
    main()
