"""Writes the DDL each schema version's `create_all` emitted, from that version's schema module in git.

    .venv/bin/python tests/data/migrations/capture.py

One file per version and dialect (`v1.sqlite.sql`, `v1.postgresql.sql`, ...): `tests/test_migrations.py`
builds a catalog exactly as that soundsearch wrote it from them. The FTS5 table schema 2 kept beside the
files on SQLite (`indexer/fulltext.py` at that commit) was not part of the ORM and is added by hand.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

from sqlalchemy import create_mock_engine
from sqlalchemy.schema import ExecutableDDLElement

ROOT = Path(__file__).resolve().parents[3]
# The last commit that wrote each version's schema (indexer/schema.py before the storage package).
VERSIONS = {1: "c9f074f", 2: "93f5d03", 3: "e671c04", 4: "9c5f79b"}
FTS5 = "CREATE VIRTUAL TABLE files_fts USING fts5(body, tokenize='unicode61 remove_diacritics 2')"


def ddl(commit: str, dialect: str) -> list[str]:
    source = subprocess.run(
        ["git", "show", f"{commit}:indexer/schema.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType(f"schema_{commit}")
    sys.modules[module.__name__] = module  # the ORM resolves annotations through the module
    exec(compile(source, f"{commit}:indexer/schema.py", "exec"), module.__dict__)
    statements: list[str] = []
    engine = create_mock_engine(
        f"{dialect}://",
        lambda sql, *_a, **_k: (
            statements.append(str(sql.compile(dialect=engine.dialect)).strip())
            if isinstance(sql, ExecutableDDLElement)
            else None
        ),
    )
    module.Base.metadata.create_all(engine, checkfirst=False)
    return statements


def main() -> None:
    out = Path(__file__).parent
    for version, commit in VERSIONS.items():
        for dialect in ("sqlite", "postgresql"):
            statements = ddl(commit, dialect)
            if version == 2 and dialect == "sqlite":
                statements.append(FTS5)
            header = f"-- Schema {version} as `create_all` wrote it on {dialect} (indexer/schema.py at {commit}).\n"
            (out / f"v{version}.{dialect}.sql").write_text(header + "".join(f"{s};\n\n" for s in statements))


if __name__ == "__main__":
    main()
