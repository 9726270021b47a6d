"""`reindex` builds the new model's vectors beside the old ones and swaps them in when complete.

Killed at any point (a real SIGKILL, injected at exact places in a child process), the catalog still
answers with a consistent model and the next `reindex` resumes; beside a running index it refuses
and changes nothing.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import delete, func, select

from api.cli import main
from indexer import load_encoder
from indexer.encoders.base import Encoder
from indexer.pipeline import IndexOptions, index_paths
from indexer.reindex import reindex
from storage.catalog import Catalog
from storage.schema import SegmentRow, StagedFile, StagedSegment
from storage.staging import TARGET_KEY
from tests.conftest import tone_mix
from tests.planted import PlantedEncoder, tone, write
from tests.test_indexer import assert_index_agrees, snapshot

N_FILES = 12
Snapshot = dict[tuple[str, float, float], np.ndarray]

# Runs the CLI with a SIGKILL planted at one point of the reindex (argv[1]); the rest is the CLI's argv.
KILLER = """
import functools, os, signal, sys
from api.cli import main
from indexer import reindex
from storage import staging
from storage.catalog import Catalog
from indexer.encoders import registry

# Small batches: files finish (and are committed) a few at a time, so a kill can fall between commits.
registry.load_encoder = functools.partial(registry.load_encoder, batch_size=4)

def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

point, argv = sys.argv[1], sys.argv[2:]
if point.startswith("staged-"):
    limit, commit, calls = int(point.split("-")[1]), reindex._StagingWriter.commit, []
    def commit_then_die(self):
        commit(self)
        calls.append(1)
        if len(calls) == limit:
            die()
    reindex._StagingWriter.commit = commit_then_die
elif point == "in-swap":  # inside the swap's transaction, its writes flushed but not committed
    write = staging.write_binding
    def write_then_die(session, binding):
        write(session, binding)
        session.flush()
        die()
    staging.write_binding = write_then_die
elif point == "after-swap":  # committed, the FAISS file still the old model's
    Catalog.rebuild_index = die
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def old_model() -> Encoder:
    return load_encoder("tiny-random")


@pytest.fixture(scope="module")
def new_model() -> Encoder:
    return load_encoder("mini")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reindex_lib")
    for i in range(N_FILES):
        seconds = 23.0 if i == 5 else 0.5 + (i % 4) * 0.7  # one long file: several windows
        sf.write(root / f"s{i:02d}.wav", tone_mix(seconds, 22_050, seed=i), 22_050)
    return root


@pytest.fixture(scope="module")
def old_home(tmp_path_factory: pytest.TempPathFactory, lib: Path, old_model: Encoder) -> Path:
    home = tmp_path_factory.mktemp("old_home")
    with Catalog.open(home) as catalog:
        index_paths(catalog, old_model, [lib])
    return home


@pytest.fixture(scope="module")
def clean_new(tmp_path_factory: pytest.TempPathFactory, lib: Path, new_model: Encoder) -> Snapshot:
    """What the catalog holds when built with the new model from the start."""
    home = tmp_path_factory.mktemp("clean_new")
    with Catalog.open(home) as catalog:
        index_paths(catalog, new_model, [lib])
        return snapshot(catalog)


def _staged_files(catalog: Catalog) -> int:
    with catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(StagedFile)) or 0)


def _assert_answers_with(catalog: Catalog, model_id: str) -> None:
    """Bound to `model_id`, and a search for a stored vector finds its own segment first."""
    assert catalog.binding is not None and catalog.binding.model_id == model_id
    segment = catalog.segments()[0]
    hits = catalog.search_vectors(catalog.vectors([segment.id])[0], 1)
    assert hits[0][0].id == segment.id and hits[0][1] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("point", ["staged-1", "staged-2", "in-swap", "after-swap"])
