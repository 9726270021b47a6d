"""The index chooser (sizes and budgets → kind, with a reason) and the catalog's background rebuild."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from indexer.settings import parse_bytes
from storage import index_choice
from storage.catalog import Catalog, vector_to_bytes
from storage.index_choice import IndexPolicy, choose_index, nlist_for
from storage.schema import FileRow, Root, SegmentRow

GB = 1_000_000_000


@pytest.mark.parametrize(
    ("n", "budget", "factory"),
    [
        (1_000, 4 * GB, "IDMap2,Flat"),
        (40_000, 4 * GB, "IDMap2,Flat"),  # a query scans 82 MB: exact is still fast enough
        (200_000, 4 * GB, "IDMap2,HNSW32"),
        (200_000, 300_000_000, "IVF2048,SQfp16"),  # HNSW and IVF,Flat (411 MB) do not fit
        (800_000, 4 * GB, "IVF4096,Flat"),
        (800_000, GB, "IVF4096,SQfp16"),
        (1_000_000, 4 * GB, "IVF4096,SQ8"),  # ≥ 1M: quantised
        (1_000_000, 600_000_000, "IVF4096,SQ8"),  # ≈ 528 bytes per vector
        (1_000_000, 200_000_000, "IVF4096,PQ128"),
        (10_000_000, 12 << 30, "IVF16384_HNSW32,SQ8"),
        (10_000_000, GB, "IVF16384_HNSW32,PQ64"),
    ],
)
def test_chooser_picks_by_size_and_budget(n: int, budget: int, factory: str) -> None:
    plan = choose_index(n, 512, budget)
    assert plan.factory == factory, plan.reason
    assert plan.fits and plan.estimated_bytes <= budget
    assert f"{n:,}" in plan.reason or f"IVF{plan.spec.nlist}" in plan.reason


def test_chooser_says_when_nothing_fits_and_scales_with_dim() -> None:
    plan = choose_index(10_000_000, 512, 10_000_000)
    assert not plan.fits and "EXCEEDED" in plan.reason and plan.kind == "ivf_pq"
    assert choose_index(100_000, 128, GB).kind == "flat"  # 51 MB per query at 128-d
    assert choose_index(100_000, 512, GB).kind == "hnsw"
    assert choose_index(0, 512).kind == "flat"
    assert [nlist_for(n) for n in (100, 10_000, 100_000, 1_000_000, 10_000_000)] == [2, 256, 1024, 4096, 16384]
    assert parse_bytes("600MB") == 600_000_000 and parse_bytes("12GiB") == 12 << 30 and parse_bytes("1.5G") == 1.5 * GB


def test_budget_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSEARCH_MAX_INDEX_MEMORY", "150MB")
    assert choose_index(1_000_000, 512).kind == "ivf_pq"
    monkeypatch.delenv("SOUNDSEARCH_MAX_INDEX_MEMORY")
    assert index_choice.default_memory_budget() > 0


# --- the catalog's background rebuild ---------------------------------------------------------------

DIM = 32


def _vectors(n: int, seed: int) -> np.ndarray:
    gen = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((32, DIM))
    x = centres[gen.integers(32, size=n)] + 0.6 * gen.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _add_segments(catalog: Catalog, vectors: np.ndarray, first_file: int) -> np.ndarray:
    """Insert one file per vector and its segment; returns the new segment ids (not added to FAISS)."""
    with catalog.session() as s:
        s.execute(
            insert(FileRow),
            [
                {
                    "id": first_file + i,
                    "root_id": 1,
                    "path": f"/lib/f{first_file + i}.wav",
                    "size": 1,
                    "mtime_ns": 1,
                    "status": "ok",
                    "duration_s": 10.0,
                }
                for i in range(len(vectors))
            ],
        )
        s.execute(
            insert(SegmentRow),
            [
                {"file_id": first_file + i, "start_s": 0.0, "end_s": 10.0, "vector": vector_to_bytes(v)}
                for i, v in enumerate(vectors)
            ],
        )
    with Session(catalog.engine) as s:
        return np.fromiter(
            s.scalars(select(SegmentRow.id).where(SegmentRow.file_id >= first_file).order_by(SegmentRow.id)), np.int64
        )


def test_background_rebuild_never_serves_a_half_built_index(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path)
    catalog.bind_model("m", DIM, 10.0, 5.0)
    # exact up to 1 000 vectors of 32-d, no HNSW: 3 000 vectors call for IVF
    catalog.index_policy = IndexPolicy(exact_max_bytes=1_000 * 4 * DIM, hnsw_max_vectors=0, tune_queries=100)
    with catalog.session() as s:
        s.add(Root(id=1, path="/lib"))
    first = _vectors(3000, 1)
    catalog.index.add(_add_segments(catalog, first, 1), first)
    queries = _vectors(20, 99)

    gate, searched = threading.Event(), threading.Event()
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            _scores, ids = catalog.index.search(queries, 10)
            if (ids < 0).any():
                failures.append(f"empty slots from {catalog.index.description}")
            served.append(catalog.index.kind)
            if len(served) >= 20:
                searched.set()

    def before_swap() -> None:
        assert searched.wait(30)  # readers were served by the old index while the new one was built
        # a writer commits and adds vectors while the rebuild is finishing (to the old index): none lost
        added = _vectors(30, 2)
        catalog.index.add(_add_segments(catalog, added, 100_000), added)
        # and commits more whose `add` comes only after the swap (see below)
        gate.late_ids = _add_segments(catalog, _vectors(20, 3), 200_000)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    plan = choose_index(3000, DIM, GB, catalog.index_policy)
    assert plan.kind == "ivf_flat"
    job = index_choice.Rebuild(catalog, plan, before_swap=before_swap).start()
    state = job.join(60)
    # the writer's add of ids it committed before the swap: caught up already, so skipped, not duplicated
    catalog.index.add(gate.late_ids, catalog.vectors(gate.late_ids))  # type: ignore[attr-defined]
    for _ in range(20):
        catalog.index.search(queries, 10)
    stop.set()
    for t in threads:
        t.join()
    assert job.error is None and state is not None
    assert not failures
    assert served[0] == "flat" and served[-1] == "ivf_flat"
    ids = catalog.index.ids()
    assert len(ids) == len(np.unique(ids)) == 3050 == catalog.status().segments
    late_ids = gate.late_ids  # type: ignore[attr-defined]
    assert catalog.index.search(catalog.vectors(late_ids[:5]), 1)[1][:, 0].tolist() == late_ids[:5].tolist()
    assert state.recall_at_10 >= 0.95 and state.param == "nprobe"

    status = catalog.status().to_dict()
    assert status["index_type"].startswith("IVF") and "nprobe=" in status["index_type"]
    assert status["index_recall_at_10"] == state.recall_at_10
    assert 0 < status["index_memory_bytes"] < 3050 * (4 * DIM + 8) + 64 * DIM * 4 * 2
    assert "IVF" in status["index_reason"]
    # approximate kinds still reconstruct exact vectors (from the database)
    np.testing.assert_allclose(catalog.index.reconstruct(late_ids[:3]), catalog.vectors(late_ids[:3]))
    catalog.close()

    # the swapped-in index was saved: a reader process opens the IVF index, complete
    with Catalog.open(tmp_path, writable=False) as reader_catalog:
        assert reader_catalog.index.kind == "ivf_flat" and reader_catalog.index.count() == 3050


def test_saving_a_grown_catalog_starts_the_rebuild(tmp_path: Path) -> None:
    with Catalog.open(tmp_path) as catalog:
        catalog.bind_model("m", DIM, 10.0, 5.0)
        catalog.index_policy = IndexPolicy(exact_max_bytes=500 * 4 * DIM, hnsw_max_vectors=0, tune_queries=50)
        with catalog.session() as s:
            s.add(Root(id=1, path="/lib"))
        small = _vectors(400, 3)
        catalog.index.add(_add_segments(catalog, small, 1), small)
        catalog.save_index()
        assert catalog.index_rebuild is None  # 400 vectors: exact is right
        more = _vectors(1600, 4)
        catalog.index.add(_add_segments(catalog, more, 1000), more)
        catalog.save_index()  # what the indexing pipeline does after each batch
        assert catalog.index_rebuild is not None
        catalog.index_rebuild.join(60)
        assert catalog.index.kind == "ivf_flat" and catalog.index.count() == 2000
        assert catalog.index_state() is not None
