"""In-memory BM25 (`storage.fulltext`): against a direct computation of FTS5's formula, prefixes,
exclusions, and changes made through another catalog handle seen once the reader refreshes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, update

from storage import fulltext, generation
from storage.catalog import Catalog
from storage.fulltext import TextIndex, query_words
from storage.schema import FileRow, Root

DOCS = {
    10: "door wood creak slow foley doors",
    11: "door metal slam door heavy",
    12: "glass shatter close glass glass",
    13: "glasses clink bar crowd",
    14: "rain heavy roof",
    15: "wind howl door rattle",
}


def reference_bm25(docs: dict[int, str], words: list[str], prefix_min: int = 4) -> dict[int, float]:
    """FTS5's BM25 (k1 1.2, b 0.75, idf floored at 1e-6), one word at a time, loops only."""
    tokens = {fid: query_words(body) for fid, body in docs.items()}
    n, avg = len(docs), sum(len(t) for t in tokens.values()) / len(docs)
    scores: dict[int, float] = {}
    for word in words:

        def matches(token: str, word: str = word) -> bool:
            return token.startswith(word) if len(word) >= prefix_min else token == word

        tf = {fid: sum(matches(t) for t in toks) for fid, toks in tokens.items()}
        df = sum(1 for v in tf.values() if v)
        idf = max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
        for fid, f in tf.items():
            if f:
                length = len(tokens[fid])
                scores[fid] = scores.get(fid, 0.0) + idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * length / avg))
    return scores


@pytest.mark.parametrize("query", ["door", "glas", "heavy door", "the sound of rain on a roof", "do"])
def test_scores_equal_fts5_formula(query: str) -> None:
    index = TextIndex.build(DOCS)
    words = [w for w in query_words(query) if w not in fulltext.STOPWORDS]
    expected = reference_bm25(DOCS, words)
    got = dict(index.search(query, 100))
    assert set(got) == set(expected)
    for fid, score in expected.items():
        assert got[fid] == pytest.approx(score, rel=1e-5)
    ranked = [fid for fid, _ in index.search(query, 100)]
    assert ranked == sorted(expected, key=lambda f: (-expected[f], f))


def test_prefixes_short_words_exclusions_and_limits() -> None:
    index = TextIndex.build(DOCS)
    assert {fid for fid, _ in index.search("glas", 10)} == {12, 13}  # "glass" and "glasses"
    assert index.search("gla", 10) == []  # too short to be a prefix: whole words only
    assert {fid for fid, _ in index.search("door", 10, exclude=["slam"])} == {10, 15}
    assert [fid for fid, _ in index.search("door", 2)] == [fid for fid, _ in index.search("door", 10)][:2]
    assert index.search("the a of", 10) == [] and index.search("", 10) == []
    assert TextIndex.build({}).search("door", 10) == []


def test_large_random_corpus_top_k_matches_reference() -> None:
    gen = np.random.default_rng(0)
    vocab = [f"w{i:03d}x" for i in range(300)]
    docs = {i + 1: " ".join(gen.choice(vocab, size=int(gen.integers(2, 12)))) for i in range(2000)}
    index = TextIndex.build(docs)
    expected = reference_bm25(docs, ["w001x", "w02"])  # one whole word, one prefix ("w02", 3 chars: whole)
    top = sorted(expected, key=lambda f: (-expected[f], f))[:25]
    assert [fid for fid, _ in index.search("w001x w02", 25)] == top


