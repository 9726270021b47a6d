"""The server against real-world faults, over real sockets (uvicorn on a loopback port).

- Another process (the CLI) indexes the catalog: the running server's vector and text search both
  see the new files at the next query, so hybrid results agree with themselves.
- A failed indexing job leaves the server serving what the database holds.
- A request waiting for the encoder never holds up the event loop: /healthz answers at once.
- Uploads longer than `max_upload_seconds` once decoded are refused, saying the limit.
- Idle, half-open and slow (slowloris) connections are closed within their deadlines.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from indexer import load_encoder
from indexer.pipeline import index_paths
from storage.catalog import Catalog
from tests.conftest import tone_mix
from tests.live_server import serving
from tests.planted import SR, PlantedEncoder, tone, write
from tests.test_api import build_catalog, build_library, wait_for

FAST_DEADLINES: dict[str, Any] = {"header_timeout": 1.0, "keep_alive_timeout": 1, "body_timeout": 1.0}


def names(hits: Sequence[dict[str, Any]]) -> set[str]:
    return {h["name"] for h in hits}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FastAPI]]:
    base = tmp_path_factory.mktemp("server")
    build_catalog(base / "home", build_library(base / "lib"), None)
    settings = Settings(home=base / "home", max_upload_seconds=60, **FAST_DEADLINES)
    app = create_app(settings, encoder=PlantedEncoder())
    with serving(app, settings) as url:
        yield url, app


# --- another process writes the catalog -------------------------------------------------------------


def test_files_another_process_indexes_are_searchable_by_vector_and_text(tmp_path: Path) -> None:
    encoder = load_encoder("tiny-random")
    home = tmp_path / "home"
    for i in range(4):
        write_wav(tmp_path / "lib" / "first" / f"Door_Knock_{i}.wav", tone_mix(1.0, 16_000, seed=i), 16_000)
    with Catalog.open(home) as catalog:
        index_paths(catalog, encoder, [tmp_path / "lib" / "first"])
    settings = Settings(home=home)
    with serving(create_app(settings, encoder=encoder), settings) as url, httpx.Client(base_url=url) as client:

        def search(mode: str) -> list[dict[str, Any]]:
            r = client.get("/api/search", params={"q": "zebracorn roar", "k": 50, "mode": mode})
            assert r.status_code == 200, r.text
            hits: list[dict[str, Any]] = r.json()["hits"]
            return hits

        assert len(search("vector")) == 4 and search("text") == []
        new = {f"Zebracorn_Roar_{i}.wav" for i in range(6)}
        for i, name in enumerate(sorted(new)):
            write_wav(tmp_path / "lib" / "second" / name, tone_mix(1.5, 16_000, seed=10 + i), 16_000)
        cli = [sys.executable, "-m", "api.cli", "--home", str(home), "index", str(tmp_path / "lib" / "second")]
        done = subprocess.run([*cli, "--model", "tiny-random"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

        deadline = time.monotonic() + 2.0
        while len(search("vector")) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(search("vector")) == 10  # the new vectors, without a restart
        assert names(search("text")) == new
        hybrid = {h["name"]: h["matched_by"] for h in search("hybrid")}
        assert all(hybrid[name] == ["vector", "text"] for name in new)  # both halves of one snapshot
        assert client.get("/api/status").json()["segments"] == client.get("/api/status").json()["files"] == 10


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate)


class FailingEncoder(PlantedEncoder):
    """The planted model, failing at its `fail_at`-th audio batch (a model running out of memory)."""

    def __init__(self, fail_at: int) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory")
        return super().embed_audio(clips)


def test_a_failed_job_leaves_the_server_on_what_the_database_holds(tmp_path: Path) -> None:
    home, roots = tmp_path / "home", tmp_path / "roots"
    build_catalog(home, build_library(roots / "lib"), None)
    for i in range(80):  # one window each: batches of 8, a commit after 64 files, a failure at the 10th batch
        write(roots / "many" / f"Quokka_Call_{i:02d}.wav", tone(3, 0.2 + i / 1000))
    app = create_app(Settings(home=home, library_roots=[roots]), encoder=FailingEncoder(fail_at=10))
    with TestClient(app) as client:
        job = wait_for(client, client.post("/api/index", json={"paths": [str(roots / "many")]}).json()["id"])
        assert job["state"] == "failed" and "out of memory" in job["error"]
        with Catalog.open(home, writable=False) as fresh:
            stored = {f.path.name for f in fresh.files()}
        # A partial snapshot: at least the chunk committed after 64 files (more when the 15 s commit timer
        # fires first on a loaded machine), never all 80.
        assert 8 + 64 <= len(stored) < 8 + 80
        vector = client.get("/api/search", params={"q": "voice", "k": 200, "mode": "vector"}).json()["hits"]
        text = client.get("/api/search", params={"q": "quokka", "k": 200, "mode": "text"}).json()["hits"]
        assert names(vector) == stored
        assert names(text) == {name for name in stored if name.startswith("Quokka_Call")}


# --- the event loop -----------------------------------------------------------------------------


def test_healthz_answers_while_requests_wait_for_the_encoder(planted: tuple[str, FastAPI]) -> None:
    url, app = planted
    upload = {"file": ("rec.wav", wav_bytes(tone(6, 2.0)), "audio/wav")}
    with ThreadPoolExecutor(2) as pool:
        with app.state.services.encoder.lock:  # as a long upload or indexing batch holds the model
            search = pool.submit(httpx.get, f"{url}/api/search", params={"q": "whistle never asked before"}, timeout=30)
            example = pool.submit(httpx.post, f"{url}/api/search/audio", files=upload, timeout=30)
            time.sleep(0.3)  # both are waiting for the model by now
            took = []
            for _ in range(5):
                t0 = time.perf_counter()
                assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
                took.append(time.perf_counter() - t0)
            assert not search.done() and not example.done()
        assert max(took) < 0.5, took
        assert search.result().status_code == 200 and example.result().status_code == 200


# --- uploads ------------------------------------------------------------------------------------


def wav_bytes(samples: np.ndarray, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, SR, format=fmt)
    return buf.getvalue()


def test_uploads_longer_than_the_limit_are_refused_saying_it(planted: tuple[str, FastAPI]) -> None:
    url, _ = planted
    two_minutes = wav_bytes(np.zeros(120 * SR, dtype=np.float32), fmt="FLAC")  # silence: a few kB
    assert len(two_minutes) < 20_000
    for endpoint, extra in (("/api/search/audio", {}), ("/api/classify", {"labels": "a, b"})):
        r = httpx.post(f"{url}{endpoint}", files={"file": ("long.flac", two_minutes)}, data=extra, timeout=30)
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == ("upload lasts 2 min 0 s; the limit is 1 min 0 s of audio (max_upload_seconds=60)")
    under = wav_bytes(np.zeros(50 * SR, dtype=np.float32), fmt="FLAC")
    assert httpx.post(f"{url}/api/search/audio", files={"file": ("ok.flac", under)}, timeout=30).status_code == 200


# --- idle and slow clients ----------------------------------------------------------------------


def closed_within(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it was still open at `deadline`."""
    received = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def test_idle_half_open_and_slow_connections_are_closed(planted: tuple[str, FastAPI]) -> None:
    url, _ = planted
    host, port = url.removeprefix("http://").split(":")
    socks: list[tuple[str, socket.socket]] = []

    def connect(kind: str, send: bytes = b"") -> socket.socket:
        sock = socket.create_connection((host, int(port)))
        if send:
            sock.sendall(send)
        socks.append((kind, sock))
        return sock

    try:
        t0 = time.monotonic()
        for _ in range(20):
            connect("silent")
        for _ in range(15):
            connect("slow head", b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        for _ in range(10):
            connect("half-open", b"GET /hea").shutdown(socket.SHUT_WR)
        for _ in range(4):
            connect("kept alive", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b"POST /api/search/audio HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
        form = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
        connect("slow body", head + b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" + form)
        assert len(socks) == 50
        deadline = t0 + FAST_DEADLINES["header_timeout"] + 3.0
        still_open = []
        for kind, sock in socks:
            received = closed_within(sock, deadline)
            if received is None:
                still_open.append(kind)
            elif kind == "kept alive":
                assert received.startswith(b"HTTP/1.1 200")
            elif kind == "slow body":
                assert received.startswith(b"HTTP/1.1 408") and b"request body stalled" in received
        assert still_open == [], f"{len(still_open)} connections still open: {sorted(set(still_open))}"
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # and the server serves on
    finally:
        for _, sock in socks:
            sock.close()
