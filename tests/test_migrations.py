"""Schema migrations (`storage.migrations`): every earlier schema, built exactly as that soundsearch wrote it
(`tests/data/migrations`, captured from git history), opens at the head with its rows, on SQLite and PostgreSQL;
the revisions build exactly what the models describe."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, insert, select, text

from storage import migrations
from storage.catalog import DB_NAME, Catalog, CatalogError
from storage.doctor import diagnose
from storage.schema import SCHEMA_VERSION, Base

FIXTURES = Path(__file__).parent / "data" / "migrations"
EARLIER = list(range(1, SCHEMA_VERSION + 1))  # the last one too: today's catalogs predate Alembic
DOOR = "/lib/Doors/DOOR_WoodCreak_SSYN_01.wav"


def url_for(home: Path, db_url: str | None) -> str:
    return db_url or f"sqlite:///{home / DB_NAME}"


def dialect_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def rows(version: int) -> dict[str, list[dict[str, Any]]]:
    """Some rows in every table of `version`, in insertion order (ids come from the database: 1, 2, ...)."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    settings = {"schema_version": str(version), "model_id": "m", "dim": "4", "window_s": "10.0", "hop_s": "5.0"}
    settings["preprocessing"] = "1"
    if version == 3:
        settings["text_generation"] = "0f" * 16  # the full-text index's token, replaced by the generation counter
    if version >= 4:
        settings["catalog_id"] = "ab" * 16
    text_columns = {"title": None, "comment": None, "caption": None}
    files = [
        {"root_id": 1, "path": DOOR, "size": 10, "mtime_ns": 1, "status": "ok", "indexed_at": when},
        {"root_id": 1, "path": "/lib/rain.flac", "size": 5, "mtime_ns": 2, "status": "failed", "indexed_at": when},
    ]
    vector = np.full(4, 0.5, dtype="<f4").tobytes()
    out: dict[str, list[dict[str, Any]]] = {
        "settings": [{"key": k, "value": v} for k, v in settings.items()],
        "roots": [{"path": "/lib", "added_at": when}],
        "files": [
            {**f, **text_columns, "search_text": words}
            for f, words in zip(files, ("door wood creak", "rain flac"), strict=True)
        ]
        if version >= 2
        else files,
        "segments": [{"file_id": 1, "start_s": s, "end_s": s + 10, "vector": vector} for s in (0.0, 5.0)],
    }
    if version >= 2:
        out["tags"] = [{"file_id": 1, "label": "door", "score": 0.9, "source": "user"}]
    if version >= 4:
        out["staged_files"] = [{"file_id": 1, "content_hash": "h", "error": None}]
        out["staged_segments"] = [{"file_id": 1, "start_s": 0.0, "end_s": 10.0, "vector": vector}]
    return out


