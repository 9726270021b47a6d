"""The catalog's relational schema (SQLAlchemy 2.0 typed ORM); its migrations are in `storage.migrations`.

The database is the source of truth: it holds every segment's vector, so the FAISS index is a
derived structure that can always be checked and repaired against it (see `storage.catalog`).
SQL stays portable: SQLite by default, any SQLAlchemy URL (PostgreSQL included) must work.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from indexer.fsnames import from_stored, to_stored

# The head revision of `storage.migrations` (revision "0004"): raised with every revision.
SCHEMA_VERSION = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class FsPath(TypeDecorator[str]):
    """A file system path as text: names that are not UTF-8 round-trip (`indexer.fsnames`).

    The stored form equals the path for every UTF-8 name, so catalogs written before keep their meaning.
    """

    impl = String(4096)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else to_stored(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else from_stored(value)


class Setting(Base):
    """Key/value facts about the catalog: model id, embedding dim, windowing, schema version."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Root(Base):
    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FileRow(Base):
    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)  # FileStatus values
    error: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Text for full-text search (schema 2): name/folder words and the file's own tags.
    title: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    segments: Mapped[list[SegmentRow]] = relationship(
        back_populates="file", cascade="all, delete-orphan", passive_deletes=True
    )


class SegmentRow(Base):
    """One encoder window of a file. Its id is the vector's id in FAISS."""

    __tablename__ = "segments"
    # Ids are never reused (SQLite AUTOINCREMENT), so a reader holding an older FAISS file can never
    # map a stale id onto a different segment.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, `dim` values
    file: Mapped[FileRow] = relationship(back_populates="segments")


class TagRow(Base):
    """A label on a file with a score, from a source: "zeroshot", "tagger:<name>" or "user"."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("file_id", "label", "source"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(256), index=True)
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(128))


class StagedFile(Base):
    """A file already embedded by an unfinished `reindex` (schema 4), with the content hash it had then.

    The new model's vectors wait here, beside the catalog's own, until every file is done
    (`indexer.reindex`); a row whose hash no longer matches its file's is embedded again.
    """

    __tablename__ = "staged_files"
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)  # the file failed with the new model


class StagedSegment(Base):
    __tablename__ = "staged_segments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("staged_files.file_id", ondelete="CASCADE"), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


CATALOG_ID_KEY = "catalog_id"


def ensure_catalog_id(conn: Connection) -> None:
    """Give the catalog a random identity (once), written into its FAISS file so that a foreign file is recognised."""
    if conn.execute(select(Setting.value).where(Setting.key == CATALOG_ID_KEY)).scalar() is None:
        conn.execute(insert(Setting).values(key=CATALOG_ID_KEY, value=uuid.uuid4().hex))
