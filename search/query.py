"""What a user asks: query text (with `-negative` words), an optional example sound, and filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.errors import SoundsearchError

if TYPE_CHECKING:  # numpy comes with it: the CLI parses its options without numpy
    from indexer.types import Seconds

MAX_QUERY_CHARS = 1_000
MAX_API_K = 200  # results one request to the server may ask for (the CLI asks for more itself)
MODES = ("hybrid", "vector", "text")


class QueryError(SoundsearchError):
    """A query that cannot be run as given."""


@dataclass(frozen=True)
class Filters:
    """Restrictions applied before the top-k cut, so k matching results come back whenever k exist."""

    min_duration_s: Seconds | None = None
    max_duration_s: Seconds | None = None
    folder: str | None = None  # a path prefix, or a folder name anywhere in the path
    tags: tuple[str, ...] = ()  # every tag must be present
    formats: tuple[str, ...] = ()  # container names or extensions: "wav", "FLAC", ...
    # UCS CatIDs ("DOORWood") or CatShorts ("DOOR": the whole category), from `soundsearch ucs`; any may match
    ucs: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return any(
            (
                self.min_duration_s is not None,
                self.max_duration_s is not None,
                self.folder,
                self.tags,
                self.formats,
                self.ucs,
            )
        )


@dataclass(frozen=True)
class ParsedText:
    positive: str
    negative: tuple[str, ...] = field(default_factory=tuple)


def parse_text(query: str) -> ParsedText:
    """Split "rain -thunder" into what to find and what to avoid; refuse empty and oversized queries."""
    query = query.strip()
    if not query:
        raise QueryError("empty query: describe the sound, e.g. 'glass shattering, close'")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"query too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
    words = query.split()
    negative = tuple(w[1:] for w in words if w.startswith("-") and len(w) > 1)
    positive = " ".join(w for w in words if not (w.startswith("-") and len(w) > 1))
    if not positive:
        raise QueryError("the query only says what to avoid: add what to find, e.g. 'rain -thunder'")
    return ParsedText(positive, negative)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise QueryError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def check_k(k: int) -> int:
    if not 1 <= k <= 10_000:
        raise QueryError(f"k must be between 1 and 10000, got {k}")
    return k


def is_path_like(value: str) -> bool:
    return not value.isdigit() or Path(value).exists()
