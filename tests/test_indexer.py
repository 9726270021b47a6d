from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer import load_encoder
from indexer.encoders.base import Encoder
from indexer.pipeline import index_paths
from storage.catalog import Catalog, CatalogError
from tests.conftest import run_cli, tone_mix

FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_24"), ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", None)]
N_GOOD = 56
N_BROKEN = 4


def make_library(root: Path) -> Path:
    """56 good files in nested folders (mixed formats, rates, channels; three long ones) and 4 broken."""
    gen = np.random.default_rng(0)
    for i in range(N_GOOD):
        ext, fmt, subtype = FORMATS[i % len(FORMATS)]
        folder = root / f"pack{i % 3}" / ("ambience" if i % 2 else "hits")
        folder.mkdir(parents=True, exist_ok=True)
        seconds = (27.0, 41.5, 18.0)[i // 20] if i % 20 == 7 else float(gen.uniform(0.3, 6.0))
        sr = (44_100, 48_000, 22_050)[i % 3]
        data = tone_mix(seconds, sr, channels=1 + i % 2, seed=i)
        sf.write(folder / f"CAT_Sound{i:03d}_ME.{ext}", data, sr, format=fmt, subtype=subtype)
    broken = root / "broken"
    broken.mkdir()
    (broken / "empty.wav").touch()
    (broken / "notes.wav").write_text("not audio at all\n" * 40)
    full = root / "pack0" / "hits" / "CAT_Sound000_ME.wav"
    (broken / "truncated.wav").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (broken / "cut.flac").write_bytes((root / "pack1" / "ambience" / "CAT_Sound001_ME.flac").read_bytes()[:3000])
    (root / "readme.txt").write_text("ignored: not audio")
    return root


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder("tiny-random")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_library(tmp_path_factory.mktemp("lib") / "library")


def snapshot(catalog: Catalog) -> dict[tuple[str, float, float], np.ndarray]:
    """Catalog content keyed by (path, start, end): what must equal between two builds."""
    files = {f.id: f for f in catalog.files()}
    segments = catalog.segments()
    vectors = catalog.vectors([s.id for s in segments])
    return {
        (str(files[s.file_id].path), round(s.start_s, 4), round(s.end_s, 4)): v
        for s, v in zip(segments, vectors, strict=True)
    }


def assert_index_agrees(catalog: Catalog) -> None:
    db_ids = sorted(s.id for s in catalog.segments())
    assert sorted(catalog.index.ids().tolist()) == db_ids
    reopened = Catalog.open(catalog.home, db_url=catalog.database_url, writable=False)
    assert sorted(reopened.index.ids().tolist()) == db_ids
    if db_ids:
        stored = reopened.vectors(db_ids)
        in_faiss = reopened.index.reconstruct(np.array(db_ids, dtype=np.int64))
        np.testing.assert_array_equal(stored, in_faiss)
    reopened.close()


def test_incremental_lifecycle(tmp_path: Path, library: Path, encoder: Encoder, db_url: str | None) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    with Catalog.open(tmp_path / "home", db_url=db_url) as catalog:
        first = index_paths(catalog, encoder, [lib])
        assert (first.added, first.failed) == (N_GOOD, N_BROKEN)
        assert first.segments == len(catalog.segments()) > N_GOOD  # long files have several windows
        failed = {f.path.name: f.error for f in catalog.files(status="failed")}
        assert set(failed) == {"empty.wav", "notes.wav", "truncated.wav", "cut.flac"}
        assert "0 bytes" in (failed["empty.wav"] or "")
        assert_index_agrees(catalog)
        long_file = next(f for f in catalog.files() if f.duration_s and f.duration_s > 40)
        assert [(s.start_s, s.end_s) for s in catalog.segments(long_file.id)][-1] == pytest.approx((31.5, 41.5))

        second = index_paths(catalog, encoder, [lib])
        assert (second.unchanged, second.added, second.updated, second.segments) == (N_GOOD + N_BROKEN, 0, 0, 0)

        before = snapshot(catalog)
        (lib / "pack2").rename(lib / "pack2-renamed")
        moved = index_paths(catalog, encoder, [lib])
        n_moved = sum(1 for p in before if "/pack2/" in p[0]) and len({p[0] for p in before if "/pack2/" in p[0]})
        assert (moved.moved, moved.added, moved.segments, moved.removed) == (n_moved, 0, 0, 0)
        after = snapshot(catalog)
        assert len(after) == len(before)
        assert_index_agrees(catalog)

        victim = next(lib.rglob("CAT_Sound005_ME.flac"))
        sf.write(victim, tone_mix(2.0, 44_100, seed=99), 44_100)
        old_id = next(f.id for f in catalog.files() if f.path == victim)
        changed = index_paths(catalog, encoder, [lib])
        assert (changed.updated, changed.added, changed.moved) == (1, 0, 0)
        assert next(f for f in catalog.files() if f.path == victim).id == old_id  # keeps its id
        assert_index_agrees(catalog)

        doomed = next(lib.rglob("CAT_Sound010_ME.ogg"))
        doomed_segments = {s.id for s in catalog.segments() if s.file_id == _file_id(catalog, doomed)}
        doomed.unlink()
        (lib / "broken" / "empty.wav").unlink()
        deleted = index_paths(catalog, encoder, [lib])
        assert deleted.removed == 1
        assert not doomed_segments & set(catalog.index.ids().tolist())
        assert all(f.path != doomed for f in catalog.files())
        assert_index_agrees(catalog)


def _file_id(catalog: Catalog, path: Path) -> int:
    return next(f.id for f in catalog.files() if f.path == path)


def test_catalog_is_bound_to_its_model(tmp_path: Path, encoder: Encoder, tiny_clap_dir: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "a.wav", tone_mix(1.0, 48_000), 48_000)
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, encoder, [lib])
        other = load_encoder(str(tiny_clap_dir))
        with pytest.raises(CatalogError, match="reindex --model"):
            index_paths(catalog, other, [lib])


