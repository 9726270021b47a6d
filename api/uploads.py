"""Uploads: capped at the configured size and decoded length, sniffed for an audio container, kept
only while used.

The request body itself is capped by `BodyLimit` (it stops reading once the limit is passed, before
the multipart parser has spooled it all). The file part is then copied to a temporary file whose
extension comes from the sniffed bytes, never from the client's file name: the decoder picks its
reader by extension, and a name is not evidence of content. Its decoded length is checked before
anything decodes it: a few MB of FLAC can hold hours of audio (gigabytes as float32).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
from fastapi import UploadFile
from fastapi.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import UnsupportedMedia, UploadTooLarge
from indexer.audio import probe

CHUNK = 1 << 20
SNIFF_BYTES = 64
# Room for the multipart boundary and headers around the file part.
MULTIPART_SLACK = 64 * 1024
UNKNOWN_FRAMES = 2**62  # libsndfile's count for a stream that does not declare its length (SF_COUNT_MAX)


def sniff(head: bytes) -> str | None:
    """The extension of the audio container these first bytes start, or None."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return ".wav"
    if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return ".aiff"
    if head.startswith(b"fLaC"):
        return ".flac"
    if head.startswith(b"OggS"):
        return ".opus" if b"OpusHead" in head else ".ogg"
    if head.startswith(b"ID3"):
        return ".mp3"
    # A bare MPEG audio frame: 11 sync bits, a version other than "reserved", a layer other than 0
    # (layer 0 with the same sync is ADTS AAC, which libsndfile cannot read).
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x18 != 0x08 and head[1] & 0x06:
        return ".mp3"
    return None


@contextmanager
def saved_upload(upload: UploadFile, max_bytes: int, max_seconds: float) -> Iterator[Path]:
    """The uploaded file as a temporary audio file of at most `max_seconds`, removed on exit whatever happens."""
    source = upload.file
    source.seek(0)
    head = source.read(SNIFF_BYTES)
    suffix = sniff(head)
    if suffix is None:
        raise UnsupportedMedia(
            f"{upload.filename or 'the upload'} is not a supported audio file "
            "(WAV, AIFF, FLAC, OGG/Vorbis, Opus or MP3, by its content)"
        )
    fd, name = tempfile.mkstemp(prefix="soundsearch-upload-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            written = len(head)
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise UploadTooLarge(f"upload larger than the limit of {max_bytes / 1e6:g} MB")
                out.write(chunk)
        check_length(path, max_seconds)
        yield path
    finally:
        path.unlink(missing_ok=True)


def check_length(path: Path, max_seconds: float) -> None:
    """Refuse audio longer than `max_seconds` (413) before anything decodes it.

    The header's frame count bounds every decode: libsndfile clamps its reads to it (a FLAC declaring
    1 s of a 2-minute stream decodes 1 s; an MP3 without a Xing frame decodes its estimate), so no
    decoder downstream can hold more than the limit in memory.
    """
    info = probe(path)
    if info.duration_s > max_seconds:
        length = "an undeclared length" if info.frames >= UNKNOWN_FRAMES else _duration(info.duration_s)
        raise UploadTooLarge(
            f"upload lasts {length}; the limit is {_duration(max_seconds)} of audio "
            f"(max_upload_seconds={max_seconds:g})"
        )


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` (413) without reading them whole, and
    bodies that stall (408: more than `body_timeout` seconds waiting for the next part).

    A declared Content-Length over the limit is refused before any byte is read; a body that turns
    out longer than declared (or is chunked) is cut off as soon as it passes the limit. The stall
    clock runs only while the app waits for body bytes, so a slow route or a long download is not
    timed; a client trickling its upload (slowloris's body variant) is, and its connection closes.
    """

    def __init__(self, app: ASGIApp, max_upload_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_bytes = max_upload_bytes + MULTIPART_SLACK
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"upload larger than the limit of {self.max_upload_bytes / 1e6:g} MB"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, detail)
            return
        seen = 0
        body_done = False

        async def limited() -> Message:
            nonlocal seen, body_done
            if body_done:
                return await receive()  # waiting for a disconnect (streamed responses): not a stall
            with anyio.move_on_after(self.body_timeout):
                message = await receive()
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI passes HTTPExceptions raised while it reads the body through as they are.
                    raise HTTPException(413, detail)
                return message
            raise HTTPException(408, f"request body stalled: nothing received for {self.body_timeout:g} s")

        await self.app(scope, limited, send)


async def _send_413(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
