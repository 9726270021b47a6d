"""Query layer over a catalog: text and example queries, ranked per file with the best segment's time.

FAISS returns segments; a file is as good as its best segment, and the hit carries that segment's
start/end so a long ambience is reported "at 1:25". Zero-shot scoring against user labels lives in
`classify`. (Hybrid text search, filters and caching come with the search issue.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.audio import load_audio
from indexer.catalog import Catalog, FileRecord
from indexer.encoders.base import Encoder
from indexer.errors import SoundsearchError
from indexer.types import FloatArray, Seconds

DEFAULT_TEMPLATES = ("the sound of {}", "a recording of {}", "{}")


@dataclass(frozen=True)
class Hit:
    file_id: int
    path: Path
    score: float
    start_s: Seconds
    end_s: Seconds
    duration_s: Seconds | None
    format: str | None


class Engine:
    def __init__(self, catalog: Catalog, encoder: Encoder) -> None:
        catalog.check_model(encoder.model_id, encoder.dim)
        self.catalog = catalog
        self.encoder = encoder

    def search(self, text: str, k: int = 10) -> list[Hit]:
        text = text.strip()
        if not text:
            raise SoundsearchError("empty query: type what the sound is like")
        return self.search_vector(self.encoder.embed_text([text])[0], k)

    def similar(self, path: str | Path, k: int = 10) -> list[Hit]:
        audio = load_audio(path, self.encoder.sample_rate)
        query = self.encoder.embed_audio([audio.samples])[0]
        resolved = Path(path).absolute()
        return [h for h in self.search_vector(query, k + 1) if h.path != resolved][:k]

    def search_vector(self, query: FloatArray, k: int) -> list[Hit]:
        # Several segments of one file may rank high: over-fetch so that k distinct files remain.
        segment_hits = self.catalog.search_vectors(query, k * 4)
        best: dict[int, tuple[float, float, float]] = {}
        for seg, score in segment_hits:
            if seg.file_id not in best or score > best[seg.file_id][0]:
                best[seg.file_id] = (score, seg.start_s, seg.end_s)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:k]
        files: dict[int, FileRecord] = {fid: f for fid in best if (f := self.catalog.file(fid)) is not None}
        return [
            Hit(fid, files[fid].path, score, start, end, files[fid].duration_s, files[fid].format)
            for fid, (score, start, end) in ranked
            if fid in files
        ]

    def classify(
        self, path: str | Path, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> dict[str, float]:
        """Single-label zero-shot probabilities: softmax over labels of the model's scaled cosine."""
        clean = [label.strip() for label in labels]
        if not clean or any(not label for label in clean) or len(set(clean)) != len(clean):
            raise SoundsearchError("labels must be a non-empty list of distinct, non-blank names")
        audio = load_audio(path, self.encoder.sample_rate)
        emb = self.encoder.embed_audio([audio.samples])[0]
        prompts = self.encoder.embed_text([t.format(label) for label in clean for t in templates])
        per_label = prompts.reshape(len(clean), len(templates), -1).mean(axis=1)
        per_label /= np.linalg.norm(per_label, axis=1, keepdims=True)
        scale = float(getattr(self.encoder, "logit_scale", 100.0))
        logits = scale * (per_label @ emb)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        return dict(sorted(zip(clean, probs.tolist(), strict=True), key=lambda kv: -kv[1]))
