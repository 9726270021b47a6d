"""The catalog: file and segment metadata plus vectors in a database, and a FAISS index beside it.

A catalog lives in a home directory (`--home`, else `$SOUNDSEARCH_HOME`, else the per-user data
directory): `catalog.db` (SQLite, unless another SQLAlchemy URL is given) and `vectors.faiss`.
The database is the source of truth, vectors included; on open, the FAISS ids are checked against
the database's segments and any difference (a crash between a database commit and the next index
save, say) is repaired from the stored vectors. The FAISS file carries the catalog's identity
(`storage.index_file`): a file from another catalog or model is rebuilt from the database.
A catalog is bound to the one model that built it.

Storage failures reach the user as one sentence: a damaged database (`CatalogDamagedError`, see
`soundsearch doctor`) and a full or failing disk (`CatalogStorageError`, nothing committed is lost).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sqlalchemy import (
    Engine,
    ExceptionContext,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from indexer.encoders.base import Encoder, mean_pool
from indexer.errors import SoundsearchError
from indexer.settings import parse_bytes
from indexer.types import FloatArray, Seconds
from storage import fulltext, generation, index_choice, index_file, migrations
from storage.location import DB_NAME, database_url, resolve_home
from storage.schema import (
    CATALOG_ID_KEY,
    SCHEMA_VERSION,
    FileRow,
    Root,
    SegmentRow,
    Setting,
    TagRow,
    ensure_catalog_id,
)
from storage.vectors import FaissIndex, IdArray, create_index, load_index

log = logging.getLogger(__name__)

INDEX_NAME = "vectors.faiss"
# Bumped whenever decoding/windowing changes embeddings, so old catalogs are not silently mixed.
PREPROCESSING_VERSION = "1"
SEGMENT_CACHE_SIZE = 500_000
# PostgreSQL advisory lock key of an indexing run (any bigint; advisory locks are scoped to one database).
RUN_LOCK_KEY = 0x736F756E64  # "sound"
# How long opening a catalog that needs creating or upgrading waits for another process's run lock (one
# creating or upgrading the same catalog finishes well within it).
UPGRADE_WAIT_S = 60.0


class CatalogError(SoundsearchError):
    """The catalog cannot be used as asked (wrong model, newer schema, ...)."""


class CatalogDamagedError(CatalogError):
    """The catalog's database file is corrupt: `soundsearch doctor --repair` recovers what it can."""


class CatalogStorageError(CatalogError):
    """The catalog could not be written (disk full, file too large, I/O error); what was committed is kept."""


class FileStatus:
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class _Revision:
    """What a handle has loaded: the data's generation and the recorded index plan (a rebuild's mark)."""

    generation: int
    index_plan: str | None


@dataclass(frozen=True)
class ModelBinding:
    model_id: str
    dim: int
    window_s: Seconds
    hop_s: Seconds
    preprocessing: str


@dataclass(frozen=True)
class FileRecord:
    id: int
    path: Path
    size: int
    content_hash: str | None
    duration_s: Seconds | None
    sample_rate: int | None
    channels: int | None
    format: str | None
    status: str
    error: str | None
    indexed_at: datetime


@dataclass(frozen=True)
class FileSummary:
    id: int
    path: Path
    duration_s: Seconds | None
    format: str | None


@dataclass(frozen=True)
class SegmentRecord:
    id: int
    file_id: int
    start_s: Seconds
    end_s: Seconds


@dataclass(frozen=True)
class CatalogStatus:
    home: Path
    database_url: str
    files: int
    failed: int
    segments: int
    audio_hours: float
    model: ModelBinding | None
    index_type: str
    index_vectors: int
    database_bytes: int | None
    index_bytes: int | None
    index_memory_bytes: int | None = None
    index_memory_budget: int | None = None
    index_recall_at_10: float | None = None
    index_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "database_url": make_url(self.database_url).render_as_string(hide_password=True),
            "files": self.files,
            "failed": self.failed,
            "segments": self.segments,
            "audio_hours": round(self.audio_hours, 4),
            "model": self.model.model_id if self.model else None,
            "dim": self.model.dim if self.model else None,
            "window_s": self.model.window_s if self.model else None,
            "hop_s": self.model.hop_s if self.model else None,
            "index_type": self.index_type,
            "index_vectors": self.index_vectors,
            "database_bytes": self.database_bytes,
            "index_bytes": self.index_bytes,
            "index_memory_bytes": self.index_memory_bytes,
            "index_memory_budget": self.index_memory_budget,
            "index_recall_at_10": self.index_recall_at_10,
            "index_reason": self.index_reason,
        }


