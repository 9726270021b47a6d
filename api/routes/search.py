"""Search by text (optionally "like" an indexed file) and by an uploaded example."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from api.deps import FiltersDep, ServicesDep, SettingsDep, hit_out
from api.errors import responses
from api.schemas import SearchMode, SearchOut
from api.uploads import saved_upload
from search.query import MAX_API_K, MAX_QUERY_CHARS

router = APIRouter(prefix="/api", tags=["search"])

K = Annotated[int, Query(ge=1, le=MAX_API_K, description="number of results")]


@router.get("/search", response_model=SearchOut, responses=responses(404))
async def search(
    services: ServicesDep,
    filters: FiltersDep,
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description='e.g. "rain on a tin roof -thunder"')
    ],
    k: K = 20,
    mode: SearchMode = "hybrid",
    like: Annotated[int | None, Query(ge=1, le=2**53, description="an indexed file id to mix in")] = None,
    like_weight: Annotated[float, Query(ge=0, le=1, description="weight of `like` against the text")] = 0.5,
) -> SearchOut:
    t0 = time.perf_counter()
    engine = services.engine

    def work() -> SearchOut:
        # Embedding the text, FAISS and SQLite all block: never on the event loop.
        if like is not None:
            services.file(like)  # 404 for an unknown id rather than a query error
        hits = engine.search(q, k, mode=mode, filters=filters, like=like, like_weight=like_weight)
        roots = engine.catalog.roots()
        return SearchOut(query=q, mode=mode, k=k, took_ms=_ms(t0), hits=[hit_out(h, roots) for h in hits])

    return await services.run(work)


@router.post("/search/audio", response_model=SearchOut, responses=responses(413, 415))
async def search_by_example(
    services: ServicesDep,
    settings: SettingsDep,
    filters: FiltersDep,
    file: Annotated[UploadFile, File(description="a recording: WAV, AIFF, FLAC, OGG, Opus or MP3")],
    k: K = 20,
) -> SearchOut:
    t0 = time.perf_counter()
    engine = services.engine

    def work() -> SearchOut:
        with saved_upload(file, settings.max_upload_bytes, settings.max_upload_seconds) as path:
            hits = engine.similar(str(path), k, filters=filters)
        roots = engine.catalog.roots()
        return SearchOut(query=None, mode="vector", k=k, took_ms=_ms(t0), hits=[hit_out(h, roots) for h in hits])

    return await services.run(work)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1e3, 2)
