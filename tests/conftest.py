from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Tests never reach a model hub: loading code must work from local files alone.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLAP saved in Hugging Face layout, as a user's local model would be."""
    from indexer.encoders.tiny import save_tiny_random_clap

    return save_tiny_random_clap(tmp_path_factory.mktemp("tiny_clap"))


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def tone_mix(duration_s: float, sample_rate: int, channels: int = 1, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """Band-limited test signal (sines below 4 kHz, optional noise), shape [frames, channels]."""
    gen = np.random.default_rng(seed)
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    freqs = gen.uniform(100, 3000, size=(channels, 3))
    x = sum(0.2 * np.sin(2 * np.pi * freqs[:, i : i + 1] * t) for i in range(3))
    x = x + noise * gen.standard_normal(x.shape)
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32).T)