def vector_to_bytes(v: FloatArray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def vectors_from_bytes(blobs: Sequence[bytes], dim: int) -> FloatArray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


class Catalog:
    """An open catalog. Use `Catalog.open(...)`; close it (or use it as a context manager)."""

    def __init__(self, home: Path, engine: Engine, database_url: str, *, writable: bool) -> None:
        self.home = home
        self.engine = engine
        self.database_url = database_url
        self.writable = writable
        self.index_path = home / INDEX_NAME
        self._index: FaissIndex | None = None
        self._segment_cache: dict[int, SegmentRecord] = {}
        # Which index to build as the catalog grows, and the background rebuild (storage.index_choice).
        self.index_policy = index_choice.IndexPolicy()
        self._rebuild: index_choice.Rebuild | None = None
        self._text: fulltext.TextIndex | None = None  # BM25 over the files' words, kept in memory
        self._loaded: _Revision | None = None  # what `refresh` last caught up with
        self._refreshing = threading.Lock()

    # --- opening -----------------------------------------------------------------------------------

    @classmethod
    def open(cls, home: str | Path | None = None, *, db_url: str | None = None, writable: bool = True) -> Catalog:
        root = resolve_home(home)
        if root.exists() and not root.is_dir():
            raise CatalogError(f"catalog home {root} exists and is not a directory")
        root.mkdir(parents=True, exist_ok=True)
        url = database_url(root, db_url)
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "handle_error", _storage_errors(_describe_database(engine)))
        catalog = cls(root, engine, url, writable=writable)
        catalog._prepare_schema()
        return catalog

    def _prepare_schema(self) -> None:
        with self.engine.connect() as conn:
            found = migrations.found(conn)
        if not found.current:
            self._check_schema(found)
            # Under the run lock: two processes opening an old catalog must not both migrate it (the second
            # waits, then finds it upgraded), and an indexer of an older soundsearch must not write meanwhile.
            with self.run_lock(wait_s=UPGRADE_WAIT_S):
                found = migrations.upgrade(self.engine.url, on_error=_storage_errors(_describe_database(self.engine)))
            if found.newer:  # upgraded meanwhile by a newer soundsearch
                self._check_schema(found)
            if found.older:
                log.warning("upgraded catalog schema %s → %s", found.version, SCHEMA_VERSION)
        # Rows every catalog needs, also one whose settings a salvage could not read. Another process may
        # hold SQLite's write lock right now, and a transaction that started as a read cannot wait for it:
        # hence the retries rather than the busy timeout.
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    generation.ensure(conn)
                    ensure_catalog_id(conn)
                break
            except (OperationalError, IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))
        if found.version is not None and found.version < 4:
            self._adopt_index_file()

    def _check_schema(self, found: migrations.Found) -> None:
        """Refuse a schema this soundsearch does not know, and an upgrade asked of a read-only opening."""
        if found.newer:
            raise CatalogError(
                f"catalog {self.home} uses schema version {found.label}, newer than this soundsearch "
                f"({SCHEMA_VERSION}); upgrade soundsearch"
            )
        if found.older and not self.writable:
            raise CatalogError(
                f"catalog {self.home} uses schema version {found.version}, older than this soundsearch "
                f"({SCHEMA_VERSION}); upgrade it with `soundsearch doctor --repair` (or any command that writes "
                "to it, such as `soundsearch index`), then run this again"
            )

    def _adopt_index_file(self) -> None:
        """Stamp the FAISS file of a catalog upgraded to schema 4 with its identity: that file was the
        catalog's own (trusted by ids, as before), and rebuilding a large index on every read-only open
        until the next indexing run would cost minutes. Appending leaves FAISS's bytes untouched; a
        crash mid-append leaves no valid trailer, and the file is then rebuilt."""
        binding = self.binding
        if binding is None or not self.index_path.exists() or index_file.read_identity(self.index_path):
            return
        try:
            index = load_index(self.index_path)
        except RuntimeError:
            return  # unreadable: rebuilt from the database when first used
        with open(self.index_path, "ab") as f:
            f.write(self._identity(index, binding).trailer())
        log.info("vector index %s (written before schema 4) stamped as this catalog's", self.index_path)

    def close(self) -> None:
        if self._rebuild is not None:
            self._rebuild.join()  # a rebuild in flight finishes (the old index stays valid until it does)
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on error."""
        # A CatalogSession: its commit moves the generation when files, segments or tags changed.
        with generation.CatalogSession(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def run_lock(self, *, wait_s: float = 0.0) -> Iterator[None]:
        """One indexing run (index or reindex) per catalog at a time, across processes; a second is refused
        (after waiting up to `wait_s` for the first to end).

        SQLite: a lock file in the home folder. PostgreSQL: an advisory lock in the database, since
        indexers on other machines share the database but not a home folder. The lock is held by a
        connection of its own, outside any transaction, and ends with it if the process dies.
        """
        if self.engine.dialect.name != "postgresql":
            with open(self.home / "index.lock", "w") as lock:
                if not _acquired(lambda: _try_flock(lock.fileno()), wait_s):
                    raise CatalogError(f"another indexing run is using the catalog in {self.home}")
                yield
            return
        with self.engine.connect() as conn:

            def take() -> bool:
                took = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": RUN_LOCK_KEY}))
                conn.commit()
                return took

            if not _acquired(take, wait_s):
                raise CatalogError(
                    f"another indexing run is using the catalog database {_describe_database(self.engine)}"
                )
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": RUN_LOCK_KEY})
                conn.commit()

    # --- model binding -----------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        with Session(self.engine) as s:
            return {row.key: row.value for row in s.scalars(select(Setting))}

    @property
    def binding(self) -> ModelBinding | None:
        st = self.settings()
        if "model_id" not in st:
            return None
        return ModelBinding(
            model_id=st["model_id"],
            dim=int(st["dim"]),
            window_s=float(st["window_s"]),
            hop_s=float(st["hop_s"]),
            preprocessing=st["preprocessing"],
        )

    def check_model(self, model_id: str, dim: int) -> None:
        bound = self.binding
        if bound is not None and (bound.model_id != model_id or bound.dim != dim):
            raise CatalogError(
                f"catalog {self.home} was built with model {bound.model_id!r} (dim {bound.dim}), not "
                f"{model_id!r} (dim {dim}); open it without --model, or rebuild its vectors with "
                f"`soundsearch reindex --model {model_id}`"
            )

    def load_encoder(self, model: str | None = None, device: str | None = None) -> Encoder:
        """The model asked for, else the one the catalog was built with, else the default; refused when
        it is not the catalog's model."""
        from indexer.encoders.registry import DEFAULT_MODEL, load_encoder

        bound = self.binding
        encoder = load_encoder(model or (bound.model_id if bound else DEFAULT_MODEL), device=device)
        self.check_model(encoder.model_id, encoder.dim)
        return encoder

    def bind_model(self, model_id: str, dim: int, window_s: Seconds, hop_s: Seconds) -> ModelBinding:
        """Record the catalog's model on first use; refuse a different one afterwards."""
        self.check_model(model_id, dim)
        if self.binding is None:
            with self.session() as s:
                write_binding(s, ModelBinding(model_id, dim, window_s, hop_s, PREPROCESSING_VERSION))
        binding = self.binding
        assert binding is not None
        return binding

    @property
    def catalog_id(self) -> str:
        return self.settings()[CATALOG_ID_KEY]

    # --- vector index ------------------------------------------------------------------------------

    @property
    def index(self) -> FaissIndex:
        if self._index is None:
            self._index = self._load_and_reconcile()
        return self._index

    def read_index_file(self) -> tuple[FaissIndex | None, str | None]:
        """The saved index if it is this catalog's own, else None and why not (None, None: no file)."""
        if not self.index_path.exists():
            return None, None
        try:
            found = index_file.read_identity(self.index_path)
            index = load_index(self.index_path, vector_source=self.vectors)
        except (RuntimeError, ValueError) as exc:
            return None, f"it is unreadable ({exc})"
        binding = self.binding
        if binding is None:
            return (index, None) if index.count() == 0 else (None, "the catalog has no model for its vectors")
        why = index_file.mismatch(found, self._identity(index, binding))
        return (None, why) if why else (index, None)

    def _identity(self, index: FaissIndex, binding: ModelBinding) -> index_file.IndexIdentity:
        return index_file.IndexIdentity(
            self.catalog_id, binding.model_id, binding.dim, index_file.ids_checksum(index.ids())
        )

    def _load_and_reconcile(self) -> FaissIndex:
        self._segment_cache.clear()  # deleted segments must not outlive the index that held them
        index, why = self.read_index_file()
        if index is None:
            if why is not None:
                log.warning("vector index %s is not used: %s; rebuilding it from the database", self.index_path, why)
            return self._built_from_database(save=why is not None)
        index_choice.restore_tuning(index, self.index_state())
        index.accelerate_at_first_search()  # GPU search when there is a GPU; a no-op otherwise
        added, removed = self._reconcile(index)
        if added or removed:
            log.warning("repaired vector index: added %d missing vectors, dropped %d stale ids", added, removed)
            if self.writable:
                self._save(index)
        return index

    def _built_from_database(self, *, save: bool) -> FaissIndex:
        binding = self.binding
        index = create_index(binding.dim if binding else 1)
        index.vector_source = self.vectors
        index.accelerate_at_first_search()
        added, _ = self._reconcile(index)
        if (save or added) and self.writable:
            self._save(index)
        return index

    def rebuild_index(self) -> None:
        """Replace the index with one built from the database's vectors (saved, when writable)."""
        self._segment_cache.clear()
        self._index = self._built_from_database(save=True)

    def segment_ids(self) -> IdArray:
        """Every segment id in the database (the ids the vector index must hold), ascending."""
        with Session(self.engine) as s:
            return np.fromiter(s.scalars(select(SegmentRow.id).order_by(SegmentRow.id)), dtype=np.int64)

    def _reconcile(self, index: FaissIndex) -> tuple[int, int]:
        """Make the index hold exactly the database's segments; returns (added, removed)."""
        db_ids = self.segment_ids()
        have = index.ids()
        missing = np.setdiff1d(db_ids, have, assume_unique=True)
        stale = np.setdiff1d(have, db_ids, assume_unique=True)
        if len(stale):
            index.remove(stale)
        for start in range(0, len(missing), 10_000):
            chunk = missing[start : start + 10_000]
            index.add(chunk, self.vectors(chunk))
        return len(missing), len(stale)

    @property
    def text(self) -> fulltext.TextIndex:
        """The files' words, as of the generation this handle caught up with (see `refresh`)."""
        if self._text is None:
            self.refresh()
        assert self._text is not None
        return self._text

    def refresh(self, *, wait: bool = True) -> bool:
        """Catch up with what any process committed since: vectors and words, one after the other.

        Costs one indexed read when the generation did not move (`storage.generation`). Vectors are
        reconciled in place against the database, so only the difference moves (a search running
        meanwhile sees each add or remove whole, the index locks them); the FAISS file is read
        again only when it was rebuilt as another kind. With `wait=False` a thread finding another
        one catching up goes on with what is loaded, so a reload never holds searches up; a handle
        with nothing loaded yet always waits. Returns whether anything was reloaded.
        """
        if self._revision() == self._loaded and self._text is not None:
            return False
        if not self._refreshing.acquire(blocking=wait or self._text is None):
            return False
        try:
            # Read before the rows it stands for: what is loaded is never older than `_loaded`.
            seen = self._revision()
            if seen == self._loaded and self._text is not None:
                return False
            with self.engine.connect() as conn:
                text = fulltext.TextIndex.build(fulltext.bodies(conn))
            binding = self.binding
            rebuilt = self._loaded is not None and seen.index_plan != self._loaded.index_plan
            if self._index is None or rebuilt or (binding is not None and binding.dim != self._index.dim):
                self._index = self._load_and_reconcile()
            else:
                self._reconcile(self._index)
            self._text, self._loaded = text, seen
            return True
        finally:
            self._refreshing.release()

    def _revision(self) -> _Revision:
        keys = (generation.GENERATION_KEY, index_choice.SETTING_KEY)
        with Session(self.engine) as s:
            values = {k: v for k, v in s.execute(select(Setting.key, Setting.value).where(Setting.key.in_(keys)))}
        return _Revision(int(values.get(generation.GENERATION_KEY) or 0), values.get(index_choice.SETTING_KEY))

    def save_index(self) -> None:
        if not self.writable:
            raise CatalogError("catalog was opened read-only")
        self._save(self.index)
        self.maybe_rebuild_index()  # in the background, when the catalog outgrew its index

    # --- index planning and background rebuilds (storage.index_choice) -----------------------------

    def index_budget(self) -> int:
        """The vector index's memory budget: the policy's, else the catalog's `--max-index-memory`, else
        the default (`index_choice.default_memory_budget`)."""
        if self.index_policy.max_memory_bytes:
            return self.index_policy.max_memory_bytes
        stored = self.settings().get(index_choice.BUDGET_SETTING_KEY)
        return parse_bytes(stored) if stored else index_choice.default_memory_budget()

    def set_index_budget(self, budget: str | int | None) -> None:
        """Record the catalog's `--max-index-memory` (None: back to the default)."""
        with self.session() as s:
            if budget is None:
                row = s.get(Setting, index_choice.BUDGET_SETTING_KEY)
                if row is not None:
                    s.delete(row)
            else:
                s.merge(Setting(key=index_choice.BUDGET_SETTING_KEY, value=str(parse_bytes(budget))))

    def index_state(self) -> index_choice.IndexState | None:
        """What the last rebuild recorded about the index (plan, tuning, measured recall)."""
        text = self.settings().get(index_choice.SETTING_KEY)
        return index_choice.IndexState.from_json(text) if text else None

    def record_index_state(self, state: index_choice.IndexState) -> None:
        with self.session() as s:
            s.merge(Setting(key=index_choice.SETTING_KEY, value=state.to_json()))

    @property
    def index_rebuild(self) -> index_choice.Rebuild | None:
        """The latest rebuild started by `maybe_rebuild_index` (running or done), if any."""
        return self._rebuild

    def maybe_rebuild_index(self, *, background: bool = True) -> index_choice.Rebuild | None:
        """Start a rebuild when the catalog's size (or budget) calls for another index (`index_choice`)."""
        if self._rebuild is not None and self._rebuild.running:
            return None
        if not self.writable or self.binding is None:
            return None
        plan = index_choice.plan_rebuild(self.index, self.index_budget(), self.index_policy)
        if plan is None:
            return None
        job = self._rebuild = index_choice.Rebuild(self, plan)
        return job.start() if background else job.run()

    def swap_index(self, serving: FaissIndex, new: FaissIndex) -> None:
        """Swap a rebuilt index in for `serving`, caught up with the database under the index's lock, and
        save it. Refused when `serving` is no longer the loaded index (rebound or reloaded meanwhile)."""
        if self._index is not serving:
            raise RuntimeError("the catalog's index changed during the rebuild")
        serving.replace_with(new, catch_up=lambda idx: self._reconcile(idx) and None)
        self.save_index()

    def _save(self, index: FaissIndex) -> None:
        binding = self.binding
        trailer = self._identity(index, binding).trailer() if binding else b""
        try:
            index.save(self.index_path, trailer)
        except (OSError, RuntimeError) as exc:
            reason = _storage_failure(exc)
            if reason is None:
                raise
            raise CatalogStorageError(
                f"could not write the vector index {self.index_path} ({reason}); free some space on its "
                "disk and run the command again (the database holds every vector: the index catches up then)"
            ) from exc

    # --- queries -----------------------------------------------------------------------------------

    def roots(self) -> list[Path]:
        with Session(self.engine) as s:
            return [Path(p) for p in s.scalars(select(Root.path).order_by(Root.path))]

    def files(self, status: str | None = None) -> list[FileRecord]:
        query = select(FileRow).order_by(FileRow.path)
        if status is not None:
            query = query.where(FileRow.status == status)
        with Session(self.engine) as s:
            return [_file_record(row) for row in s.scalars(query)]

    def file(self, file_id: int) -> FileRecord | None:
        with Session(self.engine) as s:
            row = s.get(FileRow, file_id)
            return _file_record(row) if row else None

    def find_file(self, path: str | Path) -> FileRecord | None:
        """The file recorded at `path` (as stored: absolute), OK or failed."""
        with Session(self.engine) as s:
            row = s.scalars(select(FileRow).where(FileRow.path == str(path))).one_or_none()
            return _file_record(row) if row else None

    def summaries(self, file_ids: Sequence[int]) -> dict[int, FileSummary]:
        """What a search hit shows of each file; ids the database does not know are left out."""
        # Four plain columns: ORM objects (or every column, times parsed) cost more than a search itself.
        query = select(FileRow.id, FileRow.path, FileRow.duration_s, FileRow.format).where(
            FileRow.id.in_([int(i) for i in file_ids])
        )
        with Session(self.engine) as s:
            return {fid: FileSummary(fid, Path(path), duration, fmt) for fid, path, duration, fmt in s.execute(query)}

    def segments(self, file_id: int | None = None) -> list[SegmentRecord]:
        query = select(SegmentRow.id, SegmentRow.file_id, SegmentRow.start_s, SegmentRow.end_s).order_by(
            SegmentRow.file_id, SegmentRow.start_s
        )
        if file_id is not None:
            query = query.where(SegmentRow.file_id == file_id)
        with Session(self.engine) as s:
            return [SegmentRecord(*row) for row in s.execute(query)]

    def segments_by_id(self, ids: Sequence[int]) -> dict[int, SegmentRecord]:
        """Segments by id; ids the database does not know are left out.

        Segment rows never change once written (ids are never reused), so records are cached for
        the life of the loaded index: a search then costs no database round trip for its segments.
        """
        wanted = [int(i) for i in ids]
        missing = [i for i in wanted if i not in self._segment_cache]
        if missing:
            query = select(SegmentRow.id, SegmentRow.file_id, SegmentRow.start_s, SegmentRow.end_s).where(
                SegmentRow.id.in_(missing)
            )
            with Session(self.engine) as s:
                rows = s.execute(query).all()
            if len(self._segment_cache) + len(rows) > SEGMENT_CACHE_SIZE:
                self._segment_cache.clear()
            self._segment_cache.update((row[0], SegmentRecord(*row)) for row in rows)
        return {i: self._segment_cache[i] for i in wanted if i in self._segment_cache}

    def vectors(self, segment_ids: Sequence[int] | IdArray) -> FloatArray:
        """Stored vectors, in the order of `segment_ids` (unknown ids raise KeyError)."""
        binding = self.binding
        dim = binding.dim if binding else 0
        wanted = [int(i) for i in segment_ids]
        by_id: dict[int, bytes] = {}
        with Session(self.engine) as s:
            for start in range(0, len(wanted), 5_000):
                chunk = wanted[start : start + 5_000]
                rows = s.execute(select(SegmentRow.id, SegmentRow.vector).where(SegmentRow.id.in_(chunk)))
                by_id.update((int(seg_id), bytes(blob)) for seg_id, blob in rows)
        return vectors_from_bytes([by_id[i] for i in wanted], dim)

    def segment_vectors(self, segment_ids: Sequence[int] | IdArray) -> FloatArray:
        """Stored vectors of these segments, in order, read the fastest way: from the loaded index (exact
        kinds hold them in memory; quantised ones read the database), else, for segments the index has
        not caught up with yet, from the database (unknown ids raise KeyError)."""
        ids = np.asarray(segment_ids, dtype=np.int64)
        try:
            return self.index.reconstruct(ids)
        except (KeyError, RuntimeError):
            return self.vectors(ids)

    def file_vectors(self, file_ids: Sequence[int] | None = None) -> tuple[IdArray, FloatArray]:
        """One vector per indexed (OK) file that has segments, in file id order (all such files when
        `file_ids` is None): the renormalised mean of its segments' vectors."""
        seg_ids, owners = self.segment_owners(file_ids)
        files, inverse = np.unique(owners, return_inverse=True)
        return files, mean_pool(self.segment_vectors(seg_ids), inverse, len(files))

    def segment_owners(self, file_ids: Sequence[int] | None = None) -> tuple[IdArray, IdArray]:
        """Segment ids and their file ids (of OK files), ordered by file."""
        query = (
            select(SegmentRow.id, SegmentRow.file_id)
            .join(FileRow, FileRow.id == SegmentRow.file_id)
            .where(FileRow.status == FileStatus.OK)
            .order_by(SegmentRow.file_id, SegmentRow.id)
        )
        if file_ids is not None:
            query = query.where(SegmentRow.file_id.in_(list(file_ids)))
        with Session(self.engine) as s:
            rows = s.execute(query).all()
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64)

    def paths(self, file_ids: Sequence[int]) -> dict[int, str]:
        with Session(self.engine) as s:
            rows = s.execute(select(FileRow.id, FileRow.path).where(FileRow.id.in_(list(file_ids))))
            return {int(fid): path for fid, path in rows}

    def annotations(self, file_ids: Sequence[int]) -> dict[int, tuple[tuple[str, ...], str | None]]:
        """Tags (best first, de-duplicated across sources) and caption of each file."""
        ids = [int(i) for i in file_ids]
        out: dict[int, tuple[list[str], str | None]] = {}
        with Session(self.engine) as s:
            for fid, caption in s.execute(select(FileRow.id, FileRow.caption).where(FileRow.id.in_(ids))):
                out[fid] = ([], caption)
            tag_rows = s.execute(
                select(TagRow.file_id, TagRow.label).where(TagRow.file_id.in_(ids)).order_by(TagRow.score.desc())
            )
            for fid, label in tag_rows:
                if fid in out and label not in out[fid][0]:
                    out[fid][0].append(label)
        return {fid: (tuple(tags), caption) for fid, (tags, caption) in out.items()}

    def captions(self, file_ids: Sequence[int] | None = None) -> list[tuple[int, str, str | None]]:
        """(id, path, caption or None) of indexed (OK) files: all of them when `file_ids` is None."""
        query = select(FileRow.id, FileRow.path, FileRow.caption).where(FileRow.status == FileStatus.OK)
        if file_ids is not None:
            query = query.where(FileRow.id.in_([int(i) for i in file_ids]))
        with Session(self.engine) as s:
            return [(int(fid), path, caption) for fid, path, caption in s.execute(query)]

    def set_captions(self, captions: Mapping[int, str]) -> None:
        """Store captions (full-text search ranks them), in one transaction."""
        with self.session() as s:
            for fid, caption in captions.items():
                s.execute(update(FileRow).where(FileRow.id == fid).values(caption=caption))

    def tags_from(self, source: str, file_ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
        """The tags one source put on these files (best first); files without any are left out."""
        out: dict[int, list[tuple[str, float]]] = {}
        ids = [int(i) for i in file_ids]
        with Session(self.engine) as s:
            for start in range(0, len(ids), 500):
                rows = s.execute(
                    select(TagRow.file_id, TagRow.label, TagRow.score)
                    .where(TagRow.source == source, TagRow.file_id.in_(ids[start : start + 500]))
                    .order_by(TagRow.score.desc())
                )
                for fid, label, score in rows:
                    out.setdefault(fid, []).append((label, score))
        return out

    def set_tags(self, source: str, tags: dict[int, list[tuple[str, float]]]) -> int:
        """Replace the tags from `source` on these files (they become searchable and filterable)."""
        with self.session() as s:
            ids = list(tags)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                s.execute(delete(TagRow).where(TagRow.source == source, TagRow.file_id.in_(chunk)))
            rows = [
                {"file_id": fid, "label": label, "score": float(score), "source": source}
                for fid, labels in tags.items()
                for label, score in labels
            ]
            if rows:
                s.execute(insert(TagRow), rows)
        return len(rows)

    def vector_count(self) -> int:
        """Vectors in the loaded index (one per segment once it caught up with the database)."""
        return self.index.count()

    @property
    def exact_scores(self) -> bool:
        """Whether `nearest_segments` scores are the exact cosines (not an approximate index's codes)."""
        return self.index.exact_scores

    def nearest_segments(self, queries: FloatArray, k: int, among: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        """Scores and segment ids [n_queries, k] of the nearest segments (inner product), best first,
        `among` these segments only when given; slots past what the index holds have id -1."""
        return self.index.search(queries, k, among)

    def move_file(self, file_id: int, new_path: str | Path) -> None:
        """The file was renamed on disk (same bytes): its row, vectors and tags follow it, nothing is
        embedded again; its name words are recomputed. A path the catalog already holds is refused."""
        from indexer.metadata import EmbeddedText, search_text

        path = str(new_path)
        with self.session() as s:
            row = s.get(FileRow, file_id)
            if row is None:
                raise CatalogError(f"no indexed file with id {file_id}")
            if s.scalar(select(FileRow.id).where(FileRow.path == path, FileRow.id != file_id)) is not None:
                raise CatalogError(f"{path} is already in the catalog")
            root = s.scalar(select(Root.path).where(Root.id == row.root_id))
            row.search_text = search_text(path, root, EmbeddedText(row.title, row.comment))
            row.path = path

    def file_rewritten(
        self, file_id: int, *, size: int, mtime_ns: int, content_hash: str, title: str | None, comment: str | None
    ) -> None:
        """soundsearch rewrote the file's tags, not its sound (`indexer.filetags`): record its new size, time
        and hash, so the next index run sees it unchanged instead of embedding it again, and its new words."""
        from indexer.metadata import EmbeddedText, search_text

        with self.session() as s:
            row = s.get(FileRow, file_id)
            if row is None:
                raise CatalogError(f"no indexed file with id {file_id}")
            root = s.scalar(select(Root.path).where(Root.id == row.root_id))
            row.size, row.mtime_ns, row.content_hash = size, mtime_ns, content_hash
            row.title, row.comment = title, comment
            row.search_text = search_text(row.path, root, EmbeddedText(title, comment))

    def search_vectors(self, query: FloatArray, k: int) -> list[tuple[SegmentRecord, float]]:
        """Nearest segments to one query vector. Ids the database no longer knows are skipped."""
        scores, ids = self.index.search(query.reshape(1, -1), k)
        found = self.segments_by_id([int(i) for i in ids[0] if i >= 0])
        return [(found[int(i)], float(sc)) for sc, i in zip(scores[0], ids[0], strict=True) if int(i) in found]

    def status(self) -> CatalogStatus:
        with Session(self.engine) as s:
            n_files = s.scalar(select(func.count()).select_from(FileRow).where(FileRow.status == FileStatus.OK))
            n_failed = s.scalar(select(func.count()).select_from(FileRow).where(FileRow.status == FileStatus.FAILED))
            n_segments = s.scalar(select(func.count()).select_from(SegmentRow))
            seconds = s.scalar(select(func.sum(FileRow.duration_s)).where(FileRow.status == FileStatus.OK))
        db_file = self.home / DB_NAME
        return CatalogStatus(
            home=self.home,
            database_url=self.database_url,
            files=int(n_files or 0),
            failed=int(n_failed or 0),
            segments=int(n_segments or 0),
            audio_hours=float(seconds or 0.0) / 3600,
            model=self.binding,
            index_type=self.index.description,
            index_vectors=self.index.count(),
            database_bytes=db_file.stat().st_size
            if self.engine.dialect.name == "sqlite" and db_file.exists()
            else None,
            index_bytes=self.index_path.stat().st_size if self.index_path.exists() else None,
            **self._index_status(),
        )

    def _index_status(self) -> dict[str, Any]:
        """What `soundsearch status` shows about the index: memory, measured recall@10, why this kind."""
        index = self.index
        state = self.index_state()
        matches = state is not None and state.kind == index.kind
        return {
            "index_memory_bytes": index.memory_bytes(),
            "index_memory_budget": self.index_budget(),
            "index_recall_at_10": (state.recall_at_10 if matches and state else (1.0 if index.exact else None)),
            "index_reason": state.reason if matches and state else None,
        }


def write_binding(session: Session, b: ModelBinding) -> None:
    """Record the catalog's model (inside the caller's transaction)."""
    values = {
        "model_id": b.model_id,
        "dim": str(b.dim),
        "window_s": str(b.window_s),
        "hop_s": str(b.hop_s),
        "preprocessing": b.preprocessing,
    }
    for key, value in values.items():
        session.merge(Setting(key=key, value=value))


def set_search_threads(threads: int) -> None:
    """OpenMP threads of each vector search, process-wide (FAISS's own default is one per core)."""
    faiss.omp_set_num_threads(threads)


def _file_record(row: FileRow) -> FileRecord:
    return FileRecord(
        id=row.id,
        path=Path(row.path),
        size=row.size,
        content_hash=row.content_hash,
        duration_s=row.duration_s,
        sample_rate=row.sample_rate,
        channels=row.channels,
        format=row.format,
        status=row.status,
        error=row.error,
        indexed_at=row.indexed_at,
    )


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquired(attempt: Callable[[], bool], wait_s: float) -> bool:
    """Whether `attempt` succeeded within `wait_s` seconds (tried at once, then every 50 ms)."""
    deadline = time.monotonic() + wait_s
    while not attempt():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _describe_database(engine: Engine) -> str:
    """The database as a person would name it: its file for SQLite, else the URL without password."""
    if engine.dialect.name == "sqlite" and engine.url.database:
        return engine.url.database
    return engine.url.render_as_string(hide_password=True)


# SQLite's primary result codes, and PostgreSQL's SQLSTATEs, that mean the storage failed.
SQLITE_DAMAGED_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_SQLITE_STORAGE = {10, 13}  # SQLITE_IOERR (EFBIG, EIO, ...), SQLITE_FULL
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _storage_errors(where: str) -> Callable[[ExceptionContext], None]:
    """A `handle_error` hook: a damaged database or a failed write becomes one sentence, not a traceback."""

    def translate(ctx: ExceptionContext) -> None:
        exc = ctx.original_exception
        sqlite_code = getattr(exc, "sqlite_errorcode", None)
        primary = sqlite_code & 0xFF if isinstance(sqlite_code, int) else None
        sqlstate = str(getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None) or "")
        if primary in SQLITE_DAMAGED_CODES or sqlstate in ("XX001", "XX002"):
            raise CatalogDamagedError(
                f"the catalog database {where} is damaged ({exc}); `soundsearch doctor` says what can be "
                "recovered, and `soundsearch doctor --repair` recovers it into a new file, keeping the damaged one"
            ) from exc
        if primary in _SQLITE_STORAGE or sqlstate.startswith("53"):
            raise CatalogStorageError(
                f"could not write the catalog database {where} ({exc}); free some space on its disk and run "
                "the command again (everything committed before is kept)"
            ) from exc

    return translate


def _storage_failure(exc: OSError | RuntimeError) -> str | None:
    """Why a file write failed, when the storage is to blame (None: another error). FAISS reports a
    failed write as a RuntimeError carrying strerror."""
    if isinstance(exc, OSError):
        return os.strerror(exc.errno) if exc.errno in _STORAGE_ERRNOS else None
    return next((os.strerror(code) for code in _STORAGE_ERRNOS if os.strerror(code) in str(exc)), None)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers search while an indexer writes; the busy timeout absorbs short write locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
