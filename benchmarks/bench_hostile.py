"""Peak memory and wall time of `soundsearch index` over a hostile folder, through the real CLI.

The folder (in /tmp, removed afterwards) holds the hostile files of tests/hostile.py (999 983 Hz and
7 919 Hz WAVs, a 1 Hz header, a FLAC claiming 398 hours, a Latin-1 file name, symlinks out of the
library) beside `--normal` ordinary files. Target: peak RSS under 2 GB, every file indexed or refused
with its reason. `--compare-old` also resamples 6 s of 7 919 Hz audio the old way (torchaudio's
one-shot kernel: gigabytes) and the new way, each in a fresh process.

    .venv/bin/python -m benchmarks.bench_hostile [--normal 40] [--compare-old]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import machine
from tests.hostile import make_hostile_library, tone_wav

# Run in a fresh interpreter: ru_maxrss of the child is then the cost of this one resampling.
_RESAMPLE = """
import resource, time, numpy as np, torch
torch.set_num_threads(1)
x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(6 * 7919) / 7919)).astype(np.float32)
t0 = time.perf_counter()
if {old}:
    import torchaudio
    y = torchaudio.functional.resample(torch.from_numpy(x), 7919, 48000).numpy()
else:
    from indexer.audio import resample
    y = resample(x, 7919, 48000)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, len(y))
"""


def _resample_cost(old: bool) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _RESAMPLE.format(old=old)], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal", type=int, default=40, help="ordinary files beside the hostile ones")
    parser.add_argument("--compare-old", action="store_true", help="also time the old 7 919 Hz resampling")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="soundsearch-hostile-"))
    try:
        lib, _ = make_hostile_library(base)
        for i in range(args.normal):
            tone_wav(lib / "many" / f"tone_{i:03d}.wav", 2.0 + i % 5, rate=(44_100, 48_000, 22_050)[i % 3])
        cmd = [sys.executable, "-m", "api.cli", "index", str(lib), "--home", str(base / "home")]
        t0 = time.perf_counter()
        run = subprocess.run([*cmd, "--model", "tiny-random", "--json"], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        summary = json.loads(run.stdout)
        print(f"# bench_hostile: {machine()}")
        print(f"soundsearch index over {args.normal} normal + the hostile files (model tiny-random)")
        print(f"  peak RSS {peak_gib:.2f} GiB, wall {wall:.1f} s (target: < 2 GB)")
        print(f"  added {summary['added']}, failed {summary['failed']}, segments {summary['segments']}")
        for err in summary["errors"]:
            print(f"  ! {err['path'].removeprefix(str(lib))}: {err['reason']}")
        if args.compare_old:
            for label, old in (("new (soxr)", False), ("old (torchaudio kernel)", True)):
                seconds, gib = _resample_cost(old)
                print(f"  6 s at 7 919 Hz → 48 kHz, {label}: {seconds:.2f} s, process peak RSS {gib:.2f} GiB")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
