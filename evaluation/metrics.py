"""Retrieval and zero-shot classification metrics (vectorised numpy, no I/O).

Retrieval follows the AudioCaps / Clotho protocol (DCASE task 6b and the WavCaps / "audio-retrieval"
baseline code), over a similarity matrix `S[caption, clip]` and a mapping `caption_to_clip`:

* text→audio: every caption is a query; exactly one clip (its own) is relevant. With `r` the 1-based
  rank of that clip: R@k = fraction of queries with r <= k; mAP@10 = mean over queries of 1/r if r <= 10
  else 0 (with one relevant item, AP@10 is the reciprocal rank cut at 10).
* audio→text: every clip that has at least one caption is a query; its n captions are relevant
  (5 for AudioCaps test and Clotho). R@k = fraction of queries whose best-ranked relevant caption is in
  the top k. AP@10 of one query = sum over its relevant captions ranked in the top 10 of
  precision-at-that-position (j / p_j for the j-th relevant caption found at position p_j), divided by
  min(n, 10). That is the baseline code's `sum(j / p_j) / 5` whenever n <= 10 (always, for these
  datasets); the min() keeps a perfect ranking at 1.0 when a clip has more than 10 captions.
* median rank = floor(median of the 1-based rank of the first relevant item), mean rank = its mean;
  the floor is what the reference code reports (`floor(median(ranks0)) + 1`).

Ties. Equal scores are resolved pessimistically and deterministically: an irrelevant item whose score
equals a relevant item's is ranked before it; relevant items tied with each other keep their caption
order. So a degenerate model that scores everything equally gets the worst ranks, never lucky ones
(the reference code's `argsort()[::-1]` breaks ties by index instead, which can flatter such models).

Zero-shot classification, over scores `[n_clips, n_classes]`:

* single-label: the prediction is the argmax (ties go to the lowest class index, like `torch.argmax`);
  accuracy = fraction of clips predicted correctly; per-class accuracy = accuracy over the clips of each
  class (None for a class without clips); the confusion matrix counts (true row, predicted column).
* mAP: macro average over classes of average precision with scikit-learn's definition
  (`average_precision_score`): AP = sum_n (R_n - R_(n-1)) P_n over the distinct score thresholds, which
  equals the mean over the positives of precision at that positive's score, with tied scores counted
  together. Classes without any positive clip are left out of the macro average (their AP is None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RECALL_KS: tuple[int, ...] = (1, 5, 10)
MAP_K = 10
# Upper bound on the elements of one boolean comparison block; keeps memory near 32 MB whatever the size.
_BLOCK_ELEMENTS = 1 << 25


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RankingMetrics:
    """Metrics of one retrieval direction. Recalls and mAP are fractions in [0, 1]; ranks are 1-based."""

    n_queries: int
    recall_at: dict[int, float]
    map_at_10: float
    median_rank: float
    mean_rank: float

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"n_queries": self.n_queries}
        out.update({f"R@{k}": v for k, v in sorted(self.recall_at.items())})
        out.update({"mAP@10": self.map_at_10, "median_rank": self.median_rank, "mean_rank": self.mean_rank})
        return out


@dataclass(frozen=True)
class RetrievalResult:
    """Both directions of caption↔clip retrieval over one set of clips."""

    n_clips: int
    n_captions: int
    text_to_audio: RankingMetrics
    audio_to_text: RankingMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_clips": self.n_clips,
            "n_captions": self.n_captions,
            "text_to_audio": self.text_to_audio.to_dict(),
            "audio_to_text": self.audio_to_text.to_dict(),
        }


@dataclass(frozen=True)
class ZeroShotResult:
    """Zero-shot classification metrics. Fractions in [0, 1].

    `accuracy`, `per_class_accuracy`, `confusion` and `per_fold_accuracy` exist for single-label data
    only (None / empty for multi-label). `per_class_ap[c]` is None for a class without positives.
    """

    class_names: tuple[str, ...]
    n_clips: int
    multi_label: bool
    mean_average_precision: float
    per_class_ap: tuple[float | None, ...]
    accuracy: float | None = None
    per_class_accuracy: tuple[float | None, ...] = ()
    confusion: IntArray | None = field(default=None, compare=False, repr=False)
    per_fold_accuracy: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_clips": self.n_clips,
            "n_classes": len(self.class_names),
            "multi_label": self.multi_label,
            "accuracy": self.accuracy,
            "mAP": self.mean_average_precision,
            "per_fold_accuracy": {str(k): v for k, v in sorted(self.per_fold_accuracy.items())},
            "classes": list(self.class_names),
            "per_class_ap": list(self.per_class_ap),
        }
        if not self.multi_label:
            out["per_class_accuracy"] = list(self.per_class_accuracy)
            out["confusion"] = None if self.confusion is None else self.confusion.tolist()
        return out


# -------------------------------------------------------------------------------------------- retrieval


def _check_similarity(similarity: FloatArray, caption_to_clip: Sequence[int] | IntArray) -> IntArray:
    sim = np.asarray(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D [n_captions, n_clips], got shape {sim.shape}")
    mapping = np.asarray(caption_to_clip, dtype=np.int64)
    if mapping.shape != (sim.shape[0],):
        raise ValueError(f"caption_to_clip has shape {mapping.shape}, expected ({sim.shape[0]},)")
    if mapping.size and (mapping.min() < 0 or mapping.max() >= sim.shape[1]):
        raise ValueError(f"caption_to_clip holds clip indices outside [0, {sim.shape[1]})")
    if not np.isfinite(sim).all():
        raise ValueError("similarity contains NaN or inf")
    return mapping


def text_to_audio_ranks(similarity: FloatArray, caption_to_clip: Sequence[int] | IntArray) -> IntArray:
    """1-based rank of each caption's own clip among all clips (ties pessimistic, see module doc)."""
    mapping = _check_similarity(similarity, caption_to_clip)
    sim = np.asarray(similarity)
    n_captions, n_clips = sim.shape
    ranks = np.empty(n_captions, dtype=np.int64)
    rows = max(1, _BLOCK_ELEMENTS // max(1, n_clips))
    for start in range(0, n_captions, rows):
        block = sim[start : start + rows]
        own = block[np.arange(len(block)), mapping[start : start + rows]]
        # Counting every clip scoring >= the relevant one (itself included) is the pessimistic rank.
        ranks[start : start + rows] = (block >= own[:, None]).sum(axis=1)
    return ranks


@dataclass(frozen=True)
class AudioToTextRanks:
    """Per audio query: the clip index and the 1-based positions of its relevant captions.

    `positions[q, j]` is the rank of the j-th caption of clip `clips[q]` (captions in their original
    order); entries where `mask[q, j]` is False are padding.
    """

    clips: IntArray
    positions: IntArray
    mask: BoolArray


def audio_to_text_ranks(similarity: FloatArray, caption_to_clip: Sequence[int] | IntArray) -> AudioToTextRanks:
    """Rank all captions for each clip that has captions; return where its own captions land."""
    mapping = _check_similarity(similarity, caption_to_clip)
    by_clip = np.asarray(similarity).T  # [n_clips, n_captions]
    n_clips, n_captions = by_clip.shape
    if n_captions == 0:
        empty = np.zeros((0, 0), dtype=np.int64)
        return AudioToTextRanks(clips=np.zeros(0, dtype=np.int64), positions=empty, mask=empty.astype(bool))
    counts = np.bincount(mapping, minlength=n_clips)
    clips = np.flatnonzero(counts).astype(np.int64)
    width = int(counts.max())
    # rel[q, j]: index of the j-th caption of clip q, in caption order (stable sort keeps it).
    order = np.argsort(mapping, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])[clips]
    col = np.arange(width)
    mask = col[None, :] < counts[clips][:, None]
    rel = np.where(mask, order[np.minimum(starts[:, None] + col[None, :], n_captions - 1)], 0)

    positions = np.zeros((len(clips), width), dtype=np.int64)
    rows = max(1, _BLOCK_ELEMENTS // max(1, width * n_captions))
    for start in range(0, len(clips), rows):
        q = slice(start, start + rows)
        scores = by_clip[clips[q]]  # [b, n_captions]
        rel_scores = np.take_along_axis(scores, rel[q], axis=1)  # [b, width]
        m = mask[q]
        ge_all = (scores[:, None, :] >= rel_scores[:, :, None]).sum(axis=2)
        # Among the relevant captions: which score >= / > caption j, and which are tied but earlier.
        other = rel_scores[:, None, :]
        this = rel_scores[:, :, None]
        ge_rel = ((other >= this) & m[:, None, :]).sum(axis=2)
        earlier = np.tril(np.ones((width, width), dtype=bool), k=-1)  # [j, i]: i < j
        before_rel = (((other > this) | ((other == this) & earlier[None])) & m[:, None, :]).sum(axis=2)
        # Irrelevant captions tied with j go first (pessimistic); relevant ones keep caption order.
        positions[q] = (ge_all - ge_rel) + before_rel + 1
    return AudioToTextRanks(clips=clips, positions=np.where(mask, positions, 0), mask=mask)


def _summarise(first_ranks: IntArray, average_precision: FloatArray, ks: Sequence[int]) -> RankingMetrics:
    n = len(first_ranks)
    if n == 0:
        nan = float("nan")
        return RankingMetrics(0, {k: nan for k in ks}, nan, nan, nan)
    return RankingMetrics(
        n_queries=n,
        recall_at={k: float(np.mean(first_ranks <= k)) for k in ks},
        map_at_10=float(np.mean(average_precision)),
        median_rank=float(math.floor(float(np.median(first_ranks)))),
        mean_rank=float(np.mean(first_ranks)),
    )


def retrieval_metrics(
    similarity: FloatArray,
    caption_to_clip: Sequence[int] | IntArray,
    *,
    ks: Sequence[int] = RECALL_KS,
) -> RetrievalResult:
    """Text→audio and audio→text metrics from `similarity[caption, clip]` (see the module docstring).

    Clips without captions still take part as distractors for text→audio, but are no audio→text query.
    """
    mapping = _check_similarity(similarity, caption_to_clip)
    n_captions, n_clips = np.asarray(similarity).shape

    t2a = text_to_audio_ranks(similarity, mapping)
    t2a_ap = np.where(t2a <= MAP_K, 1.0 / t2a, 0.0)

    a2t = audio_to_text_ranks(similarity, mapping)
    # Sorting a query's positions makes the j-th entry the j-th relevant caption found, whose precision
    # is j / position; padding sorts last and never counts.
    sorted_pos = np.sort(np.where(a2t.mask, a2t.positions, np.iinfo(np.int64).max), axis=1)
    ordinal = np.arange(1, sorted_pos.shape[1] + 1)[None, :]
    precision = np.where(sorted_pos <= MAP_K, ordinal / sorted_pos, 0.0)
    n_rel = a2t.mask.sum(axis=1)
    a2t_ap = precision.sum(axis=1) / np.minimum(n_rel, MAP_K)
    a2t_first = sorted_pos[:, 0] if sorted_pos.shape[1] else np.zeros(0, dtype=np.int64)

    return RetrievalResult(
        n_clips=n_clips,
        n_captions=n_captions,
        text_to_audio=_summarise(t2a, t2a_ap, ks),
        audio_to_text=_summarise(a2t_first, a2t_ap, ks),
    )


def retrieval_metrics_from_embeddings(
    audio_embeddings: FloatArray,
    text_embeddings: FloatArray,
    caption_to_clip: Sequence[int] | IntArray,
    *,
    ks: Sequence[int] = RECALL_KS,
) -> RetrievalResult:
    """Same as `retrieval_metrics` with similarity = text @ audio.T (cosine for L2-normalised rows)."""
    audio = np.asarray(audio_embeddings, dtype=np.float64)
    text = np.asarray(text_embeddings, dtype=np.float64)
    if audio.ndim != 2 or text.ndim != 2 or audio.shape[1] != text.shape[1]:
        raise ValueError(f"embedding shapes do not match: audio {audio.shape}, text {text.shape}")
    return retrieval_metrics(text @ audio.T, caption_to_clip, ks=ks)


# ------------------------------------------------------------------------------------------- zero-shot


def average_precision(scores: FloatArray, positives: BoolArray) -> float | None:
    """Average precision of one class, scikit-learn's definition; None when there is no positive."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and positives {y.shape} must be 1-D of equal length")
    pos = np.sort(s[y])
    if pos.size == 0:
        return None
    all_sorted = np.sort(s)
    # For each positive: how many items / positives score >= it (ties counted together).
    n_ge = len(s) - np.searchsorted(all_sorted, pos, side="left")
    n_pos_ge = len(pos) - np.searchsorted(pos, pos, side="left")
    return float(np.mean(n_pos_ge / n_ge))


def mean_average_precision(scores: FloatArray, targets: BoolArray) -> tuple[float, tuple[float | None, ...]]:
    """Macro mAP over classes with at least one positive, and the per-class APs."""
    s = np.asarray(scores)
    y = np.asarray(targets, dtype=bool)
    if s.shape != y.shape or s.ndim != 2:
        raise ValueError(f"scores {s.shape} and targets {y.shape} must be 2-D [n_clips, n_classes] and equal")
    per_class = tuple(average_precision(s[:, c], y[:, c]) for c in range(s.shape[1]))
    defined = [ap for ap in per_class if ap is not None]
    return (float(np.mean(defined)) if defined else float("nan")), per_class


def _check_scores(scores: FloatArray, n_classes: int) -> FloatArray:
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] != n_classes:
        raise ValueError(f"scores must be [n_clips, {n_classes}], got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return s


def zeroshot_single_label(
    scores: FloatArray,
    targets: Sequence[int] | IntArray,
    class_names: Sequence[str],
    *,
    folds: Sequence[int] | IntArray | None = None,
) -> ZeroShotResult:
    """Top-1 accuracy, per-class accuracy, confusion matrix and mAP for one label per clip.

    `folds` (one int per clip) adds the accuracy of each fold, as LAION reports ESC-50 per fold.
    """
    s = _check_scores(scores, len(class_names))
    t = np.asarray(targets, dtype=np.int64)
    n, n_classes = s.shape
    if t.shape != (n,) or (n and (t.min() < 0 or t.max() >= n_classes)):
        raise ValueError(f"targets must be {n} class indices in [0, {n_classes})")
    predicted = s.argmax(axis=1)  # first maximum wins on ties
    correct = predicted == t
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (t, predicted), 1)
    per_class_n = confusion.sum(axis=1)
    per_class_acc = tuple(float(confusion[c, c] / per_class_n[c]) if per_class_n[c] else None for c in range(n_classes))
    per_fold: dict[int, float] = {}
    if folds is not None:
        f = np.asarray(folds, dtype=np.int64)
        if f.shape != (n,):
            raise ValueError(f"folds must have one entry per clip ({n}), got shape {f.shape}")
        per_fold = {int(k): float(np.mean(correct[f == k])) for k in np.unique(f)}
    one_hot = np.zeros((n, n_classes), dtype=bool)
    one_hot[np.arange(n), t] = True
    m_ap, per_class_ap = mean_average_precision(s, one_hot)
    return ZeroShotResult(
        class_names=tuple(class_names),
        n_clips=n,
        multi_label=False,
        mean_average_precision=m_ap,
        per_class_ap=per_class_ap,
        accuracy=float(np.mean(correct)) if n else float("nan"),
        per_class_accuracy=per_class_acc,
        confusion=confusion,
        per_fold_accuracy=per_fold,
    )


def zeroshot_multi_label(scores: FloatArray, targets: BoolArray, class_names: Sequence[str]) -> ZeroShotResult:
    """Macro mAP (scikit-learn definition) for any number of labels per clip."""
    s = _check_scores(scores, len(class_names))
    y = np.asarray(targets, dtype=bool)
    if y.shape != s.shape:
        raise ValueError(f"targets must be a boolean [n_clips, n_classes] matrix like scores {s.shape}")
    m_ap, per_class_ap = mean_average_precision(s, y)
    return ZeroShotResult(
        class_names=tuple(class_names),
        n_clips=s.shape[0],
        multi_label=True,
        mean_average_precision=m_ap,
        per_class_ap=per_class_ap,
    )
