"""A sound's description, keywords and UCS fields (`indexer.tagfields`) read from and written into the file.

- WAV: the `bext` Description and iXML `<USER>` fields, through soundsearch's own RIFF rewriter (`indexer.riff`):
  every other chunk, `data` above all, is copied byte for byte.
- FLAC, Ogg Vorbis, Opus: Vorbis comments; MP3: ID3v2 `TXXX` frames. Both through mutagen, which rewrites the
  metadata blocks, pages or tag and leaves the coded audio as it was.

A write never touches the file in place: the new version is written beside it and renamed over it when complete
(`storage.atomic`), so a full disk, a read-only folder or a crash half-way leaves the original intact. A file
whose permissions say read-only is left alone, even for a user (root) whom the system would let write it.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from indexer import bwf, riff
from indexer.errors import SoundsearchError
from indexer.tagfields import FIELD_NAMES, TagFields, TagsRefused
from storage.atomic import atomic_path

WRITABLE_FORMATS = "WAV, FLAC, Ogg Vorbis, Opus and MP3"


class WriteBackError(SoundsearchError):
    """Tags could not be written into a file; the file is as it was."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def container(path: str | bytes | Path) -> str | None:
    """ "wav", "flac", "ogg" or "mp3" from the file's first bytes (names lie), None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    if head in (b"RIFF", b"RF64", b"BW64", b"RIFX"):
        return "wav"
    if head == b"fLaC":
        return "flac"
    if head == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def read_file_tags(path: str | bytes | Path) -> TagFields:
    """The fields a file carries; empty when it has none or they cannot be read (tags are a bonus)."""
    kind = container(path)
    try:
        if kind == "wav":
            ixml = bwf.read_ixml(riff.read_chunk(path, b"iXML", bwf.IXML_LIMIT))
            description = ixml.description or bwf.bext_description(riff.read_chunk(path, b"bext", 256))
            return replace(ixml, description=description)
        if kind in ("flac", "ogg", "mp3"):
            return _read_mutagen(path)
    except Exception:  # a damaged tag must not stop indexing: the file is indexed without it
        return TagFields()
    return TagFields()


def write_file_tags(path: str | Path, tags: TagFields) -> None:
    """Write `tags` into the file at `path`, atomically; a WriteBackError says why not (nothing changed then)."""
    p = Path(path)
    if p.is_symlink():  # replacing the link would leave its target as it was and the link a copy
        raise WriteBackError(p, "a symbolic link: write into the file it points to")
    try:
        st = p.stat()
    except OSError as exc:
        raise WriteBackError(p, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise WriteBackError(p, "not a regular file")
    if not st.st_mode & 0o222:
        raise WriteBackError(p, "the file is read-only: its tags were not written")
    if os.statvfs(p.parent).f_flag & os.ST_RDONLY:
        raise WriteBackError(p, "its disk is mounted read-only: its tags were not written")
    if not os.access(p, os.W_OK):
        raise WriteBackError(p, "no permission to write the file: its tags were not written")
    kind = container(p)
    if kind is None:
        raise WriteBackError(p, f"tags are written into {WRITABLE_FORMATS} files only")
    import mutagen

    try:
        with atomic_path(p) as tmp:
            if kind == "wav":
                _write_wav(p, tmp, tags)
            else:
                shutil.copyfile(p, tmp)
                _write_mutagen(tmp, tags)
    except (riff.RiffError, TagsRefused) as exc:
        raise WriteBackError(p, f"{exc}; its tags were not written") from None
    except mutagen.MutagenError as exc:
        raise WriteBackError(p, f"its tags could not be written ({exc}); the file is unchanged") from None
    except OSError as exc:
        raise WriteBackError(p, f"could not write its tags ({exc.strerror or exc}); the file is unchanged") from None


def _write_wav(src: Path, dst: Path, tags: TagFields) -> None:
    old_bext = riff.read_chunk(src, b"bext", 1 << 16)
    old_ixml = riff.read_chunk(src, b"iXML", bwf.IXML_LIMIT)
    chunks: dict[bytes, bytes] = {}
    # The bext Description is rewritten only when it is empty or says what the iXML USER DESCRIPTION says (a
    # librarian such as Soundminer or soundsearch keeps the two alike). Anything else is the recorder's, often
    # machine data such as Sound Devices' "sSPEED=..." lines, and is kept.
    said = bwf.bext_description(old_bext)
    managed = bwf.read_ixml(old_ixml).description
    if tags.description and (said is None or (managed is not None and said == bwf.bext_text(managed))):
        chunks[b"bext"] = bwf.bext_with_description(old_bext, tags.description)
    chunks[b"iXML"] = bwf.ixml_with_fields(old_ixml, tags)
    riff.rewrite(src, dst, chunks)


def _read_mutagen(path: str | bytes | Path) -> TagFields:
    import mutagen
    from mutagen.id3 import ID3

    audio = mutagen.File(path)
    if audio is None or audio.tags is None:
        return TagFields()
    if isinstance(audio.tags, ID3):
        return TagFields.from_fields({frame.desc: str(frame.text[0]) for frame in audio.tags.getall("TXXX")})
    return TagFields.from_fields({k: v[0] for k, v in audio.tags.as_dict().items() if k.upper() in FIELD_NAMES})


def _write_mutagen(path: Path, tags: TagFields) -> None:
    import mutagen
    from mutagen.id3 import ID3, TXXX

    audio: Any = mutagen.File(path)
    if audio is None:
        raise TagsRefused("not a FLAC, Ogg or MP3 stream that can carry tags")
    if audio.tags is None:
        audio.add_tags()
    if isinstance(audio.tags, ID3):
        for name, value in tags.as_fields().items():
            audio.tags.setall(f"TXXX:{name}", [TXXX(encoding=3, desc=name, text=[value])])
        # An ID3v2.3 tag stays 2.3: players that read only 2.3 (Windows Explorer, older DAWs) keep reading it.
        audio.save(v2_version=3 if audio.tags.version < (2, 4, 0) else 4)
    else:
        for name, value in tags.as_fields().items():
            audio.tags[name] = [value]
        audio.save()
