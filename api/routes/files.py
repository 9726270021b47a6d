"""Catalog files by id: details, similar sounds, the audio itself (HTTP Range) and a waveform.

Files are only ever named by their catalog id: no route takes a path, so nothing outside the
catalog can be read through the server.
"""

from __future__ import annotations

import mimetypes
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.deps import FiltersDep, ServicesDep, file_out, hit_out
from api.errors import responses
from api.schemas import FileOut, SearchOut, WaveformOut
from api.services import waveform_peaks
from indexer import objectstore
from indexer.fsnames import display

router = APIRouter(prefix="/api/files", tags=["files"])

# 2**53: ids stay exact in JavaScript and far inside SQLite's 64-bit integers.
FileId = Annotated[int, Path(ge=1, le=2**53, description="catalog file id")]

MEDIA_TYPES = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg", "AIFF": "audio/aiff"}


@router.get("/{file_id}", response_model=FileOut, responses=responses(404))
async def get_file(services: ServicesDep, file_id: FileId) -> FileOut:
    def work() -> FileOut:
        record = services.file(file_id)
        tags, caption = services.annotations(file_id)
        catalog = services.catalog
        return file_out(record, catalog.roots(), catalog.segments(file_id), tags, caption)

    return await services.run(work)


@router.get("/{file_id}/similar", response_model=SearchOut, responses=responses(404))
async def similar(
    services: ServicesDep,
    filters: FiltersDep,
    file_id: FileId,
    k: Annotated[int, Query(ge=1, le=200)] = 20,
) -> SearchOut:
    t0 = time.perf_counter()
    engine = services.engine

    def work() -> SearchOut:
        services.playable(file_id)
        hits = engine.similar(file_id, k, filters=filters)
        roots = engine.catalog.roots()
        took = round((time.perf_counter() - t0) * 1e3, 2)
        return SearchOut(query=None, mode="vector", k=k, took_ms=took, hits=[hit_out(h, roots) for h in hits])

    return await services.run(work)


@router.get(
    "/{file_id}/audio",
    response_class=FileResponse,
    responses={
        **responses(404),
        200: {"content": {"audio/*": {}}, "description": "the file's bytes"},
        206: {"content": {"audio/*": {}}, "description": "the requested byte range"},
        307: {"description": "a presigned URL of the file in object storage"},
        416: {"description": "range not satisfiable"},
    },
)
def audio(services: ServicesDep, file_id: FileId) -> Response:
    """The catalog file's bytes, with HTTP Range support so players can seek; for a file in object storage,
    a redirect to a short-lived presigned URL, where the player's Range requests go."""
    url = services.object_url(file_id)
    if url is not None:
        return RedirectResponse(objectstore.presigned_url(url), status_code=307)
    record = services.playable(file_id)
    media_type = MEDIA_TYPES.get((record.format or "").upper()) or (
        mimetypes.guess_type(record.path.name)[0] or "application/octet-stream"
    )
    # The name in Content-Disposition is text: undecodable bytes of the real name show as U+FFFD.
    return FileResponse(
        record.path, media_type=media_type, filename=display(record.path.name), content_disposition_type="inline"
    )


@router.get("/{file_id}/waveform", response_model=WaveformOut, responses=responses(404))
async def waveform(
    services: ServicesDep,
    file_id: FileId,
    points: Annotated[int, Query(ge=8, le=4000, description="buckets across the file")] = 400,
) -> WaveformOut:
    def work() -> WaveformOut:
        record = services.playable(file_id)
        duration, peaks = waveform_peaks(str(record.path), record.content_hash or str(record.size), points)
        return WaveformOut(file_id=file_id, duration_s=round(duration, 3), points=points, peaks=peaks)

    return await services.run(work)
