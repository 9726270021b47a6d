"""PostgreSQL as a catalog beside SQLite: the same library gives the same catalog and the same answers, and
indexing runs on one database exclude each other wherever they run.

The suites' core (catalog, indexer, search, tagger, API) runs on both databases through the `db_url` and
`module_db_url` fixtures (tests/conftest.py); this file holds what compares the two or concerns a server
database alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.cli import main
from indexer.pipeline import index_paths
from search.engine import Engine, Hit
from search.query import Filters
from storage.catalog import Catalog
from storage.doctor import diagnose
from tests.planted import PlantedEncoder, tone, write
from tests.test_api import build_library

QUERIES = ["whistle", "engine idle", "chord chimes", "mains hum", "referee"]
FILTERS = [
    Filters(),
    Filters(folder="Whistle"),  # a folder name in other case: matched as SQLite always has
    Filters(formats=("flac",), min_duration_s=1.0),
    Filters(tags=("Bright",)),
]


def _build(home: Path, library: Path, db_url: str | None) -> Engine:
    catalog = Catalog.open(home, db_url=db_url)
    summary = index_paths(catalog, PlantedEncoder(), [library])
    assert (summary.added, summary.failed) == (8, 0)
    ids = {f.path.name: f.id for f in catalog.files()}
    catalog.set_tags("user", {ids["chord.wav"]: [("bright", 0.9)], ids["take_001.wav"]: [("bright", 0.4)]})
    return Engine(catalog, PlantedEncoder())


def _answers(hits: list[Hit]) -> list[tuple[str, float, float, float]]:
    return [(str(h.path), round(h.score, 5), h.start_s, h.end_s) for h in hits]


def test_one_library_gives_the_same_catalog_and_answers_on_sqlite_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    library = build_library(tmp_path / "lib")
    lite, pg = _build(tmp_path / "lite", library, None), _build(tmp_path / "pg", library, pg_url)
    try:
        files = [
            {(str(f.path), f.size, f.duration_s, f.format, f.status) for f in e.catalog.files()} for e in (lite, pg)
        ]
        assert files[0] == files[1]
        segments = []
        for e in (lite, pg):
            paths = {f.id: str(f.path) for f in e.catalog.files()}
            rows = e.catalog.segments()
            vectors = e.catalog.vectors([s.id for s in rows])
            segments.append({(paths[s.file_id], s.start_s, s.end_s): v for s, v in zip(rows, vectors, strict=True)})
        assert segments[0].keys() == segments[1].keys()
        for key, vector in segments[0].items():
            np.testing.assert_array_equal(segments[1][key], vector)
        for query in QUERIES:
            for mode in ("vector", "text", "hybrid"):
                for filters in FILTERS:
                    want = _answers(lite.search(query, k=10, mode=mode, filters=filters))
                    assert _answers(pg.search(query, k=10, mode=mode, filters=filters)) == want, (query, mode, filters)
        assert any(lite.search("whistle", k=10, mode="vector", filters=Filters(folder="Whistle")))
        groups = [[sorted(str(h.path) for h in g) for g in e.duplicates()] for e in (lite, pg)]
        assert groups[0] == groups[1] and groups[0]
    finally:
        lite.close()
        pg.close()


def test_folder_filters_take_underscores_and_percents_literally(tmp_path: Path, db_url: str | None) -> None:
    library = tmp_path / "lib"
    write(library / "a_b" / "one.wav", tone(6, 1.0))
    write(library / "axb" / "two.wav", tone(6, 1.0))
    write(library / "100%" / "three.wav", tone(6, 1.0))
    write(library / "100 percent" / "four.wav", tone(6, 1.0))
    with Catalog.open(tmp_path / "home", db_url=db_url) as catalog:
        index_paths(catalog, PlantedEncoder(), [library])
        engine = Engine(catalog, PlantedEncoder())
        found = {
            folder: sorted(h.path.name for h in engine.search("whistle", k=10, filters=Filters(folder=folder)))
            for folder in ("a_b", "100%", str(library / "a_b"))
        }
    assert found == {"a_b": ["one.wav"], "100%": ["three.wav"], str(library / "a_b"): ["one.wav"]}


def test_a_second_indexing_run_on_one_catalog_is_refused_saying_so(
    tmp_path: Path, db_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two indexers, each with a home folder of its own when the catalog is a server's database."""
    library = tmp_path / "lib"
    write(library / "a.wav", tone(3, 1.0))
    home = tmp_path / "home"
    other_home = home if db_url is None else tmp_path / "elsewhere"
    args = ["index", str(library), "--model", "tiny-random", *(["--db-url", db_url] if db_url else [])]
    with Catalog.open(home, db_url=db_url) as running, running.run_lock():
        assert main([*args, "--home", str(other_home)]) == 2
    err = capsys.readouterr().err
    where = f"catalog in {home}" if db_url is None else "catalog database postgresql+psycopg://"
    assert f"soundsearch: error: another indexing run is using the {where}" in err and "Traceback" not in err
    assert main([*args, "--home", str(other_home)]) == 0  # the lock ends with the run that held it
    with Catalog.open(home, db_url=db_url) as catalog:
        assert [f.path.name for f in catalog.files()] == ["a.wav"]


def test_doctor_checks_a_postgresql_catalog(tmp_path: Path, pg_url: str) -> None:
    library = tmp_path / "lib"
    write(library / "a.wav", tone(3, 1.0))
    with Catalog.open(tmp_path / "home", db_url=pg_url) as catalog:
        index_paths(catalog, PlantedEncoder(), [library])
    (tmp_path / "home" / "vectors.faiss").write_bytes(b"not an index")
    findings = {f.check: f for f in diagnose(tmp_path / "home", pg_url, repair=True)}
    assert "database" not in findings  # SQLite's file check only
    assert all(f.healthy for f in findings.values()), findings
    assert findings["vector index"].repaired
