"""Plan, render and write a synthetic sound library with ground truth.

Clip `i` of a library with seed `s` depends only on `(s, i)`: its random generators are spawned from
`SeedSequence((s, i))`, and the foreground class is drawn from a per-block permutation of the classes
(block `i // 27`), so every class appears equally often and clip `i` is the same whatever `n` is.

Files written into OUT_DIR:

* the audio, in nested folders (``ALARMS/siren/ALRM_SirenDistant_SSYN_000012.wav``, ``.../rain_000013.flac``,
  ``FIELD_RECORDINGS/batch_000/SSYN000014.mp3``); every file stem is unique in the library;
* ``metadata.csv``: path (relative, POSIX), classes (``;``-joined, foreground first), caption_1..caption_5,
  duration_s, sample_rate, channels, format, events (JSON list of {class, start_s, end_s}), params (JSON);
* ``dataset/test.csv`` in the AudioCaps format (audiocap_id, youtube_id, start_time, caption; one row per
  caption), where ``youtube_id`` is the audio file's stem: as with AudioCaps, a loader finds the audio by
  searching the root recursively for that stem (`evaluation.datasets.load_audiocaps(OUT_DIR)` does);
* ``clotho_captions_evaluation.csv`` in the Clotho v2.1 format (file_name, caption_1..caption_5), where
  ``file_name`` is the path relative to OUT_DIR (Clotho's own names are bare file names in one folder).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from tqdm import tqdm

from evaluation.synth import dsp, modifiers
from evaluation.synth.captions import write_captions
from evaluation.synth.modifiers import MODIFIER_VALUES, Modifiers, Placement
from evaluation.synth.sources import CLASSES, SOURCES, Params, render_source
from indexer.errors import SoundsearchError
from storage.atomic import atomic_path

CREATOR_ID = "SSYN"
CAPTIONS_PER_CLIP = 5
SAMPLE_RATES: tuple[int, ...] = (48_000, 44_100, 32_000, 22_050, 16_000)
_RATE_WEIGHTS = (0.6, 0.15, 0.08, 0.07, 0.10)
# format -> (file extension, weight, [(libsndfile subtype, weight)])
FORMATS: dict[str, tuple[str, float, tuple[tuple[str, float], ...]]] = {
    "WAV": ("wav", 0.5, (("PCM_16", 0.6), ("PCM_24", 0.3), ("FLOAT", 0.1))),
    "FLAC": ("flac", 0.3, (("PCM_16", 0.7), ("PCM_24", 0.3))),
    "OGG": ("ogg", 0.1, (("VORBIS", 1.0),)),
    "MP3": ("mp3", 0.1, (("MPEG_LAYER_III", 1.0),)),
}
LONG_MIN_S, LONG_MAX_S = 15.0, 30.0
_P_LONG = 0.15
_P_MIXTURE_SHORT, _P_MIXTURE_LONG = 0.3, 0.5
_MODIFIER_COUNT_WEIGHTS = (0.35, 0.4, 0.25)  # 0, 1 or 2 modifiers on the foreground

METADATA_COLUMNS: tuple[str, ...] = (
    "path", "classes", *(f"caption_{k}" for k in range(1, CAPTIONS_PER_CLIP + 1)),
    "duration_s", "sample_rate", "channels", "format", "events", "params",
)  # fmt: skip
AUDIOCAPS_CSV = Path("dataset") / "test.csv"
CLOTHO_CSV = Path("clotho_captions_evaluation.csv")


@dataclass(frozen=True)
class Event:
    """One source sounding between two times of a clip."""

    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ClipSpec:
    """Everything decided about a clip before any audio is rendered."""

    seed: int
    index: int
    foreground: str
    backgrounds: tuple[str, ...]
    duration_s: float
    sample_rate: int
    channels: int
    format: str
    subtype: str
    modifiers: Modifiers
    event_count: int  # foreground occurrences; more than one only in long clips
    path: str  # relative to the library root, POSIX separators

    @property
    def classes(self) -> tuple[str, ...]:
        return (self.foreground, *self.backgrounds)


@dataclass(frozen=True)
class ClipTruth:
    """Ground truth of a rendered clip."""

    spec: ClipSpec
    captions: tuple[str, ...]
    events: tuple[Event, ...]
    params: dict[str, object] = field(hash=False)


@dataclass(frozen=True)
class SynthClip:
    audio: npt.NDArray[np.float32]  # [samples, channels] at spec.sample_rate
    truth: ClipTruth


@dataclass(frozen=True)
class LibrarySummary:
    out_dir: Path
    clips: int
    audio_s: float
    elapsed_s: float
    class_counts: dict[str, int]
    metadata_csv: Path
    audiocaps_csv: Path
    clotho_csv: Path


def _generators(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    # Separate streams for planning, audio and captions: editing a caption template does not change audio.
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence((seed, index)).spawn(3))


def _weighted(rng: np.random.Generator, options: Sequence[str], weights: Sequence[float]) -> str:
    p = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _foreground(seed: int, index: int) -> str:
    block = np.random.default_rng(np.random.SeedSequence((seed, index // len(CLASSES), 0x5EED)))
    return CLASSES[int(block.permutation(len(CLASSES))[index % len(CLASSES)])]


def plan_clip(seed: int, index: int, *, foreground: str | None = None, max_duration_s: float | None = None) -> ClipSpec:
    """Decides clip `index` of the library with `seed` (cheap: renders nothing).

    `foreground` forces the class (for class-balanced experiments) and `max_duration_s` caps the length
    (for quick tests); both leave every other random choice as it would have been.
    """
    if foreground is not None and foreground not in SOURCES:
        raise SoundsearchError(f"unknown sound class {foreground!r} (known: {', '.join(CLASSES)})")
    rng = _generators(seed, index)[0]
    chosen = foreground or _foreground(seed, index)
    info = SOURCES[chosen]
    long = rng.uniform() < _P_LONG
    # Most clips are short (1-10 s, skewed towards 2-5 s); some are long and hold several events.
    duration = rng.uniform(LONG_MIN_S, LONG_MAX_S) if long else 1.0 + 9.0 * rng.beta(1.3, 2.0)
    duration = max(duration, info.min_duration_s)
    if max_duration_s is not None:
        duration = min(duration, max(max_duration_s, info.min_duration_s))
    duration = round(duration, 1)  # a multiple of 0.1 s is a whole number of samples at every rate
    long = duration >= LONG_MIN_S

    sample_rate = int(rng.choice(SAMPLE_RATES, p=np.asarray(_RATE_WEIGHTS) / sum(_RATE_WEIGHTS)))
    channels = 2 if rng.uniform() < 0.4 else 1
    fmt = _weighted(rng, list(FORMATS), [w for _, w, _ in FORMATS.values()])
    subtypes = FORMATS[fmt][2]
    subtype = _weighted(rng, [s for s, _ in subtypes], [w for _, w in subtypes])

    backgrounds: list[str] = []
    if rng.uniform() < (_P_MIXTURE_LONG if long else _P_MIXTURE_SHORT):
        for _ in range(1 if rng.uniform() < 0.75 else 2):
            pool = [c for c in CLASSES if c != chosen and c not in backgrounds]
            ambient = [c for c in pool if SOURCES[c].ambient]
            backgrounds.append(_weighted(rng, pool, [4.0 if c in ambient else 1.0 for c in pool]))

    kinds = ["distance", "loudness"]
    if info.pitched:
        kinds.append("pitch")
    if info.rhythmic:
        kinds.append("speed")
    if len(info.settings) == 2:
        kinds.append("setting")
    count = int(rng.choice(3, p=_MODIFIER_COUNT_WEIGHTS))
    picked = {str(k): MODIFIER_VALUES[str(k)][int(rng.integers(2))] for k in rng.permutation(kinds)[:count]}
    mods = Modifiers(**picked)
    event_count = int(rng.integers(2, 5)) if long else 1
    path = _file_path(rng, index, chosen, mods, FORMATS[fmt][0])
    return ClipSpec(
        seed, index, chosen, tuple(backgrounds), duration, sample_rate, channels, fmt, subtype, mods, event_count, path
    )


def _file_path(rng: np.random.Generator, index: int, fg: str, mods: Modifiers, ext: str) -> str:
    """A real library mixes naming schemes: UCS-style names, plain names, and opaque field-recorder names."""
    info = SOURCES[fg]
    snake = fg.replace(" ", "_")
    style = rng.uniform()
    if style < 0.5:
        hint = "".join(v.capitalize() for v in mods.applied().values())[:20]
        name = "".join(w.capitalize() for w in fg.split())
        return f"{info.category}/{snake}/{info.cat_id}_{name}{hint}_{CREATOR_ID}_{index:06d}.{ext}"
    if style < 0.8:
        return f"{info.category}/{snake}/{snake}_{index:06d}.{ext}"
    return f"FIELD_RECORDINGS/batch_{index // 250:03d}/{CREATOR_ID}{index:06d}.{ext}"


def _event_slots(rng: np.random.Generator, duration_s: float, count: int, min_s: float) -> list[tuple[float, float]]:
    """Non-overlapping (start, length) slots for the foreground's occurrences in a long clip."""
    lengths = rng.uniform(max(2.0, min_s), max(2.0, min_s) + 4.0, count)
    lengths *= min(1.0, 0.7 * duration_s / lengths.sum())
    gaps = rng.dirichlet(np.ones(count + 1)) * (duration_s - lengths.sum())
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths[:-1])])
    return [(float(s), float(length)) for s, length in zip(starts, lengths, strict=True)]