def test_another_handles_writes_are_seen_after_a_refresh(tmp_path: Path, db_url: str | None) -> None:
    """Writers never mark anything themselves: committing files, captions or tags moves the generation."""
    with Catalog.open(tmp_path, db_url=db_url) as reader, Catalog.open(tmp_path, db_url=db_url) as writer:
        with writer.session() as s:
            s.add(Root(id=1, path="/lib"))
            s.flush()
            s.execute(insert(FileRow).values(id=1, root_id=1, path="/lib/a.wav", size=1, mtime_ns=1, status="ok"))
        assert reader.text.search("thunderclap", 5) == []
        with writer.session() as s:
            s.execute(update(FileRow).where(FileRow.id == 1).values(caption="a thunderclap far away"))
        assert reader.text.search("thunderclap", 5) == []  # what it loaded, until it looks again
        assert reader.refresh()
        assert [fid for fid, _ in reader.text.search("thunderclap", 5)] == [1]
        writer.set_tags("user", {1: [("storm", 1.0)]})
        assert reader.refresh() and [fid for fid, _ in reader.text.search("storm", 5)] == [1]
        index = reader.text
        assert not reader.refresh() and reader.text is index  # nothing changed: no rebuild


def test_generation_moves_with_data_commits_only(tmp_path: Path, db_url: str | None) -> None:
    with Catalog.open(tmp_path, db_url=db_url) as catalog:

        def now() -> int:
            with catalog.engine.connect() as conn:
                return generation.current(conn)

        start = now()
        with catalog.session() as s:
            s.add(Root(id=1, path="/lib"))  # roots hold no searchable data
        assert now() == start
        with catalog.session() as s:  # an ORM object, flushed by the commit itself
            s.add(FileRow(root_id=1, path="/lib/b.wav", size=1, mtime_ns=1, status="ok"))
        assert now() == start + 1
        with pytest.raises(RuntimeError), catalog.session() as s:
            s.execute(update(FileRow).values(caption="never committed"))
            raise RuntimeError("rolled back")
        assert now() == start + 1
        with catalog.session() as s:
            s.execute(update(FileRow).values(caption="a creak"))
        assert now() == start + 2


def test_words_split_like_fts5_unicode61() -> None:
    """Underscores and apostrophes separate words, accents and case do not matter."""
    index = TextIndex.build({1: "dog_bark in the café", 2: "the dog's bowl", 3: "ÉCOLE bell"})
    assert {fid for fid, _ in index.search("bark", 5)} == {1}
    assert {fid for fid, _ in index.search("dog", 5)} == {1, 2}
    assert {fid for fid, _ in index.search("cafe", 5)} == {1}
    assert {fid for fid, _ in index.search("école", 5)} == {3}
    assert index.search("dog", 0) == []


def test_every_gateway_write_reaches_another_handles_search(tmp_path: Path, db_url: str | None) -> None:
    """The storage operations the layers above call (an indexing run's writes, a move, captions, tags, a
    removal) keep full-text search current by themselves: a reader sees each after a refresh."""
    from storage.writer import FileFacts, ensure_roots, writes

    def ids(catalog: Catalog, query: str) -> list[int]:
        catalog.refresh()
        return [fid for fid, _ in catalog.text.search(query, 5)]

    with Catalog.open(tmp_path, db_url=db_url) as reader, Catalog.open(tmp_path, db_url=db_url) as writer:
        writer.bind_model("m", 2, 10.0, 5.0)
        (root_id,) = ensure_roots(writer, ["/lib"])
        facts = FileFacts(root_id, "/lib/kettle.wav", 1, 1, "h", "ok", None, 1.0, 8000, 1, "WAV", None, None, "kettle")
        with writes(writer) as w:
            fid = w.put_file(None, facts, [(0.0, 1.0)], [np.array([1.0, 0.0], dtype=np.float32)])
        assert ids(reader, "kettle") == [fid] and reader.vector_count() == 1
        with writes(writer) as w:
            w.move_file(fid, "/lib/teapot/whistle.wav", root_id, "/lib", 1, 2)
        assert ids(reader, "whistle") == [fid] and ids(reader, "teapot") == [fid]
        writer.set_captions({fid: "steam hisses from a spout"})
        assert ids(reader, "spout") == [fid]
        writer.set_tags("user", {fid: [("boiling", 1.0)]})
        assert ids(reader, "boiling") == [fid]
        with writes(writer) as w:
            w.remove_files([fid])
        assert ids(reader, "spout") == [] and reader.vector_count() == 0
