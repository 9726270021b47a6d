"""Metric code against hand-computed cases and a brute-force Python reference.

The reference ranks with an explicit sort key that states the tie rule of `evaluation.metrics`:
higher score first; on equal scores irrelevant items first (pessimistic); then original index.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from evaluation.metrics import (
    average_precision,
    mean_average_precision,
    retrieval_metrics,
    retrieval_metrics_from_embeddings,
    text_to_audio_ranks,
    zeroshot_multi_label,
    zeroshot_single_label,
)

# ------------------------------------------------------------------------------- brute-force reference


def _ranked(scores: list[float], relevant: set[int]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i in relevant, i))


def _reference_direction(queries: list[tuple[list[float], set[int]]]) -> dict[str, float]:
    """R@1/5/10, mAP@10 (DCASE baseline formula), floor-median and mean of the first relevant rank."""
    firsts: list[int] = []
    aps: list[float] = []
    for scores, relevant in queries:
        order = _ranked(scores, relevant)
        positions = sorted(order.index(i) + 1 for i in relevant)
        firsts.append(positions[0])
        hits = [p for p in positions if p <= 10]
        aps.append(sum((j + 1) / p for j, p in enumerate(hits)) / min(len(relevant), 10))
    return {
        "R@1": sum(r <= 1 for r in firsts) / len(firsts),
        "R@5": sum(r <= 5 for r in firsts) / len(firsts),
        "R@10": sum(r <= 10 for r in firsts) / len(firsts),
        "mAP@10": sum(aps) / len(aps),
        "median_rank": float(math.floor(float(np.median(firsts)))),
        "mean_rank": sum(firsts) / len(firsts),
    }


def _reference_retrieval(sim: np.ndarray, mapping: list[int]) -> tuple[dict[str, float], dict[str, float]]:
    n_captions, n_clips = sim.shape
    t2a = [(list(map(float, sim[c])), {mapping[c]}) for c in range(n_captions)]
    a2t = [
        (list(map(float, sim[:, a])), {c for c in range(n_captions) if mapping[c] == a})
        for a in range(n_clips)
        if a in mapping
    ]
    return _reference_direction(t2a), _reference_direction(a2t)


def _reference_ap(scores: list[float], positives: list[bool]) -> float:
    """scikit-learn's AP written out: sum over distinct thresholds of (R_n - R_{n-1}) * P_n."""
    n_pos = sum(positives)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        selected = [p for s, p in zip(scores, positives, strict=True) if s >= t]
        recall = sum(selected) / n_pos
        ap += (recall - prev_recall) * (sum(selected) / len(selected))
        prev_recall = recall
    return ap


def _assert_direction(got: dict[str, float | int], want: dict[str, float]) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


# ---------------------------------------------------------------------------------- hand-computed cases


def test_text_to_audio_hand_computed() -> None:
    sim = np.array([[0.9, 0.1, 0.2], [0.8, 0.5, 0.1], [0.7, 0.6, 0.3]])
    result = retrieval_metrics(sim, [0, 1, 2])
    assert text_to_audio_ranks(sim, [0, 1, 2]).tolist() == [1, 2, 3]
    t2a = result.text_to_audio
    assert t2a.n_queries == 3
    assert t2a.recall_at == {1: pytest.approx(1 / 3), 5: 1.0, 10: 1.0}
    assert t2a.map_at_10 == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert t2a.median_rank == 2.0
    assert t2a.mean_rank == pytest.approx(2.0)


