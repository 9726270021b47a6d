"""Hostile library files, generated: odd sample rates, lying headers, non-UTF-8 names, symlinks out.

Used by tests/test_hostile.py and benchmarks/bench_hostile.py, which runs the real CLI over the same folder.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# Undecodable as UTF-8: what a Latin-1 name from a Windows archive looks like on Linux.
LATIN1_NAME = b"latin1_\xe9t\xe9.wav"


def wav_at_rate(rate: int, size: int = 96_000, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV of about `size` bytes whose header states `rate`, whatever libsndfile would write."""
    frames = size // (2 * channels)
    t = np.arange(frames) / max(rate, 1)
    samples = (0.3 * np.sin(2 * np.pi * min(0.1 * rate, 1000.0) * t) * 32767).astype("<i2")
    data = np.repeat(samples, channels).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * 2 * channels) % 2**32, 2 * channels, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 24 + 8 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def flac_claiming_hours() -> bytes:
    """A one-second FLAC whose STREAMINFO says 2**36 - 1 samples: 398 hours in a few hundred bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(48_000, dtype=np.float32), 48_000, format="FLAC")
    data = bytearray(buf.getvalue())
    at = 8 + 10  # "fLaC", the block header, then min/max block and frame sizes
    field = int.from_bytes(data[at : at + 8], "big") | ((1 << 36) - 1)  # the low 36 bits: total samples
    data[at : at + 8] = field.to_bytes(8, "big")
    return bytes(data)


def tone_wav(path: Path, seconds: float, rate: int = 48_000, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(os.fsencode(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def make_hostile_library(base: Path) -> tuple[Path, Path]:
    """`base/library` (the root to index) and `base/outside` (what its symlinks lead to).

    Library: two normal files; 999 983 Hz and 7 919 Hz WAVs (indexed); a 1 Hz header and a FLAC
    claiming 398 hours (refused); a Latin-1 file name (indexed); a symlink to a file inside the
    library (indexed) and two that lead outside it, to a file and to a folder (skipped).
    """
    lib, outside = base / "library", base / "outside"
    tone_wav(lib / "normal" / "tone_48k.wav", 3.0)
    tone_wav(lib / "normal" / "tone_44k.wav", 2.0, rate=44_100, freq=880.0)
    odd = lib / "odd"
    odd.mkdir()
    (odd / "rate_999983.wav").write_bytes(wav_at_rate(999_983))
    (odd / "rate_7919.wav").write_bytes(wav_at_rate(7_919))
    (odd / "rate_1hz.wav").write_bytes(wav_at_rate(1))
    (odd / "hours_in_few_bytes.flac").write_bytes(flac_claiming_hours())
    with open(os.path.join(os.fsencode(odd), LATIN1_NAME), "wb") as f:
        f.write(wav_at_rate(22_050))
    tone_wav(outside / "secret.wav", 1.0)
    tone_wav(outside / "folder" / "more.wav", 1.0)
    links = lib / "links"
    links.mkdir()
    (links / "inside.wav").symlink_to(lib / "normal" / "tone_48k.wav")
    (links / "escape.wav").symlink_to(outside / "secret.wav")
    (links / "escape_folder").symlink_to(outside / "folder", target_is_directory=True)
    return lib, outside


@contextmanager
def tmpfs(folder: Path, size: str, skip_note: str = "") -> Iterator[Path]:
    """A small RAM disk that fills up for real (ENOSPC); mounting needs CAP_SYS_ADMIN, the test is skipped
    where that is missing (`skip_note` says what covers the case then)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}){skip_note}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