def build_old_catalog(url: str, version: int) -> None:
    """The database as soundsearch at schema `version` wrote it: its DDL, then rows in every table."""
    ddl = (FIXTURES / f"v{version}.{dialect_of(url)}.sql").read_text()
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";\n")):
            conn.exec_driver_sql(statement)
        tables = MetaData()
        tables.reflect(conn)
        for name, values in rows(version).items():
            conn.execute(insert(tables.tables[name]), values)
        if "files_fts" in tables.tables:
            conn.execute(text("INSERT INTO files_fts (rowid, body) VALUES (1, 'door wood creak')"))
    engine.dispose()


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (Alembic's own and FTS5's aside), by primary key."""
    engine = create_engine(url)
    tables = MetaData()
    with engine.connect() as conn:
        tables.reflect(conn)
        out = {
            name: [dict(row._mapping) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for name, table in tables.tables.items()
            if name != migrations.VERSION_TABLE and not name.startswith("files_fts")
        }
    engine.dispose()
    return out


def schema_diff(url: str) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models (empty: nothing)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    return list(diff)


def found(url: str) -> migrations.Found:
    engine = create_engine(url)
    with engine.connect() as conn:
        result = migrations.found(conn)
    engine.dispose()
    return result


@pytest.mark.parametrize("version", EARLIER)
def test_an_earlier_schema_is_upgraded_with_every_row_kept(
    tmp_path: Path, db_url: str | None, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = url_for(tmp_path, db_url)
    build_old_catalog(url, version)
    before = dump(url)
    with Catalog.open(tmp_path, db_url=db_url) as catalog:
        assert catalog.index.count() == 2  # the stored vectors, under the recorded model
        assert [fid for fid, _ in catalog.text.search("creak", 10)] == [1]  # schema 1: words from the path
    after = dump(url)

    old_settings = {row["key"]: row["value"] for row in before.pop("settings")}
    for table, old_rows in before.items():
        assert [{k: new[k] for k in old} for new, old in zip(after[table], old_rows, strict=True)] == old_rows
    settings = {row["key"]: row["value"] for row in after["settings"]}
    expected = {k: v for k, v in old_settings.items() if k != "text_generation"}
    # `schema_version` follows the head: a soundsearch from before Alembic reads it and refuses the catalog.
    expected |= {"schema_version": str(SCHEMA_VERSION), "generation": "1"}
    expected.setdefault("catalog_id", settings["catalog_id"])  # a new identity for catalogs before schema 4
    assert settings == expected
    if version == 1:
        assert "creak" in after["files"][0]["search_text"].split()
    assert schema_diff(url) == [], "the upgraded schema differs from a fresh catalog's"
    assert found(url) == migrations.Found(migrations.HEAD, SCHEMA_VERSION)
    if db_url is None:  # segment ids are never reused, before and after
        engine = create_engine(url)
        with engine.connect() as conn:
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'segments'")).scalar_one()
        engine.dispose()
        assert "AUTOINCREMENT" in sql
    assert ("upgraded catalog schema" in caplog.text) == (version < SCHEMA_VERSION)


def test_a_fresh_catalog_is_created_at_the_head(tmp_path: Path, db_url: str | None) -> None:
    url = url_for(tmp_path, db_url)
    Catalog.open(tmp_path, db_url=db_url).close()
    assert found(url) == migrations.Found(migrations.HEAD, SCHEMA_VERSION)
    assert schema_diff(url) == []
    assert {row["key"] for row in dump(url)["settings"]} == {"schema_version", "generation", "catalog_id"}


def test_the_revisions_build_what_the_models_describe(tmp_path: Path, db_url: str | None) -> None:
    """A model change without a revision (or a revision the models do not match) fails here."""
    engine = create_engine(url_for(tmp_path, db_url))
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), "head")
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


@pytest.mark.parametrize("version", EARLIER)
def test_each_revision_builds_its_schema_as_that_soundsearch_wrote_it(
    tmp_path: Path, db_url: str | None, version: int
) -> None:
    """Upgrading from any revision starts from the schema that version really had."""
    url = url_for(tmp_path, db_url)
    build_old_catalog(url, version)
    written = MetaData()
    engine = create_engine(url)
    with engine.begin() as conn:
        written.reflect(conn)
        conn.execute(text("DROP TABLE IF EXISTS files_fts"))  # outside the ORM; revision 0003 drops it
        written.drop_all(conn, tables=[t for name, t in written.tables.items() if not name.startswith("files_fts")])
        for name in [name for name in written.tables if name.startswith("files_fts")]:
            written.remove(written.tables[name])
        command.upgrade(migrations.alembic_config(conn), migrations.revision_id(version))
        diff = compare_metadata(MigrationContext.configure(conn), written)
    engine.dispose()
    assert diff == []


def test_the_revision_ids_are_the_schema_versions() -> None:
    script = ScriptDirectory(str(migrations.SCRIPT_LOCATION))
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert chain == [migrations.revision_id(v) for v in range(1, SCHEMA_VERSION + 1)]
    assert script.get_current_head() == migrations.HEAD


def test_a_read_only_opening_of_an_old_catalog_is_refused_and_changes_nothing(
    tmp_path: Path, db_url: str | None
) -> None:
    url = url_for(tmp_path, db_url)
    build_old_catalog(url, 3)
    before = dump(url)
    with pytest.raises(CatalogError, match=r"schema version 3, older than .* `soundsearch doctor --repair`"):
        Catalog.open(tmp_path, db_url=db_url, writable=False)
    assert found(url) == migrations.Found(None, 3) and dump(url) == before


def test_a_catalog_from_before_alembic_at_the_head_opens_read_only(tmp_path: Path, db_url: str | None) -> None:
    url = url_for(tmp_path, db_url)
    build_old_catalog(url, SCHEMA_VERSION)
    with Catalog.open(tmp_path, db_url=db_url, writable=False) as catalog:
        assert catalog.catalog_id == "ab" * 16
    assert found(url) == migrations.Found(migrations.HEAD, SCHEMA_VERSION)


@pytest.mark.parametrize("stamp", ["alembic", "setting"])
def test_a_newer_catalog_is_refused(tmp_path: Path, db_url: str | None, stamp: str) -> None:
    url = url_for(tmp_path, db_url)
    newer = str(SCHEMA_VERSION + 1)
    if stamp == "alembic":
        Catalog.open(tmp_path, db_url=db_url).close()
        sql = f"UPDATE alembic_version SET version_num = '{migrations.revision_id(SCHEMA_VERSION + 1)}'"
    else:  # a catalog some future soundsearch before Alembic could not have written, but its setting says so
        build_old_catalog(url, SCHEMA_VERSION)
        sql = f"UPDATE settings SET value = '{newer}' WHERE key = 'schema_version'"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()
    for writable in (True, False):
        with pytest.raises(CatalogError, match=f"schema version {newer}, newer than this soundsearch"):
            Catalog.open(tmp_path, db_url=db_url, writable=writable)


def test_an_upgrade_waits_for_the_run_lock(tmp_path: Path, db_url: str | None) -> None:
    """Another process holding the catalog's run lock (one upgrading it, or an indexer) is waited for:
    nothing is migrated under it, and the upgrade runs once it is released."""
    url = url_for(tmp_path, db_url)
    build_old_catalog(url, 1)
    holder_engine = create_engine(url)
    holder = Catalog(tmp_path, holder_engine, url, writable=True)  # a handle that does not open the schema
    opened: list[Catalog] = []
    with holder.run_lock():
        opener = threading.Thread(target=lambda: opened.append(Catalog.open(tmp_path, db_url=db_url)))
        opener.start()
        time.sleep(0.5)
        assert opener.is_alive() and found(url) == migrations.Found(None, 1)
    opener.join(timeout=30)
    holder_engine.dispose()
    assert len(opened) == 1
    opened[0].close()
    assert found(url) == migrations.Found(migrations.HEAD, SCHEMA_VERSION)


def test_doctor_reports_an_old_schema_and_repair_upgrades_it(tmp_path: Path, db_url: str | None) -> None:
    build_old_catalog(url_for(tmp_path, db_url), 2)
    (schema,) = [f for f in diagnose(tmp_path, db_url) if f.check == "schema"]
    assert not schema.healthy and "version 2, older" in schema.detail and schema.action == "--repair upgrades it"
    (schema,) = [f for f in diagnose(tmp_path, db_url, repair=True) if f.check == "schema"]
    assert schema.repaired and schema.action == f"upgraded to version {SCHEMA_VERSION}"
    assert all(f.ok for f in diagnose(tmp_path, db_url))


def test_the_upgrade_is_one_transaction(tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A revision that fails leaves the catalog as it was (SQLite included, whose driver would commit DDL)."""
    url = url_for(tmp_path, db_url)
    build_old_catalog(url, 2)
    before = dump(url)

    def broken(conn: Connection) -> None:
        raise RuntimeError("revision 0004 failed")

    monkeypatch.setattr("storage.schema.ensure_catalog_id", broken)  # what revision 0004 imports when loaded
    with pytest.raises(RuntimeError, match="revision 0004 failed"):
        Catalog.open(tmp_path, db_url=db_url)
    assert found(url) == migrations.Found(None, 2) and dump(url) == before
    if db_url is None:  # revision 0003 dropped it, and that was rolled back too
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'files_fts'")).first()
        engine.dispose()
