"""Recovering what SQLite can still read from a damaged catalog database into a new file.

Python's sqlite3 module has no `.recover` (that lives in the sqlite3 shell), and the shell's gave up
with "SQL logic error" on a catalog truncated to half its size. This copies table by table instead:

- The damaged file is never written: it is copied first. In the copy, a page count in the header
  larger than the file (a truncated file) is lowered to the pages that are there, without which SQLite
  reads nothing at all ("database disk image is malformed").
- The schema comes from `sqlite_master` with `writable_schema` on, so a table whose root page is gone
  does not hide the others. Each table is read in rowid order; past an unreadable page the scan probes
  ever further rowids for the next readable one. Rows on unreadable pages are lost, and said so.
- Indexes are recreated; rows that break a foreign key (a segment whose file was lost) are dropped.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.catalog import CatalogDamagedError

_MAX_ROWID = 2**63 - 1
_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass
class Salvage:
    rows: dict[str, int] = field(default_factory=dict)  # rows recovered per table
    lossy: list[str] = field(default_factory=list)  # tables with unreadable pages: some rows lost
    unreadable: list[str] = field(default_factory=list)  # tables lost entirely


def salvage(damaged: Path, out: Path) -> Salvage:
    """Write every row SQLite can read from `damaged` into a new database at `out`."""
    work = out.with_name(out.name + ".source")
    shutil.copyfile(damaged, work)
    wal = Path(f"{damaged}-wal")
    if wal.exists():  # committed transactions not yet checkpointed into the main file
        shutil.copyfile(wal, f"{work}-wal")
    try:
        _fit_page_count(work)
        with closing(sqlite3.connect(work)) as src, closing(sqlite3.connect(out)) as dst:
            src.execute("PRAGMA writable_schema=ON")
            try:
                schema = src.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
            except sqlite3.DatabaseError as exc:
                why = f"nothing can be recovered from {damaged}: its schema is unreadable ({exc})"
                raise CatalogDamagedError(why) from exc
            result = Salvage()
            tables = [(name, sql) for kind, name, sql in schema if kind == "table" and not name.startswith("sqlite_")]
            for name, sql in tables:
                dst.execute(sql)
                _copy_table(src, dst, name, result)
            for kind, _name, sql in schema:
                if kind == "index":
                    dst.execute(sql)
            _copy_sequences(src, dst)
            _drop_broken_references(dst)
            dst.commit()
        return result
    finally:
        for path in (work, *(Path(f"{work}{suffix}") for suffix in _SIDE_FILES)):
            path.unlink(missing_ok=True)


def _fit_page_count(path: Path) -> None:
    with open(path, "r+b") as f:
        header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            return  # not an SQLite header: SQLite itself says so
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = f.seek(0, 2) // page_size
        f.truncate(pages * page_size)
        if int.from_bytes(header[28:32], "big") > pages:
            f.seek(28)
            f.write(pages.to_bytes(4, "big"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, result: Salvage) -> None:
    try:
        columns = [row[1] for row in src.execute(f"PRAGMA table_info({_quote(table)})")]
    except sqlite3.DatabaseError:
        result.unreadable.append(table)
        return
    names = ", ".join(_quote(c) for c in columns)
    select = f"SELECT rowid, {names} FROM {_quote(table)} WHERE rowid >= ? ORDER BY rowid"
    insert = f"INSERT OR IGNORE INTO {_quote(table)} (rowid, {names}) VALUES ({', '.join('?' * (len(columns) + 1))})"
    copied, start = 0, -_MAX_ROWID - 1
    while True:
        batch: list[tuple[Any, ...]] = []
        try:
            for row in src.execute(select, (start,)):
                batch.append(row)
                if len(batch) == 1000:
                    dst.executemany(insert, batch)
                    copied, start, batch = copied + len(batch), int(batch[-1][0]) + 1, []
            dst.executemany(insert, batch)
            copied += len(batch)
            break
        except sqlite3.DatabaseError:
            dst.executemany(insert, batch)  # the rows read before the bad page
            copied += len(batch)
            start = int(batch[-1][0]) + 1 if batch else start
            if table not in result.lossy:
                result.lossy.append(table)
            next_start = _next_readable(src, table, start)
            if next_start is None:
                break
            start = next_start
    if copied == 0 and table in result.lossy:
        result.lossy.remove(table)
        result.unreadable.append(table)
    result.rows[table] = copied


def _next_readable(src: sqlite3.Connection, table: str, after: int) -> int | None:
    """The first readable rowid past an unreadable page at `after`: probes after+1, +2, +4, ..."""
    step = 1
    while after + step <= _MAX_ROWID:
        try:
            row = src.execute(
                f"SELECT rowid FROM {_quote(table)} WHERE rowid >= ? ORDER BY rowid LIMIT 1", (after + step,)
            ).fetchone()
        except sqlite3.DatabaseError:
            step *= 2
            continue
        return None if row is None else int(row[0])
    return None


def _copy_sequences(src: sqlite3.Connection, dst: sqlite3.Connection) -> None:
    """Keep AUTOINCREMENT counters: segment ids are never reused, even for rows lost here."""
    try:
        sequences = src.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    except sqlite3.DatabaseError:
        return  # the ids continue from the largest one recovered
    for name, seq in sequences:
        current = dst.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)).fetchone()
        if current is None:
            dst.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
        elif seq > current[0]:
            dst.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (seq, name))


def _drop_broken_references(dst: sqlite3.Connection) -> None:
    """Delete rows whose parent row was lost, until none are left (a lost file orphans its segments)."""
    while broken := dst.execute("PRAGMA foreign_key_check").fetchall():
        for table, rowid, _parent, _fk in broken:
            dst.execute(f"DELETE FROM {_quote(table)} WHERE rowid = ?", (rowid,))
