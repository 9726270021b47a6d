"""The shipped offline model: loads with no network, and still knows its sounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.synth import CLASSES, synthesize_clip
from indexer import Encoder, load_encoder
from indexer.audio import resample
from search.zeroshot import ZeroShotClassifier


@pytest.fixture(scope="module")
def mini() -> Encoder:
    return load_encoder("mini")


def test_loads_offline_through_the_protocol(mini: Encoder) -> None:
    assert isinstance(mini, Encoder)
    assert mini.model_id == "mini@5"  # the shipped weights' version is part of the id
    assert (mini.sample_rate, mini.window_seconds, mini.dim) == (44_100, 10.0, 256 + 512)
    assert load_encoder(mini.model_id).model_id == mini.model_id
    text = mini.embed_text(["rain on a tin roof", "a siren"])
    audio = mini.embed_audio([np.zeros(8_000, dtype=np.float32) + 0.01, np.ones(400_000, dtype=np.float32) * 0.1])
    for emb in (text, audio):
        assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(mini.embed_text(["drizzle"]), mini.embed_text(["drizzle"]))


def test_recognises_unseen_synthetic_sounds(mini: Encoder) -> None:
    """One clip per class from a seed never used in training: a regression guard on the shipped weights."""
    clips, truth = [], []
    for i, name in enumerate(CLASSES):
        clip = synthesize_clip(9_999, i, foreground=name, max_duration_s=6.0)
        clips.append(resample(clip.audio.mean(axis=1), clip.truth.spec.sample_rate, mini.sample_rate))
        truth.append(name)
    classifier = ZeroShotClassifier(mini, list(CLASSES))
    predictions = classifier.predict_vectors(truth, mini.embed_audio(clips), np.arange(len(clips)))
    accuracy = np.mean([p.scores[0][0] == t for p, t in zip(predictions, truth, strict=True)])
    assert accuracy >= 0.7, accuracy


def test_vectors_of_other_mini_weights_are_refused(mini: Encoder, tmp_path: Path) -> None:
    from indexer.errors import EncoderLoadError
    from storage.catalog import Catalog, CatalogError

    with pytest.raises(EncoderLoadError, match="reindex --model mini"):
        load_encoder("mini@0")
    with Catalog.open(tmp_path) as catalog:
        catalog.bind_model("mini", mini.dim, 10.0, 5.0)  # a catalog made with the unversioned first weights
        with pytest.raises(CatalogError, match="reindex"):
            catalog.load_encoder()


def test_ships_the_pretrained_tower_in_half_precision(mini: Encoder) -> None:
    """mini@5 carries the aiSFX CNN (4.7 M weights, fp16 on disk) beside the mini@2 CNN; the files stay small."""
    from safetensors import safe_open

    from indexer.encoders.mini import WEIGHTS_DIR, MiniEncoder

    assert isinstance(mini, MiniEncoder) and mini.model.cfg.two_towers
    with safe_open(str(WEIGHTS_DIR / "mini.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
    assert {d for k, d in dtypes.items() if k.startswith("aisfx.") and "num_batches" not in k} == {"F16"}
    assert (WEIGHTS_DIR / "mini.safetensors").stat().st_size < 16_000_000
    assert all(p.dtype == torch.float32 for p in mini.model.parameters())  # computed in fp32


def test_the_shipped_captioner_runs_on_the_shipped_mini(mini: Encoder) -> None:
    """The shipped captioner attends to both of mini's frozen towers (CNN frame tokens + aiSFX block vectors)."""
    from captioning.captioner import load_captioner

    clip = synthesize_clip(9_999, 0, foreground="siren", max_duration_s=5.0)
    audio = resample(clip.audio.mean(axis=1), clip.truth.spec.sample_rate, mini.sample_rate)
    (caption,) = load_captioner(encoder=mini).caption_clips([audio])
    assert len(caption.split()) >= 3
