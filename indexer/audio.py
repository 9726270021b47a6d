"""Audio decoding: any supported file → mono float32 at the encoder's rate, read in blocks.

Decoding goes through libsndfile (`soundfile`), which reads WAV/BWF, AIFF, FLAC, OGG/Vorbis, Opus and
MP3 itself, so no system binaries (ffmpeg) are needed. Files are read in blocks, downmixed and
resampled block by block with a resampler whose output equals resampling the whole signal at once;
a two-hour file therefore never has to be held in memory as a whole.

Headers are not trusted. A file is refused, with the reason, when its header states
- a sample rate outside 1 kHz-1 MHz (`MIN_SAMPLE_RATE`, `MAX_SAMPLE_RATE`). Real files run from 8 kHz
  telephony (a few old game and sampler formats go down to 2-4 kHz) to 768 kHz DXD and 1 MHz
  ultrasonic (bat) recorders. Below 1 kHz the whole band lies under 500 Hz, where an encoder of
  everyday sounds hears nothing, and a 96 KB file "at 1 Hz" claims 13 hours: 9 599 windows of nothing;
- more frames than its bytes can hold: uncompressed audio has an exact size per frame, and no codec
  libsndfile reads packs more than `MAX_FRAMES_PER_BYTE` frames into a byte (FLAC's densest case, a
  silent 65 535-frame block in about 12 bytes, is ~5 500), so a 220-byte FLAC "of 398 hours" is refused
  before it is read.
Any exception a library raises while reading one file (not only libsndfile's own errors) becomes that
file's `AudioDecodeError`, so one odd file never fails a run or an upload with a server error.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import torchaudio

from indexer.errors import AudioDecodeError
from indexer.formats import SUPPORTED_EXTENSIONS
from indexer.types import FloatArray

# Extension → container name as libsndfile reports it.
DEFAULT_BLOCK_S = 10.0
_MIN_SLACK_FRAMES = 4096  # a few MP3/Opus frames
# A block holds at most this many samples (all channels): 16 MiB of float32 whatever the rate and channels.
_MAX_BLOCK_SAMPLES = 1 << 22

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 1_000_000
MAX_FRAMES_PER_BYTE = 1 << 16
_UNKNOWN_LENGTH = 2**63 - 1  # libsndfile's SF_COUNT_MAX: a stream whose header gives no length
_COMPRESSED_FORMATS = frozenset({"FLAC", "OGG", "MP3"})  # FLAC names its subtypes PCM_16 etc. too
# Bytes per sample of the uncompressed subtypes (in WAV, AIFF and kin), whose size is exact.
_PCM_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}


@dataclass(frozen=True)
class AudioInfo:
    """What the file's header says, before any decoding."""

    path: Path
    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class DecodedAudio:
    """A whole file decoded to mono float32 at `sample_rate`."""

    samples: FloatArray
    sample_rate: int
    info: AudioInfo

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def probe(path: str | Path) -> AudioInfo:
    """Read the header of an audio file; raise `AudioDecodeError` with a clear reason if it is unusable."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(sorted({e.lstrip(".") for e in SUPPORTED_EXTENSIONS}))
        raise AudioDecodeError(p, f"unsupported file type '{ext or '(none)'}' (supported: {supported})")
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise AudioDecodeError(p, "file not found") from None
    except OSError as exc:
        raise AudioDecodeError(p, f"cannot read file: {exc.strerror}") from None
    if p.is_dir():
        raise AudioDecodeError(p, "is a directory, not an audio file")
    if size == 0:
        raise AudioDecodeError(p, "empty file (0 bytes)")
    try:
        # Bytes, not str: a name that is not UTF-8 (indexer.fsnames) cannot be encoded for libsndfile.
        info = sf.info(os.fsencode(p))
    except OSError as exc:
        raise AudioDecodeError(p, f"cannot read file: {exc.strerror}") from None
    except Exception as exc:  # libsndfile's errors, and anything else soundfile raises on odd bytes
        raise AudioDecodeError(p, f"not a readable audio file ({_reason(exc)})") from None
    if info.format == "WAV" or info.format == "WAVEX":
        _check_riff_complete(p, size)
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioDecodeError(p, "contains no audio frames")
    audio = AudioInfo(
        path=p,
        format=info.format,
        subtype=info.subtype,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
    )
    _check_plausible(audio, size)
    return audio


def _check_plausible(info: AudioInfo, size: int) -> None:
    """Refuse headers no real file has (see the module doc): absurd rates, lengths the bytes cannot hold."""
    path, rate = info.path, info.sample_rate
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            path,
            f"implausible sample rate {rate} Hz in the header "
            f"(audio files use {MIN_SAMPLE_RATE / 1e3:g} kHz to {MAX_SAMPLE_RATE / 1e6:g} MHz)",
        )
    if info.frames == _UNKNOWN_LENGTH:
        raise AudioDecodeError(path, "the header gives no length (an unfinished stream?)")
    per_sample = None if info.format in _COMPRESSED_FORMATS else _PCM_BYTES.get(info.subtype)
    possible = size * MAX_FRAMES_PER_BYTE if per_sample is None else size // (per_sample * info.channels)
    if info.frames > possible:
        raise AudioDecodeError(
            path,
            f"the header declares {info.frames / rate / 3600:.3g} h of audio, "
            f"more than its {size} bytes can hold (at most {possible / rate:.3g} s)",
        )


def stream_audio(
    path: str | Path, sample_rate: int | None = None, *, block_s: float = DEFAULT_BLOCK_S
) -> Iterator[FloatArray]:
    """Yield the file as consecutive mono float32 blocks at `sample_rate` (the file's own rate if None).

    Concatenating the blocks gives exactly what resampling the whole file at once would give.
    """
    info = probe(path)
    yield from _stream_blocks(info, sample_rate or info.sample_rate, block_s)


def load_audio(path: str | Path, sample_rate: int | None = None) -> DecodedAudio:
    """Decode a whole file to mono float32 at `sample_rate` (the file's own rate if None)."""
    info = probe(path)
    sr = sample_rate or info.sample_rate
    blocks = list(_stream_blocks(info, sr, DEFAULT_BLOCK_S))
    samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        raise AudioDecodeError(info.path, "contains no audio frames")
    return DecodedAudio(samples=samples, sample_rate=sr, info=info)


def _stream_blocks(info: AudioInfo, sample_rate: int, block_s: float) -> Iterator[FloatArray]:
    resampler = StreamingResampler(info.sample_rate, sample_rate)
    block_frames = max(1, min(int(block_s * info.sample_rate), _MAX_BLOCK_SAMPLES // info.channels))
    frames_read = 0
    try:
        with sf.SoundFile(os.fsencode(info.path)) as f:
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                mono = _downmix(block)
                # One sum is far cheaper than an elementwise check and is finite for all finite audio
                # short of float32 overflow; only a non-finite sum triggers the exact search.
                if not np.isfinite(mono.sum()) and not np.isfinite(mono).all():
                    bad = frames_read + int(np.argmin(np.isfinite(mono)))
                    raise AudioDecodeError(
                        info.path,
                        f"contains non-finite samples (NaN or inf) at {bad / info.sample_rate:.3f} s",
                    )
                frames_read += len(block)
                out = resampler.push(mono)
                if out.size:
                    yield out
    except (AudioDecodeError, OSError):
        raise
    except Exception as exc:  # libsndfile's errors, and anything else a library raises on odd bytes
        at = frames_read / info.sample_rate
        raise AudioDecodeError(
            info.path, f"corrupt or truncated: decoding failed after {at:.2f} s ({_reason(exc)})"
        ) from None
    if frames_read == 0:
        raise AudioDecodeError(info.path, "contains no audio frames")
    # Compressed streams cut short (an interrupted copy) decode "successfully" up to the cut; the
    # header still knows the real length. A little slack absorbs codec delay and padding.
    if frames_read < info.frames - max(_MIN_SLACK_FRAMES, 0.005 * info.frames):
        raise AudioDecodeError(
            info.path,
            f"truncated file: the header declares {info.duration_s:.2f} s, "
            f"only {frames_read / info.sample_rate:.2f} s could be decoded",
        )
    tail = resampler.flush()
    if tail.size:
        yield tail


# The exact sinc kernel has `new * (orig + 2 * width)` weights (rates divided by their gcd). Every
# common rate needs few: 44.1 kHz → 48 kHz 25 760, 11.025 kHz 103 040, NTSC-pulled 47.952 kHz 1 013 000.
# A prime rate needs billions (7 919 Hz: 380 M weights, 5 GB while torchaudio builds them; 999 983 Hz:
# 48 G, 384 GB), and every output sample would cost `orig` multiply-adds. Past this size the stream goes
# to libsoxr, a polyphase resampler whose filter is bounded whatever the ratio.
_MAX_SINC_WEIGHTS = 1 << 20


class StreamingResampler:
    """Band-limited resampling of a stream, block by block, in bounded memory for any pair of rates.

    Rates whose exact sinc kernel is small (every common rate: see `_MAX_SINC_WEIGHTS`) go through
    `SincResampler`, sample for sample what torchaudio's one-shot `resample()` gives; any other ratio
    (1 Hz to 1 MHz and beyond) through libsoxr's streaming resampler ("HQ": 20-bit precision, a
    linear-phase low-pass at 91 % of the lower Nyquist), which stays a few MB whatever the ratio.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        g = math.gcd(orig_sr, new_sr)
        orig, new = orig_sr // g, new_sr // g
        self._stream: SincResampler | soxr.ResampleStream | None
        if orig == new:
            self._stream = None
        elif new * (orig + 2 * _sinc_width(orig, new)) <= _MAX_SINC_WEIGHTS:
            self._stream = SincResampler(orig_sr, new_sr)
        else:
            self._stream = soxr.ResampleStream(orig_sr, new_sr, 1, dtype="float32", quality="HQ")
        self._empty = np.zeros(0, dtype=np.float32)

    def push(self, block: FloatArray) -> FloatArray:
        block = block.astype(np.float32, copy=False)
        if self._stream is None:
            return block
        if isinstance(self._stream, SincResampler):
            return self._stream.push(block)
        out: FloatArray = self._stream.resample_chunk(block, last=False)
        return out

    def flush(self) -> FloatArray:
        if self._stream is None:
            return self._empty
        if isinstance(self._stream, SincResampler):
            return self._stream.flush()
        out: FloatArray = self._stream.resample_chunk(self._empty, last=True)
        return out


def _sinc_width(orig: int, new: int) -> int:
    """torchaudio's filter half-width in input samples (lowpass_filter_width 6, rolloff 0.99)."""
    return math.ceil(6 * orig / (min(orig, new) * 0.99))


class SincResampler:
    """torchaudio's sinc resampling of a stream, block by block, equal to one-shot resampling.

    The sinc resampler computes each group of `new` output samples from a window of input
    around a stride of `orig` input samples (both reduced by their gcd). Processing chunks that start on
    such a stride and carry enough neighbouring input as context therefore gives the same samples as
    resampling the whole signal, while holding only a block plus a little context in memory.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        g = math.gcd(orig_sr, new_sr)
        self.orig = orig_sr // g
        self.new = new_sr // g
        self._width, self._kernel_t = _sinc_kernel(orig_sr, new_sr)
        self._context = self.orig * math.ceil(self._width / self.orig)  # input samples, multiple of orig
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # global input index of _buf[0]; always a multiple of orig
        self._next_stride = 0  # next stride (group of `orig` inputs) whose outputs are due
        self._total_in = 0

    def push(self, block: FloatArray) -> FloatArray:
        self._buf = np.concatenate([self._buf, block])
        self._total_in += len(block)
        ready = (self._total_in - self._context) // self.orig  # strides with full right context
        if ready <= self._next_stride:
            return np.zeros(0, dtype=np.float32)
        return self._emit(ready, final=False)

    def flush(self) -> FloatArray:
        if self._total_in == 0:
            return np.zeros(0, dtype=np.float32)
        return self._emit(math.ceil(self._total_in / self.orig), final=True)

    def _polyphase(self, chunk: FloatArray) -> FloatArray:
        """The same dot products as torchaudio's strided conv1d, as one matrix product.

        A GEMM costs the same for every chunk length, whereas oneDNN's convolution re-plans for each
        new input shape, which made every file pay a warm-up several times the work itself.
        """
        padded = np.pad(chunk, (self._width, self._width + self.orig))
        frames = np.lib.stride_tricks.sliding_window_view(padded, self._kernel_t.shape[0])[:: self.orig]
        return (np.ascontiguousarray(frames) @ self._kernel_t).reshape(-1)

    def _emit(self, end_stride: int, *, final: bool) -> FloatArray:
        chunk_start = max(0, self._next_stride * self.orig - self._context)
        chunk_end = self._total_in if final else end_stride * self.orig + self._context
        chunk = self._buf[chunk_start - self._buf_start : chunk_end - self._buf_start]
        out = self._polyphase(chunk)
        offset = (self._next_stride * self.orig - chunk_start) // self.orig * self.new
        if final:
            # torchaudio rounds the target length through a float32 tensor; match it sample for sample.
            total_out = int(torch.ceil(torch.as_tensor(self.new * self._total_in / self.orig)))
            count = total_out - self._next_stride * self.new
        else:
            count = (end_stride - self._next_stride) * self.new
        result = out[offset : offset + count].astype(np.float32, copy=True)
        self._next_stride = end_stride
        keep_from = max(0, end_stride * self.orig - self._context)
        self._buf = self._buf[keep_from - self._buf_start :]
        self._buf_start = keep_from
        return result


@functools.lru_cache(maxsize=16)
def _sinc_kernel(orig_sr: int, new_sr: int) -> tuple[int, FloatArray]:
    """torchaudio's default filter (sinc, Hann window, width 6, rolloff 0.99), as [taps, new] weights.

    Its one-shot `resample()` is the reference the streaming resampler reproduces. Building the kernel
    costs more than resampling a short file, hence the cache.
    """
    reference = torchaudio.transforms.Resample(orig_sr, new_sr)
    kernel_t = np.ascontiguousarray(reference.kernel[:, 0, :].numpy().T)
    kernel_t.flags.writeable = False
    return int(reference.width), kernel_t


def _downmix(block: np.ndarray) -> FloatArray:
    """Average the channels of a [frames, channels] block (column adds beat a strided mean)."""
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0])
    mono = block[:, 0].copy()
    for c in range(1, block.shape[1]):
        mono += block[:, c]
    mono *= np.float32(1.0 / block.shape[1])
    return mono


def resample(samples: FloatArray, orig_sr: int, new_sr: int) -> FloatArray:
    """One-shot resampling of an in-memory mono signal (same filter as the streaming path)."""
    if orig_sr == new_sr:
        return samples.astype(np.float32, copy=False)
    r = StreamingResampler(orig_sr, new_sr)
    return np.concatenate([r.push(samples), r.flush()])


def _reason(exc: Exception) -> str:
    """libsndfile's own message; for any other exception, its type too (it points at a library bug)."""
    if isinstance(exc, sf.LibsndfileError):
        return exc.error_string.strip() or type(exc).__name__
    return f"{type(exc).__name__}: {exc}".strip(": ")


def _check_riff_complete(path: Path, size: int) -> None:
    """libsndfile silently shortens a WAV whose data chunk runs past the end of the file; we refuse it.

    A truncated file (an interrupted copy or download) would otherwise be indexed as a shorter sound.
    """
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RIFX") or header[8:12] != b"WAVE":
            return  # RF64/W64 and friends: trust libsndfile
        endian = "<" if header[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack(endian + "4sI", f.read(8))
            if chunk_id == b"data":
                available = size - (pos + 8)
                if chunk_size != 0xFFFFFFFF and chunk_size > available:
                    raise AudioDecodeError(
                        path,
                        f"truncated file: the header declares {chunk_size} bytes of audio, "
                        f"only {available} are present",
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)
