"""Catalog files by id: details, similar sounds, the audio itself (HTTP Range) and a waveform.

Files are only ever named by their catalog id: no route takes a path, so nothing outside the
catalog can be read through the server.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from api.deps import FiltersDep, ServicesDep, file_out, hit_out
from api.errors import responses
from api.schemas import FileOut, SearchOut, WaveformOut
from api.services import Services, waveform_peaks
from indexer import objectstore
from indexer.fsnames import display
from indexer.regions import RegionError, plan_region, write_region
from search.query import MAX_API_K

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
    k: Annotated[int, Query(ge=1, le=MAX_API_K)] = 20,
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
        200: {"content": {"audio/*": {}}, "description": "the file's bytes, or the region's as an attachment"},
        206: {"content": {"audio/*": {}}, "description": "the requested byte range"},
        307: {"description": "a presigned URL of the file in object storage"},
        416: {"description": "range not satisfiable"},
    },
)
def audio(
    services: ServicesDep,
    file_id: FileId,
    start: Annotated[float | None, Query(ge=0, le=1e7, description="region start, seconds (with end)")] = None,
    end: Annotated[float | None, Query(gt=0, le=1e7, description="region end, seconds (with start)")] = None,
    reencode: Annotated[
        Literal["wav", "flac"] | None, Query(description="re-encode a lossy source's region (never sample-exact)")
    ] = None,
) -> Response:
    """The catalog file's bytes, with HTTP Range support so players can seek; for a file in object storage,
    a redirect to a short-lived presigned URL, where the player's Range requests go.

    With `start` and `end`: the region [start, end) cut sample-exactly at the file's own rate, bit depth and
    channels, in its own container (indexer.regions), as an attachment `<stem>_<start>-<end>.<ext>`."""
    if start is None and end is None:
        if reencode is not None:
            raise RegionError("reencode applies to a region: give start and end too")
        return _whole_file(services, file_id)
    if start is None or end is None:
        raise RegionError("a region needs both start and end (seconds)")
    if services.object_url(file_id) is not None:
        raise RegionError(f"file {file_id} lies in object storage: regions are cut from files on disk only")
    record = services.playable(file_id)
    plan = plan_region(record.path, start, end, reencode=reencode)
    fd, name = tempfile.mkstemp(prefix="soundsearch-region-", suffix=plan.suffix)
    os.close(fd)
    try:
        write_region(plan, name)
    except BaseException:
        os.unlink(name)
        raise
    return FileResponse(
        name,
        media_type=_media_type(plan.format, plan.filename),
        filename=display(plan.filename),
        content_disposition_type="attachment",
        background=BackgroundTask(os.unlink, name),
    )


def _whole_file(services: Services, file_id: int) -> Response:
    url = services.object_url(file_id)
    if url is not None:
        return RedirectResponse(objectstore.presigned_url(url), status_code=307)
    record = services.playable(file_id)
    # The name in Content-Disposition is text: undecodable bytes of the real name show as U+FFFD.
    return FileResponse(
        record.path,
        media_type=_media_type(record.format, record.path.name),
        filename=display(record.path.name),
        content_disposition_type="inline",
    )


def _media_type(container: str | None, name: str) -> str:
    return MEDIA_TYPES.get((container or "").upper()) or (mimetypes.guess_type(name)[0] or "application/octet-stream")


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
