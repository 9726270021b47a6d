"""Which vector index to build for a catalog of a given size, how to tune it, and rebuilding it in the background.

`choose_index(n, dim, max_memory_bytes)` is a pure function returning an `IndexPlan` with a reason a
person can read. The rules (after autofaiss's `get_optimal_index_keys_v2`, adapted to a CPU-first tool
that must also serve filtered queries):

1. **Exact** (`IDMap2,Flat`) while a query scans at most `exact_max_bytes` (100 MB: ≈ 49 000 vectors of
   512-d, ≈ 4 ms per query on a 2-core CPU) and it fits the budget.
2. **HNSW** (`IDMap2,HNSW32`) up to `hnsw_max_vectors` (500 000) when its ≈ 2.4 KB/vector fit: the fastest
   queries, but the graph is slow to build on a CPU and cannot delete (tombstones until a rebuild).
3. **IVF** with `nlist = 2^round(log2(4·√n))` lists (an HNSW coarse quantizer from 16 384 lists), trained
   on a random sample of `max(50·nlist, 10 000)` rows, storing, by preference, what fits the budget:
   `Flat` (below `ivf_flat_max_vectors` = 1 000 000), `SQfp16` (same size limit), `SQ8`, then `PQ{m}` with
   the largest m that fits (re-ranked with exact vectors read from the database).
   If nothing fits, the smallest PQ is planned and the reason says the budget is exceeded.

The memory budget is `max_memory_bytes`, else `$SOUNDSEARCH_MAX_INDEX_MEMORY` ("600MB", "12GiB"), else a
quarter of the machine's RAM.

`tune(index, queries, truth, recall_target)` sets `nprobe` (IVF) or `efSearch` (HNSW) to the smallest value
whose recall@10 against exact search on held-out queries reaches the target (doubling, then bisection,
as autofaiss does), and returns the recall measured. For PQ it also lengthens the short list re-ranked
with exact vectors when probing more lists stops helping (recorded in the catalog's settings).

`Catalog.maybe_rebuild_index()` (called after each index save) starts a background `Rebuild` when
`plan_rebuild` finds that the plan for the catalog's current size differs from the index it has (a new
kind, an IVF whose `nlist` is 4× off, an HNSW with > 20 % tombstones). The thread builds the new index from
the database's vectors while the old one keeps serving; then the catalog (the rebuild's `IndexHost`)
catches it up with the database and swaps it in under the index's lock (`FaissIndex.replace_with`), the
file is saved atomically, and the plan with its measured recall@10 is recorded in the catalog's settings
(`soundsearch status` shows it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import faiss
import numpy as np

from indexer.settings import settings
from indexer.types import FloatArray
from storage.vectors import FaissIndex, IdArray, IndexSpec, create_index, estimated_bytes, factory_string

log = logging.getLogger(__name__)

SETTING_KEY = "index_plan"
BUDGET_SETTING_KEY = "max_index_memory"
RECALL_K = 10
MAX_RERANK_FACTOR = 160  # PQ short list: at most 1 600 exact vectors read per query at k = 10


@dataclass(frozen=True)
class IndexPolicy:
    max_memory_bytes: int | None = None  # None: $SOUNDSEARCH_MAX_INDEX_MEMORY, else RAM / 4
    recall_target: float = 0.95
    exact_max_bytes: int = 100_000_000  # flat while one query scans at most this much
    hnsw_max_vectors: int = 500_000
    ivf_flat_max_vectors: int = 1_000_000
    hnsw_quantizer_min_nlist: int = 16_384
    tune_queries: int = 200
    retrain_factor: float = 4.0  # rebuild an IVF index when its ideal nlist moves this far
    max_tombstone_share: float = 0.2


@dataclass(frozen=True)
class IndexPlan:
    spec: IndexSpec
    n_vectors: int
    dim: int
    estimated_bytes: int
    budget_bytes: int
    fits: bool
    train_size: int
    reason: str

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def factory(self) -> str:
        return factory_string(self.spec)


@dataclass(frozen=True)
class TuneResult:
    param: str | None  # "nprobe", "efSearch" or None (exact)
    value: int | None
    recall_at_10: float
    tried: tuple[tuple[int, float], ...] = ()
    rerank_factor: int | None = None  # PQ re-ranked from exact vectors: candidates per result


@dataclass(frozen=True)
class IndexState:
    """What the catalog records about its index (settings key `index_plan`)."""

    kind: str
    factory: str
    n_vectors: int
    nlist: int
    param: str | None
    param_value: int | None
    recall_at_10: float
    recall_target: float
    reason: str
    build_s: float
    built_at: float = field(default_factory=time.time)
    rerank_factor: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> IndexState | None:
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


# --- the chooser -------------------------------------------------------------------------------------


def default_memory_budget() -> int:
    if budget := settings().max_index_memory:
        return budget
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 4
    except (ValueError, OSError):
        return 4 << 30


def nlist_for(n_vectors: int) -> int:
    """2^round(log2(4·√n)), at most n/39 (FAISS wants ≥ 39 training points per list)."""
    if n_vectors < 2:
        return 1
    ideal = 2 ** round(math.log2(4 * math.sqrt(n_vectors)))
    cap = max(1, n_vectors // 39)
    return int(max(1, min(ideal, 2 ** int(math.log2(cap)))))


def choose_index(
    n_vectors: int, dim: int, max_memory_bytes: int | None = None, policy: IndexPolicy | None = None
) -> IndexPlan:
    """The index for `n_vectors` of `dim` within the memory budget, with the reason for the choice."""
    policy = policy or IndexPolicy()
    budget = max_memory_bytes or policy.max_memory_bytes or default_memory_budget()
    n = max(0, int(n_vectors))

    def plan(spec: IndexSpec, why: str, *, fits: bool = True) -> IndexPlan:
        size = int(estimated_bytes(spec, dim, n))
        train = 0
        if spec.kind.startswith("ivf"):
            train = min(n, max(50 * spec.nlist, 10_000 if spec.kind == "ivf_pq" else 0))
        budget_note = f"budget {_human(budget)}" + ("" if fits else " EXCEEDED")
        return IndexPlan(spec, n, dim, size, budget, fits, train, f"{why} (≈{_human(size)}, {budget_note})")

    def size_of(spec: IndexSpec) -> float:
        return estimated_bytes(spec, dim, n)

    flat = IndexSpec("flat")
    scan = n * 4 * dim
    if scan <= policy.exact_max_bytes and size_of(flat) <= budget:
        return plan(
            flat, f"exact search: {n:,} vectors, a query scans {_human(scan)} (≤ {_human(policy.exact_max_bytes)})"
        )
    hnsw = IndexSpec("hnsw", hnsw_m=32)
    if n <= policy.hnsw_max_vectors and size_of(hnsw) <= budget:
        return plan(hnsw, f"HNSW32: {n:,} vectors ≤ {policy.hnsw_max_vectors:,}, too many for exact search, graph fits")
    nlist = nlist_for(n)
    hq = nlist >= policy.hnsw_quantizer_min_nlist
    base = IndexSpec("ivf_flat", nlist=nlist, hnsw_quantizer=hq)
    lists = f"IVF{nlist} ({'HNSW' if hq else 'flat'} coarse quantizer, ≈{n // max(nlist, 1):,} vectors per list)"
    options: list[tuple[IndexSpec, str]] = []
    if n < policy.ivf_flat_max_vectors:
        options.append((base, "exact vectors in the lists"))
        options.append((replace(base, kind="ivf_sqfp16"), "fp16 codes: IVF,Flat does not fit"))
    options.append(
        (
            replace(base, kind="ivf_sq8"),
            "8-bit scalar codes"
            + (
                ": larger codes do not fit"
                if n < policy.ivf_flat_max_vectors
                else f": {n:,} ≥ {policy.ivf_flat_max_vectors:,} vectors, quantised"
            ),
        )
    )
    pq_ms = [m for m in (128, 96, 64, 48, 32, 16, 8) if dim % m == 0 and m < dim]
    for m in pq_ms:
        options.append(
            (replace(base, kind="ivf_pq", pq_m=m), f"PQ{m} codes re-ranked with exact vectors: SQ8 does not fit")
        )
    for spec, why in options:
        if size_of(spec) <= budget:
            return plan(spec, f"{lists}, {why}")
    smallest = options[-1][0]
    return plan(smallest, f"{lists}, smallest codes: nothing fits the budget", fits=False)


def _human(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n_bytes) < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} TB"


# --- building, ground truth and tuning ------------------------------------------------------------


def build_index(
    plan: IndexPlan,
    train_sample: FloatArray | None,
    chunks: Iterable[tuple[IdArray, FloatArray]],
    *,
    centroids: FloatArray | None = None,
) -> FaissIndex:
    """Create the planned index, train it (IVF kinds), and add every chunk of (ids, vectors)."""
    index = create_index(plan.dim, plan.spec)
    if not index.is_trained:
        if train_sample is None or len(train_sample) == 0:
            raise ValueError(f"{plan.factory} needs a training sample")
        index.train(train_sample, centroids=centroids)
    for ids, vectors in chunks:
        index.add(ids, vectors)
    return index


class ExactNeighbours:
    """Exact top-k inner-product neighbours of fixed queries, accumulated over chunks of the data."""

    def __init__(self, queries: FloatArray, k: int) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        self.heap = faiss.ResultHeap(len(queries), k, keep_max=True)

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        if len(ids) == 0:
            return
        kk = min(self.k, len(ids))
        scores, pos = faiss.knn(
            self.queries, np.ascontiguousarray(vectors, dtype=np.float32), kk, metric=faiss.METRIC_INNER_PRODUCT
        )
        found = np.where(pos >= 0, np.asarray(ids, dtype=np.int64)[np.maximum(pos, 0)], -1)
        if kk < self.k:
            pad = self.k - kk
            scores = np.hstack([scores, np.full((len(scores), pad), -np.inf, np.float32)])
            found = np.hstack([found, np.full((len(found), pad), -1, np.int64)])
        self.heap.add_result(np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(found))

    def result(self) -> tuple[FloatArray, IdArray]:
        self.heap.finalize()
        return self.heap.D.copy(), self.heap.I.copy()


def recall_at_k(found: IdArray, truth: IdArray, k: int = RECALL_K, exclude: IdArray | None = None) -> float:
    """Mean |found@k ∩ truth@k| / |truth@k|; `exclude[i]` (the query's own id) is dropped from both."""
    total = 0.0
    rows = 0
    for i in range(len(truth)):
        t = [x for x in truth[i] if x >= 0 and (exclude is None or x != exclude[i])][:k]
        f = [x for x in found[i] if x >= 0 and (exclude is None or x != exclude[i])][:k]
        if t:
            total += len(set(t) & set(f)) / len(t)
            rows += 1
    return total / rows if rows else 1.0


def measure_recall(
    index: FaissIndex, queries: FloatArray, truth: IdArray, exclude: IdArray | None = None, k: int = RECALL_K
) -> float:
    _, found = index.search(queries, k + (1 if exclude is not None else 0))
    return recall_at_k(found, truth, k, exclude)


def tune(
    index: FaissIndex,
    queries: FloatArray,
    truth: IdArray,
    recall_target: float = 0.95,
    *,
    exclude: IdArray | None = None,
    k: int = RECALL_K,
) -> TuneResult:
    """Smallest nprobe/efSearch reaching `recall_target` (recall@k vs `truth`); sets it on the index.

    A PQ index re-ranked from exact vectors can stall below the target however many lists it probes,
    when its codes cannot tell the true neighbours from the rest of a dense neighbourhood: then the
    re-ranked short list doubles (up to `MAX_RERANK_FACTOR` × k) and nprobe is tuned again.
    """
    result = _tune_knob(index, queries, truth, recall_target, exclude, k)
    if index.reranks:
        while result.recall_at_10 < recall_target and index.rerank_factor < MAX_RERANK_FACTOR:
            index.rerank_factor = min(MAX_RERANK_FACTOR, index.rerank_factor * 2)
            result = _tune_knob(index, queries, truth, recall_target, exclude, k)
        result = replace(result, rerank_factor=index.rerank_factor)
    return result


def _tune_knob(
    index: FaissIndex, queries: FloatArray, truth: IdArray, recall_target: float, exclude: IdArray | None, k: int
) -> TuneResult:
    knob = index.search_param
    if knob is None:
        return TuneResult(None, None, measure_recall(index, queries, truth, exclude, k))
    name, _ = knob
    upper = index.nlist if name == "nprobe" else 4096
    lower_start = 1 if name == "nprobe" else max(16, k)
    tried: dict[int, float] = {}

    def recall(value: int) -> float:
        if value not in tried:
            index.set_search_param(value)
            tried[value] = measure_recall(index, queries, truth, exclude, k)
        return tried[value]

    value, prev = lower_start, lower_start
    while recall(value) < recall_target and value < upper:
        prev, value = value, min(upper, value * 2)
    if recall(value) >= recall_target:
        lo, hi = prev, value  # recall(lo) < target (or lo == hi), recall(hi) >= target
        while hi - lo > max(1, lo // 8):
            mid = (lo + hi) // 2
            if recall(mid) >= recall_target:
                hi = mid
            else:
                lo = mid
        value = hi
    index.set_search_param(value)
    return TuneResult(name, value, tried[value], tuple(sorted(tried.items())))


# --- the background rebuild ----------------------------------------------------------------------


class IndexHost(Protocol):
    """What a rebuild needs from the catalog that serves the index (`storage.catalog.Catalog`)."""

    index_policy: IndexPolicy

    @property
    def index(self) -> FaissIndex: ...

    def segment_ids(self) -> IdArray: ...

    def vectors(self, segment_ids: IdArray) -> FloatArray: ...

    def swap_index(self, serving: FaissIndex, new: FaissIndex) -> None: ...

    def record_index_state(self, state: IndexState) -> None: ...


def restore_tuning(index: FaissIndex, state: IndexState | None) -> None:
    """Re-apply what tuning set outside the FAISS file (nprobe/efSearch are saved in it; PQ's short list is not)."""
    if state is not None and state.kind == index.kind and state.rerank_factor:
        index.rerank_factor = state.rerank_factor


def rebuild_reason(index: FaissIndex, plan: IndexPlan, policy: IndexPolicy) -> str | None:
    """Why the serving index should be rebuilt for `plan`, or None if it should stay."""
    if index.kind != plan.kind:
        if plan.kind == "flat" and not index.exact and index.count() * 4 * index.dim > policy.exact_max_bytes / 2:
            return None  # hysteresis: do not fall back to exact until well below the threshold
        return f"{index.kind} → {plan.kind}"
    if index.nlist:
        ratio = plan.spec.nlist / index.nlist
        if ratio >= policy.retrain_factor or ratio <= 1 / policy.retrain_factor:
            return f"retrain: nlist {index.nlist} → {plan.spec.nlist}"
    if index.kind == "hnsw" and index.tombstones() > policy.max_tombstone_share * max(1, index.count()):
        return f"compact {index.tombstones():,} tombstones"
    return None


def plan_rebuild(index: FaissIndex, budget: int, policy: IndexPolicy) -> IndexPlan | None:
    """The index to rebuild `index` as, when its size (or the budget) calls for another (`rebuild_reason`)."""
    plan = choose_index(index.count(), index.dim, budget, policy)
    why = rebuild_reason(index, plan, policy)
    if why is None:
        return None
    log.info("rebuilding the vector index in the background: %s; %s", why, plan.reason)
    return plan


class Rebuild:
    """One rebuild of a catalog's index, in a thread (`start`, then `join()` waits for it) or here (`run`)."""

    def __init__(self, host: IndexHost, plan: IndexPlan, *, before_swap: Callable[[], None] | None = None) -> None:
        self.host = host
        self.plan = plan
        self.before_swap = before_swap
        self.state: IndexState | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="soundsearch-index-rebuild", daemon=True)

    def start(self) -> Rebuild:
        self.thread.start()
        return self

    def join(self, timeout: float | None = None) -> IndexState | None:
        self.thread.join(timeout)
        return self.state

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def run(self) -> Rebuild:
        try:
            self.state = rebuild_now(self.host, self.plan, before_swap=self.before_swap)
        except BaseException as exc:  # reported, never raised into the serving threads
            self.error = exc
            log.exception("background index rebuild failed; the previous index keeps serving")
        return self


def rebuild_now(host: IndexHost, plan: IndexPlan, *, before_swap: Callable[[], None] | None = None) -> IndexState:
    """Build `plan` from the database's vectors, tune it, swap it in, save it, record its state."""
    policy = host.index_policy
    t0 = time.perf_counter()
    serving = host.index
    ids = host.segment_ids()
    plan = choose_index(len(ids), plan.dim, plan.budget_bytes, policy) if len(ids) != plan.n_vectors else plan
    rng = np.random.default_rng(0)
    train = host.vectors(np.sort(rng.choice(ids, plan.train_size, replace=False))) if plan.train_size else None
    query_ids = np.sort(rng.choice(ids, min(policy.tune_queries, len(ids)), replace=False))
    queries = host.vectors(query_ids)
    truth = ExactNeighbours(queries, RECALL_K + 1)

    def chunks() -> Iterator[tuple[IdArray, FloatArray]]:
        for start in range(0, len(ids), 20_000):
            chunk = ids[start : start + 20_000]
            vectors = host.vectors(chunk)
            truth.add(chunk, vectors)
            yield chunk, vectors

    new = build_index(plan, train, chunks())
    new.vector_source = serving.vector_source
    tuned = tune(new, queries, truth.result()[1], policy.recall_target, exclude=query_ids)
    if before_swap is not None:
        before_swap()
    host.swap_index(serving, new)
    state = IndexState(
        kind=plan.kind,
        factory=plan.factory,
        n_vectors=serving.count(),
        nlist=plan.spec.nlist,
        param=tuned.param,
        param_value=tuned.value,
        recall_at_10=round(tuned.recall_at_10, 4),
        recall_target=policy.recall_target,
        reason=plan.reason,
        build_s=round(time.perf_counter() - t0, 3),
        rerank_factor=tuned.rerank_factor,
    )
    host.record_index_state(state)
    log.info(
        "vector index rebuilt: %s, recall@10 %.3f in %.1f s", serving.description, tuned.recall_at_10, state.build_s
    )
    return state
