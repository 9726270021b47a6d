"""The instant CLI: what each command imports, and reads answered by a running `soundsearch serve`.

Imports are checked in a fresh interpreter (a wrapper prints `sys.modules` as it exits), since this test
process has torch loaded already. The server is a real `soundsearch serve` subprocess on a free port; its
access log shows which requests reached it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from api.address import ServerAddress, address_path, database_fingerprint, find_server, publish, read
from api.cli import main
from storage.catalog import CatalogStatus
from storage.location import database_url

MODEL = "tiny-random"
HEAVY = ("torch", "transformers", "torchaudio", "faiss", "sqlalchemy", "numpy", "fastapi")
# Prints the top-level packages loaded when the CLI exits, whatever way it exits (argparse calls sys.exit).
WRAPPER = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules}))))
from api.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli(*args: str) -> tuple[int, str, set[str]]:
    """Run the CLI in a fresh interpreter: exit code, stdout, and the top-level packages it imported."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, timeout=300)
    _, _, modules = proc.stderr.rpartition("\nMODULES ")
    assert modules, proc.stderr
    return proc.returncode, proc.stdout, set(json.loads(modules))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fastcli")
    lib = base / "lib"
    lib.mkdir()
    rng = np.random.default_rng(3)
    for name in ("rain_on_roof", "dog_bark", "car_engine", "door_slam"):
        sf.write(lib / f"{name}.wav", rng.uniform(-0.3, 0.3, 16_000), 16_000)
    assert main(["index", str(lib), "--home", str(base / "home"), "--model", MODEL, "--json"]) == 0
    return {"home": base / "home", "lib": lib, "base": base}


# --- imports -----------------------------------------------------------------------------------------


def test_help_imports_nothing_heavy() -> None:
    code, out, modules = cli("--help")
    assert code == 0 and "export" in out
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_an_argument_error_imports_nothing_heavy() -> None:
    code, _, modules = cli("search")  # the query is missing
    assert code == 2
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_status_and_text_search_import_no_model_stack(catalog: dict[str, Path]) -> None:
    home = str(catalog["home"])
    code, out, modules = cli("--home", home, "status")
    assert code == 0 and "files" in out
    assert not modules & {"torch", "transformers", "torchaudio"}, modules
    code, out, modules = cli("--home", home, "search", "rain", "--mode", "text")
    assert code == 0 and "rain_on_roof.wav" in out.splitlines()[0]
    assert not modules & {"torch", "transformers", "torchaudio"}, modules


def test_export_imports_no_model_stack(catalog: dict[str, Path]) -> None:
    """Cutting a region reads and writes samples: no torch (the scanner's extension list lives apart from
    the decoders)."""
    out_file = catalog["base"] / "cut.wav"
    code, _, modules = cli(
        "--home", str(catalog["home"]), "export", str(catalog["lib"] / "dog_bark.wav"),
        "--start", "0.1", "--end", "0.5", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0 and out_file.exists()
    assert not modules & {"torch", "transformers", "torchaudio"}, modules


def test_the_status_report_hides_the_database_password() -> None:
    """The report travels over HTTP now (GET /api/status): a PostgreSQL password must not."""
    status = CatalogStatus(
        home=Path("/h"),
        database_url="postgresql+psycopg://sound:s3cret@db:5432/lib",
        files=0,
        failed=0,
        segments=0,
        audio_hours=0.0,
        model=None,
        index_type="flat",
        index_vectors=0,
        database_bytes=None,
        index_bytes=None,
    )
    assert status.to_dict()["database_url"] == "postgresql+psycopg://sound:***@db:5432/lib"


# --- through a running server --------------------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    log: Path
    address: ServerAddress

    def requests(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if '"GET /api' in line or '"POST /api' in line]


@pytest.fixture(scope="module")
def served(catalog: dict[str, Path]) -> Iterator[Served]:
    log = catalog["base"] / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--home", str(catalog["home"]), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while (address := read(address_path(catalog["home"]))) is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not publish its address"
            time.sleep(0.2)
        yield Served(proc, log, address)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)


