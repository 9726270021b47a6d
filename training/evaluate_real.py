"""The real-recordings protocol: test packages never seen in training, queries written for them.

- text → audio: each query of `evaluation/real/queries.json` ranks every file of the test library by
  cosine similarity (vector mode: names cannot help); R@k = share of queries with a relevant file in the
  top k, mAP@10 = mean over queries of AP@10 (precision at each relevant hit in the top 10, divided by
  min(relevant, 10)).
- query by example: every file whose *family* (the same name up to numbering in the same folder:
  `hammering_00`..`_02`, `Blacksmith1`..`3`) has other members ranks all other files; family mAP = the
  mean average precision of those members. The queries file names the packages whose numbered sets are
  *variant groups* (different recordings played for one thing: lincity-ng's `Rocket1`..`4` run from a
  launch hiss to a rumble) rather than takes of one sound; takes mAP leaves those out, which is the
  issue's own definition of a family ("the other takes of the same sound").
Models: any `load_encoder` spec, or `aisfx` (the pretrained tower alone: mean+max of its block vectors)
and `random` (the same architecture with random weights), which have no text side.

`--through-engine` measures the same through the product instead of pooled vectors: the library indexed
into a throwaway catalog, text in vector mode, search by example window against window (`Engine.similar`).

Run: .venv/bin/python -m training.evaluate_real --library /work/data/real/library/test --model mini
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer import load_encoder
from indexer.audio import load_audio
from indexer.encoders.aisfx import AisfxNet
from indexer.encoders.base import Encoder, normalise
from indexer.encoders.mini import load_mini
from indexer.metadata import EmbeddedText
from indexer.scan import walk_audio
from indexer.types import FloatArray
from indexer.windows import WindowSpec
from indexer.windows import embed_clips as windowed
from training.captions import weak_captions

QUERIES = Path(__file__).resolve().parent.parent / "evaluation" / "real" / "queries.json"


class TowerOnly:
    """The aiSFX tower of the shipped two-tower mini as an audio-only encoder (optionally re-initialised)."""

    def __init__(self, random_weights: bool) -> None:
        encoder = load_mini(device="cpu")
        self.model = encoder.model
        if not self.model.cfg.two_towers:
            raise SystemExit("the shipped mini has no aiSFX tower")
        if random_weights:
            torch.manual_seed(0)
            self.model.aisfx = AisfxNet().eval()
        self.model_id = "aisfx (random weights)" if random_weights else "aisfx tower alone"
        self.sample_rate = encoder.sample_rate
        self.window_seconds = encoder.window_seconds
        self.dim = 1024

    def embed_audio(self, clips: Sequence[FloatArray]) -> FloatArray:
        def embed(windows: list[FloatArray]) -> FloatArray:
            feats = self.model.window_features(windows, torch.device("cpu"))[:, : self.dim]
            return normalise(feats.numpy())

        return windowed(clips, self.sample_rate, WindowSpec(self.window_seconds, self.window_seconds / 2), embed)

    def embed_text(self, texts: Sequence[str]) -> FloatArray:
        raise NotImplementedError("an audio tower alone has no text side")


def _encoder(spec: str) -> Encoder | TowerOnly:
    if spec in ("aisfx", "random"):
        return TowerOnly(spec == "random")
    return load_encoder(spec, device="cpu")


def text_metrics(audio: FloatArray, text: FloatArray, relevant: list[np.ndarray]) -> dict[str, float]:
    return ranking_metrics(list(np.argsort(-(text @ audio.T), axis=1, kind="stable")), relevant)


def ranking_metrics(rankings: list[np.ndarray], relevant: list[np.ndarray]) -> dict[str, float]:
    """R@1/5/10 and mAP@10 of each query's ranked file indices (at least its first 10)."""
    out: dict[str, float] = {}
    hits = [np.isin(order, rel) for order, rel in zip(rankings, relevant, strict=True)]
    for k in (1, 5, 10):
        out[f"R@{k}"] = float(np.mean([h[:k].any() for h in hits]))
    aps = []
    for h, rel in zip(hits, relevant, strict=True):
        top = np.zeros(10, dtype=bool)
        top[: min(10, len(h))] = h[:10]
        precision = np.cumsum(top) / np.arange(1, 11)
        aps.append(float((precision * top).sum() / min(len(rel), 10)))
    out["mAP@10"] = float(np.mean(aps))
    return out


def family_aps(rankings: dict[int, np.ndarray], family: list[str]) -> dict[int, float]:
    """AP of each ranked file's family, for the files that have a sibling."""
    fam = np.array(family)
    aps = {}
    for i, order in rankings.items():
        hits = fam[order] == fam[i]
        if hits.any():
            precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
            aps[i] = float(precision[hits].mean())
    return aps


def rankings_by_cosine(audio: FloatArray) -> dict[int, np.ndarray]:
    """Every file's ranking of all the other files by cosine similarity."""
    sims = audio @ audio.T
    rankings = {}
    for i in range(len(audio)):
        order = np.argsort(-sims[i], kind="stable")
        rankings[i] = order[order != i]
    return rankings


