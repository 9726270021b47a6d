"""The indexing run: scan, diff against the catalog, decode in parallel, embed in full batches, commit.

- Unchanged files (same size and mtime) are skipped without being opened, unless they are OK without
  a single vector (a lost write: embedded again) or could not be read last time (read again); files
  whose stat changed are hashed, and only a changed hash is re-embedded. A new path whose hash
  matches a file that vanished is a move: its row and vectors are kept. Files that vanished are removed.
- Decoders (`indexer.decoding`: threads beside a CPU model, worker processes beside a GPU) turn files
  into windows while the main thread embeds windows from many files in full batches.
- Finished files are committed in chunks (rows and vectors in one transaction), so a crash loses at
  most the chunk in flight and the next run resumes. The FAISS file is saved periodically and at the
  end; whatever a crash leaves it missing is repaired from the database on the next open.
- One bad file never stops a run: it is recorded with its error (an unreadable one too, so that
  `soundsearch status --failed` lists it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from indexer import objectstore
from indexer.audio import AudioInfo
from indexer.decoding import FileEnd, decoded
from indexer.encoders.base import Encoder
from indexer.fsnames import display
from indexer.metadata import EmbeddedText, search_text
from indexer.scan import FoundFile, walk_audio
from indexer.windows import Window, WindowSpec
from storage.catalog import Catalog, CatalogError, FileStatus
from storage.writer import FileFacts, KnownFile, ensure_roots, known_files, writes

log = logging.getLogger(__name__)
CPU_DECODERS = 2  # decoder threads beside a CPU model: see indexer/decoding.py and benchmarks/bench_index.py

HASH_BLOCK = 1 << 20


@dataclass
class IndexSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    failed: int = 0
    segments: int = 0
    seconds: float = 0.0
    audio_seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)
    # Files whose vectors were (re)computed in this run, for follow-up work such as auto-tagging.
    changed_file_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "removed": self.removed,
            "failed": self.failed,
            "segments": self.segments,
            "seconds": round(self.seconds, 3),
            "audio_hours": round(self.audio_seconds / 3600, 4),
            "errors": [{**e, "path": display(e["path"])} for e in self.errors],
        }


@dataclass(frozen=True)
class IndexOptions:
    workers: int | None = None  # decoders (0: decode inline); None: see `workers_for`
    processes: bool | None = None  # decoders are processes (else threads); None: see `processes_for`
    commit_every_files: int = 64
    commit_every_s: float = 15.0
    save_index_every_s: float = 120.0
    # Follow symlinks that lead out of the roots being indexed (CLI opt-in; never over HTTP).
    follow_links_outside: bool = False

    def workers_for(self, device: str) -> int:
        """Decoders for a model on `device`: as asked, else CPU_DECODERS on a CPU, else all cores but one (≤ 8)."""
        if self.workers is not None:
            return self.workers
        return CPU_DECODERS if device == "cpu" else min(8, max(2, (os.cpu_count() or 2) - 1))

    def processes_for(self, device: str) -> bool:
        """Processes beside a GPU model (it outruns what threads sharing a GIL decode), threads beside a CPU one."""
        return self.processes if self.processes is not None else device != "cpu"


class Progress:
    """What a front end (progress bar, API job) is told while a run embeds files."""

    def start(self, files: int, audio_seconds: float) -> None: ...

    def advance(self, files: int, audio_seconds: float) -> None: ...

    def finish(self) -> None: ...


@dataclass
class IndexJob:
    """A file to embed: where it was found, under which root, with the hash of the bytes about to be read."""

    found: FoundFile
    root_id: int
    root: Path | str  # a folder, or an object-storage prefix (indexer.objectstore)
    content_hash: str
    existing_id: int | None  # set when the file replaces an older version of itself


class Executor(Protocol):
    """How planned files become windows and vectors: in this process (`LocalExecutor`) or on a cluster
    (`indexer.ray_engine.RayExecutor`). Either hands every finished file to the `CatalogWriter`."""

    def run(self, jobs: list[IndexJob], encoder: Encoder, spec: WindowSpec, writer: CatalogWriter) -> None: ...


def index_paths(
    catalog: Catalog,
    encoder: Encoder,
    roots: Sequence[str | Path],
    *,
    options: IndexOptions | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> IndexSummary:
    """Bring the catalog up to date with the audio files under `roots`."""
    with catalog.run_lock():
        return index_locked(catalog, encoder, roots, options=options, progress=progress, executor=executor)


def index_locked(
    catalog: Catalog,
    encoder: Encoder,
    roots: Sequence[str | Path],
    *,
    options: IndexOptions | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> IndexSummary:
    """`index_paths` for a caller that already holds the run lock (`indexer.reindex` ends with one)."""
    opts = options or IndexOptions()
    t0 = time.perf_counter()
    root_paths = [_check_root(r) for r in roots]
    binding = catalog.bind_model(encoder.model_id, encoder.dim, encoder.window_seconds, encoder.window_seconds / 2)
    spec = WindowSpec(binding.window_s, binding.hop_s)
    summary = IndexSummary()
    jobs = _plan(catalog, root_paths, summary, follow_links_outside=opts.follow_links_outside)
    writer = CatalogWriter(catalog, opts, summary, progress)
    (executor or LocalExecutor(opts)).run(jobs, encoder, spec, writer)
    catalog.save_index()
    summary.seconds = time.perf_counter() - t0
    return summary


def _check_root(root: str | Path) -> Path | str:
    """A library folder, made absolute, or an object-storage prefix (`s3://bucket/prefix`)."""
    url = objectstore.as_root(root)
    if url is not None:
        return objectstore.check_root(url)
    p = Path(root).expanduser().absolute()
    if not p.exists():
        raise CatalogError(f"{p}: no such folder")
    if not p.is_dir():
        raise CatalogError(f"{p}: not a folder (index takes library folders)")
    return p


def file_hash(path: str) -> str:
    if objectstore.is_url(path):
        return objectstore.content_hash(path)
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _plan(
    catalog: Catalog, roots: list[Path | str], summary: IndexSummary, *, follow_links_outside: bool
) -> list[IndexJob]:
    """Diff the disk against the catalog; apply moves and removals; return the files to embed."""
    root_ids = ensure_roots(catalog, roots)
    found: dict[str, tuple[FoundFile, int]] = {}
    root_paths = dict(zip(root_ids, roots, strict=True))
    folders = [r for r in roots if isinstance(r, Path)]
    for root, root_id in zip(roots, root_ids, strict=True):
        if isinstance(root, str):
            files, issues = objectstore.walk_objects(root)
        else:
            files, issues = walk_audio(root, confine_to=None if follow_links_outside else folders)
        summary.errors.extend({"path": i.path, "reason": i.reason} for i in issues)
        for f in files:
            found.setdefault(f.path, (f, root_id))

    known = {r.path: r for r in known_files(catalog, root_ids, roots)}

    to_hash: list[tuple[FoundFile, int, KnownFile | None]] = []
    for path, (f, root_id) in found.items():
        row = known.get(path)
        if row is not None and row.size == f.size and row.mtime_ns == f.mtime_ns and _settled(row):
            summary.unchanged += 1
        else:
            to_hash.append((f, root_id, row))

    vanished = {r.content_hash: r for p, r in known.items() if p not in found and r.status == FileStatus.OK}
    hashes, unreadable = _hash_all([f.path for f, _, _ in to_hash])

    jobs: list[IndexJob] = []
    touched: list[tuple[int, FoundFile]] = []
    moves: list[tuple[int, FoundFile, int]] = []
    failed: list[tuple[FoundFile, int, KnownFile | None, str]] = []
    for f, root_id, row in to_hash:
        digest = hashes.get(f.path)
        if digest is None:
            failed.append((f, root_id, row, unreadable[f.path]))
        elif row is not None and row.content_hash == digest and _settled(row):
            touched.append((row.id, f))  # same bytes, new mtime
            summary.unchanged += 1
        elif row is None and digest in vanished:
            moves.append((vanished.pop(digest).id, f, root_id))
            summary.moved += 1
        else:
            jobs.append(IndexJob(f, root_id, root_paths[root_id], digest, row.id if row is not None else None))

    removed_ids = [r.id for r in vanished.values()] + [
        r.id for p, r in known.items() if p not in found and r.status != FileStatus.OK
    ]
    summary.removed = len(vanished)
    for f, _root_id, _row, reason in failed:
        summary.failed += 1
        summary.errors.append({"path": f.path, "reason": reason})
    with writes(catalog) as w:
        for file_id, f in touched:
            w.touch(file_id, f.size, f.mtime_ns)
        for file_id, f, root_id in moves:
            w.move_file(file_id, f.path, root_id, root_paths[root_id], f.size, f.mtime_ns)
        w.remove_files(removed_ids)
        # Files that could not be read become failed rows without a content hash (read again next run).
        for f, root_id, row, reason in failed:
            existing = row.id if row is not None else None
            w.record_unreadable(existing, root_id, root_paths[root_id], f.path, f.size, f.mtime_ns, reason)
    return jobs


def _settled(row: KnownFile) -> bool:
    """A known file with nothing left to do while its bytes stay the same: OK with its vectors, or
    failed on bytes that were read (decoding them again would fail again)."""
    return bool(row.has_vectors) if row.status == FileStatus.OK else row.content_hash is not None


def _hash_all(paths: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Content hashes by path, and why each file that could not be read was not."""

    def one(path: str) -> tuple[str, str | None, str | None]:
        try:
            return path, file_hash(path), None
        except OSError as exc:
            return path, None, f"cannot read file: {exc.strerror or exc}"

    digests: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for path, digest, error in pool.map(one, paths):
            if digest is None:
                unreadable[path] = error or "unreadable"
            else:
                digests[path] = digest
    return digests, unreadable


