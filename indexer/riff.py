"""WAV files as RIFF chunks: find one, and rewrite a file with some chunks replaced, every other byte copied.

A WAV is `RIFF <size> WAVE` followed by chunks (`fmt `, `data`, `bext`, `iXML`, `LIST`, ...), each a four-byte
id, a little-endian 32-bit size and that many bytes, plus one pad byte when the size is odd. `rewrite` copies
every chunk it is not asked to replace byte for byte (the `data` chunk above all), so the sound cannot change;
anything it cannot lay out safely (RF64, big-endian RIFX, a chunk running past the end) is refused with the
reason, before a byte is written.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from indexer.errors import SoundsearchError

_COPY_BLOCK = 1 << 20
_MAX_RIFF = 0xFFFFFFFF


class RiffError(SoundsearchError):
    """A WAV file whose layout this module will not rewrite (the file is left as it was)."""


@dataclass(frozen=True)
class Chunk:
    id: bytes
    offset: int  # of the chunk's 8-byte header in the file
    size: int  # of its data, without the pad byte

    @property
    def data_offset(self) -> int:
        return self.offset + 8


@dataclass(frozen=True)
class Layout:
    """Where a WAV file's chunks are, and where the RIFF form ends (bytes after it are kept as they are)."""

    chunks: tuple[Chunk, ...]
    trailer_offset: int  # where the bytes after the RIFF form (an appended ID3v1 tag, say) begin
    file_size: int

    def first(self, chunk_id: bytes) -> Chunk | None:
        return next((c for c in self.chunks if c.id == chunk_id), None)


def _walk(f: BinaryIO, end: int) -> Iterator[Chunk]:
    """Chunks from offset 12 up to `end`, stopping quietly where the next header would not fit."""
    pos = 12
    while pos + 8 <= end:
        f.seek(pos)
        chunk_id, size = struct.unpack("<4sI", f.read(8))
        yield Chunk(chunk_id, pos, size)
        pos += 8 + size + (size & 1)


def read_chunk(path: str | bytes | Path, chunk_id: bytes, limit: int) -> bytes | None:
    """The first `limit` bytes of a WAV file's first chunk `chunk_id`; None when it has none or is no WAV.

    Lenient, as a reader should be: a damaged file yields what can be read.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(12)
            if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            for chunk in _walk(f, f.seek(0, 2)):
                if chunk.id == chunk_id:
                    f.seek(chunk.data_offset)
                    return f.read(min(limit, chunk.size))
    except OSError:
        return None
    return None


def layout(path: str | Path) -> Layout:
    """The chunks of a WAV file, checked strictly: anything `rewrite` could not copy faithfully is a RiffError."""
    name = Path(path).name
    with open(path, "rb") as f:
        file_size = f.seek(0, 2)
        f.seek(0)
        header = f.read(12)
        if len(header) < 12:
            raise RiffError(f"{name} is too short to be a WAV file")
        if header[:4] in (b"RF64", b"BW64"):
            raise RiffError(f"{name} is an RF64/BW64 file (over 4 GB): its tags are not rewritten")
        if header[:4] == b"RIFX":
            raise RiffError(f"{name} is a big-endian RIFX file: its tags are not rewritten")
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            raise RiffError(f"{name} is not a RIFF/WAVE file")
        riff_end = 8 + struct.unpack("<I", header[4:8])[0]
        # Writers that never came back to fill the size in leave 0 or 0xFFFFFFFF: the chunks decide then.
        end = file_size if riff_end > file_size + 1 or riff_end <= 12 else min(riff_end, file_size)
        chunks: list[Chunk] = []
        for chunk in _walk(f, end):
            data_end = chunk.data_offset + chunk.size
            if data_end > file_size:
                raise RiffError(
                    f"{name}: its {_show(chunk.id)} chunk runs past the end of the file (a truncated or "
                    "unfinished recording?): not rewritten"
                )
            chunks.append(chunk)
        last = chunks[-1].data_offset + chunks[-1].size + (chunks[-1].size & 1) if chunks else 12
        if end - last not in (0, -1):  # -1: the last chunk's pad byte is missing, which is common and harmless
            raise RiffError(f"{name}: {end - last} stray byte(s) between its chunks and its end: not rewritten")
    ids = [c.id for c in chunks]
    if b"fmt " not in ids or b"data" not in ids:
        raise RiffError(f"{name} has no {'fmt ' if b'fmt ' not in ids else 'data'} chunk: not rewritten")
    return Layout(tuple(chunks), min(max(end, last), file_size), file_size)


def rewrite(src: str | Path, dst: str | Path, replace: Mapping[bytes, bytes], *, before: bytes = b"data") -> None:
    """Write `src` to `dst` with the first chunk of each id in `replace` given new contents.

    Ids the file lacks are added just before its first `before` chunk. Every other chunk, and any bytes after
    the RIFF form, are copied unchanged; an odd-sized chunk always gets its pad byte (word alignment).
    """
    shape = layout(src)
    missing = {i: data for i, data in replace.items() if shape.first(i) is None}
    plan: list[Chunk | tuple[bytes, bytes]] = []
    for chunk in shape.chunks:
        if chunk.id == before and missing:
            plan.extend(missing.items())
            missing = {}
        plan.append((chunk.id, replace[chunk.id]) if chunk.id in replace and shape.first(chunk.id) == chunk else chunk)
    plan.extend(missing.items())
    sizes = [c.size if isinstance(c, Chunk) else len(c[1]) for c in plan]
    riff_size = 4 + sum(8 + n + (n & 1) for n in sizes)
    if riff_size > _MAX_RIFF:
        raise RiffError(f"{Path(src).name}: with the new tags it would pass the 4 GB limit of a WAV file")
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(b"RIFF" + struct.pack("<I", riff_size) + b"WAVE")
        for item in plan:
            if isinstance(item, Chunk):
                _copy_chunk(f, out, item)
            else:
                chunk_id, data = item
                out.write(chunk_id + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1))
        f.seek(shape.trailer_offset)
        _copy(f, out, shape.file_size - shape.trailer_offset)


def _copy_chunk(f: BinaryIO, out: BinaryIO, chunk: Chunk) -> None:
    f.seek(chunk.offset)
    _copy(f, out, 8 + chunk.size)
    if chunk.size & 1:
        pad = f.read(1)
        out.write(pad or b"\x00")


def _copy(f: BinaryIO, out: BinaryIO, n: int) -> None:
    while n > 0:
        block = f.read(min(n, _COPY_BLOCK))
        if not block:
            raise RiffError("the file shrank while it was being copied")
        out.write(block)
        n -= len(block)


def _show(chunk_id: bytes) -> str:
    return repr(chunk_id.decode("latin-1"))