def test_audio_to_text_hand_computed_two_captions_per_clip() -> None:
    # sim[caption, clip]; captions 0,1 describe clip 0 and captions 2,3 describe clip 1.
    sim = np.array([[0.9, 0.8], [0.2, 0.7], [0.5, 0.6], [0.1, 0.3]])
    result = retrieval_metrics(sim, [0, 0, 1, 1])
    a2t = result.audio_to_text
    # Clip 0 ranks captions 0,2,1,3: relevant at 1 and 3 → AP = (1/1 + 2/3) / 2 = 5/6.
    # Clip 1 ranks captions 0,1,2,3: relevant at 3 and 4 → AP = (1/3 + 2/4) / 2 = 5/12.
    assert a2t.n_queries == 2
    assert a2t.map_at_10 == pytest.approx((5 / 6 + 5 / 12) / 2)
    assert a2t.recall_at[1] == pytest.approx(0.5)
    assert a2t.recall_at[5] == 1.0
    assert a2t.median_rank == 2.0  # median of first ranks [1, 3]
    assert a2t.mean_rank == pytest.approx(2.0)
    t2a = result.text_to_audio  # ranks of own clip: 1, 2, 1, 1
    assert t2a.recall_at[1] == pytest.approx(0.75)
    assert t2a.map_at_10 == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert t2a.median_rank == 1.0
    assert t2a.mean_rank == pytest.approx(1.25)
    assert result.n_clips == 2 and result.n_captions == 4


def test_ties_are_pessimistic() -> None:
    sim = np.zeros((4, 2))
    result = retrieval_metrics(sim, [0, 0, 1, 1])
    # Every caption's own clip ties with the other one and goes last.
    assert result.text_to_audio.mean_rank == 2.0
    assert result.text_to_audio.recall_at[1] == 0.0
    # Each clip sees its two irrelevant captions first, then its own at 3 and 4.
    assert result.audio_to_text.map_at_10 == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert result.audio_to_text.median_rank == 3.0


def test_map_at_10_cuts_at_rank_10_and_normalises_by_min_n_10() -> None:
    n_clips = 12
    sim = np.tile(np.linspace(1.0, 0.0, n_clips), (1, 1))  # one caption, ranks the clips in index order
    for own, expected in [(0, 1.0), (9, 1 / 10), (10, 0.0)]:
        res = retrieval_metrics(sim, [own]).text_to_audio
        assert res.map_at_10 == pytest.approx(expected)
        assert res.recall_at[10] == (1.0 if own < 10 else 0.0)
    # A clip with 12 captions all ranked first: AP@10 is 1, not 10/12.
    sim12 = np.column_stack([np.ones(12), np.zeros(12)])
    assert retrieval_metrics(sim12, [0] * 12).audio_to_text.map_at_10 == pytest.approx(1.0)


def test_clip_without_captions_is_a_distractor_not_a_query() -> None:
    sim = np.array([[0.2, 0.9, 0.1]])  # clip 1 has no caption but outranks clip 0
    result = retrieval_metrics(sim, [0])
    assert result.text_to_audio.mean_rank == 2.0
    assert result.audio_to_text.n_queries == 1


def test_from_embeddings_matches_similarity() -> None:
    rng = np.random.default_rng(3)
    audio = rng.normal(size=(6, 8))
    text = rng.normal(size=(12, 8))
    mapping = np.repeat(np.arange(6), 2)
    assert retrieval_metrics_from_embeddings(audio, text, mapping).to_dict() == (
        retrieval_metrics(text @ audio.T, mapping).to_dict()
    )


def test_retrieval_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="caption_to_clip"):
        retrieval_metrics(np.zeros((2, 2)), [0])
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 0.0]]), [0])


# ------------------------------------------------------------------------------ brute-force comparison


@pytest.mark.parametrize("seed", range(6))
def test_retrieval_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_clips = int(rng.integers(2, 25))
    captions_per_clip = rng.integers(0, 7, size=n_clips)  # includes clips without captions and > 5
    captions_per_clip[0] = max(1, captions_per_clip[0])
    mapping = [clip for clip, n in enumerate(captions_per_clip) for _ in range(n)]
    rng.shuffle(mapping)
    # Coarse scores make ties frequent, so the tie rule is exercised, not just continuous scores.
    sim = rng.integers(0, 4 if seed % 2 else 1000, size=(len(mapping), n_clips)).astype(float)
    result = retrieval_metrics(sim, mapping)
    want_t2a, want_a2t = _reference_retrieval(sim, mapping)
    _assert_direction(result.text_to_audio.to_dict(), want_t2a)
    _assert_direction(result.audio_to_text.to_dict(), want_a2t)


