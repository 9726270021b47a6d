"""`soundsearch index --engine ray` on a two-node Ray cluster on 127.0.0.1: the local pipeline's catalog,
incremental runs included, and a worker node lost mid-run loses and duplicates nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from api.cli import main
from indexer import load_encoder
from indexer.pipeline import IndexOptions, IndexSummary, Progress, index_paths
from indexer.ray_engine import ClusterRunError, RayExecutor, import_ray
from storage.catalog import Catalog
from tests.conftest import tone_mix
from tests.test_indexer import assert_index_agrees, snapshot

try:
    import_ray(loopback=True)  # before anything imports Ray: it reads its address settings once
except ClusterRunError:
    pytest.skip("the 'cluster' extra (ray[data]) is not installed", allow_module_level=True)

from tests.ray_cluster import NODE_ARGS, local_cluster

MODEL = "tiny-random"


def make_library(root: Path, n: int = 14) -> Path:
    """Short and multi-window files in two formats and rates, plus two broken ones."""
    for i in range(n):
        seconds = 23.0 if i % 5 == 0 else 1.0 + i * 0.4
        sr = (48_000, 22_050)[i % 2]
        ext = ("wav", "flac")[i % 2]
        folder = root / f"pack{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"sound{i:02d}.{ext}", tone_mix(seconds, sr, channels=1 + i % 2, seed=i), sr)
    (root / "broken.wav").write_text("not audio\n" * 50)
    (root / "empty.flac").touch()
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_cluster(nodes=2, cpus_per_node=2) as c:
        yield c


def ray_index(home: Path, library: Path, address: str) -> None:
    argv = ["index", str(library), "--home", str(home), "--model", MODEL, "--engine", "ray", "--json"]
    assert main([*argv, "--ray-address", address]) == 0


def local_index(home: Path, library: Path) -> IndexSummary:
    with Catalog.open(home) as catalog:
        return index_paths(catalog, load_encoder(MODEL), [library])


def assert_same_catalog(a: Path, b: Path) -> None:
    with Catalog.open(a, writable=False) as ca, Catalog.open(b, writable=False) as cb:
        sa, sb = snapshot(ca), snapshot(cb)
        assert sorted(sa) == sorted(sb)
        for key in sa:
            np.testing.assert_allclose(sa[key], sb[key], atol=1e-5)
        fa = {(str(f.path), f.status, f.error, f.content_hash, f.duration_s) for f in ca.files()}
        fb = {(str(f.path), f.status, f.error, f.content_hash, f.duration_s) for f in cb.files()}
        assert fa == fb
    with Catalog.open(b) as cb:
        assert_index_agrees(cb)


def test_ray_engine_builds_the_local_catalog_and_updates_it_the_same_way(
    tmp_path: Path, cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    library = make_library(tmp_path / "lib")
    local_index(tmp_path / "local", library)
    ray_index(tmp_path / "ray", library, cluster.address)
    first = json.loads(capsys.readouterr().out)
    assert (first["added"], first["failed"]) == (14, 2)
    assert_same_catalog(tmp_path / "local", tmp_path / "ray")

    # An edit, a move, a deletion and a new file: the same incremental plan on both engines.
    sf.write(library / "pack0" / "sound00.wav", tone_mix(2.0, 48_000, seed=99), 48_000)
    (library / "moved").mkdir()
    shutil.move(library / "pack1" / "sound04.wav", library / "moved" / "sound04.wav")
    (library / "pack2" / "sound05.flac").unlink()
    sf.write(library / "pack2" / "new.wav", tone_mix(12.0, 48_000, seed=7), 48_000)
    expected = local_index(tmp_path / "local", library).to_dict()
    ray_index(tmp_path / "ray", library, cluster.address)
    second = json.loads(capsys.readouterr().out)
    for key in ("added", "updated", "unchanged", "moved", "removed", "failed", "segments"):
        assert second[key] == expected[key], key
    assert (second["added"], second["updated"], second["moved"], second["removed"]) == (1, 1, 1, 1)
    assert_same_catalog(tmp_path / "local", tmp_path / "ray")


class KillWorkerAfter(Progress):
    """Takes the worker node down once `files` files are back on the driver: mid-run, work in flight."""

    def __init__(self, cluster: Any, files: int) -> None:
        self.cluster, self.files, self.seen, self.killed = cluster, files, 0, False

    def advance(self, files: int, audio_seconds: float) -> None:
        self.seen += files
        if self.seen == self.files:
            for node in list(self.cluster.worker_nodes):
                self.cluster.remove_node(node, allow_graceful=False)
                self.killed = True


def test_a_worker_node_killed_mid_run_loses_and_duplicates_nothing(tmp_path: Path, cluster: Any) -> None:
    library = make_library(tmp_path / "lib", n=24)
    local_index(tmp_path / "local", library)
    encoder = load_encoder(MODEL)
    progress = KillWorkerAfter(cluster, files=3)
    with Catalog.open(tmp_path / "ray") as catalog:
        try:
            index_paths(
                catalog,
                encoder,
                [library],
                options=IndexOptions(commit_every_files=2),  # some files are in before the node goes
                progress=progress,
                executor=RayExecutor(actors=2),
            )
        except ClusterRunError as exc:
            assert "run the same command again" in str(exc)
    assert progress.killed
    cluster.add_node(**NODE_ARGS, num_cpus=2)
    cluster.wait_for_nodes()
    with Catalog.open(tmp_path / "ray") as catalog:
        summary = index_paths(catalog, encoder, [library], executor=RayExecutor(actors=2))
    assert summary.removed == 0
    assert_same_catalog(tmp_path / "local", tmp_path / "ray")


def test_engine_options_are_refused_without_the_ray_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    library = make_library(tmp_path / "lib", n=1)
    code = main(["index", str(library), "--home", str(tmp_path / "h"), "--model", MODEL, "--ray-address", "auto"])
    assert code == 2
    assert "--engine ray" in capsys.readouterr().err