def render_clip(spec: ClipSpec) -> SynthClip:
    """Renders a planned clip: audio at its declared rate and channel count, plus its ground truth."""
    _, rng, caption_rng = _generators(spec.seed, spec.index)
    n = dsp.n_samples(spec.duration_s)
    info = SOURCES[spec.foreground]
    mods = spec.modifiers
    setting = mods.setting or (info.settings[0] if len(info.settings) == 1 else None)
    pitch = modifiers.pitch_factor(rng, mods.pitch)
    rate = modifiers.rate_factor(rng, mods.speed)

    fg_audio = np.zeros(n)
    events: list[Event] = []
    fg_params: Params = {}
    if spec.event_count == 1:
        slots = [(0.0, spec.duration_s)]
    else:
        slots = _event_slots(rng, spec.duration_s, spec.event_count, info.min_duration_s)
    for start_s, length_s in slots:
        rendered = render_source(spec.foreground, rng, length_s, pitch, rate)
        fg_params = fg_params or rendered.params
        dsp.place(fg_audio, rendered.audio, int(start_s * dsp.SR))
        on, off = dsp.active_span(rendered.audio)
        events.append(Event(spec.foreground, round(start_s + on, 3), round(start_s + off, 3)))

    fg_place = modifiers.place_source(rng, mods.distance, setting, 0.0, info.ambient and spec.event_count == 1)
    layers: list[tuple[dsp.Array, Placement]] = [(fg_audio, fg_place)]
    bg_params: list[tuple[str, Params]] = []
    for name in spec.backgrounds:
        rendered = render_source(
            name, rng, spec.duration_s, modifiers.pitch_factor(rng, None), modifiers.rate_factor(rng, None)
        )
        # Backgrounds sit below the foreground however far away the foreground is.
        gain = fg_place.gain_db - float(rng.uniform(8, 18))
        layers.append((rendered.audio, modifiers.place_source(rng, None, setting, gain, SOURCES[name].ambient)))
        bg_params.append((name, rendered.params))
        on, off = dsp.active_span(rendered.audio)
        events.append(Event(name, round(on, 3), round(off, 3)))

    scene = modifiers.mix_scene(rng, layers, spec.channels, setting)
    scene = modifiers.add_noise_floor(rng, scene, float(rng.uniform(-55, -32)))
    scene, level_db = modifiers.set_level(rng, scene, mods.loudness)
    audio = np.clip(modifiers.resample(scene, spec.sample_rate), -1.0, 1.0).astype(np.float32)

    captions = write_captions(caption_rng, (spec.foreground, fg_params), mods.applied(), bg_params, CAPTIONS_PER_CLIP)
    params: dict[str, object] = {
        "seed": spec.seed,
        "index": spec.index,
        "subtype": spec.subtype,
        "modifiers": mods.applied(),
        "setting": setting,
        "pitch_factor": round(pitch, 3),
        "rate_factor": round(rate, 3),
        "level_dbfs": round(level_db, 1),
        "foreground": {"class": spec.foreground, **fg_params},
        "backgrounds": [
            {"class": name, **p, "gain_db": round(layer.gain_db - fg_place.gain_db, 1)}
            for (name, p), (_, layer) in zip(bg_params, layers[1:], strict=True)
        ],
    }
    return SynthClip(audio, ClipTruth(spec, captions, tuple(sorted(events, key=lambda e: e.start_s)), params))


