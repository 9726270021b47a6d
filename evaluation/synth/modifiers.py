"""Modifiers that change how a source sounds and are named in its captions, and the mixer that applies them.

- distance: "near" (dry, full bandwidth) / "distant" (quieter, air absorption low-pass, more reverb)
- loudness: "loud" / "quiet" (the clip's final level)
- speed: "fast" / "slow" (the source's tempo: `rate` multiplier)
- pitch: "high" / "low" (the source's pitch: `pitch` multiplier)
- setting: "indoors" (room reverb from a synthetic impulse response) / "outdoors" (dry, sparse reflections)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from math import gcd

import numpy as np
from scipy import signal

from evaluation.synth import dsp
from evaluation.synth.dsp import SR, Array

MODIFIER_VALUES: dict[str, tuple[str, str]] = {
    "distance": ("near", "distant"),
    "loudness": ("loud", "quiet"),
    "speed": ("fast", "slow"),
    "pitch": ("high", "low"),
    "setting": ("indoors", "outdoors"),
}


@dataclass(frozen=True)
class Modifiers:
    """The modifiers applied to a clip's foreground source; None means "not specified" (natural variation)."""

    distance: str | None = None
    loudness: str | None = None
    speed: str | None = None
    pitch: str | None = None
    setting: str | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and value not in MODIFIER_VALUES[field.name]:
                raise ValueError(f"{field.name}={value!r}; expected one of {MODIFIER_VALUES[field.name]}")

    def applied(self) -> dict[str, str]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def pitch_factor(rng: np.random.Generator, pitch: str | None) -> float:
    # Wide enough apart that "high" and "low" are audible, with a natural spread when unspecified.
    if pitch == "high":
        return float(rng.uniform(1.4, 1.8))
    if pitch == "low":
        return float(rng.uniform(0.55, 0.72))
    return float(rng.uniform(0.88, 1.14))


def rate_factor(rng: np.random.Generator, speed: str | None) -> float:
    if speed == "fast":
        return float(rng.uniform(1.5, 2.0))
    if speed == "slow":
        return float(rng.uniform(0.5, 0.68))
    return float(rng.uniform(0.88, 1.14))


def room_impulse_response(rng: np.random.Generator, rt60_s: float, channels: int, early: int) -> Array:
    """A synthetic impulse response, [samples, channels]: sparse early reflections and an exponential
    noise tail whose highs die faster than its lows (air and wall absorption). Channels get independent
    noise, which is what makes the reverb sound wide."""
    n = dsp.n_samples(min(rt60_s * 1.2, 2.5))
    tau = rt60_s / np.log(1000.0)  # RT60 = time to fall 60 dB
    out = np.zeros((n, channels))
    for ch in range(channels):
        noise = rng.standard_normal(n)
        low = dsp.lowpass(noise, 1500) * dsp.decay(n, tau)
        high = dsp.highpass(noise, 1500) * dsp.decay(n, tau * 0.5)
        tail = (low + 0.7 * high) * np.minimum(1.0, dsp.time_axis(n) / 0.01)
        reflections = dsp.impulses(n, rng.uniform(0.002, 0.04, early), rng.uniform(-1, 1, early) * 3)
        out[:, ch] = tail + reflections
    return out / np.sqrt(np.sum(np.square(out), axis=0, keepdims=True) + 1e-12)


@dataclass(frozen=True)
class Placement:
    """Where one source sits in the scene: its level, distance treatment, reverb send and stereo position."""

    gain_db: float
    lowpass_hz: float | None
    reverb_send: float
    pan: float  # -1 left .. +1 right
    wide: bool  # an enveloping bed (rain, wind) rather than a point source