def both_ways(catalog: dict[str, Path], served: Served, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command through the server and with --no-server; assert the same output, return it."""
    before = len(served.requests())
    assert main(["--home", str(catalog["home"]), *args]) == 0
    remote = capsys.readouterr().out
    assert len(served.requests()) == before + 1, "the command did not go through the server"
    assert main(["--home", str(catalog["home"]), *args, "--no-server"]) == 0
    local = capsys.readouterr().out
    assert len(served.requests()) == before + 1, "--no-server still asked the server"
    assert remote == local
    return remote


def test_serve_publishes_its_address(catalog: dict[str, Path], served: Served) -> None:
    assert served.address.pid == served.proc.pid
    assert served.address.url.startswith("http://127.0.0.1:")
    assert served.address.database == database_fingerprint(database_url(catalog["home"]))
    assert find_server(catalog["home"], database_url(catalog["home"])) == served.address


@pytest.mark.parametrize(
    "args",
    [
        ["search", "rain on a roof"],
        ["search", "rain on a roof", "--json", "-k", "3"],
        ["search", "dog", "--mode", "text", "--format", "wav"],
        ["search", "engine", "--like", "1", "--max-duration", "5"],
        ["similar", "2", "-k", "2"],
        ["status"],
        ["status", "--json"],
    ],
)
def test_reads_go_through_the_server_and_print_the_same(
    catalog: dict[str, Path], served: Served, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = both_ways(catalog, served, *args, capsys=capsys)
    assert out.strip()


def test_classify_goes_through_the_server(
    catalog: dict[str, Path], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    sound = str(catalog["lib"] / "dog_bark.wav")
    out = both_ways(catalog, served, "classify", sound, "--labels", "dog, rain, car", "--top", "2", capsys=capsys)
    assert out.splitlines()[0] == sound and len(out.splitlines()) == 3
    assert '"POST /api/classify' in served.requests()[-1]


def test_what_the_api_cannot_answer_runs_here(
    catalog: dict[str, Path], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(served.requests())
    home = ["--home", str(catalog["home"])]
    assert main([*home, "similar", str(catalog["lib"] / "door_slam.wav"), "-k", "2"]) == 0  # a path, not an id
    assert main([*home, "search", "rain", "-k", "500"]) == 0  # more than the API gives
    assert main([*home, "status", "--failed"]) == 0
    assert main([*home, "classify", str(catalog["base"] / "missing.wav"), "--labels", "a, b"]) == 2
    assert "missing.wav" in capsys.readouterr().err
    assert len(served.requests()) == before


def test_the_servers_errors_are_the_commands_errors(
    catalog: dict[str, Path], served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(catalog["home"]), "similar", "424242"]) == 2
    assert "424242" in capsys.readouterr().err
    assert "/api/files/424242/similar" in served.requests()[-1]


def test_a_stale_address_is_ignored_and_removed(
    catalog: dict[str, Path], served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another home, given addresses that look alive but are not: the CLI works locally and cleans up."""
    home = tmp_path / "home"
    assert main(["index", str(catalog["lib"]), "--home", str(home), "--model", MODEL, "--json"]) == 0
    capsys.readouterr()
    url = database_url(home)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    mine = ServerAddress(served.address.url, os.getpid(), "0" * 32, database_fingerprint(url))
    stale = {
        "process gone": replace(mine, pid=int(ended.stdout)),
        "nothing listening": replace(mine, url="http://127.0.0.1:9"),
        "another catalog answers": mine,  # the live server serves the module's catalog, not this one
    }
    for why, address in stale.items():
        publish(home, address)
        before = len(served.requests())
        assert main(["--home", str(home), "status"]) == 0, why
        assert "files" in capsys.readouterr().out
        assert len(served.requests()) == before, why
        assert not address_path(home).exists(), why

    # Another database than the CLI's: ignored, but the file is that server's to remove.
    publish(home, replace(served.address, database=database_fingerprint("postgresql://elsewhere/db")))
    assert find_server(home, url) is None and address_path(home).exists()
    # Garbage in the file: ignored.
    address_path(home).write_text("{not json")
    assert main(["--home", str(home), "status"]) == 0
    capsys.readouterr()


def test_a_clean_shutdown_removes_the_address(catalog: dict[str, Path], served: Served) -> None:
    # Last in this module: it stops the module's server, as a service manager or Ctrl-C would.
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(60)
    assert "Application shutdown complete" in served.log.read_text()
    assert not address_path(catalog["home"]).exists()
