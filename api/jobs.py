"""Indexing jobs: `index_library` (the CLI's run: index, enabled taggers, captions when asked, index plan) in a
background thread, its progress readable while it runs.

One job runs at a time in this process (a second request is a 409); `index_library` takes the
catalog's own run lock as well, so a CLI run on the same catalog makes the job fail with that reason.
The job writes through its own catalog handle; the server's read handle catches up with the
catalog's generation (`Catalog.refresh`), and `on_done` makes it do so before the job reads as
finished, failed or not: the server then serves what the database holds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.errors import Conflict, NotFound
from captioning.catalog import FileCaptioner
from indexer.encoders.base import Encoder
from indexer.errors import SoundsearchError
from search.indexing import RunProgress, index_library
from storage.catalog import Catalog

log = logging.getLogger(__name__)

MAX_FINISHED_JOBS = 100


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    id: str
    paths: list[str]
    state: str = "queued"
    stage: str | None = None  # the run's current step (search.indexing.STAGES)
    files_total: int | None = None
    files_done: int = 0
    audio_seconds_done: float = 0.0
    created_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None


class _JobProgress(RunProgress):
    def __init__(self, job: Job) -> None:
        self.job = job

    def stage(self, name: str) -> None:
        self.job.stage = name

    def start(self, files: int, audio_seconds: float) -> None:
        self.job.files_total = files

    def advance(self, files: int, audio_seconds: float) -> None:
        self.job.files_done += files
        self.job.audio_seconds_done += audio_seconds


class JobRegistry:
    def __init__(
        self,
        open_catalog: Callable[[], Catalog],
        encoder: Encoder,
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self._open_catalog = open_catalog
        self._encoder = encoder
        self.on_done = on_done
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, paths: list[Path], captioner: FileCaptioner | None = None) -> Job:
        """Index `paths` in the background; with `captioner`, the new and changed files are captioned too."""
        with self._lock:
            if self.running():
                raise Conflict("an indexing job is already running; wait for it (GET /api/jobs/{id})")
            job = Job(id=uuid.uuid4().hex[:12], paths=[str(p) for p in paths])
            self._jobs[job.id] = job
            self._forget_old()
            thread = threading.Thread(
                target=self._run, args=(job, paths, captioner), name=f"index-{job.id}", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def running(self) -> int:
        return sum(job.state in ("queued", "running") for job in list(self._jobs.values()))

    def join(self, timeout: float | None = None) -> None:
        """Wait for running jobs (used at shutdown and by tests)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _run(self, job: Job, paths: list[Path], captioner: FileCaptioner | None) -> None:
        job.state = "running"
        summary: dict[str, Any] | None = None
        error: str | None = None
        try:
            with self._open_catalog() as catalog:
                summary = index_library(
                    catalog,
                    self._encoder,
                    paths,
                    progress=_JobProgress(job),
                    captioner=None if captioner is None else lambda: captioner,
                ).to_dict()
        except SoundsearchError as exc:
            error = str(exc)
        except Exception as exc:  # a background thread has no caller to raise to: record it, log it
            log.exception("indexing job %s failed", job.id)
            error = f"internal error: {type(exc).__name__}: {exc}"
        try:
            # Before the job reads as done: a client that sees "done" then searches finds the new files.
            self.on_done()
        except Exception as exc:
            log.exception("could not reload the catalog after job %s", job.id)
            error = error or f"indexed, but the server could not reload the catalog: {exc}"
        job.summary, job.error = summary, error
        job.finished_at = _now()
        job.state = "failed" if error else "done"

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        for old in sorted(finished, key=lambda j: j.created_at)[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del self._jobs[old.id]
