"""Health, status, and the web page."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from api.deps import ServicesDep, SettingsDep
from api.schemas import Health, StatusOut
from storage.catalog import CatalogStatus

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz(request: Request) -> Health:
    services = request.app.state.services
    return Health(catalog_id=services.catalog_id if services is not None else None)


@router.get("/api/status", response_model=StatusOut)
async def status(services: ServicesDep, settings: SettingsDep) -> StatusOut:
    def work() -> CatalogStatus:
        services.catalog.refresh(wait=False)  # counts and vectors of the same generation
        return services.catalog.status()

    st = await services.run(work)
    return StatusOut(
        files=st.files,
        failed=st.failed,
        segments=st.segments,
        audio_hours=round(st.audio_hours, 4),
        model=st.model.model_id if st.model else None,
        encoder=services.encoder.model_id,
        dim=services.encoder.dim,
        index_type=st.index_type,
        captioning=services.captioner is not None,
        indexing_enabled=bool(settings.library_roots),
        api_key_required=settings.api_key is not None,
        max_upload_bytes=settings.max_upload_bytes,
        max_upload_seconds=settings.max_upload_seconds,
        jobs_running=services.jobs.running(),
        pid=os.getpid(),
        catalog=st.to_dict(),
    )


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")