# --- the embedding loop ---------------------------------------------------------------------------


@dataclass
class FileResult:
    """A file on its way through an executor: windows arrive, embeddings accumulate."""

    job: IndexJob
    info: AudioInfo | None = None
    n_windows: int | None = None  # known once the decoder reached the end of the file
    bounds: list[tuple[float, float]] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    error: str | None = None
    embedded: EmbeddedText = field(default_factory=EmbeddedText)

    @property
    def complete(self) -> bool:
        return self.n_windows is not None and len(self.vectors) == self.n_windows

    def ended(self, end: FileEnd) -> None:
        self.info, self.n_windows, self.error, self.embedded = end.info, end.n_windows, end.error, end.embedded


class LocalExecutor:
    """Decoders in this process (threads or processes) feed one model that embeds full batches."""

    def __init__(self, opts: IndexOptions) -> None:
        self.opts = opts

    def run(self, jobs: list[IndexJob], encoder: Encoder, spec: WindowSpec, writer: CatalogWriter) -> None:
        # numpy's BLAS (the resampler's GEMM) gets one thread: its idle threads otherwise spin on the
        # cores torch's threads need, and every batch after a decode ran 10-20 % slower (bench_index).
        # The limit is process-wide while the run lasts (other threads' numpy products included).
        with threadpool_limits(1, user_api="blas"):
            _EmbedRun(encoder, spec, self.opts, writer).run(jobs)


