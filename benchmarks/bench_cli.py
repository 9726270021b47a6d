"""Wall time of the CLI as a person types it: `--help`, `status`, a search, with and without a running server.

Each command runs as its own process (`python -m api.cli ...`), as from a shell, and is timed from start to
exit; the median of `--repeats` runs is reported. The old code runs in the same session, interleaved with the
new, from a `git worktree` of `--baseline` with this checkout's virtual environment (its directory comes first
on sys.path, so its `api` package is the one imported). The catalog: `--files` short WAVs named after everyday
sounds, indexed with `--model` (the default model, as a user has it) in a folder under /tmp, removed at the end
with the worktree.

Run: .venv/bin/python -m benchmarks.bench_cli [--files 469 --repeats 5 --baseline 9e9c07b]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from api.address import address_path, read
from benchmarks._common import machine

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("rain", "roof", "dog", "bark", "car", "engine", "door", "slam", "wind", "birds", "footsteps", "glass")
QUERY = "rain on a roof"


def make_library(folder: Path, files: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(files):
        name = f"{WORDS[i % len(WORDS)]}_{WORDS[(i * 7 + 3) % len(WORDS)]}_{i:04d}.wav"
        seconds = 1.0 + (i % 4)
        t = np.arange(int(seconds * 16_000)) / 16_000
        tone = 0.2 * np.sin(2 * np.pi * (200 + 40 * (i % 30)) * t)
        sf.write(folder / name, tone + 0.05 * rng.standard_normal(len(t)), 16_000, subtype="PCM_16")


def timed(cwd: Path, args: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{proc.stderr}")
    return wall


def compare(label: str, old: Path, old_args: list[str], new_args: list[str], repeats: int) -> None:
    """One table row: the old and the new code, interleaved so that both see the same machine load."""
    before, now = [], []
    for _ in range(repeats):
        before.append(timed(old, old_args))
        now.append(timed(ROOT, new_args))
    print(f"| `{label}` | {statistics.median(before):.2f} | **{statistics.median(now):.2f}** |", flush=True)


def start_server(home: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--home", str(home), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while read(address_path(home)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.2)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=469)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="mini")
    parser.add_argument("--baseline", default="9e9c07b", help="the commit to compare with (before the instant CLI)")
    opts = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    old = scratch / "old"
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["git", "worktree", "add", "--detach", str(old), opts.baseline], cwd=ROOT, check=True)
        make_library(scratch / "lib", opts.files)
        home = scratch / "home"
        t0 = time.perf_counter()
        timed(ROOT, ["index", str(scratch / "lib"), "--home", str(home), "--model", opts.model, "--json"])
        print(f"# {machine()}; {opts.files} files indexed with {opts.model} in {time.perf_counter() - t0:.0f} s")
        h = ["--home", str(home)]
        cases: list[tuple[str, list[str], list[str]]] = [
            ("--help", ["--help"], ["--help"]),
            ("status", [*h, "status"], [*h, "status", "--no-server"]),
            (f'search "{QUERY}" (no server)', [*h, "search", QUERY], [*h, "search", QUERY, "--no-server"]),
            (
                f'search "{QUERY}" --mode text',
                [*h, "search", QUERY, "--mode", "text"],
                [*h, "search", QUERY, "--mode", "text", "--no-server"],
            ),
        ]
        served: list[tuple[str, list[str], list[str]]] = [
            (f'search "{QUERY}" (server running)', [*h, "search", QUERY], [*h, "search", QUERY]),
            ("status (server running)", [*h, "status"], [*h, "status"]),
        ]
        print(f"\n| command (median of {opts.repeats}, wall s) | before ({opts.baseline}) | now |")
        print("|---|---|---|", flush=True)
        for label, old_args, new_args in cases:
            compare(label, old, old_args, new_args, opts.repeats)
        server = start_server(home)
        for label, old_args, new_args in served:
            compare(label, old, old_args, new_args, opts.repeats)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
