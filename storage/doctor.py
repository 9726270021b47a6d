"""`soundsearch doctor`: what is wrong with a catalog, and what `--repair` mends.

The checks, in order (each needs the ones before it to pass):

1. **database**: SQLite's `PRAGMA integrity_check`. A damaged file is recovered into a new one with
   every row SQLite can still read (`storage.salvage`); the damaged file is kept beside it
   (`catalog.db.damaged-<time>`). Rows on unreadable pages are lost, and the report names their tables.
2. **schema**: the version recorded (`storage.migrations`); `--repair` upgrades an older one, a newer one
   cannot be repaired.
3. **model**: a catalog holding vectors must know their model (lost only with its settings: not repairable).
4. **orphan segments**: segments whose file is gone or failed: deleted.
5. **files without vectors**: OK files with no segment (a lost write, or a salvage): marked failed
   without a content hash, so `status --failed` lists them and the next `index` embeds them again.
6. **vector index**: the FAISS file's identity and ids against the database: rebuilt from the database.
7. **reindex**: an unfinished `reindex` (a note: running it again finishes it).
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, delete, exists, make_url, select, update
from sqlalchemy.exc import DBAPIError

from storage import migrations, staging
from storage.catalog import INDEX_NAME, SQLITE_DAMAGED_CODES, Catalog, CatalogError, FileStatus
from storage.location import database_url
from storage.salvage import salvage
from storage.schema import SCHEMA_VERSION, FileRow, SegmentRow

LOST_VECTORS = "its vectors were lost; the next `soundsearch index` embeds it again"


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool  # healthy as found
    detail: str
    action: str | None = None  # what --repair did, or what it would do
    repaired: bool = False

    @property
    def healthy(self) -> bool:
        return self.ok or self.repaired

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(home: Path, db_url: str | None = None, *, repair: bool = False) -> list[Finding]:
    """Check the catalog in `home` (and repair it when asked); findings in the order checked."""
    url = database_url(home, db_url)
    parsed = make_url(url)
    db_file = Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None
    findings: list[Finding] = []
    if db_file is not None:
        found = _check_sqlite_file(db_file, repair=repair)
        findings.append(found)
        if not found.healthy:
            return findings
    schema = _found_schema(url) or migrations.Found(None, None)  # unreadable: opening the catalog says why
    if schema.newer:
        detail = f"schema version {schema.label} is newer than this soundsearch's ({SCHEMA_VERSION})"
        return [*findings, Finding("schema", False, detail, "cannot be repaired: upgrade soundsearch")]
    older = f"version {schema.version}, older than this soundsearch's ({SCHEMA_VERSION})"
    if schema.older and not repair:
        return [*findings, Finding("schema", False, older, "--repair upgrades it")]
    try:
        catalog = Catalog.open(home, db_url=db_url, writable=repair)
    except CatalogError as exc:
        return [*findings, Finding("schema", False, str(exc), "cannot be repaired here")]
    with catalog:
        if schema.older:
            findings.append(Finding("schema", False, older, f"upgraded to version {SCHEMA_VERSION}", repaired=True))
        else:
            findings.append(Finding("schema", True, f"version {SCHEMA_VERSION}"))
        findings.append(_check_model(catalog))
        if not findings[-1].healthy:
            return findings  # vectors of an unknown model: nothing below can be checked
        findings += [
            _check_orphan_segments(catalog, repair=repair),
            _check_files_without_vectors(catalog, repair=repair),
            _check_vector_index(catalog, repair=repair),
            _check_reindex(catalog),
        ]
    return findings


def _check_sqlite_file(db_file: Path, *, repair: bool) -> Finding:
    if not db_file.exists():
        return Finding("database", False, f"no catalog database at {db_file}", "nothing to repair")
    try:
        problems = integrity_problems(db_file)
    except sqlite3.Error as exc:
        action = "cannot be repaired here: free space on its disk, or fix its permissions, and run doctor again"
        return Finding("database", False, f"{db_file} cannot be read ({exc})", action)
    if not problems:
        return Finding("database", True, f"{db_file}: integrity check passed")
    detail = f"{db_file}: " + "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    if not repair:
        return Finding(
            "database", False, detail, "--repair recovers what can be read into a new file, keeping the damaged one"
        )
    recovered = db_file.with_name(db_file.name + ".recovered")
    recovered.unlink(missing_ok=True)
    try:
        result = salvage(db_file, recovered)
    except CatalogError as exc:
        recovered.unlink(missing_ok=True)
        return Finding("database", False, detail, f"cannot be repaired: {exc}")
    backup = db_file.with_name(f"{db_file.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db_file}{suffix}").exists():
            os.replace(f"{db_file}{suffix}", f"{backup}{suffix}")
    os.replace(recovered, db_file)
    counts = ", ".join(f"{n} {table}" for table, n in result.rows.items())
    action = f"recovered {counts}; the damaged file is kept as {backup.name}"
    if result.lossy or result.unreadable:
        lost = [*(f"some rows of {t}" for t in result.lossy), *(f"all of {t}" for t in result.unreadable)]
        action += f"; lost on unreadable pages: {', '.join(lost)}"
    return Finding("database", False, detail, action, repaired=True)


def integrity_problems(db_file: Path) -> list[str]:
    """What SQLite's integrity check finds wrong with a database file (empty: nothing). Errors that are
    not damage (a full disk, permissions) are raised: a copy of the rows would not mend them."""
    try:
        with closing(sqlite3.connect(db_file)) as conn:
            rows = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode & 0xFF in SQLITE_DAMAGED_CODES:
            return [str(exc)]
        raise
    return [] if rows == ["ok"] else rows


def _found_schema(url: str) -> migrations.Found | None:
    """The schema as found, before opening the catalog upgrades it; None when unreadable."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return migrations.found(conn)
    except DBAPIError:
        return None  # opening the catalog then says what is wrong, in one sentence
    finally:
        engine.dispose()


