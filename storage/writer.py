"""An indexing run's writes: roots, what the catalog knows under them, and each change as one transaction.

`writes(catalog)` is one unit of work (`Writes`): files touched, moved, removed, found unreadable, or
finished with their segments and vectors. Rows and vectors commit together; the vector index follows
once the transaction has committed (ids removed, then new ones added), so a crash in between leaves
only what the next open reconciles from the database (`storage.catalog`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from indexer.metadata import EmbeddedText, search_text
from indexer.types import FloatArray, Seconds
from storage.catalog import Catalog, FileStatus, vector_to_bytes
from storage.schema import FileRow, Root, SegmentRow, utcnow
from storage.vectors import IdArray


@dataclass(frozen=True)
class KnownFile:
    """A file the catalog knows, as an indexing run compares it with the disk."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    has_vectors: bool


@dataclass(frozen=True)
class FileFacts:
    """What an indexing run learned about a file: its row, but for the id."""

    root_id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    error: str | None
    duration_s: Seconds | None
    sample_rate: int | None
    channels: int | None
    format: str | None
    title: str | None
    comment: str | None
    search_text: str


def ensure_roots(catalog: Catalog, roots: Sequence[Path | str]) -> list[int]:
    """The ids of these library roots (folders or object-storage prefixes), recorded when new."""
    ids = []
    with catalog.session() as s:
        for root in roots:
            row = s.scalars(select(Root).where(Root.path == str(root))).one_or_none()
            if row is None:
                row = Root(path=str(root))
                s.add(row)
                s.flush()
            ids.append(row.id)
    return ids


def known_files(catalog: Catalog, root_ids: Sequence[int], roots: Sequence[Path | str]) -> list[KnownFile]:
    """Files recorded under these roots, also under another root that contains one of them (indexing a
    subfolder)."""
    query = select(
        FileRow.id,
        FileRow.path,
        FileRow.size,
        FileRow.mtime_ns,
        FileRow.content_hash,
        FileRow.status,
        exists().where(SegmentRow.file_id == FileRow.id).label("has_vectors"),
    ).where(or_(FileRow.root_id.in_(root_ids), *(FileRow.path.startswith(f"{r}{os.sep}") for r in roots)))
    with Session(catalog.engine) as s:
        return [KnownFile(*row) for row in s.execute(query)]


class Writes:
    """The writes of one transaction; see `writes`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.stale: list[IdArray] = []  # segment ids to drop from the vector index
        self.new_ids: list[int] = []
        self.new_vectors: list[FloatArray] = []

    def touch(self, file_id: int, size: int, mtime_ns: int) -> None:
        """The same bytes with a new stat."""
        self.session.execute(update(FileRow).where(FileRow.id == file_id).values(size=size, mtime_ns=mtime_ns))

    def move_file(self, file_id: int, path: str, root_id: int, root: Path | str, size: int, mtime_ns: int) -> None:
        """A file now at `path` (under `root`): it keeps its id, vectors, tags and caption; its words follow
        its new name and folders."""
        s = self.session
        title, comment = s.execute(select(FileRow.title, FileRow.comment).where(FileRow.id == file_id)).one()
        words = search_text(path, root, EmbeddedText(title, comment))
        s.execute(
            update(FileRow)
            .where(FileRow.id == file_id)
            .values(path=path, root_id=root_id, size=size, mtime_ns=mtime_ns, search_text=words)
        )

    def remove_files(self, file_ids: Sequence[int]) -> None:
        self._delete_segments(file_ids)
        if file_ids:
            self.session.execute(delete(FileRow).where(FileRow.id.in_(file_ids)))

    def record_unreadable(
        self,
        existing_id: int | None,
        root_id: int,
        root: Path | str,
        path: str,
        size: int,
        mtime_ns: int,
        reason: str,
    ) -> None:
        """A file that could not be read: a failed row without a content hash (read again next run); an
        older version's vectors go."""
        self._delete_segments([existing_id] if existing_id is not None else [])
        values: dict[str, Any] = {"size": size, "mtime_ns": mtime_ns, "content_hash": None}
        values.update(status=FileStatus.FAILED, error=reason, indexed_at=utcnow())
        if existing_id is None:
            words = search_text(path, root, EmbeddedText())
            self.session.execute(insert(FileRow).values(root_id=root_id, path=path, search_text=words, **values))
        else:
            self.session.execute(update(FileRow).where(FileRow.id == existing_id).values(**values))

    def put_file(
        self,
        existing_id: int | None,
        facts: FileFacts,
        bounds: Sequence[tuple[Seconds, Seconds]],
        vectors: Sequence[FloatArray],
    ) -> int:
        """A file an indexing run finished, with its segments (none when it failed); returns its id. A new
        version of a known file keeps its id (tags, links) and loses its old segments."""
        s = self.session
        values = {**asdict(facts), "indexed_at": utcnow()}
        if existing_id is None:
            file_id: int = s.execute(insert(FileRow).values(**values).returning(FileRow.id)).scalar_one()
        else:
            file_id = existing_id
            self._delete_segments([file_id])
            s.execute(update(FileRow).where(FileRow.id == file_id).values(**values))
        if bounds:
            segs = [
                SegmentRow(file_id=file_id, start_s=a, end_s=b, vector=vector_to_bytes(v))
                for (a, b), v in zip(bounds, vectors, strict=True)
            ]
            s.add_all(segs)
            s.flush()
            self.new_ids.extend(seg.id for seg in segs)
            self.new_vectors.extend(vectors)
        return file_id

    def _delete_segments(self, file_ids: Sequence[int]) -> None:
        if not file_ids:
            return
        s = self.session
        ids = np.fromiter(s.scalars(select(SegmentRow.id).where(SegmentRow.file_id.in_(file_ids))), dtype=np.int64)
        s.execute(delete(SegmentRow).where(SegmentRow.file_id.in_(file_ids)))
        self.stale.append(ids)


@contextmanager
def writes(catalog: Catalog) -> Iterator[Writes]:
    """One transaction of writes; after it commits, the vector index drops the deleted segments and adds the
    new ones. Nothing reaches the index when the transaction fails."""
    # The index is loaded (and reconciled with the database) before the rows change: loaded only after,
    # it would already hold the new segments, and hold them twice once they are added.
    catalog.index  # noqa: B018
    with catalog.session() as s:
        w = Writes(s)
        yield w
    if w.stale:
        catalog.index.remove(np.concatenate(w.stale))
    if w.new_ids:
        catalog.index.add(np.asarray(w.new_ids, dtype=np.int64), np.stack(w.new_vectors))
