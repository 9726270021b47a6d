"""Dependencies shared by the routers: settings, services, the API key check, search filters."""

from __future__ import annotations

import secrets
from datetime import UTC
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Header, Query

from api.errors import Forbidden, Unauthorized
from api.schemas import FileOut, HitOut, SegmentOut
from api.services import Services, get_services
from api.settings import Settings, get_settings
from indexer.fsnames import display
from search.engine import Hit
from search.query import Filters
from storage.catalog import FileRecord, SegmentRecord

SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]


async def require_api_key(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header(description="the server's API key, when one is configured")] = None,
) -> None:
    """Mutating endpoints: open when no key is configured, else the key is required (401) and checked (403)."""
    if settings.api_key is None:
        return
    if not x_api_key:
        raise Unauthorized("this server requires an API key: send it in the X-API-Key header")
    if not secrets.compare_digest(x_api_key.encode(), settings.api_key.get_secret_value().encode()):
        raise Forbidden("wrong API key")


async def search_filters(
    min_duration: Annotated[float | None, Query(ge=0, le=1e7, description="seconds")] = None,
    max_duration: Annotated[float | None, Query(ge=0, le=1e7, description="seconds")] = None,
    folder: Annotated[str | None, Query(max_length=1000, description="a path prefix or a folder name")] = None,
    tag: Annotated[list[str], Query(max_length=50, description="every tag must be present (repeatable)")] = [],  # noqa: B006
    format: Annotated[list[str], Query(max_length=20, description="wav, flac, ... (repeatable)")] = [],  # noqa: B006
    ucs: Annotated[
        list[str], Query(max_length=20, description="UCS CatID (DOORWood) or category (DOOR); any may match")
    ] = [],  # noqa: B006
) -> Filters:
    return Filters(
        min_duration_s=min_duration,
        max_duration_s=max_duration,
        folder=folder or None,
        tags=tuple(t for t in tag if t.strip()),
        formats=tuple(f for f in format if f.strip()),
        ucs=tuple(u.strip() for u in ucs if u.strip()),
    )


FiltersDep = Annotated[Filters, Depends(search_filters)]
ApiKeyDep = Depends(require_api_key)


def _place(path: Path, roots: list[Path]) -> str:
    """The folder a file is in, relative to its library root (what a designer recognises), for display."""
    for root in sorted(roots, key=lambda r: len(r.parts), reverse=True):
        if path.is_relative_to(root):
            rel = path.parent.relative_to(root)
            return display(str(Path(root.name) / rel) if rel.parts else root.name)
    return display(path.parent.name)


def hit_out(hit: Hit, roots: list[Path]) -> HitOut:
    return HitOut(
        file_id=hit.file_id,
        path=display(str(hit.path)),
        name=display(hit.path.name),
        folder=_place(hit.path, roots),
        score=round(hit.score, 6),
        audio_score=None if hit.audio_score is None else round(hit.audio_score, 6),
        matched_terms=list(hit.matched_terms),
        start_s=round(hit.start_s, 3),
        end_s=round(hit.end_s, 3),
        query_start_s=None if hit.query_start_s is None else round(hit.query_start_s, 3),
        query_end_s=None if hit.query_end_s is None else round(hit.query_end_s, 3),
        duration_s=hit.duration_s,
        format=hit.format,
        tags=list(hit.tags),
        caption=hit.caption,
        matched_by=list(hit.matched_by),
        audio_url=f"/api/files/{hit.file_id}/audio",
        waveform_url=f"/api/files/{hit.file_id}/waveform",
    )


def file_out(
    record: FileRecord, roots: list[Path], segments: list[SegmentRecord], tags: list[str], caption: str | None
) -> FileOut:
    return FileOut(
        id=record.id,
        path=display(str(record.path)),
        name=display(record.path.name),
        folder=_place(record.path, roots),
        size=record.size,
        duration_s=record.duration_s,
        sample_rate=record.sample_rate,
        channels=record.channels,
        format=record.format,
        status=record.status,
        error=record.error,
        # SQLite hands back naive datetimes; the catalog writes UTC (storage.schema.utcnow).
        indexed_at=record.indexed_at if record.indexed_at.tzinfo else record.indexed_at.replace(tzinfo=UTC),
        tags=tags,
        caption=caption,
        segments=[SegmentOut(id=s.id, start_s=s.start_s, end_s=s.end_s) for s in segments],
        audio_url=f"/api/files/{record.id}/audio",
        waveform_url=f"/api/files/{record.id}/waveform",
    )
