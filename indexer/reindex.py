"""`reindex`: every vector rebuilt with another model, beside the old ones, swapped in when complete.

Under the indexing lock (a `reindex` beside a running `index` refuses, having changed nothing):

1. The new model's vectors are staged (tables `staged_files`, `staged_segments`) file by file, in
   committed chunks, while the catalog keeps answering with its old model and vectors.
2. When every file is staged, one transaction replaces the segments with the staged ones and binds
   the new model; the FAISS index is then rebuilt from the database. (Killed in between, the old
   model's FAISS file is rebuilt on its next load: its identity names its model, `storage.index_file`.)
3. An ordinary incremental `index` of the catalog's roots then picks up what changed on disk.

The target model is recorded (settings `reindex_target`) until step 3 ends, so a run killed at any
point resumes with the same model: files staged for their current content are not embedded again,
and after the swap only the incremental pass is left. Another model discards the staged vectors.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

from sqlalchemy import ColumnElement, Exists, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from indexer.encoders.base import Encoder
from indexer.pipeline import (
    CatalogWriter,
    IndexJob,
    IndexOptions,
    IndexSummary,
    LocalExecutor,
    Progress,
    index_locked,
)
from indexer.scan import FoundFile
from indexer.windows import WindowSpec
from storage import index_choice
from storage.catalog import (
    PREPROCESSING_VERSION,
    Catalog,
    CatalogError,
    FileStatus,
    ModelBinding,
    vector_to_bytes,
    write_binding,
)
from storage.schema import FileRow, Root, SegmentRow, Setting, StagedFile, StagedSegment

log = logging.getLogger(__name__)

TARGET_KEY = "reindex_target"


def reindex(
    catalog: Catalog, encoder: Encoder, *, options: IndexOptions | None = None, progress: Progress | None = None
) -> IndexSummary:
    """Re-embed the catalog's files with `encoder`'s model and make it the catalog's model."""
    opts = options or IndexOptions()
    t0 = time.perf_counter()
    target = ModelBinding(
        encoder.model_id, encoder.dim, encoder.window_seconds, encoder.window_seconds / 2, PREPROCESSING_VERSION
    )
    summary = IndexSummary()
    with catalog.run_lock():
        if not _start_or_resume(catalog, target):
            jobs = _unstaged(catalog, summary)
            spec = WindowSpec(target.window_s, target.hop_s)
            # The catalog's FAISS index is the old model's until the swap: never saved meanwhile.
            staging = replace(opts, save_index_every_s=math.inf)
            LocalExecutor(staging).run(jobs, encoder, spec, _StagingWriter(catalog, staging, summary, progress))
            _swap(catalog, target)
        _absorb(summary, index_locked(catalog, encoder, catalog.roots(), options=opts, progress=progress))
        with catalog.session() as s:
            s.execute(delete(Setting).where(Setting.key == TARGET_KEY))
    summary.seconds = time.perf_counter() - t0
    return summary


def pending(catalog: Catalog) -> tuple[str, int, int] | None:
    """An unfinished reindex: (its model, files staged, files to stage), or None."""
    stored = catalog.settings().get(TARGET_KEY)
    if stored is None:
        return None
    with Session(catalog.engine) as s:
        staged = s.scalar(select(func.count()).select_from(StagedFile)) or 0
        total = s.scalar(select(func.count()).select_from(FileRow).where(FileRow.status == FileStatus.OK)) or 0
    return str(json.loads(stored)["model_id"]), int(staged), int(total)


def _start_or_resume(catalog: Catalog, target: ModelBinding) -> bool:
    """Record the target model (keeping what an interrupted run staged for it); returns whether the
    vectors were already swapped in."""
    stored = catalog.settings().get(TARGET_KEY)
    if stored is not None:
        fields = json.loads(stored)
        swapped = bool(fields.pop("swapped"))
        if ModelBinding(**fields) == target:
            log.info("resuming the reindex with model %s", target.model_id)
            return swapped
        log.warning("discarding the vectors staged by an unfinished reindex with model %s", fields["model_id"])
    with catalog.session() as s:
        s.execute(delete(StagedSegment))
        s.execute(delete(StagedFile))
        s.merge(Setting(key=TARGET_KEY, value=json.dumps({**asdict(target), "swapped": False})))
    return False


def _to_stage() -> tuple[ColumnElement[bool], ...]:
    """Files the new model embeds: OK ones (a row without a hash, never written by `index`, is left to
    the closing incremental pass, which embeds OK files without vectors)."""
    return FileRow.status == FileStatus.OK, FileRow.content_hash.is_not(None)


