"""Schema 3: full-text ranking moved in memory (`storage.fulltext`); SQLite's FTS5 table of schema 2 is dropped.

Revision ID: 0003 (schema 3)
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS files_fts")  # its shadow tables go with it