def place_source(
    rng: np.random.Generator, distance: str | None, setting: str | None, gain_db: float, wide: bool
) -> Placement:
    indoors = setting == "indoors"
    if distance == "distant":
        return Placement(
            gain_db - rng.uniform(8, 14),
            rng.uniform(1200, 3500),
            rng.uniform(0.6, 1.0) if indoors else rng.uniform(0.35, 0.7),
            rng.uniform(-0.8, 0.8),
            wide,
        )
    if distance == "near":
        return Placement(
            gain_db, None, rng.uniform(0.05, 0.15) if indoors else rng.uniform(0.0, 0.05), rng.uniform(-0.3, 0.3), wide
        )
    send = rng.uniform(0.25, 0.5) if indoors else rng.uniform(0.03, 0.2)
    cutoff = rng.uniform(5000, 12000) if rng.uniform() < 0.3 else None
    return Placement(gain_db - rng.uniform(0, 4), cutoff, send, rng.uniform(-0.6, 0.6), wide)


def mix_scene(
    rng: np.random.Generator, sources: list[tuple[Array, Placement]], channels: int, setting: str | None
) -> Array:
    """Mixes mono sources into a [samples, channels] scene sharing one room (a single reverb bus)."""
    n = len(sources[0][0])
    dry = np.zeros((n, channels))
    send = np.zeros(n)
    for audio, where in sources:
        x = audio * dsp.db_to_gain(where.gain_db)
        if where.lowpass_hz is not None:
            x = dsp.lowpass(x, where.lowpass_hz, order=2)
        send += x * where.reverb_send
        if channels == 1:
            dry[:, 0] += x
        elif where.wide:
            # A few hundred microseconds of inter-channel delay spreads a bed across the stereo field.
            lag = int(rng.integers(10, 40))
            dry[:, 0] += x / np.sqrt(2)
            dry[lag:, 1] += x[:-lag] / np.sqrt(2)
        else:
            angle = (where.pan + 1) * np.pi / 4  # constant-power pan law
            dry[:, 0] += x * np.cos(angle)
            dry[:, 1] += x * np.sin(angle)
    if setting == "indoors":
        rt60 = rng.uniform(0.3, 1.3)
        early = int(rng.integers(6, 16))
    else:
        rt60 = rng.uniform(0.15, 0.6) if setting is None else rng.uniform(0.1, 0.35)
        early = int(rng.integers(0, 4))
    ir = room_impulse_response(rng, rt60, channels, early)
    wet = np.stack([signal.oaconvolve(send, ir[:, ch])[:n] for ch in range(channels)], axis=1)
    return dry + wet


def add_noise_floor(rng: np.random.Generator, scene: Array, level_db: float) -> Array:
    """Every real recording has some room tone or hiss under it; its colour and level vary per clip."""
    n, channels = scene.shape
    cutoff = rng.uniform(300, 12000)
    white_share = rng.uniform(0.0, 0.5)
    reference = dsp.active_level(scene.mean(axis=1))
    noise = np.zeros((n, channels))
    for ch in range(channels):
        white = rng.standard_normal(int(n))
        tinted = dsp.lowpass(white, cutoff, order=1)
        noise[:, ch] = white_share * white + tinted / (np.std(tinted) + 1e-12)
    return scene + noise * reference * dsp.db_to_gain(level_db)


# -1 dBFS: headroom for lossy codecs, whose decoded waveform overshoots the encoded one a little.
_CEILING = 0.89


def set_level(rng: np.random.Generator, scene: Array, loudness: str | None) -> tuple[Array, float]:
    """Scales the scene to a loudness target (active RMS, dBFS) and keeps peaks below full scale."""
    if loudness == "loud":
        target_db = rng.uniform(-13, -9)
    elif loudness == "quiet":
        target_db = rng.uniform(-40, -33)
    else:
        target_db = rng.uniform(-28, -17)
    scaled = scene * dsp.db_to_gain(target_db) / (dsp.active_level(scene.mean(axis=1)) + 1e-12)
    if float(np.max(np.abs(scaled))) > _CEILING:
        # A soft knee on the few loudest peaks instead of pulling the whole clip down.
        scaled = _CEILING * np.tanh(scaled / _CEILING)
    return scaled, float(target_db)


def resample(scene: Array, sample_rate: int) -> Array:
    if sample_rate == SR:
        return scene
    common = gcd(sample_rate, SR)
    return np.asarray(signal.resample_poly(scene, sample_rate // common, SR // common, axis=0), dtype=np.float64)