def _valid_stage() -> Exists:
    """A staged row made from the file's current content (an `index` run since may have changed it)."""
    return exists().where(StagedFile.file_id == FileRow.id, StagedFile.content_hash == FileRow.content_hash)


def _unstaged(catalog: Catalog, summary: IndexSummary) -> list[IndexJob]:
    """OK files still to embed with the new model; those staged before count as unchanged."""
    with catalog.session() as s:
        # Rows staged for an older version of their file are dropped (their segments with them).
        s.execute(delete(StagedFile).where(~_valid_stage()))
        summary.unchanged = s.scalar(select(func.count()).select_from(StagedFile)) or 0
        rows = s.execute(
            select(FileRow.id, FileRow.path, FileRow.size, FileRow.mtime_ns, FileRow.content_hash, Root.id, Root.path)
            .join(Root, Root.id == FileRow.root_id)
            .where(*_to_stage(), ~_valid_stage())
            .order_by(FileRow.path)
        ).all()
    return [
        IndexJob(FoundFile(path, size, mtime_ns), root_id, Path(root), str(content_hash), file_id)
        for file_id, path, size, mtime_ns, content_hash, root_id, root in rows
    ]


class _StagingWriter(CatalogWriter):
    """The write path of `index`, writing the new model's vectors beside the catalog's own."""

    def commit(self) -> None:
        if not self.ready:
            return
        with self.catalog.session() as s:
            for st in self.ready:
                file_id = st.job.existing_id
                assert file_id is not None  # staging jobs are files of the catalog
                s.add(StagedFile(file_id=file_id, content_hash=st.job.content_hash, error=st.error))
                s.flush()  # the staged segments refer to it
                if st.error is not None:
                    self.summary.failed += 1
                    self.summary.errors.append({"path": st.job.found.path, "reason": st.error})
                    continue
                rows = [
                    {"file_id": file_id, "start_s": a, "end_s": b, "vector": vector_to_bytes(v)}
                    for (a, b), v in zip(st.bounds, st.vectors, strict=True)
                ]
                s.execute(insert(StagedSegment), rows)
                self.summary.updated += 1
                self.summary.segments += len(rows)
                self.summary.audio_seconds += st.info.duration_s if st.info else 0.0
                self.summary.changed_file_ids.append(file_id)
        self.ready = []
        self.last_commit = time.monotonic()


def _swap(catalog: Catalog, target: ModelBinding) -> None:
    """Replace every segment with the staged ones and bind the new model, in one transaction."""
    with catalog.session() as s:
        missing = s.scalar(select(func.count()).select_from(FileRow).where(*_to_stage(), ~_valid_stage()))
        if missing:  # only another writer ignoring the run lock could cause this
            raise CatalogError(f"{missing} file(s) changed during the reindex; run `soundsearch reindex` again")
        s.execute(delete(SegmentRow))
        staged = select(StagedSegment.file_id, StagedSegment.start_s, StagedSegment.end_s, StagedSegment.vector)
        s.execute(
            insert(SegmentRow).from_select(
                ["file_id", "start_s", "end_s", "vector"],
                staged.join(StagedFile)
                .join(FileRow, FileRow.id == StagedFile.file_id)
                .where(StagedFile.error.is_(None), FileRow.status == FileStatus.OK)
                .order_by(StagedSegment.id),
            )
        )
        failed = s.execute(select(StagedFile.file_id, StagedFile.error).where(StagedFile.error.is_not(None))).all()
        for file_id, error in failed:
            s.execute(update(FileRow).where(FileRow.id == file_id).values(status=FileStatus.FAILED, error=error))
        s.execute(delete(StagedSegment))
        s.execute(delete(StagedFile))
        # The old index's plan and tuning do not describe the index rebuilt for the new vectors.
        s.execute(delete(Setting).where(Setting.key == index_choice.SETTING_KEY))
        write_binding(s, target)
        s.merge(Setting(key=TARGET_KEY, value=json.dumps({**asdict(target), "swapped": True})))
    catalog.rebuild_index()  # the saved one holds the old model's vectors
    log.info("reindex: the vectors of model %s are swapped in", target.model_id)


def _absorb(summary: IndexSummary, incremental: IndexSummary) -> None:
    """Add what the closing incremental pass did (its `unchanged` are the files just re-embedded)."""
    for name in ("added", "updated", "moved", "removed", "failed", "segments", "audio_seconds"):
        setattr(summary, name, getattr(summary, name) + getattr(incremental, name))
    summary.errors.extend(incremental.errors)
    summary.changed_file_ids.extend(incremental.changed_file_ids)
