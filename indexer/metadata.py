"""Text a file carries besides its sound: name and folder tokens, UCS fields, embedded tags.

This text feeds the catalog's full-text index, so "glass" finds `GLAS_Break_Bottle_SSYN_01.wav` and a
BWF whose description says "glass shatter" even when the audio model misses it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from indexer.filetags import read_file_tags
from indexer.fsnames import display

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s_\-.,;:()\[\]{}+&/\\]+")


@dataclass(frozen=True)
class EmbeddedText:
    title: str | None = None
    comment: str | None = None  # comments, BWF/iXML descriptions and notes, keywords, UCS category (see below)


@dataclass(frozen=True)
class UcsName:
    """Universal Category System file name: `CatID_FXName_CreatorID_SourceID[_UserData]`."""

    cat_id: str
    fx_name: str
    creator_id: str
    source_id: str


def parse_ucs(stem: str) -> UcsName | None:
    parts = stem.split("_")
    if len(parts) < 4 or not re.fullmatch(r"[A-Z]{3,6}[A-Za-z]{0,8}", parts[0]):
        return None
    return UcsName(parts[0], parts[1], parts[2], "_".join(parts[3:]))


def words(text: str) -> list[str]:
    """Split names like `ALRM_SirenDistant-02` into lower-case words: alrm siren distant 02."""
    out: list[str] = []
    for chunk in _SEPARATORS.split(text):
        out.extend(w.lower() for w in _CAMEL.split(chunk) if w)
    return out


def read_embedded_text(path: str | Path) -> EmbeddedText:
    """Title and comment from the file's own tags; empty when it has none or cannot be read.

    The comment gathers every description the file carries, once each: its INFO/Vorbis/ID3 comment, the
    description, iXML note and keywords a librarian (or `soundsearch write-tags`) wrote, and its UCS category.
    """
    title = comment = None
    try:
        with sf.SoundFile(os.fsencode(path)) as f:  # bytes: the name may not be UTF-8 (indexer.fsnames)
            title = f.title or None
            comment = f.comment or None
    except Exception:  # tags are a bonus: a file whose tags cannot be read is indexed without them
        return EmbeddedText()
    tags = read_file_tags(os.fsencode(path))
    category = " ".join(filter(None, (tags.category, tags.subcategory))) or tags.cat_id
    parts = (comment, tags.description, tags.note, ", ".join(tags.keywords), category)
    return EmbeddedText(title=_clean(title or tags.fx_name), comment=_clean(_gathered(parts)))


def search_text(path: str | Path, root: str | Path | None, embedded: EmbeddedText) -> str:
    """The words a full-text query should match for this file (folders below the root, name, tags)."""
    p = Path(display(str(path)))  # undecodable bytes become U+FFFD: SQLite stores UTF-8 text only
    root = display(str(root)) if root else None
    folders = p.parent.relative_to(root).parts if root and p.is_relative_to(root) else p.parent.parts[-2:]
    tokens = [*words(p.stem), *(w for folder in folders for w in words(folder)), p.suffix.lstrip(".").lower()]
    ucs = parse_ucs(p.stem)
    if ucs is not None:
        tokens.append(ucs.cat_id.lower())
    for text in (embedded.title, embedded.comment):
        if text:
            tokens.extend(words(text))
    return " ".join(dict.fromkeys(tokens))  # de-duplicated, order kept


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.replace("\x00", " ").strip()
    return text or None


def _gathered(parts: tuple[str | None, ...]) -> str | None:
    """The distinct texts in order, as sentences; one already contained in an earlier one is left out."""
    kept: list[str] = []
    for part in parts:
        text = (part or "").strip().rstrip(".")
        if text and not any(text.lower() in k.lower() for k in kept):
            kept.append(text)
    return ". ".join(kept) or None
