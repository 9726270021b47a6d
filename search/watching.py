"""Watch folders: a catalog that follows its library folders as files land, change, move and leave.

The watcher only decides *when* to index; what indexing does is the one indexing service's
(`search.indexing.index_library`, as `soundsearch index` and the server's jobs): new and changed files are
embedded and tagged, a renamed or moved file is recognised by its content hash and keeps its vectors,
deleted files go, a file that cannot be decoded is recorded with its error and the next one goes on.

watchdog reports file-system events (inotify on Linux, or polling for network shares). A burst of
events becomes one run once the folders have been quiet for `settle_s`: a file still being written
keeps producing events, so it is indexed once it stops changing, not half-written. A library that never
goes quiet (a recorder writing for an hour) is still brought up to date every `max_delay_s`; the file
in progress is read again once it changes. Reading files produces no events that count, so a run never
triggers the next. A run that fails as a whole (another indexing run holds the catalog, a folder went
away, the disk is full) is reported and tried again after `retry_s`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from indexer import objectstore
from indexer.encoders.base import Encoder
from indexer.errors import SoundsearchError
from indexer.formats import is_supported
from indexer.pipeline import IndexOptions
from search.indexing import IndexingResult, RunProgress, index_library
from storage.catalog import Catalog, CatalogError

log = logging.getLogger(__name__)

# What changes a library; opening, reading and closing a file unchanged (as indexing does) do not.
_CHANGES = frozenset((EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED, EVENT_TYPE_DELETED, EVENT_TYPE_CLOSED))
# Folder events that change which files there are (a folder's "modified" only echoes its files' events).
_FOLDER_CHANGES = frozenset((EVENT_TYPE_CREATED, EVENT_TYPE_MOVED, EVENT_TYPE_DELETED))
_POLL_S = 0.1  # how often the loop looks at the clock and the stop flag


@dataclass(frozen=True)
class WatchOptions:
    settle_s: float = 2.0  # quiet time after the last event before a run
    max_delay_s: float = 30.0  # the longest a change waits while events keep coming
    retry_s: float = 10.0  # wait after a run that failed as a whole
    # Poll the folders every this many seconds instead of inotify: network shares, where inotify sees
    # only this machine's writes.
    poll_s: float | None = None
    index: IndexOptions = field(default_factory=IndexOptions)

    def __post_init__(self) -> None:
        if not (0 <= self.settle_s <= self.max_delay_s and self.retry_s >= 0):
            raise SoundsearchError(
                f"need 0 <= settle ({self.settle_s}) <= max delay ({self.max_delay_s}) and retry >= 0 ({self.retry_s})"
            )
        if self.poll_s is not None and self.poll_s <= 0:
            raise SoundsearchError(f"the polling interval must be positive, got {self.poll_s}")


class WatchReport:
    """What a front end hears from a watcher: each run that changed something, and each run that failed."""

    def indexed(self, result: IndexingResult) -> None: ...

    def failed(self, error: Exception) -> None: ...


class _Pending(FileSystemEventHandler):
    """When the library last changed, and since when it has changed without being indexed (thread-safe:
    watchdog calls from its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: float | None = None
        self._last = 0.0

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            relevant = event.event_type in _FOLDER_CHANGES
        else:
            relevant = event.event_type in _CHANGES and any(_is_audio(p) for p in (event.src_path, event.dest_path))
        if relevant:
            self.note(time.monotonic())

    def note(self, when: float) -> None:
        with self._lock:
            self._first = when if self._first is None else min(self._first, when)
            self._last = max(self._last, when)

    def take_if_due(self, now: float, settle_s: float, max_delay_s: float) -> bool:
        """Whether a run is due now; if so, what is pending is taken (events from now on wait for the next)."""
        with self._lock:
            if self._first is None or now < min(self._last + settle_s, self._first + max_delay_s):
                return False
            self._first = None
            return True


def _is_audio(path: bytes | str) -> bool:
    name = os.path.basename(os.fsdecode(path))
    return bool(name) and not name.startswith(".") and is_supported(name)


def watchable(root: str | Path) -> Path:
    """A library folder that can be watched, made absolute."""
    if objectstore.is_url(root):
        raise CatalogError(f"{root}: object storage cannot be watched; run `soundsearch index` on it instead")
    path = Path(root).expanduser().absolute()
    if not path.is_dir():
        raise CatalogError(f"{path}: no such folder to watch")
    return path


class LibraryWatcher:
    """Keeps `catalog` following `roots`: indexes them once, then after every settled burst of changes."""

    def __init__(
        self,
        catalog: Catalog,
        encoder: Encoder,
        roots: Sequence[str | Path],
        *,
        options: WatchOptions | None = None,
        report: WatchReport | None = None,
        progress: RunProgress | None = None,
    ) -> None:
        if not roots:
            raise CatalogError("give at least one library folder to watch")
        self.catalog = catalog
        self.encoder = encoder
        self.roots = [watchable(r) for r in roots]
        self.options = options or WatchOptions()
        self.report = report or WatchReport()
        self.progress = progress
        self._pending = _Pending()

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop` is set (or KeyboardInterrupt): the folders' observer ends with it either way."""
        poll_s = self.options.poll_s
        observer: BaseObserver = Observer() if poll_s is None else PollingObserver(timeout=poll_s)
        for root in self.roots:
            observer.schedule(self._pending, str(root), recursive=True)
        observer.start()
        try:
            # What changed while nobody watched; events during this first run wait for the next.
            self._pending.note(time.monotonic() - self.options.max_delay_s)
            while not stop.is_set():
                if self._pending.take_if_due(time.monotonic(), self.options.settle_s, self.options.max_delay_s):
                    self._index()
                stop.wait(_POLL_S)
        finally:
            observer.stop()
            observer.join()

    def _index(self) -> None:
        try:
            # Vectors another process added since the last run: this handle's index is saved at the end.
            # (A catalog not bound to a model yet has none, and its index takes the model's size on binding.)
            if self.catalog.binding is not None:
                self.catalog.refresh()
            result = index_library(
                self.catalog, self.encoder, self.roots, options=self.options.index, progress=self.progress
            )
        except (SoundsearchError, OSError) as exc:
            log.warning("indexing the watched folders failed: %s", exc)
            self.report.failed(exc)
            # Due again `retry_s` from now, however quiet the folders stay.
            self._pending.note(time.monotonic() + self.options.retry_s - self.options.settle_s)
            return
        s = result.summary
        if s.added or s.updated or s.moved or s.removed or s.failed or s.errors:
            self.report.indexed(result)
