"""Applying a tagging head to 100 000 stored embeddings (target: under 1 s on the CPU).

Catalog: N files × 2 segments of random unit vectors (512-d), built as in `bench_search`. Heads: random
weights (speed does not depend on what the head learned), 27 labels like the synthetic library.
Measured, best of 3:
- `apply_tagger(..., save=False)` end to end: segment ids from the database (`catalog.segment_owners`),
  vectors from the FAISS index, pooling, head, tags per file id; linear and MLP heads, file and MIL pooling;
- the head alone on vectors in memory (`Tagger.scores` + `Tagger.tags`);
- writing the tags into the catalog (`save=True`), which also refreshes full-text search;
- a naive loop in the same run: per file, its vectors from the index, a forward pass, its tags.

Run: .venv/bin/python -m benchmarks.bench_tagger [--files 50000]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import best_of, machine
from benchmarks.bench_search import DIM, build
from search.tagger import Tagger, TaggerInfo, apply_tagger
from search.tagger_data import Bags, load_bags
from search.tagger_model import Head

N_LABELS = 27


def random_tagger(hidden: int, pooling: str) -> Tagger:
    torch.manual_seed(0)
    head = Head(DIM, N_LABELS, hidden)
    labels = tuple(f"class {i}" for i in range(N_LABELS))
    info = TaggerInfo("bench", labels, (0.5,) * N_LABELS, False, pooling, hidden, "bench-random", DIM)
    return Tagger(head.eval(), info)


def score_and_tag(tagger: Tagger, bags: Bags) -> int:
    return len(tagger.tags(tagger.scores(bags)))


def naive(catalog: object, tagger: Tagger, bags: Bags) -> int:
    """Per file: its vectors from the index, one forward pass, softmax, best label."""
    from storage.catalog import Catalog

    assert isinstance(catalog, Catalog)
    seg_ids, owners = catalog.segment_owners()
    starts = np.searchsorted(owners, bags.file_ids)
    ends = np.append(starts[1:], len(owners))
    n = 0
    with torch.inference_mode():
        for a, b in zip(starts, ends, strict=True):
            x = torch.from_numpy(catalog.index.reconstruct(seg_ids[a:b]))
            pooled = torch.nn.functional.normalize(x.mean(dim=0, keepdim=True))
            probs = torch.softmax(tagger.head(pooled), dim=1)[0]
            best = int(probs.argmax())
            n += bool(tagger.info.labels[best])
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50_000)
    args = parser.parse_args()
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        catalog = build(Path(tmp) / "big", args.files)
        n_seg = catalog.index.count()
        print(f"catalog: {args.files} files, {n_seg} segments of {DIM}-d (built in {time.perf_counter() - t0:.0f} s)")
        bags = load_bags(catalog)
        owners_s = best_of(catalog.segment_owners)
        fetch_s = best_of(functools.partial(catalog.index.reconstruct, catalog.segment_owners()[0]))
        print(f"of which: segment ids by file from the database {owners_s:.3f} s, vectors from FAISS {fetch_s:.3f} s")
        print("\n| head | pooling | apply_tagger, end to end (s) | head alone, vectors in memory (s) |")
        print("|---|---|---|---|")
        for hidden, pooling in ((0, "file"), (0, "mil"), (256, "file"), (256, "mil")):
            tagger = random_tagger(hidden, pooling)
            end_to_end = best_of(functools.partial(apply_tagger, catalog, tagger, save=False))
            alone = best_of(functools.partial(score_and_tag, tagger, bags))
            kind = "linear" if hidden == 0 else f"MLP {hidden}"
            print(f"| {kind} | {pooling} | {end_to_end:.3f} | {alone:.3f} |")
        tagger = random_tagger(0, "file")
        t0 = time.perf_counter()
        written = apply_tagger(catalog, tagger, save=True)  # the catalog's set_tags: rows + full-text refresh
        save_s = time.perf_counter() - t0
        print(f"\napply with save=True (tags written for {len(written)} files, FTS refreshed): {save_s:.2f} s")
        t0 = time.perf_counter()
        naive(catalog, tagger, bags)
        naive_s = time.perf_counter() - t0
        linear = best_of(lambda: apply_tagger(catalog, tagger, save=False))
        print(
            f"naive per-file loop (linear head, file pooling): {naive_s:.2f} s; apply_tagger {linear:.3f} s, "
            f"{naive_s / linear:.0f}x faster"
        )
        catalog.close()


if __name__ == "__main__":
    main()
