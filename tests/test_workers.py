"""Several server processes over one catalog, as real processes on loopback ports.

- Two `soundsearch serve` started by hand on one catalog (SQLite, PostgreSQL) both serve a file that a third
  process (`soundsearch index`) adds, within seconds; SIGINT and SIGTERM each stop one cleanly, also one that
  inherited them ignored (a script's background job).
- `soundsearch serve --workers 2` answers from two processes on one port, both serve the new file, and SIGTERM
  to the supervisor or Ctrl-C (SIGINT to the process group) stops every worker: no orphans.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from indexer import load_encoder
from indexer.pipeline import index_paths
from storage.catalog import Catalog
from tests.conftest import tone_mix
from tests.live_server import free_port

START_S = 240.0  # a worker imports torch and loads two models: slow on a busy CI machine
VISIBLE_S = 5.0  # an index change must reach every server within this
NEW = "Zebracorn_Roar.wav"


def write_wav(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone_mix(1.0, 16_000, seed=seed), 16_000)


def make_catalog(tmp_path: Path, db_url: str | None) -> list[str]:
    """A tiny-random catalog of three files; `second/` holds the file the tests index later."""
    for i in range(3):
        write_wav(tmp_path / "lib" / "first" / f"Door_Knock_{i}.wav", seed=i)
    write_wav(tmp_path / "lib" / "second" / NEW, seed=10)
    with Catalog.open(tmp_path / "home", db_url=db_url) as catalog:
        index_paths(catalog, load_encoder("tiny-random"), [tmp_path / "lib" / "first"])
    return ["--home", str(tmp_path / "home"), *(["--db-url", db_url] if db_url else [])]


def cli(catalog: list[str], *args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", *catalog, *args]


@contextmanager
def servers(
    catalog: list[str], logs: list[Path], *args: str, background: Collection[Path] = ()
) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """`soundsearch serve` processes started together (each in its own process group, as a terminal starts a
    command: Ctrl-C reaches the whole group), once all answer; killed at the end if a test left them running.

    Those whose log is in `background` start with SIGINT and SIGTERM ignored, as a script's `soundsearch serve &`
    does (and pytest's own children, when pytest itself runs so)."""
    # Long keep-alive: a client's connection stays with the worker that accepted it. A short header deadline
    # shows each worker runs our GuardedH11Protocol (plain h11 holds a silent connection forever).
    env = {**os.environ, "SOUNDSEARCH_KEEP_ALIVE_TIMEOUT": "600", "SOUNDSEARCH_HEADER_TIMEOUT": "1"}
    started = []
    try:
        for log in logs:
            port = free_port()
            with log.open("wb") as out:
                command = cli(catalog, "serve", "--port", str(port), *args)
                if log in background:  # exec keeps the pid, and ignored signals stay ignored across it
                    command = ["sh", "-c", 'trap "" INT TERM; exec "$0" "$@"', *command]
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            started.append((proc, f"http://127.0.0.1:{port}", log))
        deadline = time.monotonic() + START_S
        for proc, url, log in started:
            while not answers(url):
                assert proc.poll() is None, f"server exited with {proc.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"server did not start:\n{log.read_text()}"
                time.sleep(0.2)
        yield [(proc, url) for proc, url, _ in started]
    finally:
        for proc, _, _ in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/status", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, *, group: bool = False) -> int:
    """Send `sig` (to the whole group: Ctrl-C in a terminal); the exit status, once it ended within a minute."""
    (os.killpg if group else os.kill)(proc.pid, sig)
    return proc.wait(timeout=60)


def group_members(pgid: int) -> list[int]:
    """Processes still in the server's process group (everything it started, unless that left the group)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def serves_new_file(client: httpx.Client) -> bool:
    hits = client.get("/api/search", params={"q": "zebracorn roar", "k": 20, "mode": "text"}).json()["hits"]
    return [h["name"] for h in hits] == [NEW]


def index_new_file(catalog: list[str], tmp_path: Path) -> float:
    """Runs `soundsearch index` in a third process; the moment it finished."""
    args = ("index", str(tmp_path / "lib" / "second"), "--model", "tiny-random")
    done = subprocess.run(cli(catalog, *args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return time.monotonic()


def wait_until_all_serve_it(clients: list[httpx.Client], since: float) -> None:
    waiting = list(clients)
    while waiting:
        waiting = [c for c in waiting if not serves_new_file(c)]
        assert time.monotonic() - since < VISIBLE_S, f"{len(waiting)} server(s) still without the new file"
        time.sleep(0.05)


def test_servers_started_by_hand_serve_a_change_made_by_a_third_process(tmp_path: Path, db_url: str | None) -> None:
    catalog = make_catalog(tmp_path, db_url)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    # One of the two starts as a script's background job (SIGINT and SIGTERM ignored), the other as a terminal
    # starts it; which one alternates with the database, so each signal ends a server started either way.
    background = logs[:1] if db_url is None else logs[1:]
    with ExitStack() as stack:
        (first, url_1), (second, url_2) = stack.enter_context(servers(catalog, logs, background=background))
        clients = [stack.enter_context(httpx.Client(base_url=url, timeout=30)) for url in (url_1, url_2)]
        assert not any(serves_new_file(c) for c in clients)
        wait_until_all_serve_it(clients, since=index_new_file(catalog, tmp_path))
        assert [c.get("/api/status").json()["files"] for c in clients] == [4, 4]
        # Each finishes its requests, then ends as the signal asks: "interrupted" (130), or by SIGTERM; also when
        # it inherited the signal ignored (uvicorn caught it anyway, then re-raised it into SIG_IGN: exit 0).
        assert stop(first, signal.SIGINT) == 130 and stop(second, signal.SIGTERM) == -signal.SIGTERM
        for log in ("first.log", "second.log"):
            assert "Application shutdown complete" in (tmp_path / log).read_text()


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm-to-supervisor", "sigint-to-group"])
def test_workers_share_a_port_serve_the_same_data_and_stop_together(tmp_path: Path, ctrl_c: bool) -> None:
    catalog = make_catalog(tmp_path, None)
    with ExitStack() as stack:
        ((supervisor, url),) = stack.enter_context(servers(catalog, [tmp_path / "serve.log"], "--workers", "2"))
        # One connection per client, kept open (httpx drops idle ones after 5 s unless told otherwise): each
        # stays with the worker that accepted it.
        by_pid: dict[int, httpx.Client] = {}
        deadline = time.monotonic() + 60
        while len(by_pid) < 2:
            assert time.monotonic() < deadline, f"one worker answered every connection: {list(by_pid)}"
            client = stack.enter_context(
                httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1, keepalive_expiry=600))
            )
            by_pid.setdefault(client.get("/api/status").json()["pid"], client)
        assert supervisor.pid not in by_pid
        for pid, client in by_pid.items():
            assert client.get("/api/status").json()["pid"] == pid  # still the same worker
            assert not serves_new_file(client)
        silent = [socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) for _ in range(4)]
        for sock in silent:  # spread over the workers by the kernel: every one closes them
            sock.settimeout(5)
            assert sock.recv(1) == b"", "a silent connection outlived the header deadline"
            sock.close()
        wait_until_all_serve_it(list(by_pid.values()), since=index_new_file(catalog, tmp_path))
        assert {pid: c.get("/api/status").json()["pid"] for pid, c in by_pid.items()} == {p: p for p in by_pid}
        assert stop(supervisor, signal.SIGINT if ctrl_c else signal.SIGTERM, group=ctrl_c) == 0
        log = (tmp_path / "serve.log").read_text()
        assert log.count("Application shutdown complete") == 2, log  # both finished their requests
        deadline = time.monotonic() + 10
        while left := group_members(supervisor.pid):  # workers, multiprocessing's resource tracker
            assert time.monotonic() < deadline, f"left running: {left}\n{log}"
            time.sleep(0.1)


def test_workers_that_cannot_start_stop_the_server_with_an_error(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path, None)
    command = cli(catalog, "serve", "--port", str(free_port()), "--workers", "2", "--model", "no/such-model")
    done = subprocess.run(command, capture_output=True, text=True, timeout=START_S)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "soundsearch: error: a server worker failed to start (its error is logged above)"
    )
    assert "no/such-model" in done.stderr  # the worker's own error, logged
