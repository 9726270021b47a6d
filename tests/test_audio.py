from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from scipy.signal import resample_poly

from indexer.audio import StreamingResampler, load_audio, probe, resample, stream_audio
from indexer.errors import AudioDecodeError
from tests.conftest import tone_mix

# (extension, soundfile format, subtype, sample rates the codec allows)
CODECS = [
    ("wav", "WAV", "PCM_16", None),
    ("wav", "WAV", "PCM_24", None),
    ("wav", "WAV", "PCM_32", None),
    ("wav", "WAV", "FLOAT", None),
    ("bwf", "WAV", "PCM_24", None),
    ("aiff", "AIFF", "PCM_16", None),
    ("flac", "FLAC", "PCM_16", None),
    ("flac", "FLAC", "PCM_24", None),
    ("ogg", "OGG", "VORBIS", None),
    ("opus", "OGG", "OPUS", (8000, 16000, 48000)),
    ("mp3", "MP3", "MPEG_LAYER_III", (8000, 22050, 44100, 48000)),
]
RATES = (8000, 22050, 44100, 48000, 96000)
LOSSY = {"VORBIS", "OPUS", "MPEG_LAYER_III"}


def _write(path: Path, data: np.ndarray, sr: int, fmt: str, subtype: str) -> Path:
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


@pytest.mark.parametrize(("ext", "fmt", "subtype", "rates"), CODECS, ids=[f"{c[0]}-{c[2]}" for c in CODECS])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_decodes_every_format_to_mono_at_target_rate(
    tmp_path: Path, ext: str, fmt: str, subtype: str, rates: tuple[int, ...] | None, channels: int
) -> None:
    if subtype == "MPEG_LAYER_III" and channels > 2:
        pytest.skip("MP3 carries at most two channels")
    for sr in rates or RATES:
        duration = 1.3
        path = _write(tmp_path / f"x{sr}.{ext}", tone_mix(duration, sr, channels), sr, fmt, subtype)
        info = probe(path)
        assert info.sample_rate == sr and info.channels == channels
        audio = load_audio(path, 48_000)
        assert audio.sample_rate == 48_000
        assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
        # Lossy codecs add encoder delay/padding; PCM must be exact to the sample.
        tolerance = 0.08 if subtype in LOSSY else 1 / sr
        assert abs(audio.duration_s - duration) <= tolerance, (ext, sr, audio.duration_s)
        assert 0.05 < float(np.abs(audio.samples).max()) <= 1.0


def test_pcm_roundtrip_is_exact_at_native_rate(tmp_path: Path) -> None:
    data = tone_mix(0.5, 44_100, channels=2)
    path = _write(tmp_path / "x.wav", data, 44_100, "WAV", "FLOAT")
    audio = load_audio(path)
    np.testing.assert_allclose(audio.samples, data.mean(axis=1), atol=1e-7)


def test_very_short_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "blip.wav", tone_mix(0.05, 44_100), 44_100, "WAV", "PCM_16")
    audio = load_audio(path, 48_000)
    assert audio.samples.size == 2400


def test_long_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Ten minutes at 8 kHz become 115 MB at 48 kHz float32; the stream must never hold that."""
    path = tmp_path / "long.flac"
    minutes, sr = 10, 8000
    with sf.SoundFile(str(path), "w", sr, 2, format="FLAC", subtype="PCM_16") as f:
        for i in range(minutes * 6):
            f.write(tone_mix(10.0, sr, channels=2, seed=i))
    tracemalloc.start()
    total = 0
    largest_block = 0
    for block in stream_audio(path, 48_000):
        total += block.size
        largest_block = max(largest_block, block.size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == minutes * 60 * 48_000
    assert largest_block <= 11 * 48_000
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    ("orig", "new"),
    [
        (44_100, 48_000),
        (22_050, 48_000),
        (8_000, 48_000),
        (96_000, 48_000),
        (32_000, 48_000),
        (16_000, 48_000),
        (47_952, 48_000),
    ],
)
def test_streaming_resampler_equals_one_shot_torchaudio(orig: int, new: int, rng: np.random.Generator) -> None:
    x = (0.3 * rng.standard_normal(orig * 3 + 17)).astype(np.float32)
    reference = torchaudio.functional.resample(torch.from_numpy(x), orig, new).numpy()
    r = StreamingResampler(orig, new)
    pieces = [r.push(x[i : i + 9_973]) for i in range(0, len(x), 9_973)]
    ours = np.concatenate([*pieces, r.flush()])
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-4)


@pytest.mark.parametrize(("orig", "new"), [(44_100, 48_000), (16_000, 48_000), (96_000, 48_000)])
def test_resampling_matches_polyphase_reference(orig: int, new: int) -> None:
    """Away from the edges a band-limited signal resamples the same with scipy's polyphase filter."""
    x = tone_mix(2.0, orig, noise=0.0)[:, 0]
    ours = resample(x, orig, new)
    ref = resample_poly(x.astype(np.float64), new, orig).astype(np.float32)
    n = min(len(ours), len(ref))
    edge = new // 10
    err = np.abs(ours[edge : n - edge] - ref[edge : n - edge]).max()
    assert err < 1e-3, err


def _error_for(path: Path) -> AudioDecodeError:
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, 48_000)
    assert info.value.path == str(path)
    return info.value


def test_bad_inputs_raise_one_error_type_with_path_and_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert "0 bytes" in _error_for(empty).reason

    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    assert "not a readable audio file" in _error_for(text).reason

    unknown = tmp_path / "clip.xyz"
    unknown.write_bytes(b"\0" * 100)
    assert "unsupported file type '.xyz'" in _error_for(unknown).reason

    assert "not found" in _error_for(tmp_path / "missing.wav").reason
    (tmp_path / "dir.wav").mkdir()
    assert "directory" in _error_for(tmp_path / "dir.wav").reason

    bad = np.full(4_000, 0.1, dtype=np.float32)
    bad[3_000] = np.nan
    nan_file = _write(tmp_path / "nan.wav", bad, 8_000, "WAV", "FLOAT")
    reason = _error_for(nan_file).reason
    assert "non-finite" in reason and "0.375 s" in reason
    inf_file = _write(tmp_path / "inf.wav", np.where(bad != bad, np.inf, bad), 8_000, "WAV", "FLOAT")
    assert "non-finite" in _error_for(inf_file).reason


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype"),
    [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("mp3", "MP3", "MPEG_LAYER_III")],
)
def test_truncated_files_are_refused(tmp_path: Path, ext: str, fmt: str, subtype: str) -> None:
    full = _write(tmp_path / f"full.{ext}", tone_mix(6.0, 44_100, 2), 44_100, fmt, subtype)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    reason = _error_for(cut).reason
    assert "truncated" in reason
