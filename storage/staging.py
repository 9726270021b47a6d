"""A `reindex`'s storage: the new model's vectors staged beside the catalog's own, then swapped in.

The staged rows (tables `staged_files`, `staged_segments`) and the target model (settings
`reindex_target`, with whether the swap is done) are what let a killed reindex resume with the same
model (`indexer.reindex` tells the whole story).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, Exists, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from indexer.types import FloatArray, Seconds
from storage import index_choice
from storage.catalog import Catalog, CatalogError, FileStatus, ModelBinding, vector_to_bytes, write_binding
from storage.schema import FileRow, Root, SegmentRow, Setting, StagedFile, StagedSegment

log = logging.getLogger(__name__)

TARGET_KEY = "reindex_target"


def pending(catalog: Catalog) -> tuple[str, int, int] | None:
    """An unfinished reindex: (its model, files staged, files to stage), or None."""
    stored = catalog.settings().get(TARGET_KEY)
    if stored is None:
        return None
    with Session(catalog.engine) as s:
        staged = s.scalar(select(func.count()).select_from(StagedFile)) or 0
        total = s.scalar(select(func.count()).select_from(FileRow).where(FileRow.status == FileStatus.OK)) or 0
    return str(json.loads(stored)["model_id"]), int(staged), int(total)


def start_or_resume(catalog: Catalog, target: ModelBinding) -> bool:
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


def finish(catalog: Catalog) -> None:
    """The reindex is complete: nothing is left to resume."""
    with catalog.session() as s:
        s.execute(delete(Setting).where(Setting.key == TARGET_KEY))


def _to_stage() -> tuple[ColumnElement[bool], ...]:
    """Files the new model embeds: OK ones (a row without a hash, never written by `index`, is left to
    the closing incremental pass, which embeds OK files without vectors)."""
    return FileRow.status == FileStatus.OK, FileRow.content_hash.is_not(None)


def _valid_stage() -> Exists:
    """A staged row made from the file's current content (an `index` run since may have changed it)."""
    return exists().where(StagedFile.file_id == FileRow.id, StagedFile.content_hash == FileRow.content_hash)


@dataclass(frozen=True)
class Unstaged:
    """A file still to embed with the new model."""

    file_id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    root_id: int
    root: Path


def unstaged(catalog: Catalog) -> tuple[int, list[Unstaged]]:
    """How many files are staged for their current content, and the OK files still to embed with the new
    model, by path."""
    with catalog.session() as s:
        # Rows staged for an older version of their file are dropped (their segments with them).
        s.execute(delete(StagedFile).where(~_valid_stage()))
        staged = s.scalar(select(func.count()).select_from(StagedFile)) or 0
        rows = s.execute(
            select(FileRow.id, FileRow.path, FileRow.size, FileRow.mtime_ns, FileRow.content_hash, Root.id, Root.path)
            .join(Root, Root.id == FileRow.root_id)
            .where(*_to_stage(), ~_valid_stage())
            .order_by(FileRow.path)
        ).all()
    return int(staged), [
        Unstaged(file_id, path, size, mtime_ns, str(content_hash), root_id, Path(root))
        for file_id, path, size, mtime_ns, content_hash, root_id, root in rows
    ]


class Stage:
    """The files of one staging transaction; see `stage`."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def put(
        self,
        file_id: int,
        content_hash: str,
        error: str | None,
        bounds: Sequence[tuple[Seconds, Seconds]],
        vectors: Sequence[FloatArray],
    ) -> None:
        """The new model's windows of a file (none when it failed with the new model: `error`)."""
        self.session.add(StagedFile(file_id=file_id, content_hash=content_hash, error=error))
        self.session.flush()  # the staged segments refer to it
        if error is None:
            rows = [
                {"file_id": file_id, "start_s": a, "end_s": b, "vector": vector_to_bytes(v)}
                for (a, b), v in zip(bounds, vectors, strict=True)
            ]
            self.session.execute(insert(StagedSegment), rows)


@contextmanager
def stage(catalog: Catalog) -> Iterator[Stage]:
    """One committed chunk of staged files."""
    with catalog.session() as s:
        yield Stage(s)


def swap(catalog: Catalog, target: ModelBinding) -> None:
    """Replace every segment with the staged ones and bind the new model, in one transaction; then rebuild
    the vector index (the saved one holds the old model's vectors)."""
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
    catalog.rebuild_index()
    log.info("reindex: the vectors of model %s are swapped in", target.model_id)
