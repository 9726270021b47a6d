"""Real-world faults: odd rates, lying headers, non-UTF-8 names, symlinks out, library errors in one file."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.settings import Settings
from indexer import load_encoder
from indexer.audio import StreamingResampler, load_audio, probe
from indexer.encoders.base import Encoder
from indexer.errors import AudioDecodeError
from indexer.fsnames import display, from_stored, to_stored
from indexer.pipeline import IndexOptions, index_paths
from storage.catalog import Catalog, FileStatus
from tests.hostile import LATIN1_NAME, flac_claiming_hours, make_hostile_library, tone_wav, wav_at_rate
from tests.planted import PlantedEncoder

INDEXED = {"tone_48k.wav", "tone_44k.wav", "rate_999983.wav", "rate_7919.wav", "inside.wav", "latin1_\ufffdt\ufffd.wav"}
REFUSED = {"rate_1hz.wav": "implausible sample rate 1 Hz", "hours_in_few_bytes.flac": "398 h of audio"}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder("tiny-random")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_hostile_library(tmp_path_factory.mktemp("hostile"))


# --- resampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("orig", [1, 7_919, 44_056, 999_983, 1_000_000])
def test_any_rate_resamples_in_bounded_memory(orig: int) -> None:
    """Prime and huge ratios: the exact sinc kernel would take GBs (7 919 Hz) or hundreds (999 983 Hz)."""
    seconds = 40.0 if orig == 1 else 0.5
    freq = 0.1 if orig == 1 else 1_000.0
    n = int(seconds * orig)
    x = (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / orig)).astype(np.float32)
    tracemalloc.start()
    r = StreamingResampler(orig, 48_000)
    step = max(1, n // 7)
    y = np.concatenate([*(r.push(x[i : i + step]) for i in range(0, n, step)), r.flush()])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert abs(len(y) - n * 48_000 / orig) <= 1
    # The same sine at the new rate, away from the edges (filter warm-up).
    t = np.arange(len(y)) / 48_000
    middle = slice(len(y) // 5, 4 * len(y) // 5)
    expected = 0.5 * np.sin(2 * np.pi * freq * t)
    assert np.abs(y[middle] - expected[middle]).max() < 2e-3


# --- headers ---------------------------------------------------------------------------------------


def test_absurd_headers_are_refused_with_the_reason(tmp_path: Path) -> None:
    cases = {
        "one_hz.wav": (wav_at_rate(1), "implausible sample rate 1 Hz"),
        "two_mhz.wav": (wav_at_rate(2_000_000), "implausible sample rate 2000000 Hz"),
        "hours.flac": (flac_claiming_hours(), "398 h of audio, more than its"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(AudioDecodeError, match=reason):
            probe(tmp_path / name)
    (tmp_path / "ultrasonic.wav").write_bytes(wav_at_rate(999_983))
    audio = load_audio(tmp_path / "ultrasonic.wav", 48_000)
    assert audio.info.sample_rate == 999_983 and abs(audio.duration_s - 0.048) < 1e-3


# --- names -----------------------------------------------------------------------------------------


def test_stored_form_round_trips_and_keeps_prefixes() -> None:
    latin1 = os.fsdecode(b"/lib/caf\xe9/\xe9t\xe9.wav")
    odd = "/lib/\uffffweird\uffff/x.wav"
    for path in (latin1, odd, "/lib/plain/ü.wav"):
        assert from_stored(to_stored(path)) == path
        assert to_stored(path).encode("utf-8")  # storable as UTF-8 text
        assert to_stored(path).startswith(to_stored(os.path.dirname(path)) + "/")
    assert to_stored("/lib/plain/ü.wav") == "/lib/plain/ü.wav"
    assert display(latin1) == "/lib/caf\ufffd/\ufffdt\ufffd.wav"


# --- indexing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [IndexOptions(workers=2), IndexOptions(workers=1, processes=True)], ids=["threads", "processes"]
)
def test_hostile_folder_is_indexed_file_by_file(
    tmp_path: Path, hostile: tuple[Path, Path], encoder: Encoder, options: IndexOptions
) -> None:
    lib, outside = hostile
    with Catalog.open(tmp_path / "home") as catalog:
        summary = index_paths(catalog, encoder, [lib], options=options)
        ok = {display(f.path.name): f for f in catalog.files(status=FileStatus.OK)}
        failed = {f.path.name: f.error or "" for f in catalog.files(status=FileStatus.FAILED)}
        assert ok.keys() == INDEXED
        assert failed.keys() == REFUSED.keys()
        for name, reason in REFUSED.items():
            assert reason in failed[name]
        # The Latin-1 name comes back from the catalog as the bytes on disk.
        latin1 = ok["latin1_\ufffdt\ufffd.wav"].path
        assert os.fsencode(latin1.name) == LATIN1_NAME and latin1.is_file()
        assert ok["rate_999983.wav"].duration_s == pytest.approx(0.048, abs=1e-3)
        skipped = {Path(e["path"]).name: e["reason"] for e in summary.to_dict()["errors"]}
        assert "outside the library roots" in skipped["escape.wav"]
        assert "outside the library roots" in skipped["escape_folder"]
        assert not any(str(outside) in str(f.path) for f in catalog.files())
        json.dumps(summary.to_dict(), ensure_ascii=False).encode("utf-8")  # displayable: no lone surrogates
        again = index_paths(catalog, encoder, [lib], options=options)
        assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, len(INDEXED) + 2)


def test_links_outside_are_followed_only_when_asked(
    tmp_path: Path, hostile: tuple[Path, Path], encoder: Encoder
) -> None:
    lib, _ = hostile
    with Catalog.open(tmp_path / "home") as catalog:
        index_paths(catalog, encoder, [lib], options=IndexOptions(workers=0, follow_links_outside=True))
        names = {f.path.name for f in catalog.files(status=FileStatus.OK)}
    assert {"escape.wav", "more.wav"} <= names


def test_a_library_bug_in_one_file_does_not_stop_the_run(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a library raises on one file's bytes (here a MemoryError from the reader) fails that file only.

    No real file is known to trip one any more (the Latin-1 name's UnicodeEncodeError and the prime rate's
    RuntimeError did, and are fixed), so the library call itself is made to fail for one file.
    """
    for name in ("a.wav", "poison.wav", "z.wav"):
        tone_wav(tmp_path / "lib" / name, 1.0)
    real_read = sf.SoundFile.read

    def read(self: sf.SoundFile, *args: object, **kwargs: object) -> object:
        if b"poison" in os.fsencode(self.name):
            raise MemoryError("cannot allocate the block")
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sf.SoundFile, "read", read)
    for workers in (0, 2):
        with Catalog.open(tmp_path / f"home{workers}") as catalog:
            summary = index_paths(catalog, encoder, [tmp_path / "lib"], options=IndexOptions(workers=workers))
            assert (summary.added, summary.failed) == (2, 1)
            (bad,) = catalog.files(status=FileStatus.FAILED)
            assert bad.path.name == "poison.wav" and "MemoryError: cannot allocate the block" in (bad.error or "")