def test_reindex_killed_at_any_point_keeps_a_whole_catalog_and_resumes(
    tmp_path: Path,
    old_home: Path,
    new_model: Encoder,
    clean_new: Snapshot,
    point: str,
) -> None:
    home = tmp_path / "home"
    shutil.copytree(old_home, home)
    with Catalog.open(old_home, writable=False) as old:
        before = snapshot(old)
    argv = ["reindex", "--model", "mini", "--home", str(home), "--commit-every", "3", "--json"]
    killed = subprocess.run([sys.executable, "-c", KILLER, point, *argv], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr

    with Catalog.open(home, writable=False) as catalog:
        staged = _staged_files(catalog)
        if point.startswith("staged-") or point == "in-swap":
            _assert_answers_with(catalog, "tiny-random")  # the old model, all its vectors
            got = snapshot(catalog)
            assert got.keys() == before.keys()
            assert all(np.array_equal(got[k], v) for k, v in before.items())
            assert 0 < staged <= N_FILES
        else:
            _assert_answers_with(catalog, new_model.model_id)  # the stale FAISS file is rebuilt on load
            assert staged == 0

    with Catalog.open(home) as catalog:
        resumed = reindex(catalog, new_model)
        # Files the killed run embedded are not embedded again.
        assert (resumed.unchanged, resumed.updated) == (staged, N_FILES - staged if point != "after-swap" else 0)
        _assert_answers_with(catalog, new_model.model_id)
        assert_index_agrees(catalog)
        assert TARGET_KEY not in catalog.settings()
        with catalog.session() as s:
            assert s.scalar(select(func.count()).select_from(StagedSegment)) == 0
        got = snapshot(catalog)
    assert got.keys() == clean_new.keys()
    for key, vector in clean_new.items():
        np.testing.assert_allclose(got[key], vector, atol=1e-5)


def test_reindex_beside_a_running_index_refuses_and_changes_nothing(
    tmp_path: Path, old_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    shutil.copytree(old_home, home)
    with Catalog.open(home, writable=False) as catalog:
        settings, before = catalog.settings(), snapshot(catalog)
    faiss_bytes = (home / "vectors.faiss").read_bytes()
    with open(home / "index.lock", "w") as lock:  # held as an `index` run in another process holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(["reindex", "--model", "mini", "--home", str(home)])
    err = capsys.readouterr().err  # besides the model loader's progress bar: one sentence
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("soundsearch:")] == [
        f"soundsearch: error: another indexing run is using the catalog in {home}"
    ]
    with Catalog.open(home, writable=False) as catalog:
        assert catalog.settings() == settings
        got = snapshot(catalog)
        assert got.keys() == before.keys() and all(np.array_equal(got[k], v) for k, v in before.items())
    assert (home / "vectors.faiss").read_bytes() == faiss_bytes


def test_a_file_marked_ok_without_vectors_is_embedded_again(tmp_path: Path, lib: Path, old_model: Encoder) -> None:
    """What an interrupted reindex of the old design left behind: rows OK, vectors gone."""
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, old_model, [lib])
        victim = catalog.files()[3]
        with catalog.session() as s:
            s.execute(delete(SegmentRow).where(SegmentRow.file_id == victim.id))
    with Catalog.open(tmp_path / "home") as catalog:
        again = index_paths(catalog, old_model, [lib])
        assert (again.updated, again.unchanged) == (1, N_FILES - 1)
        assert catalog.segments(victim.id)
        assert_index_agrees(catalog)


class _Interrupted(Exception):
    pass


class _OtherModel(PlantedEncoder):
    """Another model (its vectors reversed), which can stop the run after some batches."""

    model_id = "planted-bands-reversed"
    batch_size = 2

    def __init__(self, batches: int | None = None) -> None:
        self.batches = batches

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        if self.batches is not None:
            if self.batches == 0:
                raise _Interrupted
            self.batches -= 1
        return np.ascontiguousarray(super().embed_audio(clips)[:, ::-1])


def test_a_file_changed_between_an_interrupted_reindex_and_its_resume_is_embedded_again(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for i in range(8):
        write(lib / f"f{i}.wav", tone(i, 0.5))
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, PlantedEncoder(), [lib])
        with pytest.raises(_Interrupted):
            reindex(catalog, _OtherModel(batches=3), options=IndexOptions(commit_every_files=2))
        staged = _staged_files(catalog)
        assert 2 <= staged < 8
        write(lib / "f0.wav", tone(3, 0.9))  # the first file, staged: its new bytes indexed with the old model
        assert index_paths(catalog, PlantedEncoder(), [lib]).updated == 1
        resumed = reindex(catalog, _OtherModel())
        assert (resumed.unchanged, resumed.updated) == (staged - 1, 8 - staged + 1)
        got = snapshot(catalog)
    with Catalog.open(tmp_path / "clean") as clean:
        index_paths(clean, _OtherModel(), [lib])
        want = snapshot(clean)
    assert got.keys() == want.keys() and all(np.allclose(got[k], v) for k, v in want.items())
