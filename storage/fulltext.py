"""Full-text ranking over each file's words (name, folders, UCS fields, embedded tags, tags, caption).

BM25 (k1 = 1.2, b = 0.75, FTS5's formula) over an in-memory inverted index built from the database, the
same on every database SQLAlchemy speaks. Terms are kept sorted, so the terms a prefix matches ("glas"
finds "glass", "glasses") are one contiguous run of postings: a query is a few array slices and one
`bincount`, whatever the number of matching files (a common word matching 10 000 files costs what a
rare one does, where FTS5 computes BM25 row by row).

`Catalog.refresh` builds one when the catalog's generation moves (`storage.generation`) and swaps it
in whole, together with the vectors.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from storage.schema import FileRow, TagRow

_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits: "_", "'" and the rest separate words
_K1, _B = 1.2, 0.75
MIN_PREFIX = 4  # shorter words match whole words only: a prefix "do" would match everything

# Words that carry no meaning in a sound description; matching them would rank noise.
STOPWORDS = frozenset(
    (
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "at",
        "to",
        "and",
        "or",
        "with",
        "from",
        "by",
        "for",
        "into",
        "over",
        "under",
        "is",
        "are",
        "was",
        "be",
        "being",
        "it",
        "its",
        "this",
        "that",
        "some",
        "someone",
        "something",
        "sound",
        "sounds",
    )
)


def query_words(text: str) -> list[str]:
    """Words as SQLite FTS5's unicode61 tokenizer makes them (`remove_diacritics 2`): split on anything
    but letters and digits ("dog_bark", "dog's" → "dog" ...), accents removed, case folded."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [w.casefold() for w in _WORD.findall(plain)]


def bodies(conn: Connection | Session, file_ids: Sequence[int] | None = None) -> dict[int, str]:
    """Searchable text of each file (all files when `file_ids` is None): its words, caption and tags."""
    files = select(FileRow.id, FileRow.search_text, FileRow.caption)
    tags = select(TagRow.file_id, TagRow.label)
    if file_ids is not None:
        files, tags = files.where(FileRow.id.in_(file_ids)), tags.where(TagRow.file_id.in_(file_ids))
    out = {fid: " ".join(filter(None, (words, caption))) for fid, words, caption in conn.execute(files)}
    for fid, label in conn.execute(tags):
        if fid in out:
            out[fid] = f"{out[fid]} {label}"
    return out


