"""Cut a region [start, end) out of a sound file at the file's own quality, sample-exactly.

A designer takes a found sound to the DAW: the cut must hold exactly the source's samples, at its sample rate,
bit depth (libsndfile's subtype) and channel count, in the same container. That holds for PCM (8/16/24/32-bit)
and IEEE float/double in WAV, AIFF or FLAC: libsndfile hands those samples over as integers or floats that
write back unchanged (24-bit PCM arrives left-justified in int32, whose low byte is zero and is dropped again).
Lossy codecs (MP3, Vorbis, Opus) and lossy WAV codecs (ADPCM, GSM, u-law...) cannot be cut that way: their
frames would be decoded and encoded a second time, which loses quality and, for MP3/Opus, shifts the samples.
Those are refused unless the caller asks for an honest re-encode to WAV (32-bit float, which keeps every
decoded sample, overs included) or FLAC (24-bit PCM, clipped to full scale), at the source's rate and channels.

Seconds become frames as `round(seconds * sample_rate)` (Python's round, halves to even): the region is frames
[round(start * rate), round(end * rate)). So 1.5 s to 2 s of a 44.1 kHz file is frames 66150-88200, 22050 frames,
and the cuts [a, b) and [b, c) of one file meet without a gap or an overlap.

Only `soundfile` and numpy are imported: `soundsearch export` starts without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from indexer.errors import SoundsearchError

# Subtypes whose decoded samples encode back to the same values: these are cut exactly.
EXACT_SUBTYPES: frozenset[str] = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"})
# The dtype each exact subtype is read and written in, wide enough to hold every sample unchanged.
_DTYPES: dict[str, str] = {"PCM_24": "int32", "PCM_32": "int32", "FLOAT": "float32", "DOUBLE": "float64"}
_LOSSY_CODECS: dict[str, str] = {
    "MPEG_LAYER_III": "MP3",
    "MPEG_LAYER_II": "MP2",
    "VORBIS": "Ogg Vorbis",
    "OPUS": "Opus",
}


@dataclass(frozen=True)
class ReencodeTarget:
    format: str
    subtype: str
    suffix: str
    dtype: str


REENCODE_TARGETS: dict[str, ReencodeTarget] = {
    "wav": ReencodeTarget("WAV", "FLOAT", ".wav", "float32"),
    "flac": ReencodeTarget("FLAC", "PCM_24", ".flac", "float64"),
}
# File name endings a cut may be written under, by container (the source's own ending is always accepted).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "WAV": (".wav", ".wave", ".bwf"),
    "AIFF": (".aif", ".aiff", ".aifc"),
    "FLAC": (".flac",),
}
_BLOCK_FRAMES = 1 << 16


class RegionError(SoundsearchError):
    """A region that cannot be cut as asked: a bad range, or a source that cannot be cut exactly."""


@dataclass(frozen=True)
class RegionPlan:
    """What a cut will read and write, checked against the source's header before anything is written."""

    source: Path
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    sample_rate: int
    channels: int
    source_format: str  # libsndfile's container name: WAV, AIFF, FLAC, MP3, OGG...
    source_subtype: str  # libsndfile's sample encoding: PCM_16, PCM_24, FLOAT, VORBIS...
    format: str
    subtype: str
    suffix: str  # the file name ending of the cut
    dtype: str  # the sample type read from the source and written to the cut
    reencoded: bool

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def filename(self) -> str:
        """`<stem>_<start>-<end><suffix>`, the seconds as given (to the millisecond)."""
        return f"{self.source.stem}_{_seconds(self.start_s)}-{_seconds(self.end_s)}{self.suffix}"

    def describe(self) -> str:
        what = f"{self.frames} frames ({self.start_frame}-{self.end_frame}), {self.sample_rate} Hz, {self.channels} ch"
        if self.reencoded:
            return (
                f"{what}, re-encoded from {self.source_format} {self.source_subtype} (lossy) "
                f"to {self.format} {self.subtype}: not the source's own bits"
            )
        return f"{what}, {self.format} {self.subtype}, sample-exact"


def frame_at(seconds: float, sample_rate: int) -> int:
    """The frame a time falls on: `round(seconds * sample_rate)`."""
    return round(seconds * sample_rate)


