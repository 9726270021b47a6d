"""Signal-processing building blocks shared by the sources and the mixer.

Everything works on float64 mono arrays at the internal rate `SR`; clips are resampled to their
declared rate only at the very end, so every source can use the full 24 kHz bandwidth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import signal

SR = 48_000
NYQUIST_HZ = SR / 2
Array = npt.NDArray[np.float64]
Floats = Sequence[float] | Array

# Filters near DC or Nyquist are numerically fragile; every cutoff is kept inside this band.
_MIN_HZ, _MAX_HZ = 15.0, NYQUIST_HZ * 0.96


def n_samples(duration_s: float) -> int:
    return max(1, round(duration_s * SR))


def time_axis(n: int) -> Array:
    return np.arange(n, dtype=np.float64) / SR


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> Array:
    """Unit-variance noise with power ∝ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    bins = n // 2 + 1
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    freqs = np.fft.rfftfreq(n, 1 / SR)
    freqs[0] = freqs[1] if bins > 1 else 1.0
    spectrum *= freqs ** (-exponent / 2)
    out = np.fft.irfft(spectrum, n)
    return out / (np.std(out) + 1e-12)


def _clip_hz(freq: float) -> float:
    return float(min(max(freq, _MIN_HZ), _MAX_HZ))


def _biquad(kind: str, freq_hz: float, q: float) -> Array:
    # Bilinear-transform biquads in closed form (RBJ cookbook): designing with scipy.signal.butter costs
    # about a millisecond per call, more than filtering a short grain.
    w0 = 2 * np.pi * _clip_hz(freq_hz) / SR
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    sign = -1.0 if kind == "lowpass" else 1.0
    b = [(1 + sign * cos) / 2, -sign * (1 + sign * cos), (1 + sign * cos) / 2]
    a0 = 1 + alpha
    return np.array([*(v / a0 for v in b), 1.0, -2 * cos / a0, (1 - alpha) / a0])


def _one_pole(kind: str, freq_hz: float) -> Array:
    k = np.tan(np.pi * _clip_hz(freq_hz) / SR)
    pole = (k - 1) / (k + 1)
    if kind == "lowpass":
        return np.array([k / (1 + k), k / (1 + k), 0.0, 1.0, pole, 0.0])
    return np.array([1 / (1 + k), -1 / (1 + k), 0.0, 1.0, pole, 0.0])


# Butterworth pole Qs for orders 2 and 4 (order 1 is a single real pole).
_BUTTERWORTH_Q = {2: (0.7071067811865476,), 4: (0.5411961001461971, 1.3065629648763766)}


def _butterworth(kind: str, freq_hz: float, order: int) -> Array:
    if order == 1:
        return _one_pole(kind, freq_hz)[None, :]
    return np.stack([_biquad(kind, freq_hz, q) for q in _BUTTERWORTH_Q[order]])


def lowpass(x: Array, cutoff_hz: float, order: int = 2) -> Array:
    return np.asarray(signal.sosfilt(_butterworth("lowpass", cutoff_hz, order), x), dtype=np.float64)


def highpass(x: Array, cutoff_hz: float, order: int = 2) -> Array:
    return np.asarray(signal.sosfilt(_butterworth("highpass", cutoff_hz, order), x), dtype=np.float64)


def bandpass(x: Array, low_hz: float, high_hz: float, order: int = 2) -> Array:
    """A high-pass and a low-pass in cascade (each Butterworth of `order`)."""
    low, high = _clip_hz(low_hz), _clip_hz(high_hz)
    if high <= low * 1.05:
        high = min(low * 1.1, _MAX_HZ)
        low = high / 1.1
    sos = np.concatenate([_butterworth("highpass", low, order), _butterworth("lowpass", high, order)])
    return np.asarray(signal.sosfilt(sos, x), dtype=np.float64)


def smooth_random(rng: np.random.Generator, n: int, rate_hz: float) -> Array:
    """A slowly wandering control signal (about unit variance) with `rate_hz` independent knots per second."""
    knots = rng.standard_normal(int(n / SR * rate_hz) + 3)
    pos = np.linspace(0.0, len(knots) - 2.0, n, endpoint=False)
    idx = pos.astype(np.int64)
    frac = pos - idx
    # Raised-cosine interpolation: no corners, so gain and pitch tracks do not click.
    weight = (1 - np.cos(np.pi * frac)) / 2
    return knots[idx] * (1 - weight) + knots[idx + 1] * weight


def decay(n: int, tau_s: float) -> Array:
    return np.exp(-time_axis(n) / tau_s)


def attack_decay(n: int, attack_s: float, tau_s: float) -> Array:
    t = time_axis(n)
    return np.minimum(1.0, t / max(attack_s, 1 / SR)) * np.exp(-t / tau_s)