def _check_model(catalog: Catalog) -> Finding:
    binding = catalog.binding
    if binding is not None:
        return Finding("model", True, f"{binding.model_id} (dim {binding.dim})")
    if len(catalog.segment_ids()) == 0:
        return Finding("model", True, "none yet (no vectors)")
    return Finding(
        "model",
        False,
        "the catalog holds vectors but its model binding was lost",
        "cannot be repaired: index again with `--model` naming the model that built it, or `reindex --model`",
    )


def _check_orphan_segments(catalog: Catalog, *, repair: bool) -> Finding:
    owned = exists().where(FileRow.id == SegmentRow.file_id, FileRow.status == FileStatus.OK)
    with catalog.session() as s:
        orphans = list(s.scalars(select(SegmentRow.id).where(~owned)))
        if not orphans:
            return Finding("orphan segments", True, "none")
        detail = f"{len(orphans)} segment(s) belong to no indexed file"
        if not repair:
            return Finding("orphan segments", False, detail, "--repair deletes them")
        s.execute(delete(SegmentRow).where(~owned))
    return Finding("orphan segments", False, detail, "deleted", repaired=True)


def _check_files_without_vectors(catalog: Catalog, *, repair: bool) -> Finding:
    bare = (FileRow.status == FileStatus.OK, ~exists().where(SegmentRow.file_id == FileRow.id))
    with catalog.session() as s:
        paths = list(s.scalars(select(FileRow.path).where(*bare).order_by(FileRow.path)))
        if not paths:
            return Finding("files without vectors", True, "none")
        detail = f"{len(paths)} file(s) marked OK have no vectors, e.g. {paths[0]}"
        if not repair:
            return Finding("files without vectors", False, detail, "--repair marks them for re-embedding")
        s.execute(
            update(FileRow)
            .where(*bare)
            .values(status=FileStatus.FAILED, error=LOST_VECTORS, content_hash=None)
            .execution_options(synchronize_session=False)
        )
    action = "marked for re-embedding by the next `soundsearch index` (listed by `status --failed` until then)"
    return Finding("files without vectors", False, detail, action, repaired=True)


def _check_vector_index(catalog: Catalog, *, repair: bool) -> Finding:
    index, why = catalog.read_index_file()
    db_ids = catalog.segment_ids()
    if index is None and why is None:
        detail = f"no {INDEX_NAME}" if len(db_ids) else "no vectors yet"
        if not len(db_ids):
            return Finding("vector index", True, detail)
    elif why is not None:
        detail = f"{INDEX_NAME} is not usable: {why}"
    else:
        assert index is not None
        have = index.ids()
        missing = len(np.setdiff1d(db_ids, have))
        stale = len(np.setdiff1d(have, db_ids))
        if not missing and not stale:
            return Finding("vector index", True, f"{INDEX_NAME}: {len(have)} vectors, this catalog's own")
        gaps = [f"lacks {missing} vector(s)" if missing else "", f"holds {stale} stale id(s)" if stale else ""]
        detail = f"{INDEX_NAME} " + " and ".join(filter(None, gaps))
    if not repair:
        return Finding("vector index", False, detail, "--repair rebuilds it from the database")
    catalog.rebuild_index()
    rebuilt = catalog.index.count()
    return Finding("vector index", False, detail, f"rebuilt from the database ({rebuilt} vectors)", repaired=True)


def _check_reindex(catalog: Catalog) -> Finding:
    unfinished = staging.pending(catalog)
    if unfinished is None:
        return Finding("reindex", True, "none in progress")
    model, staged, total = unfinished
    return Finding(
        "reindex",
        True,
        f"an unfinished reindex with model {model}: {staged} of {total} file(s) embedded; the catalog answers "
        f"with its current model until `soundsearch reindex --model {model}` finishes it",
    )
