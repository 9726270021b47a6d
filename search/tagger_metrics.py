"""How good a tagger is on labelled files: mAP, accuracy, macro-F1, per-class precision/recall, confusion.

- Single-label: the prediction is the best-scoring label; accuracy is top-1; the confusion matrix counts
  (true label, predicted label) pairs.
- Multi-label: a label is predicted when its score reaches its threshold; accuracy is exact match (every
  label right); the confusion matrix counts (true label, predicted label) pairs over every file, so its
  diagonal holds the hits and a row shows what a class is mistaken for.
mAP is scikit-learn's macro average precision over classes with a positive (`evaluation.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluation.metrics import mean_average_precision
from indexer.types import FloatArray
from search.tagger_data import BoolArray

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClassReport:
    label: str
    support: int  # files that carry the label
    precision: float
    recall: float
    f1: float
    average_precision: float | None


@dataclass(frozen=True)
class TaggerReport:
    labels: tuple[str, ...]
    multi_label: bool
    n_files: int
    accuracy: float
    macro_f1: float
    mean_average_precision: float
    per_class: tuple[ClassReport, ...]
    confusion: IntArray  # [true label, predicted label]

    def to_dict(self) -> dict[str, Any]:
        return {
            "multi_label": self.multi_label,
            "files": self.n_files,
            "accuracy": round(self.accuracy, 6),
            "macro_f1": round(self.macro_f1, 6),
            "map": round(self.mean_average_precision, 6),
            "per_class": [
                {
                    "label": c.label,
                    "support": c.support,
                    "precision": round(c.precision, 6),
                    "recall": round(c.recall, 6),
                    "f1": round(c.f1, 6),
                    "ap": None if c.average_precision is None else round(c.average_precision, 6),
                }
                for c in self.per_class
            ],
            "labels": list(self.labels),
            "confusion": self.confusion.tolist(),
        }


def predicted_labels(scores: FloatArray, thresholds: FloatArray, multi_label: bool) -> BoolArray:
    """Which labels each file gets: those at or above threshold (multi-label), else the best one."""
    if multi_label:
        return np.asarray(scores >= thresholds[None, :])
    out = np.zeros(scores.shape, dtype=bool)
    out[np.arange(len(scores)), scores.argmax(axis=1)] = True
    return out


def evaluate(
    scores: FloatArray, targets: BoolArray, labels: tuple[str, ...], thresholds: FloatArray, multi_label: bool
) -> TaggerReport:
    if scores.shape != targets.shape or scores.shape[1] != len(labels):
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be [files, {len(labels)}]")
    predicted = predicted_labels(scores, thresholds, multi_label)
    tp = (predicted & targets).sum(axis=0)
    n_pred, n_true = predicted.sum(axis=0), targets.sum(axis=0)
    precision = np.divide(tp, n_pred, out=np.zeros(len(labels)), where=n_pred > 0)
    recall = np.divide(tp, n_true, out=np.zeros(len(labels)), where=n_true > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(labels)), where=precision + recall > 0)
    m_ap, per_class_ap = mean_average_precision(scores, targets) if len(scores) else (float("nan"), ())
    per_class = tuple(
        ClassReport(
            labels[c],
            int(n_true[c]),
            float(precision[c]),
            float(recall[c]),
            float(f1[c]),
            per_class_ap[c] if per_class_ap else None,
        )
        for c in range(len(labels))
    )
    present = n_true > 0  # macro-F1 over the classes these files contain
    return TaggerReport(
        labels=labels,
        multi_label=multi_label,
        n_files=len(scores),
        accuracy=float((predicted == targets).all(axis=1).mean()) if len(scores) else float("nan"),
        macro_f1=float(f1[present].mean()) if present.any() else float("nan"),
        mean_average_precision=m_ap,
        per_class=per_class,
        confusion=(targets.astype(np.int64).T @ predicted.astype(np.int64)),
    )


def plot_confusion(report: TaggerReport, path: str | Path) -> Path:
    """Draw the confusion matrix as a PNG (rows normalised per true class; counts written in the cells)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    out = Path(path)
    n = len(report.labels)
    counts = report.confusion
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), report.labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), report.labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"accuracy {report.accuracy:.1%}, macro-F1 {report.macro_f1:.3f}, mAP {report.mean_average_precision:.3f}"
    )
    if n <= 40:
        for i, j in zip(*np.nonzero(counts), strict=True):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=6,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
