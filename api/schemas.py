"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from search.query import MAX_QUERY_CHARS

SearchMode = Literal["hybrid", "vector", "text"]
JobState = Literal["queued", "running", "done", "failed"]


class Problem(BaseModel):
    detail: str = Field(description="what went wrong, in one sentence")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    catalog_id: str | None = Field(default=None, description="which catalog this server serves (the CLI checks it)")


class HitOut(BaseModel):
    file_id: int
    path: str
    name: str
    folder: str
    score: float = Field(description="the ranking's own score (reciprocal-rank fusion in hybrid mode): orders the list")
    audio_score: float | None = Field(
        description="cosine of the file's best window against the query, -1 to 1; null when only its words matched"
    )
    matched_terms: list[str] = Field(description="the query's words found in the file's name, folders, tags or caption")
    start_s: float = Field(description="start of the best-matching segment")
    end_s: float
    query_start_s: float | None = Field(
        default=None, description="search by example: where the part of the example that matched best starts"
    )
    query_end_s: float | None = None
    duration_s: float | None
    format: str | None
    tags: list[str]
    caption: str | None
    matched_by: list[str] = Field(description="which rankings found it: vector, text")
    audio_url: str
    waveform_url: str


class SearchOut(BaseModel):
    query: str | None = Field(description="the text query; null for a search by example")
    mode: SearchMode
    k: int
    took_ms: float
    hits: list[HitOut]


class SegmentOut(BaseModel):
    id: int
    start_s: float
    end_s: float


class FileOut(BaseModel):
    id: int
    path: str
    name: str
    folder: str
    size: int
    duration_s: float | None
    sample_rate: int | None
    channels: int | None
    format: str | None
    status: str
    error: str | None
    indexed_at: datetime
    tags: list[str]
    caption: str | None
    segments: list[SegmentOut]
    audio_url: str
    waveform_url: str


class WaveformOut(BaseModel):
    file_id: int
    duration_s: float
    points: int
    peaks: list[float] = Field(description="peak absolute amplitude per bucket, 0-1, evenly spaced in time")


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyOut(BaseModel):
    source: str = Field(description="the file name, or 'upload'")
    file_id: int | None
    multi_label: bool
    labels: list[LabelScore] = Field(description="best first")


class CaptionOut(BaseModel):
    caption: str


class IndexRequest(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=100, description="folders under the configured library roots")
    caption: bool = Field(
        default=False, description="also caption the new and changed files (503 without a captioning model)"
    )


class JobOut(BaseModel):
    id: str
    state: JobState
    stage: str | None = Field(
        default=None, description="the run's current step: indexing, tagging, captioning, planning the vector index"
    )
    paths: list[str]
    files_total: int | None = Field(description="files to embed; null until the scan has finished")
    files_done: int
    audio_seconds_done: float
    created_at: datetime
    finished_at: datetime | None
    summary: dict[str, object] | None = Field(description="the indexing summary once done")
    error: str | None


class StatusOut(BaseModel):
    files: int
    failed: int
    segments: int
    audio_hours: float
    model: str | None = Field(description="the model the catalog was built with")
    encoder: str = Field(description="the model this server embeds queries with")
    dim: int
    index_type: str
    captioning: bool
    indexing_enabled: bool = Field(description="whether library roots are configured for POST /api/index")
    api_key_required: bool
    max_upload_bytes: int
    max_upload_seconds: float
    max_query_chars: int = MAX_QUERY_CHARS
    jobs_running: int
    pid: int = Field(description="the server process that answered (one of several under `serve --workers`)")
    catalog: dict[str, Any] = Field(description="the catalog's own report, as `soundsearch status` prints it")
