"""The indexing run on a Ray cluster: the same plan and the same catalog writes, other hands for the work.

`index_paths(..., executor=RayExecutor(...))` plans on the driver exactly as the local run does (unchanged
files skipped, moves recognised, deletions removed), then runs the files to embed through a Ray Data pipeline:

    file list → decode + window (CPU tasks, one file per call) → embed (an actor pool, one model per actor,
    one GPU per actor where the cluster has GPUs) → the driver, which commits finished files in chunks
    through `CatalogWriter` (SQLite or PostgreSQL, whatever the catalog is on).

What travels between tasks is compact: a window is its float32 samples as bytes (10 s at 48 kHz: 1.9 MB),
a vector its float32 bytes, a file's end its pickled `FileEnd`. Decoding stays out of the embed actors: one
core decodes and resamples ~1 200 s of audio a second (BENCHMARKS.md, decode), a GPU embeds thousands of
10 s windows a second, so one GPU needs the decoding of many cores, wherever the cluster has them; decoding
inside the actor would leave the GPU idle for its duration. Moving a window between processes costs a copy,
a re-decode costs the download and the resampler again.

Only the driver writes, keyed by (file, window index): a window that a retried task delivers twice overwrites
itself, a file is written once all of its windows are in, and the run resumes after a crash from the last
commit like the local one. Ray retries tasks and restarts actors whose node died; a run it cannot finish
(`ray.exceptions.RayError`) commits the files already done, then fails with `ClusterRunError`.

Ray itself is an optional dependency (`pip install soundsearch[cluster]`), imported only here.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from indexer.decoding import FileEnd, decode_file
from indexer.encoders.base import Encoder
from indexer.errors import SoundsearchError
from indexer.pipeline import CatalogWriter, FileResult, IndexJob
from indexer.windows import WindowSpec

log = logging.getLogger(__name__)

# Rows (windows) per call of an embed actor; the encoder cuts them into its own batches (measured on a GPU).
EMBED_ROWS = 64
# Windows a decode task hands on at a time: a long file streams out instead of sitting whole in a worker.
DECODE_ROWS = 16
DECODE_MEMORY = 512 * 2**20  # a worker with torch and libsndfile loaded: 435 MiB measured


class ClusterRunError(SoundsearchError):
    """Ray could not run (or finish) the indexing; what was committed stays, the next run resumes."""


@dataclass(frozen=True)
class RayExecutor:
    """Where and how wide: `address` of a running cluster (None: a local Ray instance for this run),
    `actors` embedding models (None: one per GPU, else half the CPUs), `num_cpus` of a local instance."""

    address: str | None = None
    actors: int | None = None
    num_cpus: int | None = None
    cpus_per_actor: float = 1.0

    def run(self, jobs: list[IndexJob], encoder: Encoder, spec: WindowSpec, writer: CatalogWriter) -> None:
        if not jobs:
            return
        writer.start(jobs)
        with ray_connection(self.address, self.num_cpus):
            try:
                self._stream(jobs, encoder, spec, writer)
            except Exception as exc:
                import ray

                if not isinstance(exc, ray.exceptions.RayError):
                    raise
                writer.commit()  # files finished before the failure are kept: the next run resumes after them
                raise ClusterRunError(
                    f"the Ray run failed ({type(exc).__name__}: {_first_line(exc)}); "
                    f"{writer.summary.added + writer.summary.updated} file(s) were committed, "
                    "run the same command again to index the rest"
                ) from exc
        writer.finish()

    def _stream(self, jobs: list[IndexJob], encoder: Encoder, spec: WindowSpec, writer: CatalogWriter) -> None:
        import ray

        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = self.actors or (gpus if gpus else max(1, cpus // 2))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller's `Progress` reports files, not Ray's operators
        files = ray.data.from_items(
            [{"i": i, "path": job.found.path} for i, job in enumerate(jobs)],
            override_num_blocks=len(jobs),  # one file per block: files spread over every decoder at once
        )
        windows = files.map_batches(
            partial(_decode_files, sample_rate=encoder.sample_rate, spec=spec),
            batch_size=1,
            batch_format="numpy",
            num_cpus=1,
            # What a decoder holds (a window of the stream, a resampler's kernel); a request unlike the
            # actors' also keeps Ray from fusing decoding into the embed actors, one file at a time beside
            # each model instead of every free core decoding for them.
            memory=DECODE_MEMORY,
        )
        vectors = windows.map_batches(
            _Embedder,
            batch_size=EMBED_ROWS,
            batch_format="numpy",
            fn_constructor_kwargs={"model": encoder.model_id, "device": "cuda" if gpus else "cpu"},
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=self.cpus_per_actor,
        )
        log.info("ray: %d files, %d embed actor(s) (%d GPU(s) in the cluster)", len(jobs), actors, gpus)
        collector = _Collector(jobs, writer)
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            collector.take(batch)
            writer.maybe_commit()
        collector.check_complete()


def import_ray(*, loopback: bool) -> Any:
    """Ray, imported with no usage report and, for a cluster on this machine, loopback addresses only
    (Ray reads both settings once, on import; without the second it advertises the machine's address)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if loopback:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ClusterRunError("--engine ray needs Ray: pip install 'soundsearch[cluster]'") from None
    return ray


@contextmanager
def ray_connection(address: str | None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for one run: the caller's if already connected, else `address`, else a local instance on 127.0.0.1."""
    ray = import_ray(loopback=address is None)
    if ray.is_initialized():
        yield
        return
    try:
        if address is None:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
                configure_logging=False,
            )
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise ClusterRunError(f"cannot start or reach Ray ({where}): {_first_line(exc)}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- on the workers -------------------------------------------------------------------------------

_EMPTY = b""


def _decode_files(batch: dict[str, np.ndarray], *, sample_rate: int, spec: WindowSpec) -> Iterator[dict[str, Any]]:
    """A Ray task: each file's windows (k = 0, 1, ...) as float32 bytes, then one row with its `FileEnd`."""
    for i, path in zip(batch["i"], batch["path"], strict=True):
        rows: list[tuple[int, int, float, float, bytes, bytes]] = []
        k = 0
        for item in decode_file(str(path), sample_rate, spec):
            if isinstance(item, FileEnd):
                rows.append((int(i), -1, 0.0, 0.0, _EMPTY, pickle.dumps(item)))
            else:
                rows.append((int(i), k, item.start_s, item.end_s, item.samples.astype(np.float32).tobytes(), _EMPTY))
                k += 1
            if len(rows) >= DECODE_ROWS or isinstance(item, FileEnd):
                yield _columns(rows, "samples")
                rows = []


def _columns(rows: list[tuple[int, int, float, float, bytes, bytes]], payload: str) -> dict[str, np.ndarray]:
    i, k, start, end, data, fend = zip(*rows, strict=True)
    return {
        "i": np.asarray(i, dtype=np.int64),
        "k": np.asarray(k, dtype=np.int64),
        "start_s": np.asarray(start, dtype=np.float64),
        "end_s": np.asarray(end, dtype=np.float64),
        payload: np.asarray(data, dtype=object),
        "end": np.asarray(fend, dtype=object),
    }


class _Embedder:
    """A Ray actor: one model, loaded once, turning window rows into vector rows (end rows pass through)."""

    def __init__(self, model: str, device: str) -> None:
        from indexer.encoders.registry import load_encoder

        self.encoder = load_encoder(model, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        windows = np.flatnonzero(batch["k"] >= 0)
        vectors = np.full(len(batch["k"]), _EMPTY, dtype=object)
        if len(windows):
            clips = [np.frombuffer(batch["samples"][j], dtype=np.float32) for j in windows]
            for j, vec in zip(windows, self.encoder.embed_audio(clips), strict=True):
                vectors[j] = np.asarray(vec, dtype=np.float32).tobytes()
        out = {key: batch[key] for key in ("i", "k", "start_s", "end_s", "end")}
        out["vector"] = vectors
        return out


# --- back on the driver ---------------------------------------------------------------------------


class _Collector:
    """Rows in any order (and any number of times) into whole files for the writer."""

    def __init__(self, jobs: list[IndexJob], writer: CatalogWriter) -> None:
        self.states = [FileResult(job) for job in jobs]
        self.windows: list[dict[int, tuple[tuple[float, float], np.ndarray]]] = [{} for _ in jobs]
        self.done = [False] * len(jobs)
        self.writer = writer

    def take(self, batch: dict[str, np.ndarray]) -> None:
        touched: set[int] = set()
        for i, k, start, end, fend, vec in zip(
            batch["i"], batch["k"], batch["start_s"], batch["end_s"], batch["end"], batch["vector"], strict=True
        ):
            i = int(i)
            if self.done[i]:
                continue  # a retried task's copy of a file already written
            if k < 0:
                self.states[i].ended(pickle.loads(fend))
            else:
                self.windows[i][int(k)] = ((float(start), float(end)), np.frombuffer(vec, dtype=np.float32))
            touched.add(i)
        for i in sorted(touched):
            self._maybe_finish(i)

    def _maybe_finish(self, i: int) -> None:
        state, got = self.states[i], self.windows[i]
        if state.n_windows is None or (state.error is None and len(got) < state.n_windows):
            return
        if state.error is None:
            state.bounds = [got[k][0] for k in range(state.n_windows)]
            state.vectors = [got[k][1] for k in range(state.n_windows)]
        self.windows[i] = {}
        self.done[i] = True
        self.writer.finished(state)

    def check_complete(self) -> None:
        missing = [self.states[i].job.found.path for i, done in enumerate(self.done) if not done]
        if missing:
            self.writer.commit()
            raise ClusterRunError(
                f"the Ray run ended without {len(missing)} file(s) (first: {missing[0]}); "
                "run the same command again to index them"
            )
