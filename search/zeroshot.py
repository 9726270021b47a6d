"""Zero-shot classification against labels the user types.

Each label becomes several prompts ("This is a sound of {}.", ...) whose text embeddings are averaged
and renormalised (prompt ensembling). Sounds are scored per window, then pooled per file:

- single-label: softmax over the labels of the model's scaled cosine (`logit_scale`, as CLAP was
  trained), averaged over the windows of a file;
- multi-label: for each label on its own, sigmoid(logit_scale · (cos(sound, label) − cos(sound, null)))
  where "null" is a fixed ensemble of label-free prompts ("a sound", "a recording", ...). A label's score
  therefore does not change when other labels are added or removed. Pooled by max over windows
  (present anywhere in the file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.audio import load_audio
from indexer.encoders.base import Encoder
from indexer.types import FloatArray
from indexer.windows import WindowSpec, split_windows
from search.query import QueryError
from storage.catalog import Catalog

DEFAULT_TEMPLATES = ("This is a sound of {}.", "the sound of {}", "a recording of {}", "{}")
NULL_PROMPTS = ("a sound", "a recording", "an audio clip", "sound")
MAX_LABELS = 10_000


def parse_labels(text: str | None = None, lines: Sequence[str] | None = None) -> list[str]:
    """Labels from "a, b, c" or from lines of a file; refuse empty, blank or duplicate labels."""
    raw = list(lines) if lines is not None else (text or "").split(",")
    labels = [label.strip() for label in raw]
    if lines is not None:
        labels = [label for label in labels if label and not label.startswith("#")]
    if not labels or labels == [""]:
        raise QueryError("no labels given: pass --labels 'dog, cat, rain' or --labels-file FILE")
    if any(not label for label in labels):
        raise QueryError("blank label in the list (two commas in a row, or a trailing comma?)")
    seen: dict[str, str] = {}
    for label in labels:
        if label.lower() in seen:
            raise QueryError(f"duplicate label {label!r}")
        seen[label.lower()] = label
    if len(labels) > MAX_LABELS:
        raise QueryError(f"too many labels ({len(labels)}; at most {MAX_LABELS})")
    return labels


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    if not templates:
        raise QueryError("at least one prompt template is needed")
    for t in templates:
        if t.count("{}") != 1:
            raise QueryError(f"template {t!r} must contain '{{}}' exactly once, where the label goes")
    return tuple(templates)


@dataclass(frozen=True)
class Prediction:
    """Scores of one sound, best first."""

    source: str
    scores: tuple[tuple[str, float], ...]

    def to_dict(self, top: int | None = None) -> dict[str, object]:
        scores = self.scores if top is None else self.scores[:top]
        return {"path": self.source, "labels": [{"label": lb, "score": round(s, 6)} for lb, s in scores]}


class ZeroShotClassifier:
    def __init__(
        self,
        encoder: Encoder,
        labels: Sequence[str],
        *,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        multi_label: bool = False,
        prompts: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """`prompts`, one list per label, replaces the templates where a label's words are not the best prompt
        (a UCS CatID such as "DOORWood" is described by its category, subcategory and synonyms)."""
        self.encoder = encoder
        self.labels = parse_labels(lines=list(labels))
        self.templates = check_templates(templates)
        self.multi_label = multi_label
        self.scale = float(getattr(encoder, "logit_scale", 100.0))
        if prompts is not None and (len(prompts) != len(self.labels) or not all(prompts)):
            raise QueryError("give one non-empty list of prompts per label")
        groups = prompts or [[t.format(label) for t in self.templates] for label in self.labels]
        self.label_vectors = self._ensemble([list(group) for group in groups])
        self.null_vector = self._ensemble([list(NULL_PROMPTS)])[0]

    def _ensemble(self, prompt_groups: list[list[str]]) -> FloatArray:
        flat = [p for group in prompt_groups for p in group]
        emb = self.encoder.embed_text(flat)
        out = np.zeros((len(prompt_groups), emb.shape[1]), dtype=np.float32)
        start = 0
        for i, group in enumerate(prompt_groups):
            out[i] = emb[start : start + len(group)].mean(axis=0)
            start += len(group)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def window_scores(self, window_vectors: FloatArray) -> FloatArray:
        """Scores [n_windows, n_labels] before pooling."""
        cos = window_vectors @ self.label_vectors.T
        if self.multi_label:
            margin = cos - (window_vectors @ self.null_vector)[:, None]
            return (1.0 / (1.0 + np.exp(-self.scale * margin))).astype(np.float32)
        logits = self.scale * cos
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)

    def pooled_scores(self, window_vectors: FloatArray, owners: np.ndarray, n_files: int) -> FloatArray:
        """Per-file scores [n_files, n_labels] from windows of files `owners` (0..n_files-1)."""
        per_window = self.window_scores(window_vectors)
        if self.multi_label:
            pooled = np.zeros((n_files, len(self.labels)), dtype=np.float32)
            np.maximum.at(pooled, owners, per_window)
            return pooled
        sums = np.zeros((n_files, len(self.labels)), dtype=np.float32)
        np.add.at(sums, owners, per_window)
        counts = np.bincount(owners, minlength=n_files).astype(np.float32)[:, None]
        return (sums / np.maximum(counts, 1.0)).astype(np.float32)

    def predict_vectors(
        self, sources: Sequence[str], window_vectors: FloatArray, owners: np.ndarray
    ) -> list[Prediction]:
        pooled = self.pooled_scores(window_vectors, owners, len(sources))
        return [self._prediction(src, row) for src, row in zip(sources, pooled, strict=True)]

    def predict_files(self, paths: Sequence[str | Path]) -> list[Prediction]:
        """Classify audio files (decoded, windowed and embedded here)."""
        spec = WindowSpec(self.encoder.window_seconds, self.encoder.window_seconds / 2)
        windows: list[FloatArray] = []
        owners: list[int] = []
        for i, path in enumerate(paths):
            audio = load_audio(path, self.encoder.sample_rate)
            parts = split_windows(audio.samples, self.encoder.sample_rate, spec)
            windows.extend(w.samples for w in parts)
            owners.extend([i] * len(parts))
        vectors = self.encoder.embed_audio(windows)
        return self.predict_vectors([str(p) for p in paths], vectors, np.asarray(owners))

    def _prediction(self, source: str, row: FloatArray) -> Prediction:
        order = np.argsort(-row, kind="stable")
        return Prediction(source, tuple((self.labels[i], float(row[i])) for i in order))


def classify_library(
    catalog: Catalog, classifier: ZeroShotClassifier, file_ids: Sequence[int] | None = None
) -> list[tuple[int, Prediction]]:
    """Classify indexed files from their stored vectors: nothing is decoded or re-embedded."""
    seg_ids, owners = catalog.segment_owners(file_ids)
    if len(seg_ids) == 0:
        return []
    files, inverse = np.unique(owners, return_inverse=True)
    vectors = catalog.segment_vectors(seg_ids)
    paths = catalog.paths(files.tolist())
    predictions = classifier.predict_vectors([paths[int(f)] for f in files], vectors, inverse)
    return [(int(f), p) for f, p in zip(files, predictions, strict=True)]


def tags_from(prediction: Prediction, *, multi_label: bool, threshold: float) -> list[tuple[str, float]]:
    """The labels worth storing as tags: the top one (single-label) or all above the threshold."""
    if not multi_label:
        return [prediction.scores[0]]
    return [(label, score) for label, score in prediction.scores if score >= threshold]