class _EmbedRun:
    def __init__(self, encoder: Encoder, spec: WindowSpec, opts: IndexOptions, writer: CatalogWriter) -> None:
        self.encoder = encoder
        self.spec = spec
        self.writer = writer
        self.batch_size = int(getattr(encoder, "batch_size", 8))
        device = getattr(getattr(encoder, "device", None), "type", "cpu")
        self.workers = opts.workers_for(device)
        self.processes = opts.processes_for(device)

    def run(self, jobs: list[IndexJob]) -> None:
        if not jobs:
            return
        self.writer.start(jobs)
        states = [FileResult(job) for job in jobs]
        batch: list[tuple[FileResult, Window]] = []
        for i, item in decoded(
            [job.found.path for job in jobs],
            self.encoder.sample_rate,
            self.spec,
            workers=self.workers,
            processes=self.processes,
            ahead=4 * self.batch_size,  # a few batches ahead of the model; memory flat on long files
        ):
            state = states[i]
            if isinstance(item, FileEnd):
                state.ended(item)
                if state.error is not None or state.complete:
                    self.writer.finished(state)
            else:
                state.bounds.append((item.start_s, item.end_s))
                batch.append((state, item))
                if len(batch) >= self.batch_size:
                    self._embed(batch)
                    batch = []
            self.writer.maybe_commit()
        if batch:
            self._embed(batch)
        self.writer.finish()

    def _embed(self, batch: list[tuple[FileResult, Window]]) -> None:
        vectors = self.encoder.embed_audio([w.samples for _, w in batch])
        for (state, _), vec in zip(batch, vectors, strict=True):
            state.vectors.append(vec)
            if state.complete and state.error is None:
                self.writer.finished(state)


