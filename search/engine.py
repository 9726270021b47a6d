"""The query layer: text, example and hybrid search over a catalog, ranked per file.

- FAISS returns segments; a file is as good as its best segment, and the hit carries that segment's
  start/end, so a three-minute ambience is reported "at 1:25". Its `audio_score` is that segment's
  cosine with the query, and `matched_terms` the query's words its name and metadata hold: what a
  person can read, beside the fusion score that only orders the list.
- Hybrid mode fuses the vector ranking with the full-text ranking (file names, folders, UCS fields,
  embedded tags, tags, captions) by reciprocal rank fusion.
- Filters are applied before the top-k cut, so a filtered query returns k results whenever k files
  match: candidates are checked after the search while that finds k (broad filters), else the search
  runs among the passing files only (`storage.queries`).
- Text queries are embedded once (LRU cache); `-word` excludes: its embedding is subtracted from the
  query vector and the word must not appear in the matched text.
- Example sounds are searched window by window, as the library is stored: a file outside the catalog
  is cut into the catalog's windows and each is embedded; an indexed file reuses its stored segments
  (and is left out of its own results). One batched FAISS search takes every window; a file ranks by
  its best (example window, segment) pair, so a short sound is found inside a long ambience and the
  middle of a long example finds what matches only that middle. The hit says which part of the
  example matched (`query_start_s`/`query_end_s`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from indexer.encoders.base import Encoder, normalise
from indexer.errors import AudioDecodeError
from indexer.types import FloatArray, Seconds
from indexer.windows import Window, WindowSpec, iter_windows
from search.query import Filters, ParsedText, QueryError, check_k, check_mode, parse_text
from storage.catalog import Catalog, FileStatus
from storage.queries import FileFilter
from storage.vectors import IdArray

RRF_K = 60  # the usual reciprocal-rank-fusion constant: damps the head of each list
NEGATIVE_WEIGHT = 0.5
POSTFILTER_FETCH = 2048  # segments fetched unfiltered before a filter is applied up front instead
# Query rows of an example at most: a longer example's consecutive windows are pooled into this many
# parts (32 rows of 10 s, hop 5 s: 2:45 of audio before any pooling), so one search stays one batch.
MAX_EXAMPLE_WINDOWS = 32


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
    # Cosine of the file's best window against the query, in [-1, 1]; None when only its words matched.
    audio_score: float | None = None
    matched_terms: tuple[str, ...] = ()  # the query's words found in the file's name, folders, tags, caption
    # The part of an example sound that matched best (None for a text query).
    query_start_s: Seconds | None = None
    query_end_s: Seconds | None = None

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
            "audio_score": None if self.audio_score is None else round(self.audio_score, 6),
            "matched_terms": list(self.matched_terms),
            "query_start_s": None if self.query_start_s is None else round(self.query_start_s, 3),
            "query_end_s": None if self.query_end_s is None else round(self.query_end_s, 3),
        }


@dataclass(frozen=True)
class _Ranked:
    file_id: int
    score: float
    start_s: Seconds | None = None
    end_s: Seconds | None = None
    audio_score: float | None = None
    query_span: tuple[Seconds, Seconds] | None = None  # the example's part that matched


@dataclass(frozen=True)
class _Query:
    """What the vector ranking searches with: one normalised row per window of an example (one row for
    text), and where each row lies in the example (None for text)."""

    vectors: FloatArray
    spans: list[tuple[Seconds, Seconds]] | None = None


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
            query = _Query(self._text_vector(parsed)[None, :])
            if like is not None:
                example, exclude = self._example_query(like)
                # "Like this, but ...": each window of the example, moved towards the words.
                mixed = normalise(like_weight * example.vectors + (1.0 - like_weight) * query.vectors)
                query = _Query(mixed, example.spans)
            vector_list = self._vector_ranking(query, k if mode == "vector" else max(2 * k, 50), filt, exclude)
        text_list: list[_Ranked] = []
        if mode in ("text", "hybrid"):
            text_list = self._text_ranking(parsed, k if mode == "text" else max(2 * k, 50), filt, exclude)
        if mode == "vector":
            return self._hits(vector_list[:k], ("vector",), parsed)
        if mode == "text":
            return self._hits(text_list[:k], ("text",), parsed)
        return self._fused(vector_list, text_list, k, parsed)

    def similar(self, example: Example, k: int = 20, *, filters: Filters | None = None) -> list[Hit]:
        """Sounds like an example (an indexed file's id or path, or any audio file), each at its best
        window against the example's windows."""
        self.catalog.refresh(wait=False)
        check_k(k)
        query, exclude = self._example_query(example)
        return self._hits(self._vector_ranking(query, k, self._filter(filters), exclude), ("vector",))

    def duplicates(self, threshold: float = 0.97) -> list[list[Hit]]:
        """Groups of near-identical files (re-encoded, trimmed, gain-changed): cosine of pooled vectors."""
        if not 0.0 < threshold <= 1.0:
            raise QueryError(f"threshold must be in (0, 1], got {threshold}")
        file_ids, vectors = self.catalog.file_vectors()
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
            scores = [float(sims[anchor, m]) if m != anchor else 1.0 for m in members]
            ranked = [_Ranked(int(file_ids[m]), sc, audio_score=sc) for m, sc in zip(members, scores, strict=True)]
            out.append(self._hits(ranked, ("vector",)))
        out.sort(key=lambda g: str(g[0].path))
        return out

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

    def _example_query(self, example: Example) -> tuple[_Query, int | None]:
        """The windows of an example, and the catalog file to leave out of the results (if indexed)."""
        file_id = self._indexed_file_id(example)
        if file_id is not None:
            segments = self.catalog.segments(file_id)
            if segments:
                spans = [(seg.start_s, seg.end_s) for seg in segments]
                return _pooled_parts(self.catalog.vectors([seg.id for seg in segments]), spans), file_id
        if isinstance(example, int) or (isinstance(example, str) and example.isdigit() and not Path(example).exists()):
            raise QueryError(f"no indexed file with id {example}")
        return self._embedded_windows(example), None

    def _embedded_windows(self, path: str | Path) -> _Query:
        """An audio file cut into the catalog's windows, each embedded: the example is read as the
        library was (block by block, never whole)."""
        from indexer.audio import stream_audio  # torch comes with it: only a search by a sound file needs it

        binding = self.catalog.binding
        window_s = binding.window_s if binding else self.encoder.window_seconds
        spec = WindowSpec(window_s, binding.hop_s if binding else window_s / 2)
        rate = self.encoder.sample_rate
        batch_size = int(getattr(self.encoder, "batch_size", 8))
        spans: list[tuple[Seconds, Seconds]] = []
        parts: list[FloatArray] = []
        batch: list[Window] = []
        for window in iter_windows(stream_audio(path, rate), rate, spec):
            batch.append(window)
            if len(batch) == batch_size:
                parts.append(self.encoder.embed_audio([w.samples for w in batch]))
                batch = []
            spans.append((window.start_s, window.end_s))
        if batch:
            parts.append(self.encoder.embed_audio([w.samples for w in batch]))
        if not spans:
            raise AudioDecodeError(path, "contains no audio frames")
        return _pooled_parts(np.concatenate(parts), spans)

    def _indexed_file_id(self, example: Example) -> int | None:
        if isinstance(example, int) or (isinstance(example, str) and example.isdigit()):
            record = self.catalog.file(int(example))
            if record is not None and record.status == FileStatus.OK:
                return record.id
            if isinstance(example, int):
                return None
        record = self.catalog.find_file(Path(example).expanduser().absolute())
        return record.id if record is not None and record.status == FileStatus.OK else None

    # --- rankings ----------------------------------------------------------------------------------

    def _filter(self, filters: Filters | None) -> FileFilter | None:
        return FileFilter(self.catalog, filters) if filters is not None and filters.active else None

    def _vector_ranking(self, query: _Query, k: int, filt: FileFilter | None, exclude: int | None) -> list[_Ranked]:
        """The k best files by their best (query row, segment) pair: one batched search for every row,
        fetching more until k files are certain (a pair no row returned scores at most that row's last
        result, so a file seen at or above the highest such score cannot be overtaken). With a filter,
        candidates are checked after an unfiltered search while few rounds find k (broad filters); past
        POSTFILTER_FETCH segments the search runs among the passing files' segments only (selective
        filters). Where the index's scores are approximate (SQ codes), the candidates are scored again
        exactly (`_rescored`), so a hit's cosine and window are the stored vectors' own."""
        allowed_segments: IdArray | None = None
        total = self.catalog.vector_count()
        fetch = min(max(4 * k, 32), max(total, 1))
        while True:
            scores, ids = self.catalog.nearest_segments(query.vectors, fetch, allowed_segments)
            best = self._best_per_file(query, scores, ids, exclude)
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
            exhausted = fetch >= total
            full = ids[:, -1] >= 0  # a row that came back short holds every segment it could reach
            ceiling = float(scores[full, -1].max()) if full.any() and not exhausted else -np.inf
            certain = [r for r in best.values() if r.score >= ceiling]
            if len(certain) >= k or exhausted:
                return certain[:k] if self.catalog.exact_scores else self._rescored(query, certain[: 2 * k])[:k]
            fetch = min(fetch * 4, total)

    def _best_per_file(
        self, query: _Query, scores: FloatArray, ids: IdArray, exclude: int | None
    ) -> dict[int, _Ranked]:
        """Each file's best pair among a search's results, best files first."""
        rows, cols = np.nonzero(ids >= 0)
        order = np.argsort(-scores[rows, cols], kind="stable")  # stable: one row keeps the index's order
        rows, cols = rows[order], cols[order]
        pair_ids = ids[rows, cols]
        unique = np.unique(pair_ids)
        found = self.catalog.segments_by_id(unique.tolist())
        # A segment the database no longer knows owns nothing (-1); the excluded file's are left out too.
        owner_of = np.array([found[i].file_id if i in found else -1 for i in unique.tolist()], dtype=np.int64)
        owners = owner_of[np.searchsorted(unique, pair_ids)]
        usable = np.flatnonzero((owners >= 0) & (owners != (-1 if exclude is None else exclude)))
        _, first = np.unique(owners[usable], return_index=True)  # each file's first (best) pair
        best: dict[int, _Ranked] = {}
        for i in usable[np.sort(first)].tolist():
            seg = found[int(pair_ids[i])]
            score = float(scores[rows[i], cols[i]])
            span = query.spans[int(rows[i])] if query.spans is not None else None
            best[seg.file_id] = _Ranked(seg.file_id, score, seg.start_s, seg.end_s, score, span)
        return best

    def _rescored(self, query: _Query, ranked: list[_Ranked]) -> list[_Ranked]:
        """`ranked` scored again against every segment of each file from the stored vectors: scores from
        quantised codes, and the segments such a search happened to return, are only near the truth."""
        seg_ids, owners = self.catalog.segment_owners([r.file_id for r in ranked])
        if not len(seg_ids):
            return []
        sims = query.vectors @ self.catalog.vectors(seg_ids).T  # [query rows, segments]
        best_row = sims.argmax(axis=0)
        best = sims[best_row, np.arange(sims.shape[1])]
        found = self.catalog.segments_by_id(seg_ids.tolist())
        firsts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])  # segments come grouped by file
        out = []
        for lo, hi in zip(firsts, np.r_[firsts[1:], len(owners)], strict=True):
            j = int(lo + best[lo:hi].argmax())
            seg = found.get(int(seg_ids[j]))
            if seg is None:
                continue
            span = query.spans[int(best_row[j])] if query.spans is not None else None
            out.append(_Ranked(seg.file_id, float(best[j]), seg.start_s, seg.end_s, float(best[j]), span))
        return sorted(out, key=lambda r: -r.score)

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

    def _fused(self, vector_list: list[_Ranked], text_list: list[_Ranked], k: int, parsed: ParsedText) -> list[Hit]:
        fused: dict[int, float] = {}
        for ranking in (vector_list, text_list):
            for rank, item in enumerate(ranking):
                fused[item.file_id] = fused.get(item.file_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        by_vector = {r.file_id: r for r in vector_list}
        in_text = {r.file_id for r in text_list}
        order = sorted(fused, key=lambda fid: -fused[fid])[:k]
        # A file the vector ranking found keeps its window and cosine; one found by its words alone has none.
        ranked = [
            replace(by_vector[fid], score=fused[fid]) if fid in by_vector else _Ranked(fid, fused[fid]) for fid in order
        ]
        sources = {
            fid: tuple(name for name, hit in (("vector", fid in by_vector), ("text", fid in in_text)) if hit)
            for fid in order
        }
        return self._hits(ranked, sources, parsed)

    def _hits(
        self,
        ranked: list[_Ranked],
        matched_by: tuple[str, ...] | dict[int, tuple[str, ...]],
        parsed: ParsedText | None = None,
    ) -> list[Hit]:
        if not ranked:
            return []
        ids = [r.file_id for r in ranked]
        files = self.catalog.summaries(ids)
        notes = self.catalog.annotations(ids)
        terms = self.catalog.text.matched_words(parsed.positive, ids) if parsed is not None else {}
        hits = []
        for r in ranked:
            f = files.get(r.file_id)
            if f is None:
                continue  # deleted by a concurrent indexing run
            duration = f.duration_s or 0.0
            hits.append(
                Hit(
                    file_id=f.id,
                    path=f.path,
                    score=r.score,
                    start_s=r.start_s if r.start_s is not None else 0.0,
                    end_s=r.end_s if r.end_s is not None else duration,
                    duration_s=f.duration_s,
                    format=f.format,
                    tags=notes[f.id][0] if f.id in notes else (),
                    caption=notes[f.id][1] if f.id in notes else None,
                    matched_by=matched_by[f.id] if isinstance(matched_by, dict) else matched_by,
                    audio_score=r.audio_score,
                    matched_terms=terms.get(f.id, ()),
                    query_start_s=r.query_span[0] if r.query_span is not None else None,
                    query_end_s=r.query_span[1] if r.query_span is not None else None,
                )
            )
        return hits


def _pooled_parts(vectors: FloatArray, spans: list[tuple[Seconds, Seconds]]) -> _Query:
    """An example's windows as query rows; past MAX_EXAMPLE_WINDOWS, runs of consecutive windows are
    pooled into that many parts (each the renormalised mean, spanning its windows)."""
    if len(spans) <= MAX_EXAMPLE_WINDOWS:
        return _Query(normalise(vectors), spans)
    groups = np.array_split(np.arange(len(spans)), MAX_EXAMPLE_WINDOWS)
    pooled = np.stack([vectors[g].mean(axis=0) for g in groups])
    return _Query(normalise(pooled), [(spans[g[0]][0], spans[g[-1]][1]) for g in groups])
