"""Where a catalog lives, its home folder and its database URL, without importing the database layer.

The CLI asks this before it decides whether to open the catalog at all (a running server may answer instead).
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

from indexer.settings import settings

DB_NAME = "catalog.db"


def resolve_home(home: str | Path | None = None) -> Path:
    chosen = home or settings().home or platformdirs.user_data_dir("soundsearch")
    return Path(chosen).expanduser().absolute()


def database_url(home: Path, db_url: str | None = None) -> str:
    """The catalog's database: `db_url`, else the configured one, else SQLite in the home folder."""
    return db_url or settings().db_url or f"sqlite:///{home / DB_NAME}"
