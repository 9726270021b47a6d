"""The descriptive fields soundsearch reads from and writes into audio files, under the names the trade uses.

Soundminer and BaseHead keep a sound's description, keywords and UCS category in iXML `<USER>` fields named
DESCRIPTION, KEYWORDS, CATID, CATEGORY, SUBCATEGORY, CATEGORYFULL, FXNAME, CREATORID and SOURCEID; the same
names serve as Vorbis comments (FLAC, Ogg Vorbis, Opus) and as ID3 user text frames (MP3), so one record
travels through every format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from indexer.errors import SoundsearchError

_KEYWORD_SEPARATORS = re.compile(r"\s*[,;]\s*")


class TagsRefused(SoundsearchError):
    """A file's tags that cannot be updated without losing what is in them (or at all); nothing was written."""


@dataclass(frozen=True)
class TagFields:
    description: str | None = None
    keywords: tuple[str, ...] = ()
    fx_name: str | None = None
    cat_id: str | None = None
    category: str | None = None
    subcategory: str | None = None
    creator_id: str | None = None
    source_id: str | None = None
    note: str | None = None  # iXML <NOTE>, what field recorders write; read only

    def as_fields(self) -> dict[str, str]:
        """The non-empty fields under their written names (NOTE is never written: it is the recordist's)."""
        out = {
            "DESCRIPTION": self.description,
            "KEYWORDS": ", ".join(self.keywords) or None,
            "FXNAME": self.fx_name,
            "CATID": self.cat_id,
            "CATEGORY": self.category,
            "SUBCATEGORY": self.subcategory,
            "CATEGORYFULL": f"{self.category}-{self.subcategory}" if self.category and self.subcategory else None,
            "CREATORID": self.creator_id,
            "SOURCEID": self.source_id,
        }
        return {name: value for name, value in out.items() if value}

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_fields(cls, found: Mapping[str, str], note: str | None = None) -> TagFields:
        """From written names (any case), as `as_fields` wrote them or another tool did."""
        get = {k.upper(): v.strip() for k, v in found.items() if v and v.strip()}
        category, subcategory = get.get("CATEGORY"), get.get("SUBCATEGORY")
        if (category is None or subcategory is None) and "-" in get.get("CATEGORYFULL", ""):
            category, subcategory = get["CATEGORYFULL"].split("-", 1)
        return cls(
            description=get.get("DESCRIPTION"),
            keywords=split_keywords(get.get("KEYWORDS", "")),
            fx_name=get.get("FXNAME"),
            cat_id=get.get("CATID"),
            category=category,
            subcategory=subcategory,
            creator_id=get.get("CREATORID"),
            source_id=get.get("SOURCEID"),
            note=note,
        )


FIELD_NAMES = (
    "DESCRIPTION",
    "KEYWORDS",
    "FXNAME",
    "CATID",
    "CATEGORY",
    "SUBCATEGORY",
    "CATEGORYFULL",
    "CREATORID",
    "SOURCEID",
)


def split_keywords(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k for k in _KEYWORD_SEPARATORS.split(text.strip()) if k))