def gate(n: int, spans_s: Sequence[tuple[float, float]], ramp_s: float = 0.01) -> Array:
    """0/1 envelope that is on inside the spans, with raised-cosine ramps so edges do not click."""
    env = np.zeros(n)
    ramp = max(2, int(ramp_s * SR))
    rise = (1 - np.cos(np.linspace(0, np.pi, ramp))) / 2
    for start_s, end_s in spans_s:
        a, b = max(0, int(start_s * SR)), min(n, int(end_s * SR))
        if b - a < 2 * ramp:
            continue
        env[a:b] = 1.0
        env[a : a + ramp] = rise
        env[b - ramp : b] = rise[::-1]
    return env


def fade_edges(x: Array, fade_s: float = 0.005) -> Array:
    m = min(len(x) // 2, int(fade_s * SR))
    if m > 0:
        ramp = np.linspace(0.0, 1.0, m)
        x[:m] *= ramp
        x[-m:] *= ramp[::-1]
    return x


def place(out: Array, grain: Array, start: int) -> None:
    """Adds `grain` into `out` at sample `start`, cropping what falls outside."""
    if start >= len(out) or start + len(grain) <= 0:
        return
    g0 = max(0, -start)
    a = max(0, start)
    b = min(len(out), start + len(grain))
    out[a:b] += grain[g0 : g0 + b - a]


def impulses(n: int, times_s: Array, amps: Array) -> Array:
    train = np.zeros(n)
    idx = np.round(np.asarray(times_s) * SR).astype(np.int64)
    keep = (idx >= 0) & (idx < n)
    np.add.at(train, idx[keep], np.asarray(amps, dtype=np.float64)[keep])
    return train


def convolve_grain(train: Array, grain: Array) -> Array:
    """Stamps `grain` at every impulse of `train` (cheaper than a Python loop when grains are many)."""
    return np.asarray(signal.oaconvolve(train, grain)[: len(train)], dtype=np.float64)


def damped_partials(n: int, freqs_hz: Floats, amps: Floats, taus_s: Floats) -> Array:
    """Sum of exponentially decaying sines (struck bars, bells, bodies), all starting at sample 0."""
    impulse = np.zeros(n)
    impulse[0] = 1.0
    out = np.zeros(n)
    for freq, amp, tau in zip(freqs_hz, amps, taus_s, strict=True):
        if freq < _MAX_HZ:
            # A two-pole resonator's impulse response is exactly r**k * sin(w*k): an IIR filter computes
            # it far faster than evaluating sin and exp per sample.
            w = 2 * np.pi * freq / SR
            r = np.exp(-1.0 / (tau * SR))
            out += amp * signal.lfilter([0.0, r * np.sin(w)], [1.0, -2 * r * np.cos(w), r * r], impulse)
    return out


def harmonic_tone(freq_hz: Array, harmonic_amps: Sequence[float]) -> Array:
    """Band-limited periodic tone following an instantaneous-frequency track (FM by phase integration)."""
    phase = 2 * np.pi * np.cumsum(freq_hz) / SR
    peak = float(np.max(freq_hz))
    out = np.zeros(len(freq_hz))
    # sin(kφ) by the Chebyshev recurrence: one sin/cos evaluation instead of one per harmonic.
    twice_cos = 2 * np.cos(phase)
    previous, current = np.zeros_like(phase), np.sin(phase)
    for k, amp in enumerate(harmonic_amps, start=1):
        # Harmonics above Nyquist would alias into audible junk.
        if k * peak >= _MAX_HZ:
            break
        if amp:
            out += amp * current
        previous, current = current, twice_cos * current - previous
    return out


def onsets(rng: np.random.Generator, total_s: float, interval_s: float, jitter: float, start_s: float = 0.0) -> Array:
    """Roughly periodic event times in [start_s, total_s): each interval varies by ±`jitter` (relative)."""
    count = int((total_s - start_s) / (interval_s * (1 - jitter))) + 2
    steps = interval_s * (1 + jitter * rng.uniform(-1, 1, count))
    times = start_s + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    return times[times < total_s]


def rms(x: Array) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def active_level(x: Array, frame_s: float = 0.1) -> float:
    """RMS of the loudest frame: the level of a sound while it sounds, for sparse and dense sources alike."""
    frame = max(1, int(frame_s * SR))
    usable = len(x) // frame * frame
    if usable == 0:
        return rms(x)
    frames = np.reshape(np.square(x[:usable]), (-1, frame))
    return float(np.sqrt(np.max(frames.mean(axis=1)) + 1e-20))


def active_span(x: Array, threshold_db: float = -30.0, frame_s: float = 0.02) -> tuple[float, float]:
    """First and last time (s) at which the signal is within `threshold_db` of its loudest frame."""
    frame = max(1, int(frame_s * SR))
    count = max(1, len(x) // frame)
    energy = np.square(x[: count * frame]).reshape(count, -1).mean(axis=1) if len(x) >= frame else [rms(x) ** 2]
    energy = np.asarray(energy)
    above = np.flatnonzero(energy >= energy.max() * 10 ** (threshold_db / 10))
    if above.size == 0:
        return 0.0, len(x) / SR
    return float(above[0] * frame / SR), float(min(len(x), (above[-1] + 1) * frame) / SR)


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20))
