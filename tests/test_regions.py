"""Region export (indexer.regions) from the API and the CLI: the cut holds exactly the source's frames.

Each source is random noise at 44.1 kHz stereo (48 kHz for the lossy ones) in its own subtype, so any
resampling, dithering, requantising or off-by-one frame shows as a sample that differs.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.settings import Settings
from indexer.pipeline import index_paths
from indexer.regions import RegionError, frame_at, plan_region
from storage.catalog import Catalog
from tests.planted import PlantedEncoder

RATE = 44_100
# name → (container, subtype)
EXACT = {
    "pcm16.wav": ("WAV", "PCM_16"),
    "pcm24.wav": ("WAV", "PCM_24"),
    "float.wav": ("WAV", "FLOAT"),
    "pcm24.flac": ("FLAC", "PCM_24"),
    "pcm16.aiff": ("AIFF", "PCM_16"),
}
LOSSY = {"lossy.mp3": ("MP3", "MPEG_LAYER_III"), "lossy.ogg": ("OGG", "VORBIS")}
START, END = 0.25, 0.7503  # 0.7503 s → frame 33088.23 → 33088: the rounding rule is exercised


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("regions")
    lib = base / "lib"
    lib.mkdir()
    rng = np.random.default_rng(7)
    for name, (container, subtype) in EXACT.items():
        sf.write(lib / name, rng.uniform(-0.9, 0.9, (RATE, 2)), RATE, format=container, subtype=subtype)
    for name, (container, subtype) in LOSSY.items():
        sf.write(lib / name, rng.uniform(-0.5, 0.5, (48_000, 2)), 48_000, format=container, subtype=subtype)
    outside = base / "outside.wav"
    sf.write(outside, rng.uniform(-0.5, 0.5, (RATE, 1)), RATE, subtype="PCM_16")
    with Catalog.open(base / "home") as catalog:
        summary = index_paths(catalog, PlantedEncoder(), [lib])
        assert summary.failed == 0
    return {"lib": lib, "home": base / "home", "outside": outside, "base": base}


@pytest.fixture(scope="module")
def client(library: dict[str, Path]) -> Iterator[TestClient]:
    app = create_app(Settings(home=library["home"], library_roots=[library["lib"]]), encoder=PlantedEncoder())
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def file_ids(library: dict[str, Path]) -> dict[str, int]:
    with Catalog.open(library["home"], writable=False) as catalog:
        return {f.path.name: f.id for f in catalog.files()}


def assert_exact_cut(data: bytes | Path, source: Path, start_s: float, end_s: float) -> None:
    """The cut decodes to exactly the source's frames [round(start*rate), round(end*rate)), same format."""
    cut_info = sf.info(io.BytesIO(data) if isinstance(data, bytes) else data)
    src_info = sf.info(source)
    assert (cut_info.format, cut_info.subtype, cut_info.samplerate, cut_info.channels) == (
        src_info.format,
        src_info.subtype,
        src_info.samplerate,
        src_info.channels,
    )
    dtype = "float64" if src_info.subtype in ("FLOAT", "DOUBLE") else "int32"
    cut, _ = sf.read(io.BytesIO(data) if isinstance(data, bytes) else data, dtype=dtype, always_2d=True)
    whole, _ = sf.read(source, dtype=dtype, always_2d=True)
    a, b = frame_at(start_s, src_info.samplerate), frame_at(end_s, src_info.samplerate)
    assert len(cut) == b - a
    np.testing.assert_array_equal(cut, whole[a:b])


def test_seconds_become_frames_by_rounding() -> None:
    assert frame_at(1.5, 44_100) == 66_150
    assert frame_at(0.7503, 44_100) == 33_088  # 33 088.23
    assert frame_at(0.75039, 44_100) == 33_092  # 33 092.2
    assert frame_at(1 / 3, 48_000) == 16_000


# --- API -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXACT))
def test_api_region_is_sample_exact(
    client: TestClient, library: dict[str, Path], file_ids: dict[str, int], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(library["base"] / "tmp"))
    (library["base"] / "tmp").mkdir(exist_ok=True)
    r = client.get(f"/api/files/{file_ids[name]}/audio", params={"start": START, "end": END})
    assert r.status_code == 200, r.text
    stem, ext = name.rsplit(".", 1)
    assert r.headers["content-disposition"] == f'attachment; filename="{stem}_0.25-0.75.{ext}"'
    media = {"wav": "audio/wav", "flac": "audio/flac", "aiff": "audio/aiff"}[ext]
    assert r.headers["content-type"] == media
    assert_exact_cut(r.content, library["lib"] / name, START, END)
    assert list((library["base"] / "tmp").iterdir()) == []  # the temporary cut is gone once sent


