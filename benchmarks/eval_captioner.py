"""Captioner vs the nearest-neighbour baseline on a held-out synthetic library, scored in the same run.

Baseline: for each test clip, the first caption of the training clip nearest to it in the encoder's
embedding space (cosine), the standard retrieval baseline of audio captioning. Both systems are scored
with the same corpus-level metrics (captioning.metrics: PTB tokenisation, BLEU-1..4, METEOR, ROUGE-L,
CIDEr-D; SPICE/SPIDEr where the CoreNLP jars exist) against the test clips' five references.

Run: .venv/bin/python -m benchmarks.eval_captioner --data /work/data/heldout [--update-card]

`--real DIR` (a `training.real_sounds` folder) scores instead each `--captioner` (repeat it to compare;
default: the shipped one) on every file of the real test packages, never trained on, against the files'
weak captions (`training.build_mini3.real_pairs`: names, folders, embedded text), each file captioned as
the product does (`Captioner.caption_file`). Beside the corpus metrics: the share of files whose caption
has a content word (not a stopword, not a number) in common with one of the file's references.

Run: .venv/bin/python -m benchmarks.eval_captioner --real /work/data/real --captioner A --captioner B
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from captioning.captioner import Captioner
    from training.data import Pair

REAL_TEST_SPLITS = ("test",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/data/heldout"), help="synthetic library folder")
    parser.add_argument(
        "--captioner", type=Path, action="append", help="captioner folder (default: the shipped one); --real: repeat"
    )
    parser.add_argument("--real", type=Path, default=None, help="training.real_sounds folder: score its test files")
    parser.add_argument("--clip-cache", type=Path, default=Path("build/mini"), help="training.clips block caches")
    parser.add_argument("--train-clips", type=int, default=2000, help="the captioner's training clips (seed 0)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--no-meteor", action="store_true")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the nearest neighbour (it depends on the encoder only)"
    )
    parser.add_argument("--spice-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("build/captioner/heldout_eval.json"))
    parser.add_argument("--update-card", action="store_true", help="write the results into the model card")
    args = parser.parse_args()
    if args.real is not None:
        folders = args.captioner or [None]
        return real_main(
            args.real, folders, args.out, meteor=not args.no_meteor, limit=args.limit, card=args.update_card
        )
    if args.captioner and len(args.captioner) > 1:
        parser.error("give one --captioner for the held-out library (several only with --real)")
    folder = args.captioner[0] if args.captioner else None

    from captioning.captioner import load_captioner
    from captioning.data import decode_file, load_caption_data
    from captioning.metrics import caption_metrics

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from indexer.audio import resample
    from training.clips import SAMPLE_RATE, rendered_clips

    train = [] if args.no_baseline else rendered_clips(0, args.train_clips, args.clip_cache, say=say)
    t0 = time.perf_counter()
    clips = load_caption_data(str(args.data))
    if args.limit:
        clips = clips[: args.limit]
    captioner = load_captioner(folder)
    encoder = captioner.extractor.encoder  # type: ignore[attr-defined]
    sr = captioner.extractor.sample_rate
    say(f"{len(clips)} test clips; decoding and captioning ...")
    test_audio = [decode_file(c.key, sr) for c in clips]
    t1 = time.perf_counter()
    predictions = captioner.caption_clips(test_audio)
    caption_s = time.perf_counter() - t1

    refs = [c.captions for c in clips]
    ours = caption_metrics(predictions, refs, meteor=not args.no_meteor, spice_dir=args.spice_dir)
    baseline: list[str] = []
    nn_scores = None
    if train:
        say(f"nearest-neighbour baseline over {len(train)} training clips ...")
        # The clip caches are 16 kHz; a two-tower mini runs at 44.1 kHz.
        train_emb = encoder.embed_audio([resample(r[0], SAMPLE_RATE, sr) for r in train])
        test_emb = encoder.embed_audio(test_audio)
        nearest = np.argmax(test_emb @ train_emb.T, axis=1)
        baseline = [train[int(i)][1][0] for i in nearest]
        nn_scores = caption_metrics(baseline, refs, meteor=not args.no_meteor, spice_dir=args.spice_dir).to_dict()
    result = {
        "data": str(args.data),
        "n_clips": len(clips),
        "captioner": captioner.model_id,
        "encoder": encoder.model_id,
        "decode": captioner.decode.__dict__,
        "captioner_scores": ours.to_dict(),
        "nearest_neighbour_scores": nn_scores,
        "captioning_seconds": round(caption_s, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "examples": [
            {"path": c.key, "caption": p, "nearest_neighbour": b, "reference": c.captions[0]}
            for c, p, b in list(zip(clips, predictions, baseline or [""] * len(clips), strict=True))[:8]
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d", "spice", "spider"]
    keys += ["vocab_size", "mean_length"]
    print("| metric | captioner | nearest neighbour |\n|---|---|---|")
    for k in keys:
        print(f"| {k} | {_fmt(ours.to_dict()[k])} | {_fmt(nn_scores[k] if nn_scores else None)} |")
    if ours.spice is None:
        print(f"\nSPICE unavailable: {ours.spice_unavailable}")
    print(
        f"\n{len(clips)} clips, references: vocab {ours.reference_vocab_size}, mean length "
        f"{ours.reference_mean_length:.1f}; captioning {caption_s:.0f} s; written {args.out}"
    )
    if args.update_card:
        entry = {
            k: v for k, v in result.items() if k in ("data", "n_clips", "captioner_scores", "nearest_neighbour_scores")
        }
        entry["command"] = "python -m benchmarks.eval_captioner --data " + str(args.data)
        update_card(folder, "heldout_benchmark", entry)
    return 0


def update_card(folder: Path | None, key: str, entry: dict[str, Any]) -> None:
    """Write a benchmark's result into a captioner's card (default: the shipped one's)."""
    from captioning.store import META_FILE, WEIGHTS_DIR

    path = (folder or WEIGHTS_DIR) / META_FILE
    meta = json.loads(path.read_text())
    meta["card"][key] = entry
    path.write_text(json.dumps(meta, indent=2) + "\n")


def content_words(text: str) -> set[str]:
    from storage.fulltext import STOPWORDS, query_words

    return {w for w in query_words(text) if w not in STOPWORDS and not w.isdigit()}


def shares_content_word(caption: str, references: tuple[str, ...]) -> bool:
    said = content_words(caption)
    return any(said & content_words(r) for r in references)


def real_package(path: Path) -> str:
    """The package of a file of `training.real_sounds`' library/<split>/<package>/... layout."""
    parts = path.parts
    at = len(parts) - 1 - parts[::-1].index("library")
    return parts[at + 2]


def evaluate_real(captioner: Captioner, pairs: list[Pair], *, meteor: bool = True) -> dict[str, Any]:
    """One captioner on real files: corpus metrics and the content-word hit rate against weak captions."""
    from captioning.metrics import caption_metrics

    t0 = time.perf_counter()
    predictions = [captioner.caption_file(p.path).caption for p in pairs]
    seconds = time.perf_counter() - t0
    refs = [list(p.captions) for p in pairs]
    hits = [shares_content_word(c, p.captions) for c, p in zip(predictions, pairs, strict=True)]
    # Per package too: one package's sounds can overlap a training package's (freeciv's: freecol's, warzone2100's).
    per_package: dict[str, dict[str, Any]] = {}
    for package in sorted({real_package(p.path) for p in pairs}):
        rows = [i for i, p in enumerate(pairs) if real_package(p.path) == package]
        scores = caption_metrics([predictions[i] for i in rows], [refs[i] for i in rows], meteor=False)
        hit_rate = float(np.mean([hits[i] for i in rows]))
        per_package[package] = {"n_files": len(rows), "cider_d": scores.cider_d, "content_word_hit_rate": hit_rate}
    return {
        "captioner": captioner.model_id,
        "scores": caption_metrics(predictions, refs, meteor=meteor).to_dict(),
        "content_word_hit_rate": float(np.mean(hits)) if hits else 0.0,
        "per_package": per_package,
        "captioning_seconds": round(seconds, 1),
        "captions": {str(p.path): c for p, c in zip(pairs, predictions, strict=True)},
    }


def real_main(
    real: Path, folders: list[Path | None], out: Path, *, meteor: bool, limit: int | None, card: bool = False
) -> int:
    """`--real`: the captioners side by side; `card`: each one's result written into its own card."""
    from captioning.captioner import load_captioner
    from training.build_mini3 import real_pairs

    pairs = real_pairs(real, REAL_TEST_SPLITS)[:limit]
    if not pairs:
        print(f"{real}: no captioned files in the {'/'.join(REAL_TEST_SPLITS)} packages", file=sys.stderr)
        return 1
    print(f"{len(pairs)} real test files ({real}); captioning ...", file=sys.stderr, flush=True)
    results = [evaluate_real(load_captioner(f), pairs, meteor=meteor) for f in folders]
    names = [str(f) if f is not None else "shipped" for f in folders]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"real": str(real), "n_files": len(pairs), "captioners": dict(zip(names, results, strict=True))}, indent=2
        )
        + "\n"
    )
    keys = ["bleu_1", "bleu_4", "meteor", "rouge_l", "cider_d", "vocab_size", "mean_length"]
    print("| metric | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for k in keys:
        print(f"| {k} | " + " | ".join(_fmt(r["scores"][k]) for r in results) + " |")
    print(
        "| shares a content word with a reference | "
        + " | ".join(_fmt(r["content_word_hit_rate"]) for r in results)
        + " |"
    )
    for package in results[0]["per_package"]:
        print(
            f"| {package}: CIDEr-D / content-word hits | "
            + " | ".join(
                f"{r['per_package'][package]['cider_d']:.3f} / {r['per_package'][package]['content_word_hit_rate']:.3f}"
                for r in results
            )
            + " |"
        )
    ref_length = results[0]["scores"]["reference_mean_length"]
    print(f"\n{len(pairs)} files; references: mean length {ref_length:.1f}; written {out}")
    for p in pairs[:: max(1, len(pairs) // 8)]:
        print(
            f"{p.path.name}: refs {list(p.captions)} -> "
            + " | ".join(repr(r["captions"][str(p.path)]) for r in results)
        )
    if card and limit is None:
        for folder, r in zip(folders, results, strict=True):
            entry = {"data": str(real), "splits": list(REAL_TEST_SPLITS), "n_files": len(pairs), "scores": r["scores"]}
            entry |= {k: r[k] for k in ("content_word_hit_rate", "per_package")}
            entry["command"] = f"python -m benchmarks.eval_captioner --real {real}"
            update_card(folder, "real_benchmark", entry)
    return 0


def _fmt(value: object) -> str:
    return "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


if __name__ == "__main__":
    sys.exit(main())