def test_bad_roots_and_walk_problems(tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    (lib / "a").mkdir(parents=True)
    (lib / "locked").mkdir()
    sf.write(lib / "a" / "x.wav", tone_mix(1.0, 48_000), 48_000)
    sf.write(lib / "a" / "vanishing.wav", tone_mix(1.0, 48_000), 48_000)
    (lib / "a" / "loop").symlink_to(lib, target_is_directory=True)

    import indexer.decoding
    import indexer.scan

    real_scandir, real_probe = os.scandir, indexer.decoding.probe

    def scandir(path: str):  # type: ignore[no-untyped-def]
        # Root can read any folder, so an unreadable one is simulated at the OS boundary.
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    def probe(path: str):  # type: ignore[no-untyped-def]
        if path.endswith("vanishing.wav"):
            os.unlink(path)  # the file disappears between the scan and its decoding
        return real_probe(path)

    monkeypatch.setattr(indexer.scan.os, "scandir", scandir)
    monkeypatch.setattr(indexer.decoding, "probe", probe)
    with Catalog.open(tmp_path / "home") as catalog:
        with pytest.raises(CatalogError, match="no such folder"):
            index_paths(catalog, encoder, [tmp_path / "nope"])
        summary = index_paths(catalog, encoder, [lib])
        reasons = {Path(e["path"]).name: e["reason"] for e in summary.errors}
        assert "Permission denied" in reasons["locked"]
        assert "symlink loop" in reasons["loop"]
        assert "not found" in reasons["vanishing.wav"]
        assert (summary.added, summary.failed) == (1, 1)
        assert_index_agrees(catalog)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", *args]


def _db_args(db_url: str | None) -> list[str]:
    return ["--db-url", db_url] if db_url else []


def _files_committed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("select count(*) from files").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory: pytest.TempPathFactory, library: Path, encoder: Encoder) -> Path:
    home = tmp_path_factory.mktemp("clean")
    with Catalog.open(home) as catalog:
        index_paths(catalog, encoder, [library])
    return home