def test_api_without_a_region_still_serves_the_whole_file_with_ranges(
    client: TestClient, library: dict[str, Path], file_ids: dict[str, int]
) -> None:
    source = (library["lib"] / "pcm24.wav").read_bytes()
    r = client.get(f"/api/files/{file_ids['pcm24.wav']}/audio", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == source[10:20]
    assert r.headers["content-disposition"].startswith("inline")


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_api_lossy_source_is_refused_unless_reencoded(
    client: TestClient, library: dict[str, Path], file_ids: dict[str, int], name: str
) -> None:
    url = f"/api/files/{file_ids[name]}/audio"
    r = client.get(url, params={"start": 0.1, "end": 0.2})
    assert r.status_code == 422 and "lossy" in r.json()["detail"] and "re-encode" in r.json()["detail"]
    r = client.get(url, params={"start": 0.1, "end": 0.2, "reencode": "flac"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    assert r.headers["content-disposition"].endswith('_0.1-0.2.flac"')
    info = sf.info(io.BytesIO(r.content))
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "FLAC",
        "PCM_24",
        48_000,
        2,
        4800,
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": 0.5, "end": 0.5}, "must come before end"),
        ({"start": 0.6, "end": 0.2}, "must come before end"),
        ({"start": 0.5, "end": 1.5}, "beyond the end"),
        ({"start": 2.0, "end": 3.0}, "beyond the end"),
        ({"start": 0.5}, "both start and end"),
        ({"end": 0.5}, "both start and end"),
        ({"start": -0.1, "end": 0.5}, "start"),
        ({"start": "abc", "end": 0.5}, "start"),
        ({"start": 0.1, "end": 0.2, "reencode": "mp3"}, "reencode"),
        ({"start": 0.1, "end": 0.2, "reencode": "wav"}, "cut exactly as is"),
        ({"start": 0.1, "end": 0.100001}, "shorter than one sample"),
    ],
)
def test_api_bad_ranges_are_422_problems(
    client: TestClient, file_ids: dict[str, int], params: dict[str, str | float], message: str
) -> None:
    r = client.get(f"/api/files/{file_ids['pcm16.wav']}/audio", params=params)
    assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_api_region_of_an_unknown_file_is_404(client: TestClient) -> None:
    assert client.get("/api/files/424242/audio", params={"start": 0, "end": 1}).status_code == 404


# --- core ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_non_times_are_refused(library: dict[str, Path], value: float) -> None:
    with pytest.raises(RegionError, match="time in seconds"):
        plan_region(library["lib"] / "pcm16.wav", value, 0.5)


def test_a_file_that_is_not_audio_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnope")
    with pytest.raises(RegionError, match="cannot read as audio"):
        plan_region(junk, 0, 0.1)


# --- CLI -------------------------------------------------------------------------------------------


def export(library: dict[str, Path], *args: str) -> int:
    return main(["--home", str(library["home"]), "export", *args])


@pytest.mark.parametrize("name", sorted(EXACT))
def test_cli_export_by_path_is_sample_exact(
    library: dict[str, Path], tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"cut.{name.rsplit('.', 1)[1]}"
    assert export(library, str(library["lib"] / name), "--start", str(START), "--end", str(END), "--out", str(out)) == 0
    assert_exact_cut(out, library["lib"] / name, START, END)
    assert "sample-exact" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # nothing left beside it


def test_cli_export_by_id_refuses_to_overwrite_without_force(
    library: dict[str, Path], file_ids: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cut.flac"
    out.write_bytes(b"precious")
    args = [str(file_ids["pcm24.flac"]), "--start", "0", "--end", "1", "--out", str(out)]
    assert export(library, *args) == 2
    assert "exists: add --force" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert export(library, *args, "--force") == 0
    assert_exact_cut(out, library["lib"] / "pcm24.flac", 0, 1)


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_cli_lossy_refused_then_reencoded_honestly(
    library: dict[str, Path], tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cut.wav"
    args = [str(library["lib"] / name), "--start", "0.5", "--end", "0.75", "--out", str(out)]
    assert export(library, *args) == 2
    err = capsys.readouterr().err
    assert "lossy encoding" in err and "--reencode" in err and not out.exists()
    assert export(library, *args, "--reencode", "wav") == 0
    assert "re-encoded from" in capsys.readouterr().out
    info = sf.info(out)
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == (
        "WAV",
        "FLOAT",
        48_000,
        2,
        12_000,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "0.8", "--end", "0.2"], "must come before end"),
        (["--start", "0", "--end", "1.01"], "beyond the end"),
        (["--start", "-1", "--end", "0.5"], "0 or more"),
        (["--start", "0", "--end", "0.5", "--reencode", "flac"], "cut exactly as is"),
    ],
)
def test_cli_bad_ranges(
    library: dict[str, Path], tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cut.wav"
    assert export(library, str(library["lib"] / "pcm16.wav"), *args, "--out", str(out)) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_cli_refuses_paths_outside_the_library_and_wrong_endings(
    library: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cut.wav"
    assert export(library, str(library["outside"]), "--start", "0", "--end", "0.5", "--out", str(out)) == 2
    assert "outside the library roots" in capsys.readouterr().err
    escape = library["lib"] / "link.wav"
    escape.symlink_to(library["outside"])  # inside the root by name, outside once resolved
    try:
        assert export(library, str(escape), "--start", "0", "--end", "0.5", "--out", str(out)) == 2
        assert "outside the library roots" in capsys.readouterr().err
    finally:
        escape.unlink()
    flac_out = tmp_path / "cut.mp3"
    assert (
        export(library, str(library["lib"] / "pcm24.flac"), "--start", "0", "--end", "0.5", "--out", str(flac_out)) == 2
    )
    assert "must end in .flac" in capsys.readouterr().err
    assert export(library, "424242", "--start", "0", "--end", "0.5", "--out", str(out)) == 2
    assert "no file with id 424242" in capsys.readouterr().err
    assert not out.exists() and not flac_out.exists()
