"""A controlled encoder for ranking tests: its vectors are band energies, its texts name bands.

It implements the encoder protocol, so the catalog, pipeline and search run unchanged; only the
embedding is replaced by something whose answer a test can know in advance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 8_000
N_BANDS = 8
BAND_HZ = SR / 2 / N_BANDS  # 500 Hz per band
# Words that name a band (the "meaning" of the fake text tower).
BAND_WORDS = {"rumble": 0, "hum": 1, "engine": 2, "voice": 3, "chime": 4, "bird": 5, "whistle": 6, "hiss": 7}


class PlantedEncoder:
    model_id = "planted-bands"
    sample_rate = SR
    window_seconds = 10.0
    dim = N_BANDS
    logit_scale = 20.0
    batch_size = 8

    def embed_audio(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(clips), N_BANDS), dtype=np.float32)
        for i, clip in enumerate(clips):
            spectrum = np.abs(np.fft.rfft(np.asarray(clip, dtype=np.float64))) ** 2
            freqs = np.fft.rfftfreq(len(clip), 1 / SR)
            band = np.minimum((freqs // BAND_HZ).astype(int), N_BANDS - 1)
            out[i] = np.sqrt(np.bincount(band, weights=spectrum, minlength=N_BANDS))
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), N_BANDS), dtype=np.float32)
        for i, text in enumerate(texts):
            bands = [b for word, b in BAND_WORDS.items() if word in text.lower()]
            if bands:
                out[i, bands] = 1.0
            else:  # unknown words: a fixed pseudo-random direction
                seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
                out[i] = np.random.default_rng(seed).random(N_BANDS)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def tone(band: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    """A sine at the centre of a band (fractional bands allowed)."""
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * (band + 0.5) * BAND_HZ * t)).astype(np.float32)


def noise(seconds: float, amplitude: float = 0.05, seed: int = 0) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def write(path: Path, samples: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, SR, format=fmt)
    return path
