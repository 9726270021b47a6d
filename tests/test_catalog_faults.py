"""Real-world faults around the catalog: a foreign FAISS file, a damaged database, a full disk, an
unreadable file. Each is produced for real (a copied file, a truncated or zeroed database, a small
tmpfs or a file-size limit, a file the process may not read), never mocked."""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, insert

from api.cli import main
from indexer import load_encoder
from indexer.pipeline import IndexOptions, index_paths
from storage.catalog import Catalog, CatalogStorageError, FileStatus, vector_to_bytes
from storage.doctor import LOST_VECTORS, diagnose, integrity_problems
from storage.index_file import read_identity
from storage.salvage import salvage
from storage.schema import FileRow, Root, SegmentRow, Setting
from tests.hostile import tmpfs
from tests.planted import PlantedEncoder, tone, write
from tests.test_indexer import assert_index_agrees, snapshot


def planted_library(root: Path, n: int, bands: tuple[int, ...]) -> Path:
    for i in range(n):
        write(root / f"f{i:03d}.wav", tone(bands[i % len(bands)] + 0.1 * (i // len(bands)), 0.5 + 0.1 * (i % 5)))
    return root


def build(home: Path, *libraries: Path) -> Catalog:
    catalog = Catalog.open(home)
    for lib in libraries:
        index_paths(catalog, PlantedEncoder(), [lib])
    return catalog


def one_sentence(err: str) -> str:
    """The CLI's whole stderr, checked to be one line and no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- the FAISS file's identity ----------------------------------------------------------------------


@pytest.mark.parametrize("strip_identity", [False, True])
def test_a_foreign_faiss_file_is_rebuilt_from_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, strip_identity: bool
) -> None:
    """Two catalogs with the same ids but other sounds: the other's file would answer with its vectors."""
    low = planted_library(tmp_path / "low", 4, (0, 1, 2, 3))  # one band each: every vector unique
    high = planted_library(tmp_path / "high", 4, (4, 5, 6, 7))
    build(tmp_path / "a", low).close()
    build(tmp_path / "b", high).close()
    foreign = (tmp_path / "b" / "vectors.faiss").read_bytes()
    if strip_identity:  # as written by plain FAISS, or by soundsearch before schema 4
        identity = read_identity(tmp_path / "b" / "vectors.faiss")
        assert identity is not None
        foreign = foreign[: -len(identity.trailer())]
    (tmp_path / "a" / "vectors.faiss").write_bytes(foreign)

    with caplog.at_level(logging.WARNING, logger="storage.catalog"), Catalog.open(tmp_path / "a") as catalog:
        segments = catalog.segments()
        vectors = catalog.vectors([s.id for s in segments])
        for segment, vector in zip(segments, vectors, strict=True):
            (hit, score), *_ = catalog.search_vectors(vector, 1)
            assert hit.id == segment.id and score == pytest.approx(1.0, abs=1e-5)
        assert_index_agrees(catalog)
    why = "carries no catalog identity" if strip_identity else "belongs to another catalog"
    assert why in caplog.text and "rebuilding it from the database" in caplog.text


def test_an_index_file_from_before_schema_4_is_kept_on_upgrade(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The upgrade stamps the catalog's own file (trusted by ids, as before) instead of rebuilding it."""
    build(tmp_path, planted_library(tmp_path / "lib", 6, (0, 3, 6))).close()
    path = tmp_path / "vectors.faiss"
    identity = read_identity(path)
    assert identity is not None
    path.write_bytes(path.read_bytes()[: -len(identity.trailer())])
    with sqlite3.connect(tmp_path / "catalog.db") as conn:  # as schema 3 left it (tests/test_migrations.py)
        conn.execute("UPDATE settings SET value = '3' WHERE key = 'schema_version'")
        conn.execute("DELETE FROM settings WHERE key = 'catalog_id'")
        for table in ("alembic_version", "staged_segments", "staged_files"):
            conn.execute(f"DROP TABLE {table}")
    with caplog.at_level(logging.WARNING), Catalog.open(tmp_path) as catalog:
        assert catalog.index.count() == 6
        stamped = read_identity(path)
        assert stamped is not None and stamped.catalog_id == catalog.catalog_id
    assert "not used" not in caplog.text


# --- a damaged database -----------------------------------------------------------------------------


def test_a_truncated_database_is_one_sentence_for_every_command_and_doctor_recovers_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = planted_library(tmp_path / "lib", 40, tuple(range(8)))
    home = tmp_path / "home"
    build(home, lib).close()
    db = home / "catalog.db"
    os.truncate(db, db.stat().st_size // 2)

    for argv in (["status"], ["status", "--failed"], ["search", "a hum", "-k", "3"], ["index", str(lib)]):
        assert main([*argv, "--home", str(home)]) == 2
        sentence = one_sentence(capsys.readouterr().err)
        assert f"the catalog database {db} is damaged" in sentence and "doctor --repair" in sentence

    assert main(["doctor", "--home", str(home)]) == 1
    assert "database  PROBLEM" in capsys.readouterr().out
    assert main(["doctor", "--home", str(home), "--repair"]) == 0
    report = capsys.readouterr().out
    assert "recovered" in report and "lost on unreadable pages" in report
    assert [p.name for p in home.glob("catalog.db.damaged-*")], "the damaged file is kept"
    assert main(["doctor", "--home", str(home)]) == 0
    capsys.readouterr()

    with Catalog.open(home) as catalog:  # usable again: the next run re-adds what was lost
        again = index_paths(catalog, PlantedEncoder(), [lib])
        assert again.failed == 0 and catalog.status().files == 40
        assert_index_agrees(catalog)


def _synthetic_catalog(home: Path, n: int) -> None:
    """A catalog with `n` files of one segment each, written directly (fast, many pages)."""
    with Catalog.open(home) as catalog:
        catalog.bind_model("m", 8, 10.0, 5.0)
        with catalog.session() as s:
            root_id = s.execute(insert(Root).values(path="/lib").returning(Root.id)).scalar_one()
            for i in range(n):
                file_id = s.execute(
                    insert(FileRow)
                    .values(root_id=root_id, path=f"/lib/{i:05d}.wav", size=i, mtime_ns=i, status=FileStatus.OK)
                    .returning(FileRow.id)
                ).scalar_one()
                vector = vector_to_bytes(np.full(8, i, dtype=np.float32))
                s.execute(insert(SegmentRow).values(file_id=file_id, start_s=0, end_s=1, vector=vector))


def test_salvage_reads_past_an_unreadable_page(tmp_path: Path) -> None:
    """A page in the middle zeroed: the rows on it are lost, the rows after it are not."""
    _synthetic_catalog(tmp_path, 3000)
    db = tmp_path / "catalog.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'segments'").fetchone()[0]
        original = {r[0]: r for r in conn.execute("SELECT id, file_id, vector FROM segments")}
    with open(db, "r+b") as f:
        f.seek(page_size * (_middle_child(db, root, page_size) - 1))
        f.write(bytes(page_size))
    assert integrity_problems(db)

    result = salvage(db, tmp_path / "recovered.db")
    assert integrity_problems(tmp_path / "recovered.db") == []
    with sqlite3.connect(tmp_path / "recovered.db") as conn:
        got = {r[0]: r for r in conn.execute("SELECT id, file_id, vector FROM segments")}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'segments'").fetchone()[0] == 3000
    assert result.lossy and result.rows["settings"] > 0
    assert 0 < len(original) - len(got) < 200  # about a page of rows lost, no more
    assert max(got) == max(original)  # the scan went on past the bad page
    assert all(original[k] == row for k, row in got.items())


def _middle_child(db: Path, root: int, page_size: int) -> int:
    """The page number of the middle child of a table's root (an interior b-tree page)."""
    page = db.read_bytes()[(root - 1) * page_size : root * page_size]
    assert page[0] == 0x05, "the table's root is an interior page"
    middle = int.from_bytes(page[3:5], "big") // 2
    cell = int.from_bytes(page[12 + 2 * middle : 14 + 2 * middle], "big")
    return int.from_bytes(page[cell : cell + 4], "big")


def test_doctor_reports_and_repairs_vectors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = planted_library(tmp_path / "lib", 10, (1, 5))
    home = tmp_path / "home"
    with build(home, lib) as catalog:
        victim, failed = catalog.files()[2], catalog.files()[7]
        with catalog.session() as s:
            s.execute(delete(SegmentRow).where(SegmentRow.file_id == victim.id))  # OK, without vectors
            s.execute(FileRow.__table__.update().where(FileRow.id == failed.id).values(status=FileStatus.FAILED))
    other = tmp_path / "other"
    build(other, planted_library(tmp_path / "lib2", 10, (2, 6))).close()
    shutil.copy(other / "vectors.faiss", home / "vectors.faiss")

    before = {f.check: f for f in diagnose(home)}
    assert not before["files without vectors"].ok and victim.path.name in before["files without vectors"].detail
    assert not before["orphan segments"].ok  # the failed file's segments
    assert "belongs to another catalog" in before["vector index"].detail
    assert main(["doctor", "--home", str(home), "--repair"]) == 0
    capsys.readouterr()
    assert all(f.ok for f in diagnose(home))

    assert main(["status", "--failed", "--json", "--home", str(home)]) == 0
    assert LOST_VECTORS in capsys.readouterr().out
    with Catalog.open(home) as catalog:
        again = index_paths(catalog, PlantedEncoder(), [lib])
        assert (again.updated, again.failed) == (1, 0)  # the marked file
        assert catalog.status().failed == 1  # the failed file stays so: its bytes did not change
        assert_index_agrees(catalog)


# --- a full disk ------------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that fills up for real (ENOSPC)."""
    with tmpfs(tmp_path / "small", "4m", "; the file-size test covers EFBIG") as mount:
        yield mount


def fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(bytes(max(0, shutil.disk_usage(disk).free - leave)))
    return filler


def test_a_full_disk_is_one_sentence_and_the_catalog_stays_consistent(tmp_path: Path, small_disk: Path) -> None:
    """ENOSPC on a real (tmpfs) disk, while committing rows and while saving the FAISS file."""
    first = planted_library(tmp_path / "first", 10, (0, 2, 4, 6))
    more = planted_library(tmp_path / "more", 80, tuple(range(8)))
    home = small_disk / "home"
    with build(home, first) as catalog:
        filler = fill(small_disk, leave=100_000)
        with pytest.raises(CatalogStorageError, match="free some space") as raised:
            index_paths(catalog, PlantedEncoder(), [more], options=IndexOptions(commit_every_files=4))
        assert "\n" not in str(raised.value)
        filler.unlink()
    assert integrity_problems(home / "catalog.db") == []
    with Catalog.open(home) as catalog:
        assert_index_agrees(catalog)  # whatever was committed is in FAISS as well
        index_paths(catalog, PlantedEncoder(), [more])
        got = snapshot(catalog)
        filler = fill(small_disk, leave=0)
        with pytest.raises(CatalogStorageError, match="could not write the vector index"):
            catalog.save_index()
        filler.unlink()
        assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []  # no temporary left
        saved, why = catalog.read_index_file()
        assert why is None and saved is not None and saved.count() == len(got)
    with build(tmp_path / "clean", first, more) as clean:
        want = snapshot(clean)
    assert got.keys() == want.keys()


FILL_SCRIPT = """
import sys
from storage.catalog import Catalog, CatalogStorageError
from indexer.pipeline import IndexOptions, index_paths
from tests.planted import PlantedEncoder

with Catalog.open(sys.argv[1]) as catalog:
    try:
        index_paths(catalog, PlantedEncoder(), [sys.argv[2]], options=IndexOptions(commit_every_files=4))
    except CatalogStorageError as exc:
        print(exc)
        sys.exit(3)
"""


def test_a_file_size_limit_mid_index_is_a_clear_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a child process: writes past the limit fail with EFBIG (Python ignores SIGXFSZ)."""
    first = planted_library(tmp_path / "first", 10, (0, 2, 4, 6))
    more = planted_library(tmp_path / "more", 120, tuple(range(8)))
    home = tmp_path / "home"
    build(home, first).close()
    limit = (home / "catalog.db").stat().st_size + 48_000

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    child = subprocess.run(
        [sys.executable, "-c", FILL_SCRIPT, str(home), str(more)],
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert child.returncode == 3, child.stderr
    assert "could not write" in child.stdout and "Traceback" not in child.stderr
    assert integrity_problems(home / "catalog.db") == []
    with Catalog.open(home) as catalog:
        assert_index_agrees(catalog)
        index_paths(catalog, PlantedEncoder(), [first, more])
        assert catalog.status().files == 130


# --- an unreadable file -----------------------------------------------------------------------------


def _without_root_read_override() -> None:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set before exec: even as root,
    the child then obeys file permissions (a chmod 000 file cannot be opened)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unreadable_file_is_listed_as_failed_and_read_again_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = tmp_path / "lib"
    for i in range(3):
        write(lib / f"ok{i}.wav", tone(i, 0.5))
    locked = write(lib / "locked.wav", tone(5, 0.5))
    locked.chmod(0)
    home = tmp_path / "home"
    run = subprocess.run(
        [sys.executable, "-m", "api.cli", "index", str(lib), "--home", str(home), "--model", "tiny-random"],
        preexec_fn=_without_root_read_override if os.geteuid() == 0 else None,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert main(["status", "--failed", "--home", str(home)]) == 0
    listed = capsys.readouterr().out
    assert f"{locked}: cannot read file: Permission denied" in listed and "1 failed file(s)" in listed

    locked.chmod(0o644)  # same size and mtime: read again because it was never read
    with Catalog.open(home) as catalog:
        again = index_paths(catalog, load_encoder("tiny-random"), [lib])
        assert (again.added + again.updated, again.unchanged, catalog.status().failed) == (1, 3, 0)


def test_doctor_says_a_lost_model_binding_cannot_be_repaired(tmp_path: Path) -> None:
    """A catalog whose settings table is gone cannot say what model built its vectors: doctor says so."""
    _synthetic_catalog(tmp_path, 10)
    with Catalog.open(tmp_path) as catalog, catalog.session() as s:
        s.execute(delete(Setting).where(Setting.key.in_(["model_id", "dim", "window_s", "hop_s", "preprocessing"])))
    found = {f.check: f for f in diagnose(tmp_path, repair=True)}
    assert not found["model"].healthy and "cannot be repaired" in (found["model"].action or "")