@dataclass(frozen=True)
class RealSet:
    library: Path
    paths: list[Path]  # sorted
    rel_paths: list[str]
    family: list[str]
    takes: np.ndarray  # per file: its package's numbered families are takes of one sound (not variant groups)
    queries: list[str]
    relevant: list[np.ndarray]  # per query, indices into `paths`

    def qbe_report(self, rankings: dict[int, np.ndarray]) -> dict[str, float | int]:
        """Family mAP over every file with a sibling, and over the takes alone."""
        aps = family_aps(rankings, self.family)
        takes = [ap for i, ap in aps.items() if self.takes[i]]
        return {
            "qbe_family_mAP": float(np.mean(list(aps.values()))),
            "qbe_queries": len(aps),
            "qbe_takes_mAP": float(np.mean(takes)) if takes else float("nan"),
            "qbe_takes_queries": len(takes),
        }


def real_set(library: Path, queries_file: Path = QUERIES) -> RealSet:
    found, _ = walk_audio(library, confine_to=None)
    paths = sorted(Path(f.path) for f in found)
    rel_paths = [p.relative_to(library).as_posix() for p in paths]
    # A package is its own library: families never span packages (numbering restarts in each).
    family = [f"{p.split('/')[0]}:{weak_captions(library / p, library, EmbeddedText()).family}" for p in rel_paths]
    doc = json.loads(queries_file.read_text())
    variant_packages = set(doc.get("variant_groups", {}))
    takes = np.array([p.split("/")[0] not in variant_packages for p in rel_paths], dtype=bool)
    index = {p: i for i, p in enumerate(rel_paths)}
    queries = [q["query"] for q in doc["queries"]]
    relevant = [np.array([index[p] for p in q["relevant"]]) for q in doc["queries"]]
    return RealSet(library, paths, rel_paths, family, takes, queries, relevant)


def evaluate(spec: str, data: RealSet) -> dict[str, Any]:
    """Pooled file vectors ranked by cosine."""
    encoder = _encoder(spec)
    clips = [load_audio(p, encoder.sample_rate).samples for p in data.paths]
    audio = np.concatenate([encoder.embed_audio(clips[s : s + 16]) for s in range(0, len(clips), 16)])
    report: dict[str, Any] = {
        "model": encoder.model_id,
        "files": len(data.paths),
        **data.qbe_report(rankings_by_cosine(audio)),
    }
    if not isinstance(encoder, TowerOnly):
        report["text_to_audio"] = text_metrics(audio, encoder.embed_text(data.queries), data.relevant)
        report["n_queries"] = len(data.queries)
    return report


def evaluate_engine(spec: str, data: RealSet) -> dict[str, Any]:
    """The product's path, as the HTTP API runs it: the library indexed by the indexing service into a
    throwaway catalog, text queries in vector mode, and each family member's `similar` search (its
    windows against every indexed window)."""
    from indexer.pipeline import IndexOptions
    from search.engine import Engine
    from search.indexing import index_library
    from storage.catalog import Catalog

    with tempfile.TemporaryDirectory() as home:
        with Catalog.open(home) as catalog:
            encoder = catalog.load_encoder(spec, "cpu")
            index_library(catalog, encoder, [data.library], options=IndexOptions(follow_links_outside=True))
        engine = Engine.open(home)
        try:
            where = {p.as_posix(): i for i, p in enumerate(data.paths)}
            n = len(data.paths)

            def ranked(hits: list[Any]) -> np.ndarray:
                return np.array([where[Path(h.path).as_posix()] for h in hits], dtype=np.int64)

            text = [ranked(engine.search(q, k=10, mode="vector")) for q in data.queries]
            members = Counter(data.family)
            siblings = {i for i, f in enumerate(data.family) if members[f] > 1}
            by_example = {i: ranked(engine.similar(str(data.paths[i]), k=n - 1)) for i in sorted(siblings)}
        finally:
            engine.close()
    return {
        "model": f"{encoder.model_id} (through the engine)",
        "files": n,
        **data.qbe_report(by_example),
        "text_to_audio": ranking_metrics(text, data.relevant),
        "n_queries": len(data.queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", type=Path, default=Path("/work/data/real/library/test"))
    parser.add_argument("--model", action="append", help="a load_encoder spec, aisfx or random (repeatable)")
    parser.add_argument("--queries", type=Path, default=QUERIES)
    parser.add_argument("--through-engine", action="store_true", help="index and search as the HTTP API does")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = real_set(args.library, args.queries)
    run = evaluate_engine if args.through_engine else evaluate
    reports = [run(spec, data) for spec in args.model or ["mini"]]
    print("| model | text→audio R@1 | R@10 | mAP@10 | query-by-example family mAP | takes only |")
    print("|---|---|---|---|---|---|")
    for r in reports:
        t = r.get("text_to_audio")
        cells = [f"{t['R@1']:.3f}", f"{t['R@10']:.3f}", f"{t['mAP@10']:.3f}"] if t else ["n/a"] * 3
        print(f"| {r['model']} | {' | '.join(cells)} | {r['qbe_family_mAP']:.3f} | {r['qbe_takes_mAP']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
