"""The real-recordings protocol: pooled vectors and the product's own path rank the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from indexer.encoders.mini import MiniClap, MiniConfig, save_mini
from training.evaluate_real import evaluate, evaluate_engine, real_set

SR = 16_000


def _library(root: Path) -> Path:
    """Two packages of short takes: families are names up to numbering, within one package."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    for package, sounds in (("pkg-a", ("hum", "chirp", "tick")), ("pkg-b", ("hum", "buzz"))):
        for n, name in enumerate(sounds):
            for take in range(2 + n % 2):
                pitch = 120 * (n + 1) * (2 if package == "pkg-b" else 1) + 15 * take
                tone = 0.3 * np.sin(2 * np.pi * pitch * t) * np.exp(-t * (1 + n + take))
                noise = 0.05 * rng.standard_normal(SR)
                folder = root / package / "sounds"
                folder.mkdir(parents=True, exist_ok=True)
                sf.write(folder / f"{name}_{take:02d}.wav", (tone + noise).astype(np.float32), SR)
    return root


def test_the_engine_path_ranks_as_the_pooled_vectors(tmp_path: Path) -> None:
    library = _library(tmp_path / "library")
    queries = tmp_path / "queries.json"
    queries.write_text(
        json.dumps(
            {
                "variant_groups": {"pkg-b": "different recordings per name"},
                "queries": [
                    {"query": "a low hum", "relevant": ["pkg-a/sounds/hum_00.wav", "pkg-a/sounds/hum_01.wav"]},
                    {"query": "a bird chirping", "relevant": ["pkg-a/sounds/chirp_00.wav"]},
                ],
            }
        )
    )
    torch.manual_seed(0)
    cfg = MiniConfig(
        sample_rate=SR, window_s=2.0, n_fft=256, hop_length=128, f_max=4000, n_mels=32, channels=(4, 8), embed_dim=16
    )
    model = save_mini(MiniClap(cfg), tmp_path / "model")
    data = real_set(library, queries)
    assert len(data.paths) == 12 and len(set(data.family)) == 5  # hum in two packages: two families
    assert data.takes.tolist() == [True] * 7 + [False] * 5  # pkg-b's names are variant groups

    pooled, engine = evaluate(str(model), data), evaluate_engine(str(model), data)

    assert pooled["qbe_queries"] == engine["qbe_queries"] == 12
    assert pooled["qbe_takes_queries"] == engine["qbe_takes_queries"] == 7
    assert engine["qbe_family_mAP"] == pooled["qbe_family_mAP"]
    assert engine["qbe_takes_mAP"] == pooled["qbe_takes_mAP"]
    assert engine["text_to_audio"] == pooled["text_to_audio"]
