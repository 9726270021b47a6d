"""Text a file carries besides its sound: name and folder tokens, UCS fields, embedded tags.

This text feeds the catalog's full-text index, so "glass" finds `GLAS_Break_Bottle_SSYN_01.wav` and a
BWF whose description says "glass shatter" even when the audio model misses it.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import soundfile as sf

from indexer.fsnames import display

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s_\-.,;:()\[\]{}+&/\\]+")


@dataclass(frozen=True)
class EmbeddedText:
    title: str | None = None
    comment: str | None = None  # ID3/Vorbis comment, WAV INFO comment, BWF description or iXML note


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
    """Title and comment/description from the file's own tags; empty when it has none or cannot be read."""
    title = comment = None
    try:
        with sf.SoundFile(os.fsencode(path)) as f:  # bytes: the name may not be UTF-8 (indexer.fsnames)
            title = f.title or None
            comment = f.comment or None
    except Exception:  # tags are a bonus: a file whose tags cannot be read is indexed without them
        return EmbeddedText()
    if comment is None and Path(path).suffix.lower() in (".wav", ".bwf", ".wave"):
        comment = _bext_description(Path(path)) or _ixml_note(Path(path))
    return EmbeddedText(title=_clean(title), comment=_clean(comment))


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


def _bext_description(path: Path) -> str | None:
    """The 256-byte Description field of a Broadcast WAV `bext` chunk (libsndfile does not expose it)."""
    data = _riff_chunk(path, b"bext", 256)
    if not data:
        return None
    return data.split(b"\x00", 1)[0].decode("latin-1").strip() or None


def _ixml_note(path: Path) -> str | None:
    """The first non-empty `<NOTE>` of an iXML chunk (what field recorders write a take's notes to)."""
    data = _riff_chunk(path, b"iXML", 1 << 20)
    if not data:
        return None
    try:
        root = ElementTree.fromstring(data.split(b"\x00", 1)[0])
    except ElementTree.ParseError:
        return None
    notes = (el.text.strip() for el in root.iter() if el.tag.upper() == "NOTE" and el.text)
    return next((n for n in notes if n), None)


def _riff_chunk(path: Path, wanted: bytes, limit: int) -> bytes | None:
    """The first `limit` bytes of a WAV file's top-level chunk `wanted`, None when it has none."""
    try:
        with path.open("rb") as f:
            header = f.read(12)
            if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
                if chunk_id == wanted:
                    return f.read(min(limit, chunk_size))
                pos += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return None