def test_cli_indexes_the_hostile_folder_and_lists_failures(
    tmp_path: Path, hostile: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (the subprocess start costs more than the run); captured output is strict UTF-8 as a terminal's."""
    lib, _ = hostile
    home = str(tmp_path / "home")
    assert main(["index", str(lib), "--home", home, "--model", "tiny-random", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "6 added" in printed and "2 failed" in printed and "escape.wav: skipped" in printed
    assert main(["status", "--home", home, "--failed"]) == 0
    assert "implausible sample rate 1 Hz" in capsys.readouterr().out
    assert main(["index", str(lib), "--home", home, "--follow-links-outside", "--workers", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 2


# --- the server ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, hostile: tuple[Path, Path]) -> Iterator[TestClient]:
    """A catalog a CLI run built with --follow-links-outside, served over HTTP."""
    home = tmp_path_factory.mktemp("served")
    lib, _ = hostile
    with Catalog.open(home) as catalog:
        index_paths(catalog, PlantedEncoder(), [lib], options=IndexOptions(workers=0, follow_links_outside=True))
    with TestClient(create_app(Settings(home=home, max_upload_mb=0.5), encoder=PlantedEncoder())) as client:
        yield client


def _file_ids(client: TestClient) -> dict[str, int]:
    hits = client.get("/api/search", params={"q": "anything", "k": 50, "mode": "vector"}).json()["hits"]
    return {h["name"]: h["file_id"] for h in hits}


def test_server_plays_a_latin1_name_and_refuses_files_outside_the_roots(
    served: TestClient, hostile: tuple[Path, Path]
) -> None:
    lib, outside = hostile
    ids = _file_ids(served)
    latin1 = ids["latin1_\ufffdt\ufffd.wav"]
    details = served.get(f"/api/files/{latin1}").json()
    assert details["path"].endswith("/odd/latin1_\ufffdt\ufffd.wav")
    audio = served.get(f"/api/files/{latin1}/audio")
    assert audio.status_code == 200
    assert audio.content == (Path(os.fsdecode(os.fsencode(lib / "odd") + b"/" + LATIN1_NAME))).read_bytes()
    assert served.get(f"/api/files/{latin1}/waveform").status_code == 200
    assert served.get(f"/api/files/{ids['inside.wav']}/audio").status_code == 200
    for name in ("escape.wav", "more.wav"):  # indexed through symlinks out of the root: never served
        r = served.get(f"/api/files/{ids[name]}/audio")
        assert r.status_code == 403 and "outside the library roots" in r.json()["detail"]
        assert (outside / "secret.wav").read_bytes() not in r.content


@pytest.mark.parametrize(
    ("rate", "status", "detail"), [(1, 422, "implausible sample rate 1 Hz"), (999_983, 200, ""), (7_919, 200, "")]
)
def test_uploads_at_odd_rates_are_searched_or_refused_with_the_reason(
    served: TestClient, rate: int, status: int, detail: str
) -> None:
    r = served.post("/api/search/audio", files={"file": ("odd.wav", wav_at_rate(rate))}, params={"k": 3})
    assert r.status_code == status, r.text
    if detail:
        assert detail in r.json()["detail"]
