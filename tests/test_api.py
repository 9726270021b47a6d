"""The HTTP API through `TestClient` (the lifespan runs): every endpoint, and the errors it promises.

The catalog is indexed with the planted encoder (tests/planted.py), whose answers are known in
advance: a whistle is band 6, "whistle" in a query means band 6.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings, check_bind
from api.uploads import sniff
from indexer.errors import SoundsearchError
from indexer.pipeline import index_paths
from storage.catalog import Catalog
from tests.planted import SR, PlantedEncoder, noise, tone, write


def build_library(root: Path) -> Path:
    """A small library whose rankings the planted encoder makes predictable."""
    ambience = noise(40.0, seed=1)
    ambience[22 * SR : 28 * SR] += tone(6, 6.0)  # a whistle at 22-28 s
    write(root / "ambience" / "Street_Ambience_Long.wav", ambience)
    write(root / "whistle" / "take_001.wav", tone(6, 3.0))
    write(root / "whistle" / "Whistle_Referee_02.flac", tone(6, 2.0, 0.3) + tone(5, 2.0, 0.1), fmt="FLAC")
    write(root / "engine" / "Engine_Idle_01.wav", tone(2, 4.0))
    write(root / "engine" / "Engine_Rev_02.ogg", tone(2, 3.0) + tone(1, 3.0, 0.2), fmt="OGG")
    chord = tone(4, 4.0, 0.3) + tone(0, 4.0, 0.2)
    write(root / "chimes" / "chord.wav", chord)
    write(root / "chimes" / "chord.flac", chord, fmt="FLAC")
    write(root / "hum" / "Mains_Hum.wav", tone(1, 5.0))
    return root


def build_catalog(home: Path, library: Path, db_url: str | None) -> None:
    with Catalog.open(home, db_url=db_url) as catalog:
        summary = index_paths(catalog, PlantedEncoder(), [library])
        assert summary.added == 8 and summary.failed == 0


def wav_bytes(samples: np.ndarray, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, SR, format=fmt)
    return buf.getvalue()


class FakeCaptioner:
    model_id = "fake-captioner"

    def caption(self, path: Path) -> str:
        seconds = sf.info(str(path)).duration
        return f"a {seconds:.0f} second sound"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, module_db_url: str | None) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("api")
    library = build_library(base / "roots" / "lib")
    build_catalog(base / "home", library, module_db_url)
    outside = base / "outside"
    outside.mkdir()
    (base / "roots" / "escape").symlink_to(outside)  # a symlink inside the root that leads out of it
    return {"base": base, "library": library, "home": base / "home", "roots": base / "roots", "outside": outside}


def make_app(paths: dict[str, Path], db_url: str | None, **settings: Any) -> FastAPI:
    captioner = settings.pop("captioner", None)
    values: dict[str, Any] = {"home": paths["home"], "db_url": db_url, "max_upload_mb": 0.5, **settings}
    return create_app(Settings(**values), encoder=PlantedEncoder(), captioner=captioner)


@pytest.fixture(scope="module")
def client(paths: dict[str, Path], module_db_url: str | None) -> Iterator[TestClient]:
    with TestClient(make_app(paths, module_db_url, library_roots=[paths["roots"]])) as c:
        yield c


@pytest.fixture()
def upload_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Uploads land here; each test checks that nothing is left behind."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def ids(client: TestClient) -> dict[str, int]:
    hits = client.get("/api/search", params={"q": "anything", "k": 50, "mode": "vector"}).json()["hits"]
    return {h["name"]: h["file_id"] for h in hits}


# --- system ---------------------------------------------------------------------------------------


def test_health_status_docs_and_page(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and len(health["catalog_id"]) == 32  # the catalog's uuid, for the CLI
    status = client.get("/api/status").json()
    assert status["files"] == 8 and status["model"] == status["encoder"] == "planted-bands"
    assert status["captioning"] is False and status["indexing_enabled"] is True
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/api/search", "/api/search/audio", "/api/files/{file_id}/audio", "/api/classify", "/api/index"):
        assert path in spec["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="q"' in page.text and client.get("/static/app.js").status_code == 200


# --- search ---------------------------------------------------------------------------------------


def test_text_search_ranks_and_reports_the_matching_segment(client: TestClient) -> None:
    r = client.get("/api/search", params={"q": "whistle", "k": 4, "mode": "vector"})
    assert r.status_code == 200
    body = r.json()
    hits = body["hits"]
    assert hits[0]["name"] == "take_001.wav"
    assert {h["name"] for h in hits[1:3]} == {"Whistle_Referee_02.flac", "Street_Ambience_Long.wav"}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and body["k"] == 4 and len(hits) == 4
    long = next(h for h in hits if h["name"] == "Street_Ambience_Long.wav")
    assert (long["start_s"], long["end_s"]) == (20.0, 30.0)  # the window holding the 22-28 s whistle
    assert hits[0]["folder"] == "lib/whistle" and hits[0]["audio_url"] == f"/api/files/{hits[0]['file_id']}/audio"


def test_search_filters_modes_and_like(client: TestClient) -> None:
    flac = client.get("/api/search", params={"q": "whistle", "format": "flac", "mode": "vector"}).json()["hits"]
    assert {h["name"] for h in flac} == {"Whistle_Referee_02.flac", "chord.flac"}
    short = client.get("/api/search", params={"q": "hum", "max_duration": 3.5, "mode": "vector"}).json()["hits"]
    assert short and all(h["duration_s"] <= 3.5 for h in short)
    folder = client.get("/api/search", params={"q": "hum", "folder": "engine"}).json()["hits"]
    assert {h["name"] for h in folder} == {"Engine_Idle_01.wav", "Engine_Rev_02.ogg"}
    text = client.get("/api/search", params={"q": "referee", "mode": "text"}).json()["hits"]
    assert [h["name"] for h in text] == ["Whistle_Referee_02.flac"] and text[0]["matched_by"] == ["text"]
    chord = ids(client)["chord.wav"]
    liked = client.get("/api/search", params={"q": "hum", "like": chord, "like_weight": 1.0, "mode": "vector"})
    assert liked.json()["hits"][0]["name"] == "chord.flac"  # all example: the same chord, re-encoded


def test_hits_carry_a_readable_audio_score_and_the_matched_words(client: TestClient, upload_dir: Path) -> None:
    hybrid = client.get("/api/search", params={"q": "referee whistle", "k": 8}).json()["hits"]
    by_name = {h["name"]: h for h in hybrid}
    take, named = by_name["take_001.wav"], by_name["Whistle_Referee_02.flac"]
    assert take["audio_score"] > 0.99 and take["score"] < 0.05
    assert take["matched_terms"] == ["whistle"]  # its folder is called whistle
    assert named["matched_terms"] == ["referee", "whistle"] and -1.0 <= named["audio_score"] <= 1.0
    text = client.get("/api/search", params={"q": "referee", "mode": "text"}).json()["hits"]
    assert text[0]["audio_score"] is None and text[0]["matched_terms"] == ["referee"]
    r = client.post("/api/search/audio", files={"file": ("rec.wav", wav_bytes(tone(6, 1.5)))}, params={"k": 1})
    (hit,) = r.json()["hits"]
    assert hit["name"] == "take_001.wav" and hit["audio_score"] == pytest.approx(hit["score"])
    assert (hit["query_start_s"], hit["query_end_s"], hit["matched_terms"]) == (0.0, 1.5, [])
    schema = client.get("/openapi.json").json()["components"]["schemas"]["HitOut"]
    assert {"audio_score", "matched_terms"} <= set(schema["required"])


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"q": "   "}, 422, "empty query"),
        ({"q": "-thunder"}, 422, "only says what to avoid"),
        ({"q": "x" * 1001}, 422, ""),
        ({"q": "hum", "k": 0}, 422, ""),
        ({"q": "hum", "k": 201}, 422, ""),
        ({"q": "hum", "mode": "fuzzy"}, 422, ""),
        ({"q": "hum", "like": 999_999}, 404, "no file with id 999999"),
        ({"q": "hum", "like_weight": 2}, 422, ""),
        ({}, 422, ""),
    ],
)
def test_search_errors(client: TestClient, params: dict[str, Any], status: int, message: str) -> None:
    r = client.get("/api/search", params=params)
    assert r.status_code == status
    assert message in str(r.json()["detail"])


def test_search_by_uploaded_example(client: TestClient, upload_dir: Path) -> None:
    data = wav_bytes(tone(6, 1.5))
    r = client.post("/api/search/audio", files={"file": ("rec.wav", data, "audio/wav")}, params={"k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] is None and body["hits"][0]["name"] == "take_001.wav"
    # The content decides, not the name: FLAC bytes called .wav, with a filter.
    flac = wav_bytes(tone(2, 1.5), fmt="FLAC")
    r = client.post("/api/search/audio", files={"file": ("x.wav", flac)}, params={"folder": "engine", "k": 1})
    assert r.json()["hits"][0]["name"] == "Engine_Idle_01.wav"
    assert list(upload_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"just some text, not audio", 415, "not a supported audio file"),
        (b"", 415, "not a supported audio file"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 415, "not a supported audio file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x01" * 40, 422, "not a readable audio file"),
        (wav_bytes(tone(6, 1.0))[:30], 422, ""),
    ],
)
def test_bad_uploads(client: TestClient, upload_dir: Path, data: bytes, status: int, message: str) -> None:
    for endpoint, extra in (("/api/search/audio", {}), ("/api/classify", {"labels": "a, b"})):
        r = client.post(endpoint, files={"file": ("x.wav", data)}, data=extra)
        assert r.status_code == status, (endpoint, r.text)
        assert message in r.json()["detail"] and "soundsearch-upload" not in r.json()["detail"]
    assert list(upload_dir.iterdir()) == []  # temporary files removed, whatever happened


def test_upload_size_cap(client: TestClient, upload_dir: Path) -> None:
    big = wav_bytes(noise(40.0))  # 640 kB > the 0.5 MB test limit
    r = client.post("/api/search/audio", files={"file": ("big.wav", big)})
    assert r.status_code == 413 and "limit of 0.5 MB" in r.json()["detail"]
    # Just over the limit: the body passes (multipart headers get some slack), the file part does not.
    r = client.post("/api/search/audio", files={"file": ("big.wav", big[:510_000])})
    assert r.status_code == 413 and "limit of 0.5 MB" in r.json()["detail"]
    assert client.post("/api/search/audio", files={"file": ("ok.wav", big[:490_000])}).status_code != 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while the body streams in
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=a.wav\r\n\r\n"
        for _ in range(20):
            yield b"\0" * 50_000

    r = client.post("/api/search/audio", content=chunked(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    assert list(upload_dir.iterdir()) == []


def test_sniffing() -> None:
    assert sniff(wav_bytes(tone(1, 0.1))) == ".wav"
    assert sniff(wav_bytes(tone(1, 0.1), "FLAC")) == ".flac"
    assert sniff(wav_bytes(tone(1, 0.1), "OGG")) == ".ogg"
    assert sniff(wav_bytes(tone(1, 0.1), "AIFF")) == ".aiff"
    assert sniff(b"ID3\x04\x00") == ".mp3" and sniff(b"\xff\xfb\x90\x00") == ".mp3"
    assert sniff(b"\xff\xf1\x50\x80") is None  # ADTS AAC shares MP3's sync word
    assert sniff(b"<html>") is None and sniff(b"") is None


# --- files ----------------------------------------------------------------------------------------


def test_file_details_and_similar(client: TestClient) -> None:
    file_ids = ids(client)
    long = client.get(f"/api/files/{file_ids['Street_Ambience_Long.wav']}").json()
    assert long["duration_s"] == pytest.approx(40.0) and long["sample_rate"] == SR and long["format"] == "WAV"
    assert [(s["start_s"], s["end_s"]) for s in long["segments"]][:2] == [(0.0, 10.0), (5.0, 10.0 + 5.0)]
    similar = client.get(f"/api/files/{file_ids['chord.wav']}/similar", params={"k": 3}).json()["hits"]
    assert similar[0]["name"] == "chord.flac" and "chord.wav" not in [h["name"] for h in similar]
    assert client.get("/api/files/999999").status_code == 404
    assert client.get("/api/files/999999/similar").status_code == 404
    assert client.get("/api/files/0").status_code == 422
    assert client.get("/api/files/abc").status_code == 422


def test_audio_is_served_with_ranges_and_types(client: TestClient, paths: dict[str, Path]) -> None:
    file_ids = ids(client)
    wav_path = paths["library"] / "whistle" / "take_001.wav"
    full = client.get(f"/api/files/{file_ids['take_001.wav']}/audio")
    assert full.status_code == 200 and full.headers["content-type"] == "audio/wav"
    assert full.headers["accept-ranges"] == "bytes" and full.content == wav_path.read_bytes()
    part = client.get(f"/api/files/{file_ids['take_001.wav']}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == wav_path.read_bytes()[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{wav_path.stat().st_size}"
    tail = client.get(f"/api/files/{file_ids['take_001.wav']}/audio", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == wav_path.read_bytes()[-10:]
    bad = client.get(f"/api/files/{file_ids['take_001.wav']}/audio", headers={"Range": "bytes=999999999-"})
    assert bad.status_code == 416
    types = {
        "Whistle_Referee_02.flac": "audio/flac",
        "Engine_Rev_02.ogg": "audio/ogg",
    }
    for name, media_type in types.items():
        assert client.get(f"/api/files/{file_ids[name]}/audio").headers["content-type"] == media_type
    assert client.get("/api/files/424242/audio").status_code == 404


def test_waveform_shows_where_the_sound_is(client: TestClient) -> None:
    file_id = ids(client)["Street_Ambience_Long.wav"]
    r = client.get(f"/api/files/{file_id}/waveform", params={"points": 40})
    assert r.status_code == 200
    body = r.json()
    assert body["points"] == 40 == len(body["peaks"]) and body["duration_s"] == pytest.approx(40.0)
    peaks = np.array(body["peaks"])
    assert peaks.max() == pytest.approx(1.0)
    whistle, rest = peaks[23:27], np.r_[peaks[:21], peaks[29:]]  # one bucket per second
    assert whistle.min() > 2 * rest.max()
    assert client.get(f"/api/files/{file_id}/waveform", params={"points": 2}).status_code == 422
    assert client.get("/api/files/424242/waveform").status_code == 404


# --- classify and caption -------------------------------------------------------------------------


def test_classify_upload_and_indexed_file(client: TestClient, upload_dir: Path) -> None:
    labels = "whistle, engine, rumble"
    r = client.post("/api/classify", files={"file": ("w.wav", wav_bytes(tone(6, 2.0)))}, data={"labels": labels})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"][0]["label"] == "whistle" and body["source"] == "w.wav"
    assert sum(x["score"] for x in body["labels"]) == pytest.approx(1.0, abs=1e-4)
    engine_id = ids(client)["Engine_Rev_02.ogg"]
    r = client.post("/api/classify", data={"labels": labels, "file_id": engine_id, "multi_label": "true"})
    body = r.json()
    scores = {x["label"]: x["score"] for x in body["labels"]}
    assert body["file_id"] == engine_id and body["multi_label"] is True
    assert scores["engine"] > 0.5 > scores["rumble"]
    assert list(upload_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "with_file", "status", "message"),
    [
        ({"labels": "dog, cat"}, False, 422, "either an audio file"),
        ({"labels": "dog, cat", "file_id": "1"}, True, 422, "either an audio file"),
        ({"labels": "dog,,cat", "file_id": "1"}, False, 422, "blank label"),
        ({"labels": "dog, Dog", "file_id": "1"}, False, 422, "duplicate"),
        ({"labels": ",".join(f"l{i}" for i in range(101)), "file_id": "1"}, False, 422, "too many labels"),
        ({"labels": "dog, cat", "file_id": "999999"}, False, 404, "no file"),
        ({"file_id": "1"}, False, 422, ""),
    ],
)
def test_classify_errors(client: TestClient, data: dict[str, str], with_file: bool, status: int, message: str) -> None:
    files = {"file": ("w.wav", wav_bytes(tone(6, 1.0)))} if with_file else None
    r = client.post("/api/classify", data=data, files=files)
    assert r.status_code == status, r.text
    assert message in str(r.json()["detail"])


def test_caption_without_a_model_is_503(client: TestClient, upload_dir: Path) -> None:
    r = client.post("/api/caption", files={"file": ("w.wav", wav_bytes(tone(6, 1.0)))})
    assert r.status_code == 503 and r.json()["detail"] == "no captioning model is configured"
    assert list(upload_dir.iterdir()) == []


def test_caption_with_a_plugged_in_captioner(
    paths: dict[str, Path], module_db_url: str | None, upload_dir: Path
) -> None:
    with TestClient(make_app(paths, module_db_url, captioner=FakeCaptioner())) as c:
        assert c.get("/api/status").json()["captioning"] is True
        r = c.post("/api/caption", files={"file": ("w.wav", wav_bytes(tone(6, 3.0)))})
        assert r.status_code == 200 and r.json() == {"caption": "a 3 second sound"}
        assert c.post("/api/caption", files={"file": ("n.txt", b"hello")}).status_code == 415
    assert list(upload_dir.iterdir()) == []


# --- indexing -------------------------------------------------------------------------------------


def wait_for(client: TestClient, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_index_job_runs_reports_progress_and_updates_search(client: TestClient, paths: dict[str, Path]) -> None:
    new = paths["roots"] / "new"
    write(new / "Bird_Chirp_01.wav", tone(5, 2.0))
    write(new / "Bird_Chirp_02.wav", tone(5, 3.0) + tone(6, 3.0, 0.1))
    write(new / "broken.wav", np.zeros(0, dtype=np.float32))
    r = client.post("/api/index", json={"paths": [str(new)]})
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"])
    assert job["state"] == "done", job
    assert job["files_total"] == 3 and job["files_done"] == 3
    assert job["summary"]["added"] == 2 and job["summary"]["failed"] == 1
    hits = client.get("/api/search", params={"q": "bird", "k": 2, "mode": "vector"}).json()["hits"]
    assert {h["name"] for h in hits} == {"Bird_Chirp_01.wav", "Bird_Chirp_02.wav"}  # searchable at once
    assert client.get("/api/status").json()["files"] == 10
    assert client.get("/api/jobs/nope").status_code == 404


def test_index_refuses_paths_outside_the_roots(client: TestClient, paths: dict[str, Path]) -> None:
    def post(path: str) -> tuple[int, str]:
        r = client.post("/api/index", json={"paths": [path]})
        return r.status_code, str(r.json()["detail"])

    assert post(str(paths["outside"]))[0] == 403
    assert post(str(paths["roots"] / "escape"))[0] == 403  # symlink resolved: it leads outside
    assert post(str(paths["roots"] / ".." / "outside"))[0] == 403
    assert post("/etc")[0] == 403
    assert post(str(paths["outside"] / "does-not-exist"))[0] == 403  # existence outside is not revealed
    assert post(str(paths["roots"] / "missing")) == (404, f"{paths['roots'] / 'missing'}: no such folder")
    assert post(str(paths["library"] / "hum" / "Mains_Hum.wav"))[0] == 422
    assert post("relative/folder")[0] == 422
    assert post("/tmp/a\x00b")[0] == 422
    assert client.post("/api/index", json={"paths": []}).status_code == 422


def test_index_without_roots_is_forbidden(paths: dict[str, Path], module_db_url: str | None) -> None:
    with TestClient(make_app(paths, module_db_url)) as c:
        r = c.post("/api/index", json={"paths": [str(paths["library"])]})
        assert r.status_code == 403 and "no library roots are configured" in r.json()["detail"]


def test_one_job_at_a_time_and_a_busy_catalog(
    client: TestClient, paths: dict[str, Path], module_db_url: str | None
) -> None:
    folder = paths["roots"] / "busy"
    write(folder / "a.wav", tone(3, 1.0))
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.encoder.lock:  # the job blocks at its first model call: it is surely still running
        first = client.post("/api/index", json={"paths": [str(folder)]})
        assert first.status_code == 202
        second = client.post("/api/index", json={"paths": [str(folder)]})
        assert second.status_code == 409 and "already running" in second.json()["detail"]
    assert wait_for(client, first.json()["id"])["state"] == "done"

    write(folder / "b.wav", tone(3, 2.0))
    # Another handle's lock: the lock file's or the database's, as a CLI run in another process holds it.
    with Catalog.open(paths["home"], db_url=module_db_url) as other, other.run_lock():
        job = wait_for(client, client.post("/api/index", json={"paths": [str(folder)]}).json()["id"])
    assert job["state"] == "failed" and "another indexing run" in job["error"]


def test_api_key_guards_mutating_endpoints(paths: dict[str, Path], module_db_url: str | None) -> None:
    with TestClient(make_app(paths, module_db_url, api_key="s3cret", library_roots=[paths["roots"]])) as c:
        write(paths["roots"] / "keyed" / "k.wav", tone(7, 1.0))
        body = {"paths": [str(paths["roots"] / "keyed")]}
        missing = c.post("/api/index", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "X-API-Key"
        assert c.post("/api/index", json=body, headers={"X-API-Key": "wrong"}).status_code == 403
        ok = c.post("/api/index", json=body, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 202
        assert wait_for(c, ok.json()["id"])["state"] == "done"
        assert c.get("/api/search", params={"q": "hum"}).status_code == 200  # reads stay open
        assert c.get("/api/status").json()["api_key_required"] is True


# --- settings and serving -------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSEARCH_LIBRARY_ROOTS", "/a/b:/c")
    monkeypatch.setenv("SOUNDSEARCH_CORS_ORIGINS", "http://x.test, http://y.test")
    monkeypatch.setenv("SOUNDSEARCH_MAX_UPLOAD_MB", "2")
    s = Settings()
    assert s.library_roots == [Path("/a/b"), Path("/c")] and s.cors_origins == ["http://x.test", "http://y.test"]
    assert s.max_upload_bytes == 2_000_000 and s.host == "127.0.0.1"


def test_cors_origins(paths: dict[str, Path], module_db_url: str | None) -> None:
    with TestClient(make_app(paths, module_db_url, cors_origins=["http://studio.test"])) as c:
        r = c.get("/healthz", headers={"Origin": "http://studio.test"})
        assert r.headers["access-control-allow-origin"] == "http://studio.test"
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "http://evil.test"}).headers


@pytest.mark.parametrize(
    ("host", "key", "public", "allowed"),
    [
        ("127.0.0.1", None, False, True),
        ("localhost", None, False, True),
        ("::1", None, False, True),
        ("0.0.0.0", None, False, False),
        ("192.168.1.20", None, False, False),
        ("0.0.0.0", "k", False, True),
        ("0.0.0.0", None, True, True),
    ],
)
def test_no_public_listening_without_a_key(host: str, key: str | None, public: bool, allowed: bool) -> None:
    settings = Settings(host=host, api_key=key, allow_public=public)
    if allowed:
        check_bind(settings)
    else:
        with pytest.raises(SoundsearchError, match="refusing to listen"):
            check_bind(settings)


def test_serve_command_refuses_a_public_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--home", str(tmp_path)]) == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in capsys.readouterr().err


def test_index_job_captions_new_files_when_asked(paths: dict[str, Path], module_db_url: str | None) -> None:
    folder = paths["roots"] / "captioned"
    write(folder / "Long_Drone.wav", tone(1, 4.0))
    body = {"paths": [str(folder)], "caption": True}
    with TestClient(make_app(paths, module_db_url, library_roots=[paths["roots"]])) as c:
        refused = c.post("/api/index", json=body)
        assert refused.status_code == 503 and "captioning" in refused.json()["detail"]
    with TestClient(make_app(paths, module_db_url, library_roots=[paths["roots"]], captioner=FakeCaptioner())) as c:
        job = wait_for(c, c.post("/api/index", json=body).json()["id"])
        assert job["state"] == "done" and job["summary"]["captioned"] == 1, job
        hits = c.get("/api/search", params={"q": "second sound", "mode": "text"}).json()["hits"]
        assert [(h["name"], h["caption"]) for h in hits] == [("Long_Drone.wav", "a 4 second sound")]
