"""Index library folders in the background, and follow the job's progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam

from api.deps import ApiKeyDep, ServicesDep, SettingsDep
from api.errors import Forbidden, NotFound, responses
from api.jobs import Job
from api.schemas import IndexRequest, JobOut
from api.settings import Settings
from search.query import QueryError

router = APIRouter(prefix="/api", tags=["index"])


@router.post(
    "/index",
    status_code=202,
    response_model=JobOut,
    dependencies=[ApiKeyDep],
    responses=responses(401, 403, 404, 409, 503),
)
def start_index(services: ServicesDep, settings: SettingsDep, request: IndexRequest) -> JobOut:
    """Start indexing folders under the configured library roots; poll the job for progress."""
    folders = [allowed_folder(raw, settings) for raw in request.paths]
    captioner = services.require_captioner() if request.caption else None
    return job_out(services.jobs.start(folders, captioner))


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses(404))
def get_job(services: ServicesDep, job_id: Annotated[str, PathParam(max_length=64, description="job id")]) -> JobOut:
    return job_out(services.jobs.get(job_id))


def allowed_folder(raw: str, settings: Settings) -> Path:
    """A folder the server may index: inside a configured root once every symlink is resolved.

    Containment is checked before existence, so the answer never tells whether a path outside the
    roots exists. The path is indexed as given (not resolved), as the CLI would store it.
    """
    roots = settings.resolved_roots()
    if not roots:
        raise Forbidden(
            "indexing over HTTP is off: no library roots are configured (SOUNDSEARCH_LIBRARY_ROOTS or "
            "`soundsearch serve --library-root DIR`)"
        )
    try:
        given = Path(raw).expanduser()
        if not given.is_absolute():
            raise QueryError(f"{raw!r}: give an absolute path")
        real = given.resolve()
    except (ValueError, OSError, RuntimeError) as exc:  # NUL bytes, symlink loops, unreadable parents
        raise QueryError(f"{raw!r} is not a usable path ({exc})") from None
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise Forbidden(f"{raw} is outside the library roots this server may index")
    if not real.exists():
        raise NotFound(f"{raw}: no such folder")
    if not real.is_dir():
        raise QueryError(f"{raw}: not a folder (index takes library folders)")
    return given.absolute()


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        stage=job.stage,
        paths=job.paths,
        files_total=job.files_total,
        files_done=job.files_done,
        audio_seconds_done=round(job.audio_seconds_done, 3),
        created_at=job.created_at,
        finished_at=job.finished_at,
        summary=job.summary,
        error=job.error,
    )
