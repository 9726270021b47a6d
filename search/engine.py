"""The query layer: text, example and hybrid search over a catalog, ranked per file.

- FAISS returns segments; a file is as good as its best segment, and the hit carries that segment's
  start/end, so a three-minute ambience is reported "at 1:25".
- Hybrid mode fuses the vector ranking with the full-text ranking (file names, folders, UCS fields,
  embedded tags, tags, captions) by reciprocal rank fusion.
- Filters are applied before the top-k cut, so a filtered query returns k results whenever k files
  match: candidates are checked after the search while that finds k (broad filters), else the search
  runs among the passing files only (`search.filtering`).
- Text queries are embedded once (LRU cache); `-word` excludes: its embedding is subtracted from the
  query vector and the word must not appear in the matched text.
- Example sounds: a file outside the catalog is embedded window by window and mean-pooled; an indexed
  file reuses its stored vectors and is left out of its own results.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.encoders.base import Encoder, normalise
from indexer.types import FloatArray, Seconds
from search.filtering import FileFilter
from search.query import Filters, ParsedText, QueryError, check_k, check_mode, parse_text
from storage.catalog import Catalog, FileStatus
from storage.schema import FileRow, SegmentRow
from storage.vectors import IdArray

RRF_K = 60  # the usual reciprocal-rank-fusion constant: damps the head of each list
NEGATIVE_WEIGHT = 0.5
POSTFILTER_FETCH = 2048  # segments fetched unfiltered before a filter is applied up front instead


@dataclass(frozen=True)
class Hit:
    file_id: int
    path: Path
    score: float
    start_s: Seconds
    end_s: Seconds
    duration_s: Seconds | None
    format: str | None
    tags: tuple[str, ...] = ()
    caption: str | None = None
    matched_by: tuple[str, ...] = field(default=("vector",))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "score": round(self.score, 6),
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "file_id": self.file_id,
            "duration_s": self.duration_s,
            "format": self.format,
            "tags": list(self.tags),
            "caption": self.caption,
            "matched_by": list(self.matched_by),
        }


@dataclass(frozen=True)
class _Ranked:
    file_id: int
    score: float
    start_s: Seconds | None = None
    end_s: Seconds | None = None


Example = str | Path | int


class Engine:
    def __init__(self, catalog: Catalog, encoder: Encoder, *, cache_size: int = 1024) -> None:
        catalog.check_model(encoder.model_id, encoder.dim)
        self.catalog = catalog
        self.encoder = encoder
        self._embed_text = functools.lru_cache(maxsize=cache_size)(self._embed_text_uncached)

    @classmethod
    def open(cls, home: str | Path | None = None, *, model: str | None = None, db_url: str | None = None) -> Engine:
        """Open a catalog with the model that built it (or `model`, which must be the same)."""
        catalog = Catalog.open(home, db_url=db_url, writable=False)
        return cls(catalog, catalog.load_encoder(model))

    def close(self) -> None:
        self.catalog.close()

    # --- public queries ----------------------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int = 20,
        *,
        mode: str = "hybrid",
        filters: Filters | None = None,
        like: Example | None = None,
        like_weight: float = 0.5,
    ) -> list[Hit]:
        """Find sounds by description; `like` mixes in an example sound ("like this, but with rain")."""
        self.catalog.refresh(wait=False)  # what other processes committed since the last query
        parsed = parse_text(text)
        check_k(k)
        check_mode(mode)
        if not 0.0 <= like_weight <= 1.0:
            raise QueryError(f"like_weight must be between 0 and 1, got {like_weight}")
        filt = self._filter(filters)
        exclude: int | None = None
        vector_list: list[_Ranked] = []
        if mode in ("vector", "hybrid"):
            query = self._text_vector(parsed)
            if like is not None:
                example, exclude = self._example_vector(like)
                query = normalise(like_weight * example + (1.0 - like_weight) * query)
            vector_list = self._vector_ranking(query, k if mode == "vector" else max(2 * k, 50), filt, exclude)
        text_list: list[_Ranked] = []
        if mode in ("text", "hybrid"):
            text_list = self._text_ranking(parsed, k if mode == "text" else max(2 * k, 50), filt, exclude)
        if mode == "vector":
            return self._hits(vector_list[:k], ("vector",))
        if mode == "text":
            return self._hits(text_list[:k], ("text",))
        return self._fused(vector_list, text_list, k)

    def similar(self, example: Example, k: int = 20, *, filters: Filters | None = None) -> list[Hit]:
        """Sounds like an example: an indexed file (id or path) or any audio file."""
        self.catalog.refresh(wait=False)
        check_k(k)
        query, exclude = self._example_vector(example)
        return self._hits(self._vector_ranking(query, k, self._filter(filters), exclude), ("vector",))

    def duplicates(self, threshold: float = 0.97) -> list[list[Hit]]:
        """Groups of near-identical files (re-encoded, trimmed, gain-changed): cosine of pooled vectors."""
        if not 0.0 < threshold <= 1.0:
            raise QueryError(f"threshold must be in (0, 1], got {threshold}")
        file_ids, vectors = self.file_vectors()
        if len(file_ids) < 2:
            return []
        sims = vectors @ vectors.T
        np.fill_diagonal(sims, -1.0)
        parent = list(range(len(file_ids)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b in zip(*np.nonzero(np.triu(sims >= threshold)), strict=True):
            parent[find(int(a))] = find(int(b))
        groups: dict[int, list[int]] = {}
        for i in range(len(file_ids)):
            groups.setdefault(find(i), []).append(i)
        out = []
        for members in groups.values():
            if len(members) < 2:
                continue
            anchor = members[0]
            ranked = [_Ranked(int(file_ids[m]), float(sims[anchor, m]) if m != anchor else 1.0) for m in members]
            out.append(self._hits(ranked, ("vector",)))
        out.sort(key=lambda g: str(g[0].path))
        return out

    def file_vectors(self, file_ids: Sequence[int] | None = None) -> tuple[np.ndarray, FloatArray]:
        """One vector per file: the normalised mean of its segments' vectors."""
        with Session(self.catalog.engine) as s:
            query = select(SegmentRow.id, SegmentRow.file_id).order_by(SegmentRow.file_id, SegmentRow.id)
            if file_ids is not None:
                query = query.where(SegmentRow.file_id.in_(list(file_ids)))
            rows = s.execute(query).all()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.encoder.dim), dtype=np.float32)
        seg_ids = np.array([r[0] for r in rows], dtype=np.int64)
        owners = np.array([r[1] for r in rows], dtype=np.int64)
        vectors = self.catalog.vectors(seg_ids)
        unique, inverse = np.unique(owners, return_inverse=True)
        pooled = np.zeros((len(unique), vectors.shape[1]), dtype=np.float32)
        np.add.at(pooled, inverse, vectors)
        return unique, normalise(pooled)

    # --- query vectors -----------------------------------------------------------------------------

    def _embed_text_uncached(self, text: str) -> FloatArray:
        vec = self.encoder.embed_text([text])[0]
        vec.flags.writeable = False  # shared through the cache
        return vec

    def _text_vector(self, parsed: ParsedText) -> FloatArray:
        query = self._embed_text(parsed.positive)
        if parsed.negative:
            query = normalise(query - NEGATIVE_WEIGHT * self._embed_text(" ".join(parsed.negative)))
        return query

    def _example_vector(self, example: Example) -> tuple[FloatArray, int | None]:
        """Query vector of an example, and the catalog file to leave out of the results (if indexed)."""
        file_id = self._indexed_file_id(example)
        if file_id is not None:
            ids, vectors = self.file_vectors([file_id])
            if len(ids):
                return vectors[0], file_id
        if isinstance(example, int) or (isinstance(example, str) and example.isdigit() and not Path(example).exists()):
            raise QueryError(f"no indexed file with id {example}")
        from indexer.audio import load_audio  # torch comes with it: only a search by a sound file needs it

        audio = load_audio(example, self.encoder.sample_rate)
        return self.encoder.embed_audio([audio.samples])[0], None

    def _indexed_file_id(self, example: Example) -> int | None:
        with Session(self.catalog.engine) as s:
            if isinstance(example, int) or (isinstance(example, str) and example.isdigit()):
                row = s.get(FileRow, int(example))
                if row is not None and row.status == FileStatus.OK:
                    return row.id
                if isinstance(example, int):
                    return None
            path = str(Path(example).expanduser().absolute())
            return s.scalar(select(FileRow.id).where(FileRow.path == path, FileRow.status == FileStatus.OK))

    # --- rankings ----------------------------------------------------------------------------------

    def _filter(self, filters: Filters | None) -> FileFilter | None:
        return FileFilter(self.catalog, filters) if filters is not None and filters.active else None

    def _vector_ranking(self, query: FloatArray, k: int, filt: FileFilter | None, exclude: int | None) -> list[_Ranked]:
        """The k best files by their best segment. With a filter, candidates are checked after an
        unfiltered search while few rounds find k (broad filters); past POSTFILTER_FETCH segments the
        search runs among the passing files' segments only (selective filters)."""
        allowed_segments: IdArray | None = None
        total = self.catalog.index.count()
        fetch = min(max(4 * k, 32), max(total, 1))
        while True:
            scores, ids = self.catalog.index.search(query, fetch, allowed_segments)
            valid = [(int(i), float(sc)) for i, sc in zip(ids[0], scores[0], strict=True) if i >= 0]
            found = self.catalog.segments_by_id([i for i, _ in valid])
            best: dict[int, _Ranked] = {}
            for seg_id, score in valid:
                seg = found.get(seg_id)
                if seg is None or seg.file_id == exclude or seg.file_id in best:
                    continue  # results are score-ordered: the first segment of a file is its best
                best[seg.file_id] = _Ranked(seg.file_id, score, seg.start_s, seg.end_s)
            if filt is not None and allowed_segments is None:
                passing = filt.passing(best)
                best = {fid: r for fid, r in best.items() if fid in passing}
                # Segments an unfiltered search would need at this pass rate: past the limit, search
                # among the passing files' segments instead.
                if len(best) < k and fetch < total and fetch * k / max(len(best), 0.5) > POSTFILTER_FETCH:
                    allowed_segments = filt.allowed_segments()
                    total = len(allowed_segments)
                    fetch = min(max(4 * k, 32), max(total, 1))
                    continue
            if len(best) >= k or fetch >= total:
                return list(best.values())[:k]
            fetch = min(fetch * 4, total)

    def _text_ranking(self, parsed: ParsedText, k: int, filt: FileFilter | None, exclude: int | None) -> list[_Ranked]:
        limit = max(4 * k, 200)
        index = self.catalog.text  # one snapshot for both passes
        rows = index.search(parsed.positive, limit, exclude=parsed.negative)
        if filt is None:
            return [_Ranked(fid, score) for fid, score in rows if fid != exclude][:k]
        passing = filt.passing(fid for fid, _ in rows)
        if len(rows) == limit and len(passing) <= k:  # k + the excluded file may not be among them
            # A selective filter: rank every match (cheap, in memory) against every passing file.
            rows = index.search(parsed.positive, len(index.file_ids), exclude=parsed.negative)
            passing = filt.all_files()
        return [_Ranked(fid, score) for fid, score in rows if fid != exclude and fid in passing][:k]

    def _fused(self, vector_list: list[_Ranked], text_list: list[_Ranked], k: int) -> list[Hit]:
        fused: dict[int, float] = {}
        for ranking in (vector_list, text_list):
            for rank, item in enumerate(ranking):
                fused[item.file_id] = fused.get(item.file_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        by_vector = {r.file_id: r for r in vector_list}
        in_text = {r.file_id for r in text_list}
        order = sorted(fused, key=lambda fid: -fused[fid])[:k]
        ranked = [
            _Ranked(
                fid,
                fused[fid],
                by_vector[fid].start_s if fid in by_vector else None,
                by_vector[fid].end_s if fid in by_vector else None,
            )
            for fid in order
        ]
        sources = {
            fid: tuple(name for name, hit in (("vector", fid in by_vector), ("text", fid in in_text)) if hit)
            for fid in order
        }
        return self._hits(ranked, sources)

    def _hits(self, ranked: list[_Ranked], matched_by: tuple[str, ...] | dict[int, tuple[str, ...]]) -> list[Hit]:
        if not ranked:
            return []
        ids = [r.file_id for r in ranked]
        columns = (FileRow.id, FileRow.path, FileRow.duration_s, FileRow.format)
        with Session(self.catalog.engine) as s:  # plain rows: ORM objects cost more than the search itself
            files = {f.id: f for f in s.execute(select(*columns).where(FileRow.id.in_(ids)))}
        notes = self.catalog.annotations(ids)
        hits = []
        for r in ranked:
            f = files.get(r.file_id)
            if f is None:
                continue  # deleted by a concurrent indexing run
            duration = f.duration_s or 0.0
            hits.append(
                Hit(
                    file_id=f.id,
                    path=Path(f.path),
                    score=r.score,
                    start_s=r.start_s if r.start_s is not None else 0.0,
                    end_s=r.end_s if r.end_s is not None else duration,
                    duration_s=f.duration_s,
                    format=f.format,
                    tags=notes[f.id][0] if f.id in notes else (),
                    caption=notes[f.id][1] if f.id in notes else None,
                    matched_by=matched_by[f.id] if isinstance(matched_by, dict) else matched_by,
                )
            )
        return hits
