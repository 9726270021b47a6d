"""What the server holds while it runs: the catalog, one encoder, the search engine, jobs, a captioner.

Built once in the app's lifespan and reached from routes with `Depends(get_services)`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.to_thread
import numpy as np
from fastapi import Request

from api.errors import Forbidden, NotFound, Unavailable
from api.jobs import JobRegistry
from api.settings import Settings
from indexer import objectstore
from indexer.audio import probe, stream_audio
from indexer.encoders.base import Encoder
from indexer.scan import within
from indexer.types import FloatArray
from search.engine import Engine
from search.zeroshot import ZeroShotClassifier
from storage.catalog import Catalog, FileRecord, FileStatus

log = logging.getLogger(__name__)

T = TypeVar("T")


@runtime_checkable
class Captioner(Protocol):
    """The hook a captioning model plugs into: `services.captioner = MyCaptioner()`."""

    model_id: str

    def caption(self, path: Path) -> str: ...


class LockedEncoder:
    """One encoder shared by request threads and the indexing thread: one model call at a time.

    Torch modules are not documented as safe for concurrent forward passes, and on a CPU two at once
    only fight over the same cores. Locking per call (not per request or per indexing run) lets
    searches slip in between the batches of a long indexing run.
    """

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        # Re-entrant: a captioner holding it may call the encoder through this same wrapper.
        self.lock = threading.RLock()
        self.model_id = inner.model_id
        self.sample_rate = inner.sample_rate
        self.window_seconds = inner.window_seconds
        self.dim = inner.dim

    def embed_audio(self, clips: Sequence[FloatArray]) -> FloatArray:
        with self.lock:
            return self.inner.embed_audio(clips)

    def embed_text(self, texts: Sequence[str]) -> FloatArray:
        with self.lock:
            return self.inner.embed_text(texts)

    def __getattr__(self, name: str) -> Any:
        # batch_size, device, logit_scale, ...: what the pipeline and the classifier look up.
        return getattr(self.inner, name)


@dataclass
class Services:
    settings: Settings
    encoder: LockedEncoder
    engine: Engine
    jobs: JobRegistry
    limiter: anyio.CapacityLimiter
    captioner: Captioner | None = None

    async def run(self, work: Callable[[], T]) -> T:
        """Blocking work (model, FAISS, SQLite, decoding) in a worker thread, a few requests at a time.

        Measured under 32 concurrent clients: letting every request thread run at once (Starlette's
        40-thread default) halved throughput and stretched p99 to 8x p50, the threads fighting over
        the GIL, the cores and SQLite's connection pool. A small limiter queues the rest in arrival
        order, which keeps latency even (BENCHMARKS.md).
        """
        return await anyio.to_thread.run_sync(work, limiter=self.limiter)

    @property
    def catalog(self) -> Catalog:
        return self.engine.catalog

    @functools.cached_property
    def catalog_id(self) -> str:
        """The catalog's id, read once: /healthz reports it without a database query."""
        return self.catalog.catalog_id

    def refresh(self) -> None:
        """Serve what the database holds now (after an indexing job, whether it finished or failed).

        Searches catch up by themselves (`Catalog.refresh`, per query); this waits for it, so a client
        that sees its job finished finds the new files in its next search.
        """
        self.catalog.refresh()

    def classifier(self, labels: Sequence[str], multi_label: bool) -> ZeroShotClassifier:
        # The page classifies many sounds against the same labels: embed the label prompts once.
        return _classifier(self.encoder, tuple(labels), multi_label)

    def file(self, file_id: int) -> FileRecord:
        record = self.catalog.file(file_id)
        if record is None:
            raise NotFound(f"no file with id {file_id} in the catalog")
        return record

    def object_url(self, file_id: int) -> str | None:
        """The object-storage URL (indexer.objectstore) of a file indexed from there, else None."""
        record = self.file(file_id)
        url = self.catalog.paths([file_id]).get(file_id)
        if url is None or not objectstore.is_url(url):
            return None
        if record.status != FileStatus.OK:
            raise NotFound(f"file {file_id} is not available for playback (failed to index)")
        return url

    def playable(self, file_id: int) -> FileRecord:
        record = self.file(file_id)
        if record.status != FileStatus.OK or not record.path.is_file():
            raise NotFound(f"file {file_id} is not available for playback (missing on disk or failed to index)")
        # Checked on every request, symlinks resolved: a link made (or changed) after indexing, or one a
        # CLI run followed with --follow-links-outside, must not hand out a file from elsewhere.
        if not within(record.path, self.catalog.roots()):
            raise Forbidden(f"file {file_id} lies outside the library roots (through a symlink): not served")
        return record

    def annotations(self, file_id: int) -> tuple[list[str], str | None]:
        """Tags (best first) and caption of a catalog file."""
        tags, caption = self.catalog.annotations([file_id]).get(file_id, ((), None))
        return list(tags), caption

    def require_captioner(self) -> Captioner:
        if self.captioner is None:
            raise Unavailable("no captioning model is configured")
        return self.captioner


@functools.lru_cache(maxsize=16)
def _classifier(encoder: LockedEncoder, labels: tuple[str, ...], multi_label: bool) -> ZeroShotClassifier:
    return ZeroShotClassifier(encoder, labels, multi_label=multi_label)


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise Unavailable("the server is starting or stopping")
    return services


@functools.lru_cache(maxsize=512)
def waveform_peaks(path: str, stamp: str, points: int) -> tuple[float, list[float]]:
    """Peak |amplitude| in `points` equal slices of the file, decoded block by block.

    `stamp` (the content hash) is part of the cache key only: a re-indexed file gets a new one.
    """
    info = probe(path)
    total = max(info.frames, 1)
    peaks = np.zeros(points, dtype=np.float32)
    offset = 0
    for block in stream_audio(path):
        if not len(block):
            continue
        # Bucket of every sample: its position in the file scaled to `points`.
        buckets = np.minimum((np.arange(offset, offset + len(block)) * points) // total, points - 1)
        np.maximum.at(peaks, buckets, np.abs(block))
        offset += len(block)
    top = float(peaks.max()) if points else 0.0
    scaled = peaks / top if top > 0 else peaks
    return info.duration_s, [round(float(p), 4) for p in scaled]