def test_retrieval_is_fast_at_benchmark_size() -> None:
    rng = np.random.default_rng(0)
    n_clips = 1000
    sim = rng.normal(size=(5 * n_clips, n_clips)).astype(np.float32)
    mapping = np.repeat(np.arange(n_clips), 5)
    start = time.perf_counter()
    result = retrieval_metrics(sim, mapping)
    assert time.perf_counter() - start < 10.0
    # Random scores: the own clip's rank is uniform, so R@10 ≈ 1%.
    assert result.text_to_audio.recall_at[10] == pytest.approx(0.01, abs=0.01)
    assert result.audio_to_text.n_queries == n_clips


# ------------------------------------------------------------------------------------------- zero-shot


def test_single_label_hand_computed() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # true 0, predicted 0
            [0.2, 0.7, 0.1],  # true 0, predicted 1
            [0.1, 0.8, 0.1],  # true 1, predicted 1
            [0.3, 0.3, 0.2],  # true 2, predicted 0 (tie 0/1: first index wins)
        ]
    )
    result = zeroshot_single_label(scores, [0, 0, 1, 2], ["dog", "cat", "rain"], folds=[1, 1, 2, 2])
    assert result.accuracy == pytest.approx(0.5)
    assert result.per_class_accuracy == (0.5, 1.0, 0.0)
    assert result.confusion is not None
    assert result.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert result.per_fold_accuracy == {1: 0.5, 2: 0.5}
    # AP(dog): scores .9 .2 .1 .3, positives clips 0,1 → ranked .9(+) .3 .2(+) .1 → (1 + 2/3) / 2.
    assert result.per_class_ap[0] == pytest.approx(5 / 6)
    d = result.to_dict()
    assert d["accuracy"] == pytest.approx(0.5) and d["confusion"][2] == [1, 0, 0]


def test_per_class_accuracy_is_none_for_absent_class() -> None:
    result = zeroshot_single_label(np.array([[1.0, 0.0]]), [0], ["a", "b"])
    assert result.per_class_accuracy == (1.0, None)
    assert result.per_class_ap == (1.0, None)
    assert result.mean_average_precision == 1.0


def test_average_precision_hand_computed_with_ties() -> None:
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool)) == pytest.approx(5 / 6)
    # A positive tied with a negative: one threshold with precision 1/2 (scikit-learn groups ties).
    assert average_precision(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0], bool)) == pytest.approx(0.5)
    assert average_precision(np.array([0.5, 0.2]), np.array([0, 0], bool)) is None


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=40).astype(float)  # heavy ties
    positives = rng.random(40) < 0.3
    positives[0] = True
    want = _reference_ap(scores.tolist(), positives.tolist())
    assert average_precision(scores, positives) == pytest.approx(want, abs=1e-12)


def test_multi_label_map_matches_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    scores = rng.normal(size=(60, 8)).round(1)  # rounding creates ties
    targets = rng.random((60, 8)) < 0.25
    targets[0] = True  # every class has a positive, as sklearn requires for a finite macro score
    result = zeroshot_multi_label(scores, targets, [f"c{i}" for i in range(8)])
    want = sklearn_metrics.average_precision_score(targets, scores, average="macro")
    assert result.mean_average_precision == pytest.approx(want, abs=1e-12)
    assert result.accuracy is None and result.multi_label


def test_map_skips_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.5], [0.1, 0.4]])
    m_ap, per_class = mean_average_precision(scores, np.array([[True, False], [False, False]]))
    assert per_class == (1.0, None)
    assert m_ap == 1.0


def test_zeroshot_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="class indices"):
        zeroshot_single_label(np.zeros((2, 2)), [0, 2], ["a", "b"])
    with pytest.raises(ValueError, match=r"\[n_clips, 3\]"):
        zeroshot_single_label(np.zeros((2, 2)), [0, 1], ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        zeroshot_multi_label(np.array([[np.nan]]), np.array([[True]]), ["a"])
