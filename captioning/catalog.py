"""Captions into the catalog: `files.caption`, which full-text search ranks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from indexer.errors import SoundsearchError
from storage.catalog import Catalog

log = logging.getLogger(__name__)


class FileCaptioner(Protocol):
    """What captions files: the shipped `captioning.captioner.Captioner`, or a model plugged into the server."""

    def caption(self, path: Path) -> str: ...


def caption_catalog_files(
    catalog: Catalog,
    captioner: FileCaptioner,
    file_ids: Sequence[int] | None = None,
    *,
    overwrite: bool = True,
    commit_every: int = 32,
    on_file: Callable[[int, str | None], None] | None = None,
) -> dict[int, str]:
    """Caption these files (None: every indexed file; `overwrite=False` skips files that have a caption).

    A file that cannot be captioned keeps its old caption and is logged: one bad file never stops a run.
    Captions are committed every `commit_every` files, each batch moving the catalog's generation.
    """
    rows = [(fid, path) for fid, path, caption in catalog.captions(file_ids) if overwrite or not caption]
    done: dict[int, str] = {}
    pending: dict[int, str] = {}
    for fid, path in rows:
        try:
            caption: str | None = captioner.caption(Path(path))
        except SoundsearchError as exc:
            log.warning("no caption for %s: %s", path, exc)
            caption = None
        if caption is not None:
            pending[fid] = caption
        if on_file:
            on_file(fid, caption)
        if len(pending) >= commit_every:
            catalog.set_captions(pending)
            done |= pending
            pending = {}
    catalog.set_captions(pending)
    return done | pending
