"""Schema migrations: one Alembic revision per schema version, applied when a catalog opens.

`upgrade` brings a database to the head in one transaction (the catalog calls it under its run lock,
so two processes opening an old catalog do not both migrate):

- an empty database (or one whose version was lost, say by a salvage) gets the models' tables and is
  stamped at the head;
- a catalog written before Alembic (schemas 1-4 record their version only in `settings`) is stamped at
  that version's revision, then upgraded;
- a stamped catalog is upgraded from its revision.

Revision ids are the schema version, zero-padded ("0004" is schema 4), and the `schema_version`
setting follows the head, so that a soundsearch from before Alembic still refuses a newer catalog.
Adding a revision: README, "Schema migrations"; `tests/test_migrations.py` fails until the revisions
build what the models describe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    ExceptionContext,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.pool import NullPool

from storage.schema import SCHEMA_VERSION, Base, Setting

SCRIPT_LOCATION = Path(__file__).parent
VERSION_KEY = "schema_version"  # the setting schemas 1-4 kept their version in
VERSION_TABLE = "alembic_version"  # Alembic's own record of the revision


def revision_id(version: int) -> str:
    return f"{version:04d}"


HEAD = revision_id(SCHEMA_VERSION)


@dataclass(frozen=True)
class Found:
    """The schema a database holds."""

    revision: str | None  # Alembic's record: None in an empty database and in catalogs from before Alembic
    version: int | None  # None: none recorded (an empty database, lost settings), or a revision not of ours

    @property
    def current(self) -> bool:
        return self.revision == HEAD

    @property
    def older(self) -> bool:
        return self.version is not None and self.version < SCHEMA_VERSION

    @property
    def newer(self) -> bool:
        if self.version is None:
            return self.revision is not None
        return self.version > SCHEMA_VERSION

    @property
    def label(self) -> str:
        return str(self.version) if self.version is not None else repr(self.revision)


def found(conn: Connection) -> Found:
    """What schema the database on `conn` holds (two small reads; read-only)."""
    # Read here rather than through Alembic's MigrationContext, which logs its set-up on every open.
    tables = inspect(conn)
    if tables.has_table(VERSION_TABLE):
        revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if revision is not None:
            return Found(revision, int(revision) if revision.isdecimal() else None)
    if not tables.has_table(Setting.__tablename__):
        return Found(None, None)
    value = conn.execute(select(Setting.value).where(Setting.key == VERSION_KEY)).scalar()
    return Found(None, int(value) if value is not None else None)


def alembic_config(conn: Connection) -> Config:
    """Alembic's configuration for running revisions on `conn` (no alembic.ini: this package is the script
    directory, wherever it is installed)."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))  # % escapes itself
    config.attributes["connection"] = conn
    return config


def upgrade(url: URL, *, on_error: Callable[[ExceptionContext], None]) -> Found:
    """Bring the database at `url` to the head, in one transaction; returns the schema found before.

    A newer schema is left alone (the caller refuses it). `on_error` is the catalog's `handle_error`
    hook, so that a full disk is one sentence here too.
    """
    engine = _engine(url, on_error)
    try:
        with engine.begin() as conn:
            before = found(conn)
            if before.current or before.newer:
                return before
            config = alembic_config(conn)
            if before.version is None:
                Base.metadata.create_all(conn)
                command.stamp(config, HEAD)
            else:
                if before.revision is None:
                    command.stamp(config, revision_id(before.version))
                command.upgrade(config, HEAD)
            setting = {"key": VERSION_KEY, "value": str(SCHEMA_VERSION)}
            if not conn.execute(update(Setting).where(Setting.key == VERSION_KEY).values(setting)).rowcount:
                conn.execute(insert(Setting).values(setting))
            return before
    finally:
        engine.dispose()


def _engine(url: URL, on_error: Callable[[ExceptionContext], None]) -> Engine:
    """An engine for one upgrade. On SQLite the whole upgrade is one transaction taken with the write lock
    (the driver would commit each DDL statement on its own), and foreign keys stay unenforced (SQLite's
    default): a batch operation copies a table and drops the old one, which would cascade to every row
    that references it."""
    engine = create_engine(url, poolclass=NullPool)
    event.listen(engine, "handle_error", on_error)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA busy_timeout=30000")


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits (busy timeout) for a writer, instead of failing mid-upgrade
