"""`soundsearch eval retrieval|zeroshot`: score a model on a published dataset or on your own files.

Reproducing LAION-CLAP's zero-shot ESC-50 number (about 91-93 %): unpack ESC-50 (the folder with
``meta/esc50.csv`` and ``audio/``), make the weights available locally, then

    soundsearch eval zeroshot --dataset esc50 --root ESC-50-master --model laion/clap-htsat-unfused \\
        --out esc50-zeroshot.json

The prompt is LAION's "This is a sound of {label}." (``--template`` to change or ensemble). The table
shows overall accuracy and the accuracy of each fold; LAION's README quotes fold 1 (``--fold 1``).
Retrieval on Clotho v2.1 evaluation or AudioCaps test works the same way:
``soundsearch eval retrieval --dataset clotho --root clotho --model ...``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Both are light (no torch): `soundsearch --help` stays fast.
from evaluation.datasets import DATASET_KINDS
from evaluation.prompts import DEFAULT_TEMPLATE
from storage.atomic import atomic_write_text

if TYPE_CHECKING:
    from evaluation.datasets import Dataset
    from evaluation.metrics import RetrievalResult, ZeroShotResult
    from indexer.encoders.base import Encoder


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model: audio-text retrieval or zero-shot classification",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = parser.add_subparsers(dest="eval_task", required=True, metavar="TASK")
    retrieval = tasks.add_parser(
        "retrieval",
        help="text→audio and audio→text R@1/5/10, mAP@10, median rank (AudioCaps/Clotho protocol)",
    )
    zeroshot = tasks.add_parser("zeroshot", help="zero-shot classification: accuracy (single-label) or mAP")
    for task in (retrieval, zeroshot):
        _add_common_arguments(task)
        task.set_defaults(run=run)
    zeroshot.add_argument(
        "--template",
        action="append",
        type=_template,
        metavar="TEXT",
        help=f"prompt template with {{label}}; repeat to ensemble (default: {DEFAULT_TEMPLATE!r})",
    )


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, choices=DATASET_KINDS, metavar="KIND", help=", ".join(DATASET_KINDS)
    )
    parser.add_argument("--root", required=True, type=Path, metavar="DIR", help="dataset folder (csv: the CSV file)")
    parser.add_argument("--model", required=True, metavar="SPEC", help="model name, HF id or directory, or .pt file")
    parser.add_argument("--split", help="dataset split (clotho: evaluation; audiocaps: test; esc50: esc10)")
    parser.add_argument("--fold", type=int, help="evaluate one fold only (ESC-50, UrbanSound8K); default: all")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N clips (quick checks)")
    parser.add_argument("--device", help="torch device, e.g. cuda or cpu (default: the encoder's choice)")
    parser.add_argument("--batch-size", type=_positive_int, default=16, metavar="N", help="clips per batch")
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out clips whose audio is missing instead of failing",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of a table")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON report to FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _template(text: str) -> str:
    if "{label}" not in text:
        raise argparse.ArgumentTypeError(f"template {text!r} has no {{label}} placeholder")
    return text


def _load_encoder(spec: str, device: str | None) -> Encoder:
    """Separate so tests can substitute a fake encoder."""
    from indexer import load_encoder

    return load_encoder(spec, device)


def run(args: argparse.Namespace) -> int:
    from evaluation.datasets import load_dataset

    dataset = load_dataset(args.dataset, args.root, args.split, skip_missing=args.skip_missing)
    if args.fold is not None:
        dataset = dataset.select_fold(args.fold)
    if args.limit is not None:
        dataset = dataset.head(args.limit)
    encoder = _load_encoder(args.model, args.device)
    templates: list[str] = (args.template or [DEFAULT_TEMPLATE]) if args.eval_task == "zeroshot" else []
    report = evaluate(
        args.eval_task,
        encoder,
        dataset,
        templates=templates,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    report["fold"] = args.fold
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")  # an interrupted run never leaves half a report
    print(text if args.json else format_table(report))
    return 0


def evaluate(
    task: str, encoder: Encoder, dataset: Dataset, *, templates: list[str], batch_size: int, progress: bool
) -> dict[str, Any]:
    """Run one evaluation task and return its JSON-ready report."""
    from evaluation import runner

    start = time.perf_counter()
    result: RetrievalResult | ZeroShotResult
    if task == "retrieval":
        result = runner.evaluate_retrieval(encoder, dataset, batch_size=batch_size, progress=progress)
    else:
        result = runner.evaluate_zeroshot(
            encoder, dataset, templates=templates, batch_size=batch_size, progress=progress
        )
    report: dict[str, Any] = {
        "task": task,
        "dataset": dataset.kind,
        "root": str(dataset.root),
        "split": dataset.split,
        "model": encoder.model_id,
        "n_clips": len(dataset),
        "n_missing_audio": dataset.n_missing,
    }
    if task == "zeroshot":
        report["templates"] = templates
    report["metrics"] = _finite(result.to_dict())
    report["elapsed_s"] = round(time.perf_counter() - start, 3)
    return report


def _finite(value: Any) -> Any:
    """NaN (an undefined metric, e.g. no queries) becomes null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_table(report: dict[str, Any]) -> str:
    """A readable summary of a report; percentages for recalls, mAP and accuracy."""
    m = report["metrics"]
    split = f" ({report['split']})" if report["split"] else ""
    fold = f", fold {report['fold']}" if report.get("fold") is not None else ""
    lines = [f"{report['dataset']}{split}{fold} · {report['n_clips']} clips · model {report['model']}"]
    if report["n_missing_audio"]:
        lines.append(f"({report['n_missing_audio']} clips left out: audio not found)")
    if report["task"] == "retrieval":
        lines.append(f"{m['n_captions']} captions")
        lines.append(f"{'direction':<12}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'mAP@10':>8}{'medR':>7}{'meanR':>8}")
        for key, name in (("text_to_audio", "text→audio"), ("audio_to_text", "audio→text")):
            d = m[key]
            lines.append(
                f"{name:<12}{_pct(d['R@1']):>8}{_pct(d['R@5']):>8}{_pct(d['R@10']):>8}{_pct(d['mAP@10']):>8}"
                f"{_num(d['median_rank']):>7}{_num(d['mean_rank']):>8}"
            )
        return "\n".join(lines)
    lines.append(f"{m['n_classes']} classes · prompt {' | '.join(report['templates'])}")
    if m["accuracy"] is not None:
        lines.append(f"accuracy  {_pct(m['accuracy'])} %")
    lines.append(f"mAP       {_pct(m['mAP'])} %")
    if len(m["per_fold_accuracy"]) > 1:
        lines.append("fold  accuracy %")
        lines.extend(f"{k:>4}  {_pct(v):>10}" for k, v in m["per_fold_accuracy"].items())
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
