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

import math
import time
from dataclasses import replace

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
from storage import staging
from storage.catalog import PREPROCESSING_VERSION, Catalog, ModelBinding


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
        if not staging.start_or_resume(catalog, target):
            jobs = _unstaged(catalog, summary)
            spec = WindowSpec(target.window_s, target.hop_s)
            # The catalog's FAISS index is the old model's until the swap: never saved meanwhile.
            staged = replace(opts, save_index_every_s=math.inf)
            LocalExecutor(staged).run(jobs, encoder, spec, _StagingWriter(catalog, staged, summary, progress))
            staging.swap(catalog, target)
        _absorb(summary, index_locked(catalog, encoder, catalog.roots(), options=opts, progress=progress))
        staging.finish(catalog)
    summary.seconds = time.perf_counter() - t0
    return summary


def _unstaged(catalog: Catalog, summary: IndexSummary) -> list[IndexJob]:
    """OK files still to embed with the new model; those staged before count as unchanged."""
    summary.unchanged, files = staging.unstaged(catalog)
    return [
        IndexJob(FoundFile(f.path, f.size, f.mtime_ns), f.root_id, f.root, f.content_hash, f.file_id) for f in files
    ]


class _StagingWriter(CatalogWriter):
    """The write path of `index`, writing the new model's vectors beside the catalog's own."""

    def commit(self) -> None:
        if not self.ready:
            return
        with staging.stage(self.catalog) as stage:
            for st in self.ready:
                file_id = st.job.existing_id
                assert file_id is not None  # staging jobs are files of the catalog
                stage.put(file_id, st.job.content_hash, st.error, st.bounds, st.vectors)
                if st.error is not None:
                    self.summary.failed += 1
                    self.summary.errors.append({"path": st.job.found.path, "reason": st.error})
                    continue
                self.summary.updated += 1
                self.summary.segments += len(st.bounds)
                self.summary.audio_seconds += st.info.duration_s if st.info else 0.0
                self.summary.changed_file_ids.append(file_id)
        self.ready = []
        self.last_commit = time.monotonic()


def _absorb(summary: IndexSummary, incremental: IndexSummary) -> None:
    """Add what the closing incremental pass did (its `unchanged` are the files just re-embedded)."""
    for name in ("added", "updated", "moved", "removed", "failed", "segments", "audio_seconds"):
        setattr(summary, name, getattr(summary, name) + getattr(incremental, name))
    summary.errors.extend(incremental.errors)
    summary.changed_file_ids.extend(incremental.changed_file_ids)
