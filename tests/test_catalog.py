from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storage.catalog import Catalog, CatalogError
from storage.vectors import create_index, load_index


def test_model_binding_is_checked(tmp_path: Path, db_url: str | None) -> None:
    with Catalog.open(tmp_path, db_url=db_url) as catalog:
        catalog.bind_model("model-a", 8, 10.0, 5.0)
        catalog.bind_model("model-a", 8, 10.0, 5.0)
        with pytest.raises(CatalogError, match="model-a"):
            catalog.bind_model("model-b", 8, 10.0, 5.0)


def test_flat_index_contract(tmp_path: Path) -> None:
    gen = np.random.default_rng(0)
    vecs = gen.standard_normal((50, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(100, 150, dtype=np.int64)
    index = create_index(8)
    index.add(ids, vecs)
    scores, found = index.search(vecs[:3], 1)
    assert found[:, 0].tolist() == [100, 101, 102] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert index.remove(np.array([100, 101, 999])) == 2 and index.count() == 48
    index.save(tmp_path / "v.faiss")
    loaded = load_index(tmp_path / "v.faiss")
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())
    scores, found = loaded.search(vecs[2:3], 200)  # over-asking k pads with -1
    assert found[0, 0] == 102 and (found[0, 48:] == -1).all()
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"
    with pytest.raises(ValueError, match="shape"):
        index.add(np.array([1]), vecs[:2])


def test_corrupt_index_file_is_rebuilt_from_the_database(tmp_path: Path, db_url: str | None) -> None:
    from storage.catalog import vector_to_bytes
    from storage.schema import FileRow, Root, SegmentRow

    with Catalog.open(tmp_path, db_url=db_url) as catalog:
        catalog.bind_model("m", 4, 10.0, 5.0)
        with catalog.session() as s:
            root = Root(path="/lib")
            s.add(root)
            s.flush()
            f = FileRow(root_id=root.id, path="/lib/a.wav", size=1, mtime_ns=1, status="ok")
            s.add(f)
            s.flush()
            s.add(SegmentRow(file_id=f.id, start_s=0, end_s=1, vector=vector_to_bytes(np.ones(4) / 2)))
        catalog.save_index()
    (tmp_path / "vectors.faiss").write_bytes(b"garbage")
    with Catalog.open(tmp_path, db_url=db_url) as catalog:
        assert catalog.index.count() == 1
        hits = catalog.search_vectors(np.ones(4, dtype=np.float32) / 2, 5)
        assert len(hits) == 1 and hits[0][1] == pytest.approx(1.0)
