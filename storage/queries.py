"""Which files pass a query's filters, answered the cheap way for the question asked.

A ranking first asks about its own candidates (`passing`: one query over a few hundred ids; for a
broad filter almost all pass: post-filtering). When too few pass, it asks for every passing file
(`all_files`) or every passing file's segments (`allowed_segments`: one query with the filter as a
sub-select, no id list sent: pre-filtering, for a selective filter). Either way the results are cut
to k only after filtering.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from indexer.types import Seconds
from search.ucs_list import UCS_TAG_SOURCE
from storage.catalog import Catalog, FileStatus
from storage.schema import FileRow, SegmentRow, TagRow
from storage.vectors import IdArray

_CHUNK = 500  # ids per IN list


class FileCriteria(Protocol):
    """What a file must be to pass (`search.query.Filters` is one)."""

    @property
    def min_duration_s(self) -> Seconds | None: ...

    @property
    def max_duration_s(self) -> Seconds | None: ...

    @property
    def folder(self) -> str | None: ...  # a path prefix, or a folder name anywhere in the path

    @property
    def tags(self) -> tuple[str, ...]: ...  # every tag must be present

    @property
    def formats(self) -> tuple[str, ...]: ...  # container names or extensions: "wav", "FLAC", ...

    @property
    def ucs(self) -> tuple[str, ...]: ...  # UCS CatIDs or category prefixes, any of them


def conditions(filters: FileCriteria) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = [FileRow.status == FileStatus.OK]
    if filters.min_duration_s is not None:
        out.append(FileRow.duration_s >= filters.min_duration_s)
    if filters.max_duration_s is not None:
        out.append(FileRow.duration_s <= filters.max_duration_s)
    if filters.folder:
        folder = filters.folder.rstrip("/")
        prefix = str(Path(folder).expanduser().absolute())
        # Case-insensitive as SQLite's LIKE always was, on every database; "_" and "%" are literal.
        out.append(
            or_(
                FileRow.path.istartswith(prefix + "/", autoescape=True),
                FileRow.path.icontains(f"/{folder}/", autoescape=True),
            )
        )
    if filters.formats:
        exts = [f.lower().lstrip(".") for f in filters.formats]
        out.append(
            or_(
                func.upper(FileRow.format).in_([e.upper() for e in exts]),
                *(func.lower(FileRow.path).endswith(f".{e}") for e in exts),
            )
        )
    for tag in filters.tags:
        out.append(FileRow.id.in_(select(TagRow.file_id).where(func.lower(TagRow.label) == tag.lower())))
    if filters.ucs:
        # A CatID begins with its category's CatShort, and no CatShort begins another (UCS 8.2.1): a prefix
        # names a category ("DOOR") or one CatID ("DOORWood").
        codes = or_(*(TagRow.label.istartswith(code, autoescape=True) for code in filters.ucs))
        out.append(FileRow.id.in_(select(TagRow.file_id).where(TagRow.source == UCS_TAG_SOURCE, codes)))
    return out


class FileFilter:
    """The files passing `filters` in `catalog`; answers are remembered for the life of one query."""

    def __init__(self, catalog: Catalog, filters: FileCriteria) -> None:
        self.catalog = catalog
        self.where = and_(*conditions(filters))
        self._known: dict[int, bool] = {}
        self._all: set[int] | None = None

    def passing(self, file_ids: Iterable[int]) -> set[int]:
        """Those of `file_ids` that pass."""
        ids = list(dict.fromkeys(int(i) for i in file_ids))
        if self._all is not None:
            return {i for i in ids if i in self._all}
        unknown = [i for i in ids if i not in self._known]
        if unknown:
            with Session(self.catalog.engine) as s:
                for start in range(0, len(unknown), _CHUNK):
                    chunk = unknown[start : start + _CHUNK]
                    ok = set(s.scalars(select(FileRow.id).where(FileRow.id.in_(chunk), self.where)))
                    self._known.update((i, i in ok) for i in chunk)
        return {i for i in ids if self._known[i]}

    def all_files(self) -> set[int]:
        """Every passing file."""
        if self._all is None:
            with Session(self.catalog.engine) as s:
                self._all = set(s.scalars(select(FileRow.id).where(self.where)))
            self._known.update((i, True) for i in self._all)
        return self._all

    def allowed_segments(self) -> IdArray:
        """Every segment of every passing file."""
        query = select(SegmentRow.id).where(SegmentRow.file_id.in_(select(FileRow.id).where(self.where)))
        with Session(self.catalog.engine) as s:
            return np.fromiter(s.scalars(query), dtype=np.int64)
