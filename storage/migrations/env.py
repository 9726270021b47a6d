"""Alembic's entry point for the catalog's revisions (see `storage.migrations`).

An opening catalog hands over its connection in `config.attributes`, already inside the transaction
that holds the whole upgrade; the `alembic` command line (writing a revision: README, "Schema
migrations") names a database with `-x db_url=...`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from storage.schema import Base


def _run(connection: Connection) -> None:
    # Batch mode: an ALTER that SQLite cannot do becomes a copy of the table there (PostgreSQL alters in place).
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("db_url")
    if not url:
        raise SystemExit("name a catalog database at the head: alembic -x db_url=sqlite:////path/catalog.db ...")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


main()