def plan_region(path: str | Path, start_s: float, end_s: float, *, reencode: str | None = None) -> RegionPlan:
    """Check a cut of [start_s, end_s) of `path` and say what it will write; raises RegionError if it cannot."""
    source = Path(path)
    for name, value in (("start", start_s), ("end", end_s)):
        if not math.isfinite(value) or value < 0:
            raise RegionError(f"{name} must be a time in seconds, 0 or more (got {value})")
    if start_s >= end_s:
        raise RegionError(f"start ({start_s} s) must come before end ({end_s} s)")
    try:
        info = sf.info(str(source))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise RegionError(f"{source}: cannot read as audio ({exc})") from None
    rate, frames = int(info.samplerate), int(info.frames)
    start_frame, end_frame = frame_at(start_s, rate), frame_at(end_s, rate)
    if end_frame > frames:
        raise RegionError(
            f"end {end_s} s lies beyond the end of {source.name} ({frames / rate:.6f} s, {frames} frames at {rate} Hz)"
        )
    if start_frame >= end_frame:
        raise RegionError(f"{start_s}-{end_s} s is shorter than one sample at {rate} Hz")
    exact = info.subtype in EXACT_SUBTYPES
    if reencode is None and not exact:
        codec = _LOSSY_CODECS.get(info.subtype, f"{info.format} {info.subtype}")
        raise RegionError(
            f"{source.name} is {codec}, a lossy encoding: its samples cannot be cut without decoding and encoding "
            f"them again; ask for an honest re-encode (--reencode wav or --reencode flac, reencode=wav|flac in the API)"
        )
    if reencode is not None and exact:
        raise RegionError(f"{source.name} is {info.format} {info.subtype}: it is cut exactly as is, without --reencode")
    if reencode is not None:
        target = REENCODE_TARGETS.get(reencode)
        if target is None:
            raise RegionError(f"cannot re-encode to {reencode!r}: choose one of {', '.join(REENCODE_TARGETS)}")
        fmt, subtype, suffix, dtype = target.format, target.subtype, target.suffix, target.dtype
    else:
        fmt, subtype, suffix = info.format, info.subtype, source.suffix.lower()
        dtype = _DTYPES.get(subtype, "int16")
    return RegionPlan(
        source=source,
        start_s=start_s,
        end_s=end_s,
        start_frame=start_frame,
        end_frame=end_frame,
        sample_rate=rate,
        channels=int(info.channels),
        source_format=info.format,
        source_subtype=info.subtype,
        format=fmt,
        subtype=subtype,
        suffix=suffix,
        dtype=dtype,
        reencoded=reencode is not None,
    )


def check_output_name(plan: RegionPlan, out: Path) -> None:
    """Refuse a file name whose ending says another container than the one the cut is written in."""
    allowed = {plan.suffix, *_SUFFIXES.get(plan.format, ())}
    if out.suffix.lower() not in allowed:
        raise RegionError(
            f"{out.name}: the cut is written as {plan.format} {plan.subtype}, so its name must end in "
            f"{' or '.join(sorted(allowed))}"
        )


def write_region(plan: RegionPlan, target: str | Path) -> None:
    """Write the planned cut to `target` (a fresh path: callers write beside and rename), block by block."""
    with sf.SoundFile(str(plan.source)) as src:
        src.seek(plan.start_frame)
        with sf.SoundFile(
            str(target),
            "w",
            samplerate=plan.sample_rate,
            channels=plan.channels,
            format=plan.format,
            subtype=plan.subtype,
        ) as dst:
            left = plan.frames
            while left > 0:
                block = src.read(min(left, _BLOCK_FRAMES), dtype=plan.dtype, always_2d=True)
                if len(block) == 0:
                    raise RegionError(f"{plan.source}: the file ends before its header says ({left} frames short)")
                if plan.subtype != "FLOAT" and plan.reencoded:
                    # Decoded lossy audio overshoots full scale; integer PCM cannot hold that, so it is clipped.
                    block = block.clip(-1.0, 1.0)
                dst.write(block)
                left -= len(block)


def _seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"
