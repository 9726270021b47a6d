"""Full-text index over each file's words (name, folders, UCS fields, embedded tags, tags, caption).

SQLite gets an FTS5 table ranked by BM25; other databases fall back to portable LIKE matching on
`files.search_text` plus tags, ranked by how many query words match. Both behind the same functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from indexer.schema import FileRow, TagRow

_FTS_TABLE = "files_fts"
_TOKENIZER = "tokenize='unicode61 remove_diacritics 2'"
_WORD = re.compile(r"[\w']+", re.UNICODE)
# BM25 is lower-is-better in FTS5; negated so that every ranker here is higher-is-better.
_FTS_QUERY = f"SELECT rowid, -bm25({_FTS_TABLE}) FROM {_FTS_TABLE} WHERE {_FTS_TABLE} MATCH :m ORDER BY 2 DESC LIMIT :k"


def is_sqlite(conn: Connection | Session) -> bool:
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    return bind.dialect.name == "sqlite"


def ensure(conn: Connection) -> None:
    """Create the FTS table if missing, filling it from the catalog when it is new."""
    if not is_sqlite(conn):
        return
    exists = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = :n"), {"n": _FTS_TABLE}).first()
    if exists:
        return
    conn.execute(text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {_FTS_TABLE} USING fts5(body, {_TOKENIZER})"))
    ids = list(conn.execute(select(FileRow.id)).scalars())
    refresh(conn, ids)


def body_for(conn: Connection | Session, file_ids: Sequence[int]) -> dict[int, str]:
    """Searchable text of each file: its stored words plus its tags and caption."""
    if not file_ids:
        return {}
    rows = conn.execute(select(FileRow.id, FileRow.search_text, FileRow.caption).where(FileRow.id.in_(file_ids)))
    bodies = {fid: " ".join(filter(None, (words, caption))) for fid, words, caption in rows}
    for fid, label in conn.execute(select(TagRow.file_id, TagRow.label).where(TagRow.file_id.in_(file_ids))):
        bodies[fid] = f"{bodies.get(fid, '')} {label}"
    return bodies


def refresh(conn: Connection | Session, file_ids: Sequence[int]) -> None:
    """Re-index these files' text (after an insert, a move, new tags or a caption)."""
    if not is_sqlite(conn) or not file_ids:
        return
    remove(conn, file_ids)
    for fid, body in body_for(conn, file_ids).items():
        conn.execute(text(f"INSERT INTO {_FTS_TABLE}(rowid, body) VALUES (:id, :body)"), {"id": fid, "body": body})


def remove(conn: Connection | Session, file_ids: Iterable[int]) -> None:
    ids = list(file_ids)
    if not is_sqlite(conn) or not ids:
        return
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join(str(int(i)) for i in chunk)
        conn.execute(text(f"DELETE FROM {_FTS_TABLE} WHERE rowid IN ({marks})"))


# Words that carry no meaning in a sound description; matching them would rank noise.
STOPWORDS = frozenset(
    [
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
    ]
)


def query_words(query: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(query)]


def _term(word: str) -> str:
    # Prefix matching ("glas" finds "glass") only for words long enough not to match everything.
    return f'"{word}"*' if len(word) >= 4 else f'"{word}"'


def search(
    conn: Connection | Session, query: str, limit: int, *, exclude: Sequence[str] = ()
) -> list[tuple[int, float]]:
    """Files matching any query word, best first, as (file_id, score); `exclude` words must not match."""
    words = [w for w in query_words(query) if w not in STOPWORDS]
    if not words:
        return []
    bad = query_words(" ".join(exclude))
    if is_sqlite(conn):
        # Quoted terms: user text never becomes FTS syntax. OR: a partial match still ranks.
        match = " OR ".join(_term(w) for w in words)
        if bad:
            match = f"({match}) NOT ({' OR '.join(f'{chr(34)}{w}{chr(34)}' for w in bad)})"
        rows = conn.execute(
            text(_FTS_QUERY),
            {"m": match, "k": limit},
        )
        return [(int(r[0]), float(r[1])) for r in rows]
    return _like_search(conn, words, bad, limit)


def _like_search(conn: Connection | Session, words: list[str], bad: list[str], limit: int) -> list[tuple[int, float]]:
    ids = list(conn.execute(select(FileRow.id)).scalars())
    scored = []
    for fid, body in body_for(conn, ids).items():
        tokens = set(query_words(body))
        if any(b in tokens for b in bad):
            continue
        hits = sum(any(t.startswith(w) for t in tokens) for w in words)
        if hits:
            scored.append((fid, float(hits)))
    scored.sort(key=lambda x: -x[1])
    return scored[:limit]
