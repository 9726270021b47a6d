"""Schema 4: the catalog's identity (its FAISS file carries it) and the `reindex` staging tables.

Revision ID: 0004 (schema 4)
Revises: 0003

The FAISS file already beside an upgraded catalog is stamped as its own by `Catalog` after the upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.schema import ensure_catalog_id

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "staged_files",
        sa.Column(
            "file_id", sa.Integer(), sa.ForeignKey("files.id", ondelete="CASCADE"), primary_key=True, nullable=False
        ),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "staged_segments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("file_id", sa.Integer(), sa.ForeignKey("staged_files.file_id", ondelete="CASCADE"), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_staged_segments_file_id", "staged_segments", ["file_id"])
    ensure_catalog_id(op.get_bind())