@dataclass(frozen=True)
class TextIndex:
    """An inverted index in CSR form: term i's postings are `docs[ptr[i]:ptr[i + 1]]` (row numbers)
    with `counts` occurrences; `terms` sorted; row r is file `file_ids[r]` with `lengths[r]` words."""

    terms: list[str]
    ptr: np.ndarray
    docs: np.ndarray
    counts: np.ndarray
    file_ids: np.ndarray
    lengths: np.ndarray

    @classmethod
    def build(cls, texts: dict[int, str]) -> TextIndex:
        file_ids = np.fromiter(texts, dtype=np.int64, count=len(texts))
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.float32)
        for row, body in enumerate(texts.values()):
            words = query_words(body)
            lengths[row] = len(words)
            for word in words:
                rows.append(row)
                cols.append(vocab.setdefault(word, len(vocab)))
        terms = sorted(vocab)
        rank = np.empty(len(vocab), dtype=np.int64)
        rank[[vocab[t] for t in terms]] = np.arange(len(terms))
        term_of = rank[np.asarray(cols, dtype=np.int64)]
        doc_of = np.asarray(rows, dtype=np.int64)
        # One posting per (term, doc) with its count: sort by term then doc, collapse repeats.
        key = term_of * max(len(texts), 1) + doc_of
        unique, counts = np.unique(key, return_counts=True)
        term_sorted = unique // max(len(texts), 1)
        ptr = np.searchsorted(term_sorted, np.arange(len(terms) + 1)).astype(np.int64)
        docs = (unique % max(len(texts), 1)).astype(np.int64)
        return cls(terms, ptr, docs, counts.astype(np.float32), file_ids, lengths)

    @cached_property
    def _rows_by_id(self) -> np.ndarray:
        """Row numbers in file-id order (`file_ids` keeps the database's order)."""
        return np.argsort(self.file_ids, kind="stable")

    def _words(self, query: str) -> list[str]:
        return [w for w in dict.fromkeys(query_words(query)) if w not in STOPWORDS]

    def _matches(self, word: str) -> tuple[int, int]:
        """Postings of what `word` matches in a query: the word, or every term it begins from MIN_PREFIX letters."""
        return self._span(word, prefix=len(word) >= MIN_PREFIX)

    def matched_words(self, query: str, file_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The query's words (matched as `search` matches them) that each of `file_ids` holds; files
        holding none, or unknown here, are left out."""
        wanted = np.asarray(file_ids, dtype=np.int64)
        rows = self._rows(wanted)
        out: dict[int, list[str]] = {}
        for word in self._words(query):
            lo, hi = self._matches(word)
            for fid in wanted[(rows >= 0) & np.isin(rows, self.docs[lo:hi])]:
                out.setdefault(int(fid), []).append(word)
        return {fid: tuple(words) for fid, words in out.items()}

    def _rows(self, file_ids: np.ndarray) -> np.ndarray:
        """The row of each file id, -1 where unknown."""
        order = self._rows_by_id
        if not len(order):
            return np.full(len(file_ids), -1, dtype=np.int64)
        rows = order[np.minimum(np.searchsorted(self.file_ids, file_ids, sorter=order), len(order) - 1)]
        return np.where(self.file_ids[rows] == file_ids, rows, -1)

    def _span(self, word: str, prefix: bool) -> tuple[int, int]:
        """Posting range of the terms `word` matches (itself, or every term it begins)."""
        lo = bisect.bisect_left(self.terms, word)
        hi = (
            bisect.bisect_left(self.terms, word + "\U0010ffff")
            if prefix
            else lo + (lo < len(self.terms) and self.terms[lo] == word)
        )
        return int(self.ptr[lo]), int(self.ptr[hi])

    def search(self, query: str, limit: int, *, exclude: Sequence[str] = ()) -> list[tuple[int, float]]:
        """Files matching any query word, best first, as (file_id, BM25); files with an `exclude` word
        are left out."""
        words = self._words(query)
        n = len(self.file_ids)
        if not words or n == 0 or limit <= 0:
            return []
        avg = float(self.lengths.mean()) or 1.0
        norm = _K1 * (1 - _B + _B * self.lengths / avg)
        scores = np.zeros(n)
        matched = np.zeros(n, dtype=bool)
        for word in words:
            lo, hi = self._matches(word)
            if lo == hi:
                continue
            # A prefix's terms count as one term per document, as in FTS5 ("glas"*).
            tf = np.bincount(self.docs[lo:hi], weights=self.counts[lo:hi], minlength=n)
            hit = np.flatnonzero(tf)
            df = len(hit)
            idf = max(float(np.log((n - df + 0.5) / (df + 0.5))), 1e-6)
            scores[hit] += idf * tf[hit] * (_K1 + 1) / (tf[hit] + norm[hit])
            matched[hit] = True
        for word in query_words(" ".join(exclude)):
            lo, hi = self._span(word, prefix=False)
            matched[self.docs[lo:hi]] = False
        candidates = np.flatnonzero(matched)
        if len(candidates) > limit:
            # Everything tied with the limit-th score stays in, so ties are cut by file id, not by chance.
            kth = np.partition(scores[candidates], len(candidates) - limit)[len(candidates) - limit]
            candidates = candidates[scores[candidates] >= kth]
        order = candidates[np.lexsort((self.file_ids[candidates], -scores[candidates]))][:limit]
        return [(int(self.file_ids[r]), float(scores[r])) for r in order]