@pytest.mark.parametrize("kill_at_files", [0, 12, 30, 50])
def test_sigkill_then_resume_equals_clean_build(
    tmp_path: Path, library: Path, encoder: Encoder, clean_build: Path, kill_at_files: int
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(
        _cli("index", str(library), "--home", str(home), "--model", "tiny-random", "--commit-every", "4", "--json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if kill_at_files == 0 and (home / "catalog.db").exists():
            break
        if kill_at_files and _files_committed(home / "catalog.db") >= kill_at_files:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Catalog.open(home) as catalog:
        resumed = index_paths(catalog, encoder, [library])
        assert resumed.added + resumed.failed + resumed.unchanged == N_GOOD + N_BROKEN
        assert_index_agrees(catalog)
        got = snapshot(catalog)
    with Catalog.open(clean_build, writable=False) as clean:
        want = snapshot(clean)
    assert got.keys() == want.keys()
    for key, vec in want.items():
        np.testing.assert_allclose(got[key], vec, atol=1e-5)


def test_reader_sees_consistent_results_while_indexer_writes(tmp_path: Path, library: Path, db_url: str | None) -> None:
    home = tmp_path / "home"
    index_cmd = _cli(
        "index", str(library), "--home", str(home), "--model", "tiny-random", "--commit-every", "3", *_db_args(db_url)
    )
    proc = subprocess.Popen(index_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # SQLite: the reader must not create the file first (the catalog's home is the indexer's to make);
    # PostgreSQL: the reader opens at once, racing the indexer's CREATE TABLEs.
    while db_url is None and not (home / "catalog.db").exists() and proc.poll() is None:
        time.sleep(0.01)
    reader = Catalog.open(home, db_url=db_url, writable=False)
    gen = np.random.default_rng(0)
    searches, nonempty = 0, 0
    while proc.poll() is None or searches == 0:
        reader.refresh()
        query = gen.standard_normal(32).astype(np.float32)
        hits = reader.search_vectors(query / np.linalg.norm(query), 10)
        scores = [score for _, score in hits]
        assert scores == sorted(scores, reverse=True)
        known = reader.segments_by_id([seg.id for seg, _ in hits])
        assert all(seg.id in known for seg, _ in hits)
        searches += 1
        nonempty += bool(hits)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    reader.refresh()
    assert reader.index.count() == len(reader.segments())
    assert searches > 3 and nonempty > 0
    reader.close()


def test_cli_index_json_and_status(
    tmp_path: Path, library: Path, db_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    out = subprocess.run(
        # the GPU's decoding setup, asked for on the CPU: the CLI runs under spawned decoder processes
        _cli(
            "index",
            str(library),
            "--home",
            str(home),
            "--model",
            "tiny-random",
            "--decoders",
            "processes",
            "--json",
            *_db_args(db_url),
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert {"added", "updated", "unchanged", "moved", "removed", "failed", "segments", "seconds"} <= summary.keys()
    assert (summary["added"], summary["failed"]) == (N_GOOD, N_BROKEN)
    # The reads need no decoder processes: in this process, without another interpreter's start.
    status_run = run_cli(capsys, "status", "--home", str(home), "--json", "--failed", *_db_args(db_url))
    assert status_run.returncode == 0, status_run.stderr
    status = json.loads(status_run.stdout)
    assert (status["files"], status["failed"], status["model"]) == (N_GOOD, N_BROKEN, "tiny-random")
    assert status["segments"] == status["index_vectors"] == summary["segments"]
    assert len(status["failed_files"]) == N_BROKEN and all(f["error"] for f in status["failed_files"])
    bad = run_cli(capsys, "index", str(tmp_path / "missing"), "--home", str(home))
    assert bad.returncode == 2 and "no such folder" in bad.stderr


def test_reindex_rebuilds_vectors_for_a_new_model(tmp_path: Path, encoder: Encoder, tiny_clap_dir: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(3):
        sf.write(lib / f"s{i}.wav", tone_mix(2.0 + 6 * i, 48_000, seed=i), 48_000)
    home = tmp_path / "home"
    with Catalog.open(home) as catalog:
        first = index_paths(catalog, encoder, [lib])
        old_vectors = catalog.vectors([s.id for s in catalog.segments()])
    out = subprocess.run(
        _cli("reindex", "--model", str(tiny_clap_dir), "--home", str(home), "--json"),
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout)
    assert (summary["updated"], summary["segments"]) == (3, first.segments)
    with Catalog.open(home) as catalog:
        assert catalog.binding is not None and catalog.binding.model_id == tiny_clap_dir.resolve().as_posix()
        new_vectors = catalog.vectors([s.id for s in catalog.segments()])
        assert new_vectors.shape == old_vectors.shape and not np.allclose(new_vectors, old_vectors)
        assert_index_agrees(catalog)


def test_indexing_a_subfolder_of_an_indexed_root(tmp_path: Path, encoder: Encoder) -> None:
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    sf.write(lib / "top.wav", tone_mix(1.0, 48_000), 48_000)
    sf.write(lib / "sub" / "inner.wav", tone_mix(1.0, 48_000, seed=1), 48_000)
    with Catalog.open(tmp_path / "home") as catalog:
        assert index_paths(catalog, encoder, [lib]).added == 2
        again = index_paths(catalog, encoder, [lib / "sub"])
        assert (again.unchanged, again.added, again.removed) == (1, 0, 0)
        (lib / "sub" / "inner.wav").unlink()
        assert index_paths(catalog, encoder, [lib / "sub"]).removed == 1
        assert [f.path.name for f in catalog.files()] == ["top.wav"]
        assert_index_agrees(catalog)


def test_numpy_blas_keeps_to_one_thread_while_the_model_runs(tmp_path: Path, encoder: Encoder) -> None:
    """Idle BLAS threads spinning beside torch's made every batch after a decode slower (bench_index)."""
    from threadpoolctl import threadpool_info

    seen: list[int] = []

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(encoder, name)

        def embed_audio(self, clips: list[np.ndarray]) -> np.ndarray:
            seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
            return encoder.embed_audio(clips)

    sf.write(tmp_path / "a.wav", tone_mix(2.0, 16_000), 16_000)
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, Recording(), [tmp_path])  # type: ignore[arg-type]
    assert seen and set(seen) == {1}


def test_a_decoder_thread_failure_fails_the_run_instead_of_hanging(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from indexer import decoding
    from indexer.pipeline import IndexOptions

    for i in range(4):
        sf.write(tmp_path / f"s{i}.wav", tone_mix(1.0, 16_000, seed=i), 16_000)

    def broken(path: str, sample_rate: int, spec: object) -> object:
        raise ValueError("resampler exploded")
        yield  # a generator, as the real one

    monkeypatch.setattr(decoding, "decode_file", broken)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            with Catalog.open(tmp_path / "home") as catalog:
                index_paths(catalog, encoder, [tmp_path], options=IndexOptions(workers=2))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "indexing hung on a dead decoder thread"
    assert len(outcome) == 1 and "resampler exploded" in str(outcome[0])


def test_decoder_processes_build_the_same_catalog_as_inline_decoding(
    tmp_path: Path, library: Path, encoder: Encoder
) -> None:
    """The GPU's decoding path (worker processes), run here on the CPU: same files, errors, segments, vectors."""
    from indexer.pipeline import IndexOptions

    builds = {}
    for name, options in (("inline", IndexOptions(workers=0)), ("processes", IndexOptions(workers=2, processes=True))):
        with Catalog.open(tmp_path / name) as catalog:
            summary = index_paths(catalog, encoder, [library], options=options)
            assert (summary.added, summary.failed) == (N_GOOD, N_BROKEN)
            errors = {f.path.name: f.error for f in catalog.files(status="failed")}
            builds[name] = (snapshot(catalog), errors)
            assert_index_agrees(catalog)
    (inline, inline_errors), (procs, procs_errors) = builds["inline"], builds["processes"]
    assert procs_errors == inline_errors
    assert procs.keys() == inline.keys()
    for key, vector in inline.items():
        np.testing.assert_allclose(procs[key], vector, atol=1e-5)


def test_a_killed_decoder_process_fails_the_run_with_its_exit_code(tmp_path: Path) -> None:
    import multiprocessing

    from indexer.decoding import DecoderDied, FileEnd, decoded
    from indexer.windows import WindowSpec

    paths = []
    for i in range(6):
        sf.write(tmp_path / f"long{i}.wav", tone_mix(40.0, 16_000, seed=i), 16_000)
        paths.append(str(tmp_path / f"long{i}.wav"))
    items = decoded(paths, 48_000, WindowSpec(), workers=1, processes=True, ahead=1)
    first = next(items)
    assert first[0] == 0 and not isinstance(first[1], FileEnd)
    # The worker is blocked handing over windows (a 10 s window at 48 kHz is far larger than a pipe's buffer).
    (worker,) = [p for p in multiprocessing.active_children() if p.name.startswith("soundsearch-decode")]
    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(DecoderDied, match=r"died \(exit code -9\) while decoding .*long0\.wav"):
        for _ in items:
            pass
    assert time.monotonic() - started < 30
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("soundsearch-decode")]


def test_cli_memory_budget_picks_and_builds_a_smaller_index(
    tmp_path: Path, library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from storage.index_choice import choose_index

    home = tmp_path / "home"
    base = [str(library), "--home", str(home), "--model", "tiny-random", "--json"]
    assert run_cli(capsys, "index", *base).returncode == 0

    def status() -> dict[str, object]:
        out = run_cli(capsys, "status", "--home", str(home), "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    first = status()
    assert str(first["index_type"]).startswith("IDMap2,Flat") and first["index_recall_at_10"] == 1.0
    n, dim = int(first["segments"]), int(first["dim"])  # type: ignore[call-overload]
    budget = next(b for b in range(400_000, 1_000, -1_000) if choose_index(n, dim, b).kind == "ivf_sq8")
    assert run_cli(capsys, "index", *base, "--max-index-memory", str(budget)).returncode == 0
    second = status()
    assert "SQ8" in str(second["index_type"]) and second["index_memory_budget"] == budget
    assert isinstance(second["index_recall_at_10"], float) and f"budget {budget / 1000:.1f} KB" in str(
        second["index_reason"]
    )
    bad = run_cli(capsys, "index", *base, "--max-index-memory", "lots")
    assert bad.returncode == 2 and "not a size" in bad.stderr