def synthesize_clip(
    seed: int, index: int, *, foreground: str | None = None, max_duration_s: float | None = None
) -> SynthClip:
    """Clip `index` of the library with `seed`, in memory (see `plan_clip` for the keyword arguments)."""
    return render_clip(plan_clip(seed, index, foreground=foreground, max_duration_s=max_duration_s))


# ------------------------------------------------------------------------------------------- writing

_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    # Ogg's CRC-32 is the unreflected form of zlib's: reflect the input bytes and the result.
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _fixed_ogg_serial(data: bytes, serial: int) -> bytes:
    """libvorbis stamps each stream with a random serial number; a fixed one makes files reproducible."""
    out = bytearray(data)
    pos = 0
    while pos + 27 <= len(out) and out[pos : pos + 4] == b"OggS":
        segments = out[pos + 26]
        size = 27 + segments + sum(out[pos + 27 : pos + 27 + segments])
        out[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        out[pos + 22 : pos + 26] = bytes(4)
        out[pos + 22 : pos + 26] = _ogg_crc(bytes(out[pos : pos + size])).to_bytes(4, "little")
        pos += size
    return bytes(out)


def _fixed_peak_timestamp(data: bytes) -> bytes:
    """libsndfile adds a PEAK chunk to float WAV files whose header holds the time of writing; zero it."""
    out = bytearray(data)
    pos = 12  # after "RIFF", the size and "WAVE"
    while pos + 8 <= len(out):
        chunk_id, size = bytes(out[pos : pos + 4]), int.from_bytes(out[pos + 4 : pos + 8], "little")
        if chunk_id == b"PEAK":
            out[pos + 12 : pos + 16] = bytes(4)  # after the chunk header and the version field
        pos += 8 + size + (size & 1)
    return bytes(out)


def encode(clip: SynthClip) -> bytes:
    spec = clip.truth.spec
    buffer = io.BytesIO()
    sf.write(buffer, clip.audio, spec.sample_rate, format=spec.format, subtype=spec.subtype)
    data = buffer.getvalue()
    if spec.format == "OGG":
        return _fixed_ogg_serial(data, spec.index & 0xFFFFFFFF)
    return _fixed_peak_timestamp(data) if spec.format == "WAV" else data


def _write_clip(out_dir: Path, seed: int, index: int, max_duration_s: float | None) -> ClipTruth:
    clip = synthesize_clip(seed, index, max_duration_s=max_duration_s)
    target = out_dir / clip.truth.spec.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode(clip))
    return clip.truth


