"""UCS categories for a library: each indexed file gets a CatID (a tag), an FXName and a suggested UCS name.

- Classification is zero-shot with the catalog's model over the stored vectors (`search.zeroshot`): one label
  per CatID, described by prompts built from its category, subcategory and synonyms (the CatID "DOORWood"
  means nothing to a text encoder; "wood doors" does). A file whose name already carries a CatID of the list
  keeps it, with score 1: a person chose it.
- The CatID is stored as a tag of source "ucs" with its score, so `--tag DOORWood` and `--ucs DOOR` filter by it.
- Names follow UCS's own convention, `CatID_FXName_CreatorID_SourceID`: the FXName comes from the caption, else
  from the current name, in whole words of at most 25 characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from indexer.encoders.base import Encoder
from indexer.errors import SoundsearchError
from indexer.metadata import parse_ucs, words
from indexer.tagfields import TagFields
from search.ucs_list import UCS_TAG_SOURCE, UcsCategory
from search.zeroshot import ZeroShotClassifier, classify_library
from storage.catalog import Catalog, FileStatus
from storage.fulltext import STOPWORDS

FX_NAME_CHARS = 25  # UCS: "under 25 characters preferably"
SYNONYMS_IN_PROMPT = 8
# Subcategories that say "anything in the category": the category alone describes them.
_CATCH_ALL = frozenset(("misc", "general", "generic", "other"))
# "_" separates a UCS name's blocks; the rest cannot be in a file name on some system.
_NOT_IN_ID = re.compile(r'[_/\\<>:"|?*\x00-\x1f]')


class UcsError(SoundsearchError):
    """A UCS request that cannot be carried out as given."""


@dataclass(frozen=True)
class UcsAssignment:
    file_id: int
    path: Path
    category: UcsCategory
    score: float
    from_name: bool  # the file's name already carries this CatID
    fx_name: str

    def file_name(self, creator: str, source: str) -> str:
        """The suggested name, extension kept: the current one when it already carries the CatID."""
        if self.from_name:
            return self.path.name
        return f"{self.category.cat_id}_{self.fx_name}_{creator}_{source}{self.path.suffix}"

    def tag_fields(self, known: TagFields, creator: str | None, source: str | None) -> TagFields:
        """`known` (what the catalog knows of the file) with this category, FXName and the given IDs."""
        ids = {"creator_id": creator, "source_id": source}
        return replace(
            known,
            keywords=tuple(k for k in known.keywords if k != self.category.cat_id),
            fx_name=self.fx_name,
            cat_id=self.category.cat_id,
            category=self.category.category,
            subcategory=self.category.subcategory,
            **{k: v for k, v in ids.items() if v is not None},
        )

    def to_dict(self, creator: str, source: str) -> dict[str, object]:
        return {
            "file_id": self.file_id,
            "path": str(self.path),
            "cat_id": self.category.cat_id,
            "category": self.category.category,
            "subcategory": self.category.subcategory,
            "score": round(self.score, 6),
            "from_name": self.from_name,
            "fx_name": self.fx_name,
            "suggested_name": self.file_name(creator, source),
        }


def ucs_prompts(c: UcsCategory) -> list[str]:
    """What a text encoder is shown for one CatID: its category and subcategory in words, and its synonyms."""
    category, sub = c.category.lower(), c.subcategory.lower()
    what = category if sub in _CATCH_ALL else f"{sub} {category}"
    prompts = [f"the sound of {what}", f"{category}, {sub}"]
    if c.synonyms:
        prompts.append(f"{what}: {', '.join(c.synonyms[:SYNONYMS_IN_PROMPT])}")
    return prompts


def check_id(value: str, what: str) -> str:
    """A CreatorID or SourceID that fits in a UCS name: not empty, no "_" (the block separator), no path."""
    value = value.strip()
    if not value or _NOT_IN_ID.search(value) or value in (".", ".."):
        raise UcsError(
            f"{what} {value!r} cannot go into a UCS file name: use letters, digits and spaces "
            '(no "_", which separates the name\'s blocks, and no / \\ < > : " | ? *)'
        )
    return value


def fx_name(caption: str | None, stem: str, fallback: str) -> str:
    """A short title in whole words: from the caption ("a wooden door creaks open" → "Wooden Door Creaks
    Open"), else from the name ("door_creak_03" → "Door Creak 03"), else `fallback`."""
    chosen = [w for w in words(caption) if w not in STOPWORDS] if caption else []
    chosen = chosen or [w for w in words(stem) if w not in STOPWORDS] or words(fallback)
    title = ""
    for word in chosen:
        word = word if word.isdigit() else word.capitalize()
        candidate = f"{title} {word}".strip()
        if len(candidate) > FX_NAME_CHARS:
            break
        title = candidate
    return title or chosen[0][:FX_NAME_CHARS].capitalize()


def assign(
    catalog: Catalog, encoder: Encoder, categories: Sequence[UcsCategory], file_ids: Sequence[int] | None = None
) -> list[UcsAssignment]:
    """A CatID for each indexed file (all, or `file_ids`), by its name when it has one of the list, else by
    the model; files without vectors (failed ones) get none."""
    by_id = {c.cat_id.lower(): c for c in categories}
    wanted = None if file_ids is None else set(file_ids)
    files = [f for f in catalog.files(status=FileStatus.OK) if wanted is None or f.id in wanted]
    notes = catalog.annotations([f.id for f in files])
    named: list[UcsAssignment] = []
    unnamed: dict[int, Path] = {}
    for f in files:
        ucs = parse_ucs(f.path.stem)
        category = by_id.get(ucs.cat_id.lower()) if ucs is not None else None
        if ucs is not None and category is not None:
            named.append(UcsAssignment(f.id, f.path, category, 1.0, True, ucs.fx_name))
        else:
            unnamed[f.id] = f.path
    classified: list[UcsAssignment] = []
    if unnamed:
        classifier = ZeroShotClassifier(
            encoder, [c.cat_id for c in categories], prompts=[ucs_prompts(c) for c in categories]
        )
        for file_id, prediction in classify_library(catalog, classifier, list(unnamed)):
            cat_id, score = prediction.scores[0]
            category, path = by_id[cat_id.lower()], unnamed[file_id]
            title = fx_name(notes.get(file_id, ((), None))[1], path.stem, category.subcategory)
            classified.append(UcsAssignment(file_id, path, category, score, False, title))
    return sorted(named + classified, key=lambda a: str(a.path))


def store_tags(catalog: Catalog, assignments: Sequence[UcsAssignment]) -> int:
    """Each file's CatID as its one "ucs" tag (a new run replaces the last one's)."""
    return catalog.set_tags(UCS_TAG_SOURCE, {a.file_id: [(a.category.cat_id, a.score)] for a in assignments})