class CatalogWriter:
    """Finished files into the catalog, in chunks (rows, segments and vectors in one transaction each);
    the one write path of every executor."""

    def __init__(self, catalog: Catalog, opts: IndexOptions, summary: IndexSummary, progress: Progress | None) -> None:
        self.catalog = catalog
        self.opts = opts
        self.summary = summary
        self.progress = progress
        self.ready: list[FileResult] = []
        self.last_commit = time.monotonic()
        self.last_save = time.monotonic()

    def start(self, jobs: Sequence[IndexJob]) -> None:
        if self.progress:
            self.progress.start(len(jobs), sum(_estimated_seconds(j) for j in jobs))

    def finished(self, state: FileResult) -> None:
        """`state` is complete (every window embedded) or failed: it goes out with the next commit."""
        self.ready.append(state)
        if self.progress:
            seconds = state.info.duration_s if state.info and state.error is None else 0.0
            self.progress.advance(1, seconds)

    def finish(self) -> None:
        self.commit()
        if self.progress:
            self.progress.finish()

    def maybe_commit(self) -> None:
        now = time.monotonic()
        if len(self.ready) >= self.opts.commit_every_files or (
            self.ready and now - self.last_commit >= self.opts.commit_every_s
        ):
            self.commit()
        if now - self.last_save >= self.opts.save_index_every_s:
            self.catalog.save_index()
            self.last_save = now

    def commit(self) -> None:
        """Write finished files (rows, segments, vectors) in one transaction, then update FAISS."""
        if not self.ready:
            return
        with writes(self.catalog) as w:
            for st in self.ready:
                if st.error is not None:
                    w.put_file(st.job.existing_id, self._facts(st), (), ())
                    self.summary.failed += 1
                    self.summary.errors.append({"path": st.job.found.path, "reason": st.error})
                    continue
                file_id = w.put_file(st.job.existing_id, self._facts(st), st.bounds, st.vectors)
                self.summary.segments += len(st.bounds)
                self.summary.audio_seconds += st.info.duration_s if st.info else 0.0
                self.summary.changed_file_ids.append(file_id)
                if st.job.existing_id is None:
                    self.summary.added += 1
                else:
                    self.summary.updated += 1
        self.ready = []
        self.last_commit = time.monotonic()

    @staticmethod
    def _facts(st: FileResult) -> FileFacts:
        f, info = st.job.found, st.info
        return FileFacts(
            root_id=st.job.root_id,
            path=f.path,
            size=f.size,
            mtime_ns=f.mtime_ns,
            content_hash=st.job.content_hash,
            status=FileStatus.OK if st.error is None else FileStatus.FAILED,
            error=st.error,
            duration_s=info.duration_s if info else None,
            sample_rate=info.sample_rate if info else None,
            channels=info.channels if info else None,
            format=info.format if info else None,
            title=st.embedded.title,
            comment=st.embedded.comment,
            search_text=search_text(f.path, st.job.root, st.embedded),
        )


def _estimated_seconds(job: IndexJob) -> float:
    # Rough (from the size of 16-bit stereo at 44.1 kHz) until the header is read; only for the ETA.
    return job.found.size / 176_400
