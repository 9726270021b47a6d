"""Schema 2: tags, and text columns on files for full-text search, filled from each file's path.

Revision ID: 0002 (schema 2)
Revises: 0001

On SQLite, schema 2 also kept an FTS5 table (`files_fts`) beside the files, created by the full-text
module on open rather than by the ORM; schema 3 drops it, so it is not created here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from indexer.fsnames import from_stored
from indexer.metadata import EmbeddedText, search_text

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("file_id", sa.Integer(), sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.UniqueConstraint("file_id", "label", "source"),
    )
    op.create_index("ix_tags_file_id", "tags", ["file_id"])
    op.create_index("ix_tags_label", "tags", ["label"])
    for name in ("title", "comment", "caption"):
        op.add_column("files", sa.Column(name, sa.Text()))
    op.add_column("files", sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
    files = sa.table("files", sa.column("id", sa.Integer()), sa.column("path", sa.Text()), sa.column("search_text"))
    bind = op.get_bind()
    words = [
        {"file_id": file_id, "words": search_text(from_stored(path), None, EmbeddedText())}
        for file_id, path in bind.execute(sa.select(files.c.id, files.c.path))
    ]
    if words:
        fill = sa.update(files).where(files.c.id == sa.bindparam("file_id")).values(search_text=sa.bindparam("words"))
        bind.execute(fill, words)
