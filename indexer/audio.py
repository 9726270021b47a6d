"""Audio decoding: any supported file → mono float32 at the encoder's rate, read in blocks.

Decoding goes through libsndfile (`soundfile`), which reads WAV/BWF, AIFF, FLAC, OGG/Vorbis, Opus and
MP3 itself, so no system binaries (ffmpeg) are needed. Files are read in blocks, downmixed and
resampled block by block with a resampler whose output equals resampling the whole signal at once;
a two-hour file therefore never has to be held in memory as a whole.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from indexer.errors import AudioDecodeError
from indexer.types import FloatArray

# Extension → container name as libsndfile reports it.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".bwf": "WAV",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".aifc": "AIFF",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
}

DEFAULT_BLOCK_S = 10.0
_MIN_SLACK_FRAMES = 4096  # a few MP3/Opus frames


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


def is_supported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


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
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioDecodeError(p, f"not a readable audio file ({_libsndfile_reason(exc)})") from None
    except OSError as exc:
        raise AudioDecodeError(p, f"cannot read file: {exc.strerror}") from None
    if info.format == "WAV" or info.format == "WAVEX":
        _check_riff_complete(p, size)
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioDecodeError(p, "contains no audio frames")
    return AudioInfo(
        path=p,
        format=info.format,
        subtype=info.subtype,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
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
    block_frames = max(1, int(block_s * info.sample_rate))
    frames_read = 0
    try:
        with sf.SoundFile(str(info.path)) as f:
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
    except (sf.LibsndfileError, RuntimeError) as exc:
        at = frames_read / info.sample_rate
        raise AudioDecodeError(
            info.path, f"corrupt or truncated: decoding failed after {at:.2f} s ({_libsndfile_reason(exc)})"
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


class StreamingResampler:
    """Band-limited (sinc) resampling of a stream, block by block, equal to one-shot resampling.

    The sinc resampler computes each group of `new` output samples from a window of input
    around a stride of `orig` input samples (both reduced by their gcd). Processing chunks that start on
    such a stride and carry enough neighbouring input as context therefore gives the same samples as
    resampling the whole signal, while holding only a block plus a little context in memory.
    """

    def __init__(self, orig_sr: int, new_sr: int) -> None:
        g = math.gcd(orig_sr, new_sr)
        self.orig = orig_sr // g
        self.new = new_sr // g
        self.identity = self.orig == self.new
        self._width = 0
        self._kernel_t = np.zeros((0, 0), dtype=np.float32)
        if not self.identity:
            self._width, self._kernel_t = _sinc_kernel(orig_sr, new_sr)
        self._context = self.orig * math.ceil(self._width / self.orig)  # input samples, multiple of orig
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # global input index of _buf[0]; always a multiple of orig
        self._next_stride = 0  # next stride (group of `orig` inputs) whose outputs are due
        self._total_in = 0

    def push(self, block: FloatArray) -> FloatArray:
        if self.identity:
            return block.astype(np.float32, copy=False)
        self._buf = np.concatenate([self._buf, block.astype(np.float32, copy=False)])
        self._total_in += len(block)
        ready = (self._total_in - self._context) // self.orig  # strides with full right context
        if ready <= self._next_stride:
            return np.zeros(0, dtype=np.float32)
        return self._emit(ready, final=False)

    def flush(self) -> FloatArray:
        if self.identity or self._total_in == 0:
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


def _libsndfile_reason(exc: Exception) -> str:
    message = str(getattr(exc, "error_string", "") or exc).strip()
    return message.removeprefix("Error opening").strip(" :'") or type(exc).__name__


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
