"""One contract for every vector index kind (and the GPU searchers), plus what is particular to some kinds."""

from __future__ import annotations

import ast
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

import storage.vectors.ivf as ivf_module
from storage import index_file
from storage.index_choice import ExactNeighbours, measure_recall, tune
from storage.vectors import (
    INDEX_KINDS,
    FaissIndex,
    IndexSpec,
    create_index,
    factory_string,
    load_index,
    two_level_centroids,
)
from storage.vectors.pq import PQ_RERANK_FACTOR
from storage.vectors.torch_search import TorchExactSearch, faiss_gpu_usable

DIM = 32
N = 4000
FIRST_ID = 1000  # ids are not positions
# recall@10 vs exact on held-out queries after tuning to 0.95 on other queries
RECALL_FLOOR = {"flat": 1.0, "hnsw": 0.9, "ivf_flat": 0.9, "ivf_sqfp16": 0.9, "ivf_sq8": 0.88, "ivf_pq": 0.9}


def clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """Overlapping Gaussian clusters around `centres`, L2-normalised."""
    gen = np.random.default_rng(seed)
    x = centres[gen.integers(len(centres), size=n)] + 0.45 * gen.standard_normal((n, DIM)) / np.sqrt(DIM) * 4
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    gen = np.random.default_rng(0)
    centres = gen.standard_normal((64, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered(N, 1, centres)
    ids = np.arange(FIRST_ID, FIRST_ID + N, dtype=np.int64)
    tune_q, eval_q = clustered(100, 2, centres), clustered(200, 3, centres)
    truth = {}
    for name, q in (("tune", tune_q), ("eval", eval_q)):
        exact = ExactNeighbours(q, 10)
        exact.add(ids, vectors)
        truth[name] = exact.result()[1]
    return {
        "vectors": vectors,
        "ids": ids,
        "tune_q": tune_q,
        "eval_q": eval_q,
        **{f"truth_{k}": v for k, v in truth.items()},
    }


def build(kind: str, data: dict[str, np.ndarray], device: str | None = None, path: str | None = None) -> FaissIndex:
    vectors, ids = data["vectors"], data["ids"]
    index = create_index(DIM, IndexSpec(kind, nlist=64, pq_m=8))
    index.vector_source = lambda wanted: vectors[np.asarray(wanted) - FIRST_ID]
    index.train(vectors)
    accelerated(index, device, path)
    index.add(ids[: N // 2], vectors[: N // 2])
    index.add(ids[N // 2 :], vectors[N // 2 :])
    return index


needs_faiss_gpu = pytest.mark.skipif(not faiss_gpu_usable(), reason="no GPU build of FAISS and GPU here")
needs_torch_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or faiss_gpu_usable(), reason="no GPU here (or FAISS takes it)"
)
# Every kind on FAISS's CPU path; the torch searcher (on CPU tensors: the code that runs on a GPU, in fp32)
# in front of an exact, a graph and a quantised kind, and the same on a GPU where FAISS cannot use it;
# FAISS's own GPU indexes where there are some. `device` is what `accelerate` is given, `path` what it takes.
VARIANTS = [
    *[pytest.param(kind, None, None, id=kind) for kind in INDEX_KINDS],
    *[pytest.param(kind, "cpu", "torch", id=f"{kind}+torch") for kind in ("flat", "hnsw", "ivf_sq8")],
    *[
        pytest.param(kind, "cuda", "torch", id=f"{kind}+torch-gpu", marks=needs_torch_gpu)
        for kind in ("flat", "hnsw", "ivf_sq8")
    ],
    *[
        pytest.param(kind, "cuda", "faiss-gpu", id=f"{kind}+faiss-gpu", marks=needs_faiss_gpu)
        for kind in ("flat", "ivf_flat")
    ],
]
CONTRACT = ("kind", "device", "path")


def accelerated(index: FaissIndex, device: str | None, path: str | None) -> FaissIndex:
    if device is not None:
        assert index.accelerate(device) == path
    return index


@pytest.mark.parametrize(CONTRACT, VARIANTS)
def test_index_contract(
    kind: str, device: str | None, path: str | None, data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    vectors, ids = data["vectors"], data["ids"]
    index = build(kind, data, device, path)
    assert index.kind == kind and index.count() == N
    assert np.array_equal(np.sort(index.ids()), ids)

    # recall@10 against exact search, tuned on one held-out set, measured on another
    tuned = tune(index, data["tune_q"], data["truth_tune"], 0.95)
    assert tuned.recall_at_10 >= 0.95
    recall = measure_recall(index, data["eval_q"], data["truth_eval"])
    assert recall >= RECALL_FLOOR[kind], f"{index.description}: recall@10 {recall:.3f}"

    # a stored vector finds itself first, for one query (BLAS path) and for a batch; reconstruct by id
    _, found = index.search(vectors[:5], 3)
    assert found[:, 0].tolist() == ids[:5].tolist()
    _, found = index.search(vectors[7], 3)  # one query as a 1-d vector
    assert found.shape == (1, 3) and found[0, 0] == ids[7]
    np.testing.assert_allclose(index.reconstruct(ids[[7, 3]]), vectors[[7, 3]], atol=1e-6)

    # a kind that says its scores are exact gives each hit its true inner product (search by example
    # ranks by them without re-reading the vectors)
    scores, found = index.search(data["eval_q"][:10], 10)
    if index.exact_scores:
        valid = found >= 0
        true = np.einsum("qd,qkd->qk", data["eval_q"][:10], vectors[np.where(valid, found, FIRST_ID) - FIRST_ID])
        np.testing.assert_allclose(scores[valid], true[valid], atol=1e-4)

    # filters apply before top-k: k results whenever k are allowed, all of them allowed, exact order
    allowed = ids[::97]
    _scores, found = index.search(data["eval_q"][:10], 10, allowed_ids=allowed)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    expected = allowed[np.argsort(-(data["eval_q"][:10] @ vectors[allowed - FIRST_ID].T), axis=1)[:, :10]]
    assert (found == expected).mean() >= 0.95
    _, over = index.search(data["eval_q"][:2], 5, allowed_ids=allowed[:3])  # over-ask k
    assert (over >= 0).sum(axis=1).tolist() == [3, 3] and (over[:, 3:] == -1).all()
    _, none = index.search(data["eval_q"][:2], 5, allowed_ids=np.array([], dtype=np.int64))
    assert (none == -1).all()

    # remove: gone from counts, ids and results; removing what is gone removes nothing
    doomed = ids[:200]
    assert index.remove(doomed) == 200
    assert index.remove(doomed) == 0
    assert index.count() == N - 200
    _, found = index.search(vectors[:50], 10)
    assert not np.isin(found, doomed).any()
    assert found[:, 0].tolist() != ids[:50].tolist()

    # save/load: same kind, same ids, same answers
    index.save(tmp_path / "v.faiss")
    loaded = accelerated(load_index(tmp_path / "v.faiss", vector_source=index.vector_source), device, path)
    assert loaded.kind == kind and loaded.count() == N - 200
    assert np.array_equal(np.sort(loaded.ids()), ids[200:])
    assert loaded.search_param == index.search_param
    np.testing.assert_array_equal(loaded.search(data["eval_q"], 10)[1], index.search(data["eval_q"], 10)[1])
    loaded.add(ids[:10], vectors[:10])  # removed ids may come back
    assert loaded.count() == N - 190
    assert loaded.search(vectors[:1], 1)[1][0, 0] == ids[0]


@pytest.mark.parametrize(CONTRACT, VARIANTS)
def test_empty_index_answers_nothing_and_round_trips(
    kind: str, device: str | None, path: str | None, data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    index = create_index(DIM, IndexSpec(kind, nlist=64, pq_m=8))
    index.vector_source = lambda wanted: data["vectors"][np.asarray(wanted) - FIRST_ID]
    index.train(data["vectors"])
    accelerated(index, device, path)
    assert index.count() == 0 and len(index.ids()) == 0 and index.tombstones() == 0
    for allowed in (None, data["ids"][:5]):
        scores, found = index.search(data["eval_q"][:3], 4, allowed_ids=allowed)
        assert found.shape == scores.shape == (3, 4)
        assert (found == -1).all() and np.isneginf(scores).all()
    assert index.reconstruct(np.array([], dtype=np.int64)).shape == (0, DIM)
    index.save(tmp_path / "empty.faiss")
    loaded = load_index(tmp_path / "empty.faiss", kind)
    assert loaded.kind == kind and loaded.count() == 0
    loaded.add(data["ids"][:3], data["vectors"][:3])
    assert loaded.search(data["vectors"][1], 1)[1][0, 0] == data["ids"][1]


@pytest.mark.parametrize(CONTRACT, VARIANTS)
def test_ids_are_labels_not_positions(
    kind: str, device: str | None, path: str | None, data: dict[str, np.ndarray]
) -> None:
    """Sparse, shuffled, 64-bit ids come back as given; k beyond the vectors pads with -1."""
    gen = np.random.default_rng(9)
    vectors = data["vectors"][:300]
    labels = (gen.permutation(10**6)[:300] * 10**6 + 7).astype(np.int64)  # up to ~10^12
    index = create_index(DIM, IndexSpec(kind, nlist=8, pq_m=8))
    by_label = dict(zip(labels.tolist(), range(300), strict=True))
    index.vector_source = lambda wanted: vectors[[by_label[int(i)] for i in wanted]]
    index.train(data["vectors"])
    accelerated(index, device, path)
    index.add(labels, vectors)
    assert np.array_equal(np.sort(index.ids()), np.sort(labels))
    index.set_search_param(index.nlist or 512)  # every list, a wide graph search: ids under test, not recall
    _, found = index.search(vectors[:20], 1)
    assert found[:, 0].tolist() == labels[:20].tolist()
    np.testing.assert_allclose(index.reconstruct(labels[[5, 2]]), vectors[[5, 2]], atol=1e-6)
    _, few = index.search(vectors[:2], 400)
    assert ((few >= 0).sum(axis=1) == 300).all() and (few[:, 300:] == -1).all()


@pytest.mark.parametrize(CONTRACT, VARIANTS)
def test_wrong_dimension_is_refused(
    kind: str, device: str | None, path: str | None, data: dict[str, np.ndarray]
) -> None:
    index = build(kind, data, device, path)
    with pytest.raises(ValueError, match=f"expected vectors of shape \\(2, {DIM}\\)"):
        index.add(data["ids"][:2], np.ones((2, DIM + 1), np.float32))
    for queries in (np.ones((2, DIM + 1), np.float32), np.ones(DIM - 1, np.float32)):
        with pytest.raises(ValueError, match=f"dimension {DIM}"):
            index.search(queries, 3)
        with pytest.raises(ValueError, match=f"dimension {DIM}"):
            index.search(queries, 3, allowed_ids=data["ids"][:10])
    assert index.count() == N  # nothing lost


# How the single-class `FaissIndex` (before the split into kinds) built each kind: FAISS factory strings, HNSW
# with efSearch 64 and tombstones as -1 in its id map, IVF with 10 k-means iterations, PQ without polysemous
# training; saved as FAISS's bytes followed by the catalog's trailer.
OLD_FACTORIES = {
    "flat": "IDMap2,Flat",
    "hnsw": "IDMap2,HNSW32",
    "ivf_flat": "IVF16,Flat",
    "ivf_sqfp16": "IVF16,SQfp16",
    "ivf_sq8": "IVF64_HNSW32,SQ8",
    "ivf_pq": "IVF16,PQ8",
}


def write_like_the_old_class(kind: str, data: dict[str, np.ndarray], path: Path) -> tuple[object, np.ndarray]:
    """A file as the old code wrote it, with plain FAISS; returns the FAISS index and the ids it holds."""
    vectors, ids = data["vectors"], data["ids"]
    index = faiss.index_factory(DIM, OLD_FACTORIES[kind], faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = 64
    if kind.startswith("ivf"):
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10
        if kind == "ivf_pq":
            faiss.downcast_index(ivf).do_polysemous_training = False
        index.train(vectors)
        ivf.nprobe = 4
    index.add_with_ids(vectors, ids)
    held = ids
    if kind == "hnsw":  # the old removal: tombstones
        id_map = faiss.vector_to_array(index.id_map)
        id_map[:50] = -1
        faiss.copy_array_to_vector(id_map, index.id_map)
        index.construct_rev_map()
        held = ids[50:]
    else:
        index.remove_ids(ids[:50])
        held = ids[50:]
    identity = index_file.IndexIdentity("catalog-1", "model-1", DIM, index_file.ids_checksum(held))
    faiss.write_index(index, str(path))
    with open(path, "ab") as f:
        f.write(identity.trailer())
    return index, held


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_files_written_by_the_old_single_class_load(kind: str, data: dict[str, np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / "old.faiss"
    old, held = write_like_the_old_class(kind, data, path)
    index = load_index(path, kind)
    assert index.kind == kind and index.count() == len(held)
    assert np.array_equal(np.sort(index.ids()), held)
    # the catalog's identity check accepts it: same trailer, same ids
    expected = index_file.IndexIdentity("catalog-1", "model-1", DIM, index_file.ids_checksum(index.ids()))
    assert index_file.mismatch(index_file.read_identity(path), expected) is None
    queries = data["eval_q"][:20]
    _, found = index.search(queries, 10)
    if kind == "hnsw":
        assert index.tombstones() == 50 and not np.isin(found, data["ids"][:50]).any()
    else:  # exactly what FAISS answers with the saved search parameters
        np.testing.assert_array_equal(found, old.search(queries, 10)[1])  # type: ignore[attr-defined]
    assert index.search(data["vectors"][60:65], 1)[1][:, 0].tolist() == data["ids"][60:65].tolist()
    assert factory_string(IndexSpec(kind, nlist=16, pq_m=8)) == OLD_FACTORIES[kind].replace("64_HNSW32", "16")


def test_index_save_replaces_atomically_and_keeps_the_file_mode(data: dict[str, np.ndarray], tmp_path: Path) -> None:
    """Saving goes through `storage.atomic`: a failed save leaves the old file whole, a good one keeps its mode."""
    path = tmp_path / "v.faiss"
    index = build("flat", data)
    index.save(path, b"trailer-1")
    path.chmod(0o644)  # as a user made it readable to a server running as someone else
    before = path.read_bytes()
    index.remove(data["ids"][:10])
    with pytest.raises(TypeError):
        index.save(path, "not bytes")  # type: ignore[arg-type]  # fails after FAISS wrote its part
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["v.faiss"]
    index.save(path, b"trailer-2")
    assert path.stat().st_mode & 0o777 == 0o644
    assert load_index(path).count() == N - 10 and path.read_bytes().endswith(b"trailer-2")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules a file imports, at any level (type-checking and function-level imports included);
    `from package import submodule` is an import of the submodule, not of the package."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules = names & modules
            out.update(submodules)
            if names - submodules:
                out.add(node.module)
    return out


def test_no_import_cycle_through_the_vector_indexes() -> None:
    """No storage module imports a module that imports it back, where a vector-index module is on the loop."""
    root = Path(__file__).resolve().parents[1]
    modules = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (root / "storage").rglob("*.py")
    }
    graph = {
        name: {m for m in _imports(path, set(modules)) if m in modules and m != name} for name, path in modules.items()
    }

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        return False

    loops = [(a, b) for a in graph for b in graph[a] if "vectors" in a + b and reaches(b, a)]
    assert not loops, f"import cycles: {loops}"


def test_approximate_kinds_trade_recall_for_speed(data: dict[str, np.ndarray]) -> None:
    """The tuning is not vacuous: the cheapest setting misses neighbours the tuned one finds."""
    index = build("ivf_flat", data)
    index.set_search_param(1)
    low = measure_recall(index, data["eval_q"], data["truth_eval"])
    tuned = tune(index, data["tune_q"], data["truth_tune"], 0.95)
    assert low < 0.9 and tuned.value is not None and tuned.value > 1
    assert measure_recall(index, data["eval_q"], data["truth_eval"]) > low + 0.05


def test_many_lists_train_by_two_level_kmeans(data: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """Large nlist trains its lists in two levels and keeps the contract's recall."""
    calls: list[int] = []

    def spy(sample: np.ndarray, nlist: int) -> np.ndarray:
        calls.append(nlist)
        return two_level_centroids(sample, nlist)

    monkeypatch.setattr(ivf_module, "TWO_LEVEL_MIN_NLIST", 64)
    monkeypatch.setattr(ivf_module, "two_level_centroids", spy)
    index = build("ivf_flat", data)
    assert calls == [64]
    assert tune(index, data["tune_q"], data["truth_tune"], 0.95).recall_at_10 >= 0.95
    assert measure_recall(index, data["eval_q"], data["truth_eval"]) >= RECALL_FLOOR["ivf_flat"]


def test_two_level_centroids_give_every_list_even_with_outliers() -> None:
    gen = np.random.default_rng(5)
    x = np.vstack([gen.standard_normal((3000, DIM)), 40 + gen.standard_normal((3, DIM))]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    centroids = two_level_centroids(x, 256)
    assert centroids.shape == (256, DIM)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    assert two_level_centroids(x[:300], 300).shape == (300, DIM)  # one list per point
    with pytest.raises(ValueError, match="at least 301 training vectors"):
        two_level_centroids(x[:300], 301)


def test_hnsw_tombstones_survive_save_and_load(data: dict[str, np.ndarray], tmp_path: Path) -> None:
    index = build("hnsw", data)
    index.remove(data["ids"][:100])
    index.save(tmp_path / "h.faiss")
    loaded = load_index(tmp_path / "h.faiss")
    assert loaded.tombstones() == 100 and loaded.count() == N - 100
    _, found = loaded.search(data["vectors"][:100], 10)
    assert not np.isin(found, data["ids"][:100]).any()


def test_unknown_kind_and_untrained_add_are_refused(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="unknown index type"):
        create_index(DIM, "annoy")
    index = create_index(DIM, IndexSpec("ivf_sq8", nlist=8))
    with pytest.raises(ValueError, match="not trained"):
        index.add(data["ids"][:2], data["vectors"][:2])


# --- torch exact search (the GPU path) against FAISS -------------------------------------------


def faiss_exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)


def test_torch_search_equals_faiss_exact_search() -> None:
    gen = np.random.default_rng(5)
    vectors = gen.standard_normal((3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[gen.integers(3000, size=40)] + 0.1 * gen.standard_normal((40, 64)).astype(np.float32)
    ids = gen.permutation(10_000)[:3000].astype(np.int64) + 7
    want_s, want_pos = faiss_exact(vectors, queries, 10)

    # fp32 on CPU tensors, in chunks smaller than the data (merging top-k across chunks)
    search = TorchExactSearch(vectors, ids, device="cpu", chunk_rows=700)
    scores, found = search.search(queries, 10)
    np.testing.assert_array_equal(found, ids[want_pos])
    np.testing.assert_allclose(scores, want_s, atol=1e-5)

    # bf16 pass + fp32 re-scoring of the candidates (what runs on a GPU): the same answer
    reduced = TorchExactSearch(vectors, ids, device="cpu", dtype=torch.bfloat16, chunk_rows=1000)
    scores, found = reduced.search(queries, 10)
    np.testing.assert_array_equal(found, ids[want_pos])
    np.testing.assert_allclose(scores, want_s, atol=1e-5)

    # filtered: exact among the allowed ids only; over-asking pads with -1
    allowed = ids[::7]
    rows = np.nonzero(np.isin(ids, allowed))[0]
    _sub_s, sub_pos = faiss_exact(vectors[rows], queries, 10)
    scores, found = search.search(queries, 10, allowed_ids=allowed)
    np.testing.assert_array_equal(found, ids[rows][sub_pos])
    _, few = search.search(queries[:1], 5, allowed_ids=ids[:2])
    assert sorted(few[0, :2].tolist()) == sorted(ids[:2].tolist()) and few[0, 2:].tolist() == [-1, -1, -1]


def test_accelerated_index_answers_like_the_cpu_index(data: dict[str, np.ndarray]) -> None:
    """`accelerate("cpu")` runs the GPU code path (torch mirror) on CPU tensors: same results."""
    plain = build("flat", data)
    fast = build("flat", data)
    assert fast.accelerate("cpu") == "torch"
    q = data["eval_q"]
    np.testing.assert_array_equal(fast.search(q, 10)[1], plain.search(q, 10)[1])
    allowed = data["ids"][::13]
    np.testing.assert_array_equal(fast.search(q, 10, allowed)[1], plain.search(q, 10, allowed)[1])
    fast.remove(data["ids"][:50])  # the mirror follows changes
    plain.remove(data["ids"][:50])
    np.testing.assert_array_equal(fast.search(q, 10)[1], plain.search(q, 10)[1])
    # an approximate index on the torch path searches exactly, from its vector source
    approx = build("ivf_sq8", data)
    approx.set_search_param(1)
    assert approx.accelerate("cpu") == "torch"
    np.testing.assert_array_equal(approx.search(q, 10)[1], data["truth_eval"])


def test_acceleration_can_wait_for_the_first_search(data: dict[str, np.ndarray]) -> None:
    """The catalog defers the GPU choice (it imports torch) to the first search: `status` never pays for it."""
    plain = build("flat", data)
    lazy = build("flat", data)
    lazy.accelerate_at_first_search("cpu")
    assert lazy._accel_mode is None and lazy.count() == plain.count()  # nothing chosen yet
    q = data["eval_q"]
    np.testing.assert_array_equal(lazy.search(q, 10)[1], plain.search(q, 10)[1])
    assert lazy._accel_mode == "torch"


def test_flat_single_query_scan_equals_faiss_search() -> None:
    """Few-query exact searches run as one BLAS product over FAISS's storage: same ids and scores."""
    gen = np.random.default_rng(3)
    vectors = gen.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = create_index(32)
    index.add(np.arange(5000, 8000), vectors)
    index.remove(np.arange(5000, 8000, 7))  # compaction moves rows: ids must follow their vectors
    for k in (1, 10, 3000):
        queries = vectors[:3] + 0.05 * gen.standard_normal((3, 32)).astype(np.float32)
        fast_scores, fast_ids = index.search(queries, k)
        faiss_scores, faiss_ids = index.backend.index.search(queries, k)  # FAISS's own scan
        np.testing.assert_array_equal(fast_ids, faiss_ids)
        found = fast_ids >= 0  # k beyond the vectors: id -1 on both sides, -inf here
        np.testing.assert_allclose(fast_scores[found], faiss_scores[found], atol=1e-5)
        assert np.all(np.isneginf(fast_scores[~found]))


def test_pq_tuning_lengthens_the_short_list_when_probing_stalls(data: dict[str, np.ndarray]) -> None:
    """Two 8-bit sub-quantizers of 16 dims blur a neighbourhood: 10× k candidates cannot reach 0.95."""
    vectors, ids = data["vectors"], data["ids"]
    index = create_index(DIM, IndexSpec("ivf_pq", nlist=16, pq_m=2))
    index.vector_source = lambda wanted: vectors[np.asarray(wanted) - FIRST_ID]
    index.train(vectors)
    index.add(ids, vectors)
    index.set_search_param(16)
    assert measure_recall(index, data["tune_q"], data["truth_tune"]) < 0.95  # every list, default short list
    tuned = tune(index, data["tune_q"], data["truth_tune"], 0.95)
    assert tuned.rerank_factor is not None and tuned.rerank_factor > PQ_RERANK_FACTOR
    assert tuned.recall_at_10 >= 0.95 and index.rerank_factor == tuned.rerank_factor
    assert f"re-ranked×{tuned.rerank_factor}" in index.description


def test_tuned_short_list_is_restored_with_the_catalog_state(data: dict[str, np.ndarray]) -> None:
    from storage.index_choice import IndexState, restore_tuning

    index = create_index(DIM, IndexSpec("ivf_pq", nlist=16, pq_m=2))
    state = IndexState("ivf_pq", "IVF16,PQ2", N, 16, "nprobe", 4, 0.96, 0.95, "test", 1.0, rerank_factor=40)
    restore_tuning(index, IndexState.from_json(state.to_json()))
    assert index.rerank_factor == 40
    restore_tuning(index, IndexState.from_json(state.to_json().replace('"ivf_pq"', '"ivf_sq8"', 1)))
    assert index.rerank_factor == 40  # a state recorded for another kind is not applied
    other = create_index(DIM, IndexSpec("ivf_pq", nlist=16, pq_m=2))
    restore_tuning(other, IndexState.from_json(state.to_json().replace('"ivf_pq"', '"ivf_sq8"', 1)))
    assert other.rerank_factor == PQ_RERANK_FACTOR


def test_hnsw_coarse_quantizer_returns_every_list_it_is_asked_for() -> None:
    gen = np.random.default_rng(3)
    x = gen.standard_normal((41_000, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = create_index(DIM, IndexSpec("ivf_flat", nlist=1024, hnsw_quantizer=True))
    index.train(x)
    index.add(np.arange(len(x), dtype=np.int64), x)
    assert "_HNSW" in index.description
    ivf = index.backend
    params = ivf._params(nprobe=1024)  # type: ignore[attr-defined]
    _, lists = ivf.ivf.quantizer.search(x[:20], 1024, params=params.quantizer_params)  # type: ignore[attr-defined]
    assert (lists >= 0).all()  # with the graph's own efSearch (16) it returned about 830 of 1024
