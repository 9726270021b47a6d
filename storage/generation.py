"""The catalog's generation: a counter in `settings` that every change to the searchable data moves.

Any process holding a catalog (a server, a notebook, a second server over the same PostgreSQL) keeps
vectors and words in memory; it compares the counter with the one it loaded (one indexed row) and
catches up when it moved (`Catalog.refresh`). The counter is moved by `CatalogSession` itself, in the
transaction that changes files, segments or tags (captions are a column of files), so no writer can
forget it and no reader sees the new counter without the rows it stands for.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from sqlalchemy import Connection, Integer, String, cast, delete, event, insert, select, update
from sqlalchemy.orm import ORMExecuteState, Session

from storage.schema import FileRow, SegmentRow, Setting, TagRow

GENERATION_KEY = "generation"
# Catalogs written before the counter have a random token under this key (the full-text index's own).
_OLD_KEY = "text_generation"
DATA_TABLES = frozenset(t.__tablename__ for t in (FileRow, SegmentRow, TagRow))
_CHANGED = "soundsearch_data_changed"


class CatalogSession(Session):
    """A session whose commit moves the generation when it wrote files, segments or tags."""


@event.listens_for(CatalogSession, "do_orm_execute")
def _statement(state: ORMExecuteState) -> None:
    # Core-style writes (`s.execute(insert(FileRow)...)`) never pass through a flush.
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in DATA_TABLES:
            state.session.info[_CHANGED] = True


@event.listens_for(CatalogSession, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    objects = chain(session.new, session.dirty, session.deleted)
    if any(getattr(obj, "__tablename__", None) in DATA_TABLES for obj in objects):
        session.info[_CHANGED] = True


@event.listens_for(CatalogSession, "before_commit")
def _committing(session: Session) -> None:
    session.flush()  # the commit's own flush comes after this hook: objects still pending count too
    if session.info.pop(_CHANGED, False):
        bump(session)


@event.listens_for(CatalogSession, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def bump(conn: Connection | Session) -> None:
    """Move the generation on (inside the writing transaction; the row lock orders concurrent writers)."""
    conn.execute(
        update(Setting)
        .where(Setting.key == GENERATION_KEY)
        .values(value=cast(cast(Setting.value, Integer) + 1, String))
    )


def current(conn: Connection | Session) -> int:
    value = conn.execute(select(Setting.value).where(Setting.key == GENERATION_KEY)).scalar()
    return int(value) if value is not None else 0


def ensure(conn: Connection) -> None:
    """Give a catalog its generation row (once, when it is created or upgraded)."""
    if conn.execute(select(Setting.key).where(Setting.key == GENERATION_KEY)).first() is None:
        conn.execute(insert(Setting).values(key=GENERATION_KEY, value="1"))
    conn.execute(delete(Setting).where(Setting.key == _OLD_KEY))
