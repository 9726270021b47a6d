"""Measure an encoder on a held-out synthetic library: the numbers in the mini model card.

- zero-shot accuracy over the 27 classes (top-1 = the clip's foreground class; prompt ensemble),
- text→audio recall with the clips' own captions (all 5 per clip, AudioCaps protocol),
- paraphrase queries worded unlike any training caption: does a clip of the intended class appear in
  the top 10?

Run: .venv/bin/python -m training.evaluate_mini --library HELDOUT_DIR [--model mini] [--json out.json]
(make the library with `soundsearch synth HELDOUT_DIR --n 1000 --seed 2026`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.datasets import load_dataset
from evaluation.metrics import retrieval_metrics_from_embeddings
from evaluation.runner import caption_index, embed_clips
from evaluation.synth import CLASSES
from indexer import load_encoder
from indexer.encoders.base import Encoder
from search.zeroshot import ZeroShotClassifier

# Wordings the caption templates never use, each with the class a listener would expect.
PARAPHRASES: tuple[tuple[str, str], ...] = (
    ("fire truck racing past", "siren"),
    ("ambulance on an emergency call", "siren"),
    ("drizzle", "rain"),
    ("a downpour on the street", "rain"),
    ("tapping on a table", "knocking"),
    ("someone at the door wants to come in", "knocking"),
    ("a gale howling", "wind"),
    ("surf breaking on the shore", "ocean waves"),
    ("a storm rumbling far away", "thunder"),
    ("a campfire", "fire crackling"),
    ("a leaky faucet", "water dripping"),
    ("someone walking down a corridor", "footsteps"),
    ("a grandfather clock", "clock ticking"),
    ("writing an email on a laptop", "typing on a keyboard"),
    ("a pulse", "heartbeat"),
    ("an audience cheering and clapping", "applause"),
    ("a parked truck with its motor running", "engine idling"),
    ("a chopper flying overhead", "helicopter"),
    ("road works drilling into concrete", "jackhammer"),
    ("songbirds in the morning", "birds chirping"),
    ("insects at night in summer", "crickets"),
    ("a window smashing", "glass breaking"),
    ("a bomb going off", "explosion"),
    ("a cellphone going off", "telephone ringing"),
    ("someone honking in traffic", "car horn"),
    ("an alarm clock waking someone up", "alarm beeping"),
    ("a cathedral chiming the hour", "church bell"),
    ("a referee blowing", "whistle"),
    ("a buzzing transformer", "electrical hum"),
    ("a visitor ringing at the front door", "doorbell"),
)


def evaluate(encoder: Encoder, library: Path) -> dict[str, Any]:
    dataset = load_dataset("synth", library)
    items = list(dataset.items)
    foreground = [item.labels[0] for item in items]
    audio = embed_clips(encoder, items, progress=False)

    classifier = ZeroShotClassifier(encoder, list(CLASSES))
    owners = np.arange(len(items))
    predictions = classifier.predict_vectors([str(i.path) for i in items], audio, owners)
    correct = [p.scores[0][0] == fg for p, fg in zip(predictions, foreground, strict=True)]
    mixture = [len(item.labels) > 1 for item in items]
    per_class = {
        c: float(np.mean([ok for ok, fg in zip(correct, foreground, strict=True) if fg == c])) for c in CLASSES
    }

    captions, owner = caption_index(dataset)
    retrieval = retrieval_metrics_from_embeddings(audio, encoder.embed_text(captions), owner)

    queries = encoder.embed_text([q for q, _ in PARAPHRASES])
    hits = []
    for (query, wanted), vec in zip(PARAPHRASES, queries, strict=True):
        top = np.argsort(-(audio @ vec))[:10]
        hits.append({"query": query, "class": wanted, "found_in_top10": any(foreground[i] == wanted for i in top)})
    return {
        "model": encoder.model_id,
        "library": str(library),
        "clips": len(items),
        "zeroshot_accuracy": float(np.mean(correct)),
        "zeroshot_single_source": float(np.mean([ok for ok, m in zip(correct, mixture, strict=True) if not m])),
        "zeroshot_mixtures": float(np.mean([ok for ok, m in zip(correct, mixture, strict=True) if m])),
        "zeroshot_per_class": per_class,
        "retrieval": retrieval.to_dict(),
        "paraphrases_found_in_top10": float(np.mean([h["found_in_top10"] for h in hits])),
        "paraphrases": hits,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--model", default="mini")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--card", type=Path, help="a mini.json whose model card gets these held-out numbers")
    args = parser.parse_args()
    report = evaluate(load_encoder(args.model), args.library)
    t2a = report["retrieval"]["text_to_audio"]
    print(f"model {report['model']} on {report['clips']} held-out clips ({report['library']})")
    print(
        f"zero-shot accuracy (27 classes): {report['zeroshot_accuracy']:.3f} (single-source clips "
        f"{report['zeroshot_single_source']:.3f}, mixtures {report['zeroshot_mixtures']:.3f})"
    )
    print(f"text→audio R@1 {t2a['R@1']:.3f}  R@5 {t2a['R@5']:.3f}  R@10 {t2a['R@10']:.3f}  mAP@10 {t2a['mAP@10']:.3f}")
    print(f"paraphrase queries with their class in the top 10: {report['paraphrases_found_in_top10']:.2f}")
    for h in report["paraphrases"]:
        print(f"   {'✓' if h['found_in_top10'] else '✗'} {h['query']!r} → {h['class']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.card:
        write_card(args.card, report, args)


def write_card(path: Path, report: dict[str, Any], args: argparse.Namespace) -> None:
    config = json.loads(path.read_text())
    config.setdefault("card", {})["evaluation_command"] = (
        f".venv/bin/python -m training.evaluate_mini --library {args.library} --model {args.model}"
    )
    config["card"]["heldout"] = {
        "library": f"{report['clips']} clips (`soundsearch synth DIR --n 1000 --seed 2026`), never used in training",
        "zeroshot_accuracy_27_classes": round(report["zeroshot_accuracy"], 4),
        "zeroshot_single_source": round(report["zeroshot_single_source"], 4),
        "zeroshot_mixtures": round(report["zeroshot_mixtures"], 4),
        "text_to_audio": report["retrieval"]["text_to_audio"],
        "audio_to_text": report["retrieval"]["audio_to_text"],
        "paraphrase_queries_class_in_top10": round(report["paraphrases_found_in_top10"], 4),
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()