def metadata_row(truth: ClipTruth) -> dict[str, str]:
    spec = truth.spec
    row = {
        "path": spec.path,
        "classes": ";".join(spec.classes),
        "duration_s": f"{spec.duration_s:.1f}",
        "sample_rate": str(spec.sample_rate),
        "channels": str(spec.channels),
        "format": spec.format,
        "events": json.dumps([{"class": e.label, "start_s": e.start_s, "end_s": e.end_s} for e in truth.events]),
        "params": json.dumps(truth.params, sort_keys=True),
    }
    row.update({f"caption_{k}": c for k, c in enumerate(truth.captions, start=1)})
    return row


def _write_csv(path: Path, header: Sequence[str], rows: Iterator[Sequence[str]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_metadata(out_dir: Path, truths: Sequence[ClipTruth]) -> tuple[Path, Path, Path]:
    """Writes metadata.csv and the AudioCaps- and Clotho-format caption files; returns their paths."""
    metadata = out_dir / "metadata.csv"
    _write_csv(metadata, METADATA_COLUMNS, ([metadata_row(t)[c] for c in METADATA_COLUMNS] for t in truths))
    audiocaps = out_dir / AUDIOCAPS_CSV
    _write_csv(
        audiocaps,
        ("audiocap_id", "youtube_id", "start_time", "caption"),
        (
            (str(t.spec.index * CAPTIONS_PER_CLIP + k + 1), Path(t.spec.path).stem, "0", caption)
            for t in truths
            for k, caption in enumerate(t.captions)
        ),
    )
    clotho = out_dir / CLOTHO_CSV
    _write_csv(
        clotho,
        ("file_name", *(f"caption_{k}" for k in range(1, CAPTIONS_PER_CLIP + 1))),
        ((t.spec.path, *t.captions) for t in truths),
    )
    return metadata, audiocaps, clotho


def generate_library(
    out_dir: Path,
    n: int,
    seed: int = 0,
    *,
    max_duration_s: float | None = None,
    workers: int = 1,
    progress: bool | None = None,
) -> LibrarySummary:
    """Writes `n` clips and their ground truth into `out_dir` (see the module docstring for the layout).

    `max_duration_s` caps clip lengths (quick test libraries; no long clips below 15 s). `workers` > 1
    renders clips in that many processes (the output is identical); `progress` shows a
    progress bar (default: only when stderr is a terminal).
    """
    if n < 1:
        raise SoundsearchError(f"the library needs at least one clip (got n={n})")
    if workers < 1:
        raise SoundsearchError(f"workers must be at least 1 (got {workers})")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SoundsearchError(f"{out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    indices = range(n)
    with tqdm(total=n, disable=not show, unit="clip", desc="synth") as bar:
        if workers == 1:
            truths = []
            for i in indices:
                truths.append(_write_clip(out_dir, seed, i, max_duration_s))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                truths = []
                jobs = pool.map(_write_clip, [out_dir] * n, [seed] * n, indices, [max_duration_s] * n, chunksize=4)
                for truth in jobs:
                    truths.append(truth)
                    bar.update()
    metadata, audiocaps, clotho = write_metadata(out_dir, truths)
    counts = Counter(t.spec.foreground for t in truths)
    return LibrarySummary(
        out_dir=out_dir,
        clips=n,
        audio_s=round(sum(t.spec.duration_s for t in truths), 1),
        elapsed_s=time.perf_counter() - started,
        class_counts={c: counts[c] for c in CLASSES if counts[c]},
        metadata_csv=metadata,
        audiocaps_csv=audiocaps,
        clotho_csv=clotho,
    )
