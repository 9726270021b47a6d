from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ClapModel, ClapProcessor

from indexer import Encoder, load_encoder
from indexer.audio import load_audio
from indexer.encoders.clap import ClapEncoder
from indexer.errors import EncoderLoadError
from indexer.windows import split_windows

SR = 48_000


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def encoder(tiny_clap_dir: Path) -> ClapEncoder:
    enc = load_encoder(str(tiny_clap_dir))
    assert isinstance(enc, ClapEncoder)
    return enc


@pytest.fixture(scope="module")
def reference(tiny_clap_dir: Path) -> tuple[ClapProcessor, ClapModel]:
    return ClapProcessor.from_pretrained(tiny_clap_dir), ClapModel.from_pretrained(tiny_clap_dir).eval()


def test_protocol_and_metadata(encoder: ClapEncoder, tiny_clap_dir: Path) -> None:
    assert isinstance(encoder, Encoder)
    assert encoder.sample_rate == SR and encoder.window_seconds == 10.0
    assert encoder.dim == 32
    assert encoder.model_id == tiny_clap_dir.resolve().as_posix()


@pytest.mark.parametrize("seconds", [1.0, 2.5, 4.2, 7.0, 10.0])
def test_audio_embeddings_match_transformers_reference(
    encoder: ClapEncoder, reference: tuple[ClapProcessor, ClapModel], seconds: float
) -> None:
    processor, model = reference
    rng = np.random.default_rng(int(seconds * 10))
    clip = (0.2 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    ours = encoder.embed_audio([clip])[0]
    inputs = processor.feature_extractor(clip, sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        ref = model.get_audio_features(**inputs).pooler_output[0].numpy()
    assert _cosine(ours, ref) >= 0.9999
    assert abs(np.linalg.norm(ours) - 1) < 1e-5


def test_text_embeddings_match_transformers_reference(
    encoder: ClapEncoder, reference: tuple[ClapProcessor, ClapModel]
) -> None:
    processor, model = reference
    texts = ["a dog barks", "glass shattering on concrete, close", "rain", "ambience of a busy café at night"]
    ours = encoder.embed_text(texts)
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output.numpy()
    assert ours.shape == (4, 32) and ours.dtype == np.float32
    assert (_cosine(ours, ref) >= 0.9999).all()
    # Very long queries are cut at the model's context, not rejected.
    assert encoder.embed_text(["wind " * 5_000]).shape == (1, 32)


def test_batching_does_not_change_embeddings(encoder: ClapEncoder) -> None:
    rng = np.random.default_rng(3)
    clips = [(0.1 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in (1, 3, 5, 9, 2, 6, 10, 4, 8, 7)]
    together = encoder.embed_audio(clips)
    alone = np.concatenate([encoder.embed_audio([c]) for c in clips])
    assert (_cosine(together, alone) >= 0.9999).all()


def test_long_file_windows_are_deterministic(encoder: ClapEncoder, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "long.flac"
    sf.write(path, (0.1 * rng.standard_normal((27 * 44_100, 2))).astype(np.float32), 44_100)
    runs = []
    for _ in range(2):
        audio = load_audio(path, SR)
        windows = split_windows(audio.samples, SR, encoder.windows)
        runs.append(encoder.embed_windows([w.samples for w in windows]))
    assert [(w.start_s, w.end_s) for w in windows] == [(0, 10), (5, 15), (10, 20), (15, 25), (17, 27)]
    np.testing.assert_array_equal(runs[0], runs[1])
    # A whole long clip is the renormalised mean of its windows.
    pooled = encoder.embed_audio([audio.samples])[0]
    mean = runs[0].mean(axis=0)
    assert _cosine(pooled, mean / np.linalg.norm(mean)) >= 0.9999


def test_bad_clips_are_refused(encoder: ClapEncoder) -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        encoder.embed_audio([np.zeros(0, dtype=np.float32)])
    with pytest.raises(TypeError):
        encoder.embed_text("not a list")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("laion/clap-htsat-unfused", "not available offline"),
        ("no-such-model", "unknown model"),
        ("/nonexistent/model.pt", "checkpoint not found"),
        ("", "empty model spec"),
    ],
)
def test_unloadable_specs_fail_with_one_clear_sentence(spec: str, message: str) -> None:
    with pytest.raises(EncoderLoadError, match=message) as info:
        load_encoder(spec)
    assert "\n" not in str(info.value)


def test_directory_without_model_is_explained(tmp_path: Path) -> None:
    with pytest.raises(EncoderLoadError, match=r"no config\.json"):
        load_encoder(str(tmp_path))


def test_builtin_tiny_random_is_deterministic() -> None:
    a = load_encoder("tiny-random").embed_text(["rain on a roof"])
    b = load_encoder("tiny-random").embed_text(["rain on a roof"])
    np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_gpu_half_precision_matches_cpu(tiny_clap_dir: Path) -> None:
    rng = np.random.default_rng(9)
    clips = [(0.1 * rng.standard_normal(SR * 4)).astype(np.float32) for _ in range(4)]
    cpu = load_encoder(str(tiny_clap_dir), device="cpu").embed_audio(clips)
    gpu = load_encoder(str(tiny_clap_dir), device="cuda").embed_audio(clips)
    assert (_cosine(cpu, gpu) >= 0.99).all()


def test_gpu_batch_size_follows_free_memory() -> None:
    from indexer.encoders.clap import batch_for_memory

    mib = 1 << 20
    assert batch_for_memory(80_000 * mib, 40 * mib) == 512  # an H200: capped where batches stop paying
    assert batch_for_memory(8_000 * mib, 40 * mib) == 64  # 100 windows fit in half → the power of two below
    assert batch_for_memory(600 * mib, 40 * mib) == 8  # a crowded GPU still gets the smallest useful batch
    assert batch_for_memory(8_000 * mib, 40 * mib, share=0.25) == 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_gpu_encoder_measures_its_batch_size(tiny_clap_dir: Path) -> None:
    gpu = load_encoder(str(tiny_clap_dir), device="cuda")
    assert 8 <= gpu.batch_size <= 512 and gpu.batch_size & (gpu.batch_size - 1) == 0  # type: ignore[attr-defined]
    assert load_encoder(str(tiny_clap_dir), device="cuda", batch_size=3).batch_size == 3  # type: ignore[attr-defined]
