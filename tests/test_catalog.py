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


def test_file_vectors_pool_every_stored_segment_even_ahead_of_the_index(tmp_path: Path) -> None:
    """One read of per-file vectors for every caller (search by example, duplicates, tagger, zero-shot):
    the renormalised mean of the file's stored segment vectors, also for segments another handle committed
    after this one loaded its index; failed files and unknown ids are left out."""
    from storage.writer import FileFacts, ensure_roots, writes

    def facts(root_id: int, name: str, status: str = "ok") -> FileFacts:
        return FileFacts(root_id, f"/lib/{name}", 1, 1, name, status, None, 1.0, 8000, 1, "WAV", None, None, name)

    def unit(*v: float) -> np.ndarray:
        x = np.array(v, dtype=np.float32)
        return x / np.linalg.norm(x)

    with Catalog.open(tmp_path) as reader, Catalog.open(tmp_path) as writer:
        writer.bind_model("m", 3, 10.0, 5.0)
        (root,) = ensure_roots(writer, ["/lib"])
        with writes(writer) as w:
            a = w.put_file(None, facts(root, "a.wav"), [(0.0, 10.0), (5.0, 15.0)], [unit(1, 0, 0), unit(0, 1, 0)])
            w.put_file(None, facts(root, "bad.wav", "failed"), (), ())
        assert reader.vector_count() == 2  # loaded now
        with writes(writer) as w:
            b = w.put_file(None, facts(root, "b.wav"), [(0.0, 10.0)], [unit(0, 0, 1)])
        ids, vectors = reader.file_vectors()
        assert ids.tolist() == [a, b]
        np.testing.assert_allclose(vectors, [unit(1, 1, 0), unit(0, 0, 1)], atol=1e-6)
        assert reader.file_vectors([b, 999])[0].tolist() == [b]
        np.testing.assert_allclose(reader.segment_vectors(writer.segment_ids()), writer.vectors(writer.segment_ids()))
