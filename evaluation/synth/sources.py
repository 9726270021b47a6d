"""One synthesis function per sound class, registered by class name.

Each source is a small physical caricature of its class (a siren is a swept tone with harmonics, a church
bell a set of inharmonic partials with long decays, rain filtered noise plus droplet clicks, ...), with
random *variants* inside the class so that no two clips of a class are the same sound. A source renders
mono audio at `dsp.SR` for a requested length and reports the random choices it made (its `params`), which
the captions use ("drizzle" only for light rain, "races past" only for a passing siren).

`pitch` and `rate` are multipliers near 1 set by the high/low-pitch and fast/slow modifiers; a source
that has no meaningful pitch or tempo is registered with `pitched=False` / `rhythmic=False` and ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.synth import dsp
from evaluation.synth.dsp import SR, Array

ParamValue = float | int | str
Params = dict[str, ParamValue]


@dataclass(frozen=True)
class Rendered:
    audio: Array
    params: Params


SourceFn = Callable[[np.random.Generator, int, float, float], Rendered]


@dataclass(frozen=True)
class SourceInfo:
    """A registered class: how to render it and which modifiers and roles make sense for it."""

    name: str
    render: SourceFn
    category: str  # UCS-like top-level folder, e.g. "ALARMS"
    cat_id: str  # UCS-like CatID prefix used in file names, e.g. "ALRM"
    pitched: bool
    rhythmic: bool
    settings: tuple[str, ...]  # where the sound plausibly happens: "indoors" and/or "outdoors"
    ambient: bool  # works as a continuous background bed under another sound
    min_duration_s: float


SOURCES: dict[str, SourceInfo] = {}

_BOTH = ("indoors", "outdoors")


def _register(
    name: str,
    category: str,
    cat_id: str,
    *,
    pitched: bool = False,
    rhythmic: bool = False,
    settings: tuple[str, ...] = _BOTH,
    ambient: bool = False,
    min_duration_s: float = 1.0,
) -> Callable[[SourceFn], SourceFn]:
    def decorator(fn: SourceFn) -> SourceFn:
        SOURCES[name] = SourceInfo(name, fn, category, cat_id, pitched, rhythmic, settings, ambient, min_duration_s)
        return fn

    return decorator


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _total_s(n: int) -> float:
    return n / SR


# ---------------------------------------------------------------------------------------------- alarms


@_register("siren", "ALARMS", "ALRM", pitched=True, rhythmic=True, settings=("outdoors",), ambient=True)
def siren(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    pattern = _choice(rng, ("wail", "yelp", "hi-lo"))
    vehicle = _choice(rng, ("police", "ambulance", "fire engine"))
    t = dsp.time_axis(n)
    low = rng.uniform(550, 800) * pitch
    high = low * rng.uniform(1.7, 2.2)
    if pattern == "wail":
        period = rng.uniform(3.0, 6.0) / rate
        frac = (t / period + rng.uniform()) % 1.0
        sweep = np.where(frac < 0.4, frac / 0.4, 1 - (frac - 0.4) / 0.6)
    elif pattern == "yelp":
        period = rng.uniform(0.25, 0.45) / rate
        sweep = ((t / period + rng.uniform()) % 1.0) ** 0.7
    else:
        period = rng.uniform(0.9, 1.4) / rate
        square = np.where((t / period) % 1.0 < 0.5, 1.0, 0.0)
        sweep = dsp.lowpass(square, 30.0) * 0.8 + 0.1
    freq = low + (high - low) * sweep
    envelope = np.ones(n)
    passing = n > 3 * SR and rng.uniform() < 0.45
    if passing:
        # A vehicle driving past: Doppler shift and 1/r level around the closest approach.
        speed = rng.uniform(15, 30)
        closest = rng.uniform(6, 25)
        x = speed * (t - rng.uniform(0.35, 0.65) * _total_s(n))
        r = np.hypot(x, closest)
        freq = freq * 343.0 / (343.0 + speed * x / r)
        envelope = closest / r
    odd_only = rng.uniform() < 0.5
    amps = [(1.0 / k ** rng.uniform(0.8, 1.4)) if (k % 2 or not odd_only) else 0.0 for k in range(1, 9)]
    audio = dsp.bandpass(dsp.harmonic_tone(freq, amps), 300, rng.uniform(3500, 7000)) * envelope
    return Rendered(audio, {"pattern": pattern, "vehicle": vehicle, "passing": "yes" if passing else "no"})


@_register("car horn", "VEHICLES", "VEHHorn", pitched=True, settings=("outdoors",))
def car_horn(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    style = _choice(rng, ("short honks", "long honk", "mixed honks"))
    f1 = rng.uniform(330, 460) * pitch
    freqs = [f1, f1 * rng.uniform(1.2, 1.3)] if rng.uniform() < 0.6 else [f1]
    honks = int(rng.integers(1, 6))
    spans: list[tuple[float, float]] = []
    cursor = rng.uniform(0.05, min(0.6, total * 0.2))
    while cursor < total - 0.15 and len(spans) < honks:
        if style == "short honks" or (style == "mixed honks" and rng.uniform() < 0.5):
            length = rng.uniform(0.12, 0.3)
        else:
            length = rng.uniform(0.6, 2.0)
        spans.append((cursor, min(total, cursor + length)))
        cursor += length + rng.uniform(0.1, 0.5)
    t = dsp.time_axis(n)
    tone = np.zeros(n)
    for f in freqs:
        # A slight pitch sag after each press is what a horn diaphragm does.
        tone += dsp.harmonic_tone(f * (1 + 0.002 * np.sin(2 * np.pi * 5 * t)), [1 / k for k in range(1, 16)])
    audio = np.tanh(2.5 * dsp.bandpass(tone, 250, 4000)) * dsp.gate(n, spans, 0.012)
    return Rendered(audio, {"style": style, "tones": len(freqs), "f0_hz": round(f1, 1)})


@_register("alarm beeping", "ALARMS", "ALRM", pitched=True, rhythmic=True, ambient=True)
def alarm_beeping(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    device = _choice(rng, ("alarm clock", "smoke alarm", "beeper"))
    freq = rng.uniform(2000, 4000) * pitch
    on = rng.uniform(0.06, 0.25) / rate
    off = rng.uniform(0.06, 0.3) / rate
    group = {"alarm clock": 4, "smoke alarm": 3, "beeper": 1}[device]
    pause = rng.uniform(0.4, 1.0) / rate if group > 1 else off
    spans: list[tuple[float, float]] = []
    cursor = rng.uniform(0.0, 0.3)
    while cursor < total:
        for _ in range(group):
            spans.append((cursor, cursor + on))
            cursor += on + off
        cursor += pause - off
    square = rng.uniform() < 0.5
    amps = [1.0, 0.0, 0.33, 0.0, 0.2] if square else [1.0, 0.05]
    audio = dsp.harmonic_tone(np.full(n, freq), amps) * dsp.gate(n, spans, 0.004)
    return Rendered(audio, {"device": device, "freq_hz": round(freq, 1), "square": int(square)})


@_register("telephone ringing", "TELEPHONES", "PHONRing", pitched=True, rhythmic=True, settings=("indoors",))
def telephone_ringing(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    kind = _choice(rng, ("old bell phone", "electronic phone", "mobile phone"))
    double = rng.uniform() < 0.5
    burst = [(0.0, 0.4), (0.6, 1.0)] if double else [(0.0, rng.uniform(1.0, 2.0))]
    period = (rng.uniform(2.5, 4.0) / rate) + burst[-1][1]
    start = rng.uniform(0.0, 0.4)
    spans = [
        (start + k * period + a / rate, start + k * period + b / rate)
        for k in range(int(total / period) + 2)
        for a, b in burst
    ]
    t = dsp.time_axis(n)
    if kind == "old bell phone":
        # A clapper striking two gongs about 20 times per second.
        f0 = rng.uniform(900, 1400) * pitch
        strike = dsp.damped_partials(
            int(0.4 * SR), [f0, f0 * 2.1, f0 * 2.73, f0 * 4.2], [1, 0.5, 0.4, 0.2], [0.25, 0.12, 0.08, 0.05]
        )
        hits = dsp.onsets(rng, total, 1 / rng.uniform(18, 24), 0.05)
        tone = dsp.convolve_grain(dsp.impulses(n, hits, np.ones(len(hits))), strike)
    elif kind == "electronic phone":
        f1 = rng.uniform(900, 1300) * pitch
        trill = np.where((t * rng.uniform(16, 25)) % 1.0 < 0.5, f1, f1 * rng.uniform(1.2, 1.35))
        tone = dsp.harmonic_tone(trill, [1.0, 0.3, 0.2])
    else:
        scale = np.array([0, 2, 4, 7, 9, 12])
        notes = 2 ** (scale[rng.integers(0, len(scale), 8)] / 12) * rng.uniform(700, 1100) * pitch
        note_s = rng.uniform(0.1, 0.18) / rate
        freq = notes[(t / note_s).astype(np.int64) % len(notes)]
        tone = dsp.harmonic_tone(freq, [1.0, 0.2, 0.1])
    audio = tone * dsp.gate(n, spans, 0.01)
    return Rendered(audio, {"kind": kind, "cadence": "double" if double else "single"})


@_register("doorbell", "DOORS", "DOORBell", pitched=True, settings=("indoors",), min_duration_s=1.5)
def doorbell(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    chime = _choice(rng, ("ding-dong", "three-tone", "four-tone"))
    top = rng.uniform(600, 900) * pitch
    steps = {"ding-dong": [0, -4], "three-tone": [0, -3, -7], "four-tone": [0, -4, -2, -9]}[chime]
    gap = rng.uniform(0.35, 0.7)
    audio = np.zeros(n)
    # Struck tubes/bars: inharmonic upper partials that die faster than the fundamental.
    ratios, amps = [1.0, 2.0, 2.76, 5.4], [1.0, 0.15, 0.35, 0.12]
    tau = rng.uniform(0.7, 1.5)
    presses = [rng.uniform(0.02, 0.25)]
    if total > 4 and rng.uniform() < 0.5:
        presses.append(presses[0] + len(steps) * gap + rng.uniform(1.0, 2.5))
    for press in presses:
        for k, step in enumerate(steps):
            f = top * 2 ** (step / 12)
            grain = dsp.damped_partials(
                int(min(tau * 3, total) * SR), [f * r for r in ratios], amps, [tau, tau / 2, tau / 3, tau / 6]
            )
            dsp.place(audio, dsp.fade_edges(grain), int((press + k * gap) * SR))
    return Rendered(audio, {"chime": chime, "presses": len(presses), "top_hz": round(top, 1)})


@_register(
    "church bell",
    "BELLS",
    "BELLChur",
    pitched=True,
    rhythmic=True,
    settings=("outdoors",),
    ambient=True,
    min_duration_s=3.0,
)
def church_bell(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    style = _choice(rng, ("tolling", "pealing"))
    prime = rng.uniform(160, 420) * pitch
    # Bell partials relative to the prime: hum, prime, minor-third tierce, quint, nominal and upper partials.
    ratios = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.52, 2.67, 3.01, 4.07, 5.3])
    amps = np.array([0.6, 0.8, 0.7, 0.3, 1.0, 0.4, 0.35, 0.25, 0.2, 0.1])
    if style == "tolling":
        bells = [prime]
        interval = rng.uniform(1.8, 3.5) / rate
    else:
        bells = [prime * 2 ** (s / 12) for s in (7, 5, 4, 2, 0)[: int(rng.integers(3, 6))]]
        interval = rng.uniform(0.35, 0.6) / rate
    decay_s = rng.uniform(2.5, 6.0)
    grains = []
    for f in bells:
        detune = 1 + rng.uniform(-0.008, 0.008, len(ratios))
        freqs = f * ratios * detune
        taus = decay_s * (freqs[0] / freqs) ** 0.6
        # Doublets a fraction of a hertz apart give the slow warble of a real bell.
        length = int(min(decay_s * 2.5, 8.0, total) * SR)
        tone = dsp.damped_partials(length, freqs, amps * rng.uniform(0.6, 1.2, len(ratios)), taus)
        tone += 0.5 * dsp.damped_partials(len(tone), freqs + rng.uniform(0.3, 1.5, len(freqs)), amps, taus)
        clank = dsp.highpass(rng.standard_normal(int(0.02 * SR)), 1500) * dsp.decay(int(0.02 * SR), 0.004)
        tone[: len(clank)] += 0.5 * clank
        grains.append(tone)
    audio = np.zeros(n)
    for k, start in enumerate(dsp.onsets(rng, total, interval, 0.03, rng.uniform(0, 0.3))):
        dsp.place(audio, grains[k % len(grains)] * rng.uniform(0.8, 1.0), int(start * SR))
    return Rendered(audio, {"style": style, "bells": len(bells), "prime_hz": round(prime, 1)})


@_register("whistle", "WHISTLES", "WHSTHuman", pitched=True)
def whistle(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    kind = _choice(rng, ("referee whistle", "whistled tune", "wolf whistle"))
    t = dsp.time_axis(n)
    freq = np.zeros(n)
    spans: list[tuple[float, float]] = []
    if kind == "referee whistle":
        f0 = rng.uniform(2500, 3400) * pitch
        cursor = rng.uniform(0.05, 0.3)
        while cursor < total - 0.2:
            length = rng.uniform(0.15, 0.35) if rng.uniform() < 0.6 else rng.uniform(0.7, 1.4)
            spans.append((cursor, cursor + length))
            cursor += length + rng.uniform(0.15, 1.2)
        # The pea inside the whistle flutters the pitch 25-45 times a second.
        freq[:] = f0 * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(25, 45) * t))
    elif kind == "whistled tune":
        f0 = rng.uniform(900, 1600) * pitch
        scale = np.array([0, 2, 4, 7, 9, 12])
        cursor = rng.uniform(0.05, 0.3)
        while cursor < total - 0.1:
            length = rng.uniform(0.15, 0.5)
            a, b = int(cursor * SR), min(n, int((cursor + length) * SR))
            freq[a:b] = f0 * 2 ** (scale[int(rng.integers(len(scale)))] / 12)
            spans.append((cursor, cursor + length))
            cursor += length + (rng.uniform(0.4, 1.2) if rng.uniform() < 0.15 else 0.02)
        freq = dsp.lowpass(np.maximum(freq, f0 / 2), 12.0) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    else:
        f0 = rng.uniform(1000, 1500) * pitch
        cursor = rng.uniform(0.05, 0.3)
        while cursor < total - 1.0:
            rise, fall = (cursor, cursor + 0.35), (cursor + 0.5, cursor + 1.2)
            a, b = int(rise[0] * SR), int(rise[1] * SR)
            freq[a:b] = np.linspace(f0, f0 * 2.2, b - a)
            a, b = int(fall[0] * SR), min(n, int(fall[1] * SR))
            freq[a:b] = f0 * (2.0 - 0.9 * np.sin(np.linspace(0, np.pi / 2, b - a)) ** 2)
            spans += [rise, fall]
            cursor += rng.uniform(2.0, 4.0)
        freq = np.maximum(freq, f0)
    gate = dsp.gate(n, spans, 0.02)
    breath = dsp.bandpass(rng.standard_normal(n), 1500, 6000) * 0.08
    audio = (dsp.harmonic_tone(freq, [1.0, 0.08, 0.03]) + breath) * gate
    return Rendered(audio, {"kind": kind, "blasts": len(spans)})


@_register("electrical hum", "ELECTRICITY", "ELECHum", ambient=True)
def electrical_hum(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    mains = float(rng.choice([50.0, 60.0]))
    kind = _choice(rng, ("transformer hum", "fluorescent buzz", "ground loop hum"))
    ks = np.arange(1, 30)
    if kind == "transformer hum":
        # Magnetostriction hums at twice the mains frequency and its harmonics.
        amps = np.where(ks % 2 == 0, 1.0 / ks**0.8, 0.05)
    elif kind == "fluorescent buzz":
        amps = 1.0 / ks**0.5
    else:
        amps = np.where(ks % 2 == 1, 1.0 / ks**1.3, 0.1 / ks)
    amps = amps * rng.uniform(0.5, 1.5, len(ks))
    wobble = 1 + 0.001 * dsp.smooth_random(rng, n, 0.5)
    tone = dsp.harmonic_tone(mains * wobble, list(amps))
    if kind == "fluorescent buzz":
        tone = np.tanh(3 * tone / (np.std(tone) + 1e-9))
        tone += 0.2 * dsp.bandpass(rng.standard_normal(n), 6000, 12000) * np.std(tone)
    audio = tone * (1 + 0.05 * dsp.smooth_random(rng, n, 1.0))
    return Rendered(audio, {"kind": kind, "mains_hz": mains})


# --------------------------------------------------------------------------------------------- weather


@_register("rain", "WEATHER", "RAIN", ambient=True)
def rain(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    intensity = _choice(rng, ("drizzle", "steady", "heavy"))
    surface = _choice(rng, ("roof", "leaves", "pavement", "window"))
    drops_per_s, bed = {"drizzle": (25.0, 0.15), "steady": (180.0, 0.5), "heavy": (700.0, 1.2)}[intensity]
    bright = rng.uniform(5000, 11000)
    audio = bed * dsp.bandpass(dsp.colored_noise(rng, n, 1.0), 400, bright)
    count = rng.poisson(drops_per_s * total)
    times = rng.uniform(0, total, count)
    amps = rng.lognormal(0, 0.6, count) * rng.choice([-1.0, 1.0], count)
    # Four families of droplet: ticks of different brightness and small resonant plinks.
    groups = rng.integers(0, 4, count)
    for g in range(4):
        sel = groups == g
        length = int(0.03 * SR)
        if g < 3:
            centre = rng.uniform(1500, 7000)
            grain = dsp.bandpass(rng.standard_normal(length), centre / 1.6, centre * 1.6) * dsp.decay(
                length, rng.uniform(0.001, 0.004)
            )
        else:
            f = rng.uniform(1500, 4000)
            grain = (
                np.sin(2 * np.pi * f * dsp.time_axis(length) * (1 + 8 * dsp.time_axis(length)))
                * dsp.decay(length, 0.006)
                * 0.6
            )
        audio += dsp.convolve_grain(dsp.impulses(n, times[sel], amps[sel]), grain)
    if surface == "roof":
        audio = audio + 0.6 * dsp.lowpass(audio, 900)
    audio *= 1 + 0.15 * dsp.smooth_random(rng, n, 0.3)
    return Rendered(audio, {"intensity": intensity, "surface": surface, "drops_per_s": drops_per_s})


@_register("wind", "WEATHER", "WIND", settings=("outdoors",), ambient=True)
def wind(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    strength = _choice(rng, ("breeze", "gusty", "howling"))
    noise = dsp.colored_noise(rng, n, rng.uniform(1.2, 2.0))
    top = {"breeze": 900.0, "gusty": 2500.0, "howling": 3500.0}[strength]
    audio = np.zeros(n)
    # Bands with independent slow gains make the spectrum move the way gusts do.
    for low, high in ((40, 200), (200, 600), (600, top)):
        band = dsp.bandpass(noise, low, high)
        gain = np.maximum(0.0, 1 + rng.uniform(0.4, 0.9) * dsp.smooth_random(rng, n, rng.uniform(0.15, 0.6)))
        audio += band / (np.std(band) + 1e-9) * gain * (1.0 if low < 500 else 0.5)
    gust = np.maximum(0.05, 1 + 0.6 * dsp.smooth_random(rng, n, 0.25))
    audio *= gust
    if strength == "howling":
        whine = 450 * (1 + 0.35 * dsp.smooth_random(rng, n, 0.4)) * rng.uniform(0.7, 1.4)
        audio += 0.5 * dsp.harmonic_tone(whine, [1.0, 0.2]) * gust**2 * (1 + 0.3 * rng.standard_normal(n))
    return Rendered(audio, {"strength": strength})


@_register("ocean waves", "WATER", "WATRSurf", rhythmic=True, settings=("outdoors",), ambient=True, min_duration_s=4.0)
def ocean_waves(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    sea = _choice(rng, ("gentle surf", "crashing waves", "waves on pebbles"))
    period = rng.uniform(5.0, 10.0) / rate
    low = dsp.bandpass(dsp.colored_noise(rng, n, 1.5), 40, 500)
    hiss = dsp.bandpass(rng.standard_normal(n), 800, 9000 if sea != "gentle surf" else 4000)
    env_low = np.full(n, 0.15)
    env_hiss = np.full(n, 0.05)
    t = dsp.time_axis(n)
    for start in dsp.onsets(rng, total + period, period, 0.25, -rng.uniform(0, period)):
        rise = rng.uniform(0.8, 2.0)
        wash = rng.uniform(1.5, 3.5)
        height = rng.uniform(0.5, 1.0) * (1.4 if sea == "crashing waves" else 1.0)
        dt = t - start
        shape = np.where(dt < rise, np.clip(dt / rise, 0, 1) ** 2, np.exp(-(dt - rise) / wash))
        shape[dt < 0] = 0.0
        env_low += height * shape
        # The hiss of the wash lags the crash.
        env_hiss += height * np.where(dt < rise + 0.3, 0.3 * shape, np.exp(-(dt - rise - 0.3) / (wash * 1.3)))
    audio = low * env_low + 0.8 * hiss * env_hiss
    if sea == "waves on pebbles":
        count = rng.poisson(400 * total)
        times = rng.uniform(0, total, count)
        amps = rng.lognormal(0, 0.5, count) * np.interp(times, t, env_hiss)
        click = dsp.bandpass(rng.standard_normal(200), 2000, 8000) * dsp.decay(200, 0.0008)
        audio += 0.6 * dsp.convolve_grain(dsp.impulses(n, times, amps), click)
    return Rendered(audio, {"sea": sea, "period_s": round(period, 2)})


@_register("thunder", "WEATHER", "THUN", settings=("outdoors",), min_duration_s=3.0)
def thunder(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    kind = _choice(rng, ("thunderclap", "rolling thunder"))
    audio = np.zeros(n)
    strikes = 1 if total < 10 or rng.uniform() < 0.6 else 2
    for k in range(strikes):
        start = rng.uniform(0.05, 0.3) * total if k == 0 else rng.uniform(0.55, 0.7) * total
        length = int(min(total - start, rng.uniform(4, 9)) * SR)
        if length < SR // 2:
            continue
        rumble = dsp.lowpass(dsp.colored_noise(rng, length, 2.0), rng.uniform(150, 400), order=4)
        rolls = np.maximum(0, 1 + 0.8 * dsp.smooth_random(rng, length, rng.uniform(2, 5))) ** 2
        env = dsp.attack_decay(length, rng.uniform(0.1, 0.6), rng.uniform(1.5, 3.5)) * rolls
        event = rumble / (np.std(rumble) + 1e-9) * env
        if kind == "thunderclap":
            crack_n = int(rng.uniform(0.08, 0.2) * SR)
            crack = dsp.highpass(rng.standard_normal(crack_n), 300) * dsp.attack_decay(crack_n, 0.002, 0.04)
            event[:crack_n] += 2.5 * crack
        dsp.place(audio, event, int(start * SR))
    return Rendered(audio, {"kind": kind, "strikes": strikes})


# ------------------------------------------------------------------------------------------ fire, water


@_register("fire crackling", "FIRE", "FIREcrkl", ambient=True)
def fire_crackling(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    kind = _choice(rng, ("campfire", "fireplace", "bonfire"))
    roar = dsp.lowpass(dsp.colored_noise(rng, n, 2.0), rng.uniform(200, 600))
    roar *= (0.6 if kind == "bonfire" else 0.2) / (np.std(roar) + 1e-9)
    roar *= 1 + 0.4 * dsp.smooth_random(rng, n, 1.5)
    audio = roar + 0.05 * dsp.highpass(rng.standard_normal(n), 3000)
    # Crackles come in clusters (a pocket of sap bursts) with heavy-tailed loudness.
    clusters = rng.uniform(0, total, rng.poisson(rng.uniform(4, 15) * total))
    sizes = rng.geometric(0.3, len(clusters))
    times = (
        np.concatenate([c + np.cumsum(rng.exponential(0.012, s)) for c, s in zip(clusters, sizes, strict=True)])
        if len(clusters)
        else np.zeros(0)
    )
    amps = (rng.pareto(2.5, len(times)) + 0.3) * rng.choice([-1.0, 1.0], len(times))
    for lo, hi in ((800, 3000), (2000, 8000)):
        grain = dsp.bandpass(rng.standard_normal(150), lo, hi) * dsp.decay(150, 0.0006)
        half = rng.uniform(size=len(times)) < 0.5
        audio += dsp.convolve_grain(dsp.impulses(n, times[half], amps[half]), grain)
    pops = rng.uniform(0, total, rng.poisson(rng.uniform(0.2, 1.0) * total))
    pop = dsp.damped_partials(int(0.05 * SR), [rng.uniform(250, 700)], [1.0], [0.012])
    audio += 2 * dsp.convolve_grain(dsp.impulses(n, pops, rng.uniform(0.5, 1.0, len(pops))), pop)
    return Rendered(audio, {"kind": kind})


@_register("water dripping", "WATER", "WATRDrip", pitched=True, rhythmic=True, ambient=True)
def water_dripping(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    place = _choice(rng, ("sink", "bucket", "cave", "puddle"))
    audio = np.zeros(n)
    for _ in range(int(rng.integers(1, 3))):
        f0 = (rng.uniform(300, 700) if place == "bucket" else rng.uniform(700, 2200)) * pitch
        interval = rng.uniform(0.35, 1.5) / rate
        for start in dsp.onsets(rng, total, interval, rng.uniform(0.05, 0.3), rng.uniform(0, interval)):
            length = int(0.12 * SR)
            t = dsp.time_axis(length)
            # A drop rings the air bubble it traps; the bubble's pitch rises as it shrinks.
            f = f0 * rng.uniform(0.9, 1.1) * (1 + rng.uniform(3, 12) * t)
            drip = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / rng.uniform(0.01, 0.035))
            drip[:40] += rng.standard_normal(40) * 0.3
            dsp.place(audio, drip * rng.uniform(0.6, 1.0), int(start * SR))
    return Rendered(audio, {"place": place})


# ------------------------------------------------------------------------------------- people, objects


@_register("footsteps", "FOOTSTEPS", "FEET", rhythmic=True, ambient=True)
def footsteps(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    surface = _choice(rng, ("hard floor", "wooden floor", "gravel", "snow", "high heels"))
    direction = _choice(rng, ("approaching", "receding", "passing"))
    interval = rng.uniform(0.45, 0.65) / rate
    audio = np.zeros(n)
    for k, start in enumerate(dsp.onsets(rng, total, interval, 0.06, rng.uniform(0, 0.4))):
        length = int(0.25 * SR)
        noise = rng.standard_normal(length)
        if surface in ("gravel", "snow"):
            # A crunch is dozens of tiny grain collisions spread over the roll of the foot.
            micro = rng.uniform(0, 0.18, int(rng.integers(30, 80)))
            clicks = dsp.impulses(length, micro, rng.lognormal(0, 0.5, len(micro)))
            top = 7000 if surface == "gravel" else 3000
            step = dsp.bandpass(dsp.convolve_grain(clicks, rng.standard_normal(60)), 700, top)
        else:
            bright = {"hard floor": 4000, "wooden floor": 2000, "high heels": 7000}[surface]
            heel = dsp.bandpass(noise, 200, bright) * dsp.decay(length, 0.012 if surface != "high heels" else 0.006)
            toe = np.roll(heel, int(rng.uniform(0.05, 0.1) * SR)) * 0.4
            thump = dsp.damped_partials(length, [rng.uniform(80, 160)], [2.0], [0.025])
            step = heel + toe + thump
            if surface == "wooden floor":
                step += dsp.damped_partials(length, [rng.uniform(150, 300)], [1.0], [0.06])
        side = 1.0 if k % 2 else rng.uniform(0.7, 0.9)
        dsp.place(audio, step * side * rng.uniform(0.7, 1.0), int(start * SR))
    t = dsp.time_axis(n) / max(total, 1e-3)
    ramp = {"approaching": 0.25 + 0.75 * t, "receding": 1.0 - 0.75 * t, "passing": 1 - 0.75 * np.abs(2 * t - 1)}
    audio *= ramp[direction]
    return Rendered(audio, {"surface": surface, "direction": direction, "interval_s": round(interval, 3)})


@_register("knocking", "DOORS", "DOORKnck", rhythmic=True, settings=("indoors",))
def knocking(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    target = _choice(rng, ("door", "table", "metal door"))
    modes = {"door": (90, 260), "table": (400, 1500), "metal door": (300, 2000)}[target]
    taus = {"door": 0.05, "table": 0.02, "metal door": 0.15}[target]
    audio = np.zeros(n)
    cursor = rng.uniform(0.05, 0.4)
    while cursor < total - 0.2:
        count = int(rng.integers(2, 6)) if target != "table" else int(rng.integers(3, 9))
        spacing = rng.uniform(0.12, 0.28) / rate
        for k in range(count):
            length = int(0.3 * SR)
            freqs = rng.uniform(*modes, 4)
            knock = dsp.damped_partials(length, freqs, rng.uniform(0.3, 1.0, 4), taus * rng.uniform(0.5, 1.5, 4))
            knuckle = dsp.bandpass(rng.standard_normal(length), 1000, 4000) * dsp.decay(length, 0.003)
            dsp.place(audio, (knock + 0.5 * knuckle) * rng.uniform(0.7, 1.0), int((cursor + k * spacing) * SR))
        cursor += count * spacing + rng.uniform(0.8, 2.5)
    return Rendered(audio, {"target": target})


@_register("clock ticking", "CLOCKS", "CLCKTick", rhythmic=True, settings=("indoors",), ambient=True)
def clock_ticking(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    kind = _choice(rng, ("wall clock", "pocket watch", "grandfather clock"))
    interval = {"wall clock": 1.0, "pocket watch": 0.2, "grandfather clock": 1.2}[kind] * rng.uniform(0.9, 1.1) / rate
    if kind == "wall clock" and rng.uniform() < 0.5:
        interval /= 2
    base = {"wall clock": 3000.0, "pocket watch": 6000.0, "grandfather clock": 1500.0}[kind] * rng.uniform(0.8, 1.2)
    length = int(0.08 * SR)
    grains = []
    for shift in (1.0, rng.uniform(0.75, 0.9)):
        freqs = base * shift * np.array([1.0, 1.6, 2.3])
        tick = dsp.damped_partials(length, freqs, [1.0, 0.6, 0.3], [0.004, 0.003, 0.002])
        if kind == "grandfather clock":
            tick += dsp.damped_partials(length, [rng.uniform(200, 400)], [0.8], [0.03])
        grains.append(tick)
    audio = np.zeros(n)
    # Clockwork is precise: very little jitter, which is what makes it sound mechanical.
    for k, start in enumerate(dsp.onsets(rng, total, interval, 0.003, rng.uniform(0, interval))):
        dsp.place(audio, grains[k % 2], int(start * SR))
    return Rendered(audio, {"kind": kind, "interval_s": round(interval, 3)})


@_register("typing on a keyboard", "COMPUTERS", "COMPKeyb", rhythmic=True, settings=("indoors",), ambient=True)
def typing(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    keyboard = _choice(rng, ("mechanical", "laptop", "office"))
    bright, tau, level = {"mechanical": (6000, 0.006, 1.0), "laptop": (3000, 0.003, 0.5), "office": (4500, 0.004, 0.8)}[
        keyboard
    ]
    mean_gap = rng.uniform(0.11, 0.22) / rate
    times: list[float] = []
    spaces: list[float] = []
    cursor = rng.uniform(0.05, 0.4)
    while cursor < total:
        for _ in range(int(rng.integers(2, 9))):
            times.append(cursor)
            cursor += mean_gap * rng.lognormal(0, 0.35)
        spaces.append(cursor)
        cursor += mean_gap * rng.lognormal(0.2, 0.3)
        if rng.uniform() < 0.1:
            cursor += rng.uniform(0.5, 1.5)
    length = int(0.03 * SR)
    press = dsp.bandpass(rng.standard_normal(length), 1200, bright) * dsp.decay(length, tau)
    press += dsp.damped_partials(length, [rng.uniform(250, 500)], [0.5], [0.008])
    release = 0.35 * dsp.bandpass(rng.standard_normal(length), 2000, bright) * dsp.decay(length, tau * 0.7)
    thock = dsp.damped_partials(int(0.05 * SR), [rng.uniform(150, 250), 700], [1.0, 0.3], [0.012, 0.005])
    key_t = np.array(times)
    amps = rng.uniform(0.6, 1.0, len(key_t))
    audio = dsp.convolve_grain(dsp.impulses(n, key_t, amps), press)
    audio += dsp.convolve_grain(dsp.impulses(n, key_t + rng.uniform(0.06, 0.12, len(key_t)), amps), release)
    audio += dsp.convolve_grain(dsp.impulses(n, np.array(spaces), np.ones(len(spaces))), thock)
    return Rendered(level * audio, {"keyboard": keyboard, "keys": len(times)})


@_register("heartbeat", "HUMAN", "HUMNHart", rhythmic=True, settings=("indoors",))
def heartbeat(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    bpm = rng.uniform(55, 85) * rate
    period = 60.0 / bpm
    audio = np.zeros(n)
    length = int(0.15 * SR)
    lub = dsp.damped_partials(length, [rng.uniform(35, 55), rng.uniform(70, 100)], [1.0, 0.4], [0.035, 0.02])
    dub = dsp.damped_partials(length, [rng.uniform(60, 90), rng.uniform(120, 160)], [0.8, 0.3], [0.025, 0.012])
    # Systole shortens less than the whole cycle as the heart speeds up.
    split = 0.3 * period**0.5
    for start in dsp.onsets(rng, total, period, 0.03, rng.uniform(0, period)):
        dsp.place(audio, lub * dsp.attack_decay(length, 0.01, 1.0), int(start * SR))
        dsp.place(audio, dub * rng.uniform(0.6, 0.9), int((start + split) * SR))
    audio = dsp.lowpass(audio, 250) + 0.01 * dsp.lowpass(rng.standard_normal(n), 600)
    return Rendered(audio, {"bpm": round(bpm, 1)})


@_register("applause", "CROWDS", "CROWDApls", ambient=True)
def applause(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    crowd = _choice(rng, ("small group", "audience", "large crowd"))
    people = {
        "small group": int(rng.integers(4, 12)),
        "audience": int(rng.integers(25, 70)),
        "large crowd": int(rng.integers(150, 300)),
    }[crowd]
    audio = np.zeros(n)
    groups = 6
    trains = [np.zeros(n) for _ in range(groups)]
    for p in range(people):
        clap_rate = rng.uniform(3.0, 5.5)
        start = rng.uniform(0, 0.6)
        end = total - rng.uniform(0, 0.8) if total > 2 else total
        times = dsp.onsets(rng, end, 1 / clap_rate, 0.08, start)
        trains[p % groups] += dsp.impulses(n, times, rng.uniform(0.5, 1.0, len(times)))
    length = int(0.03 * SR)
    for train in trains:
        # Cupped and flat palms: each group shares one resonance between ~700 Hz and ~2.5 kHz.
        centre = rng.uniform(700, 2500)
        grain = dsp.bandpass(rng.standard_normal(length), centre / 1.8, centre * 1.8) * dsp.decay(
            length, rng.uniform(0.004, 0.01)
        )
        audio += dsp.convolve_grain(train, grain)
    return Rendered(audio, {"crowd": crowd, "people": people})


# ------------------------------------------------------------------------------------ machines, tools


@_register("engine idling", "VEHICLES", "VEHEngn", ambient=True)
def engine_idling(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    vehicle = _choice(rng, ("car", "truck", "motorcycle"))
    rpm = {"car": rng.uniform(650, 950), "truck": rng.uniform(550, 750), "motorcycle": rng.uniform(950, 1300)}[vehicle]
    cylinders = {"car": 4, "truck": 6, "motorcycle": 2}[vehicle]
    firing_hz = rpm / 60 * cylinders / 2
    times = dsp.onsets(rng, total, 1 / firing_hz, 0.02)
    amps = rng.uniform(0.7, 1.0, len(times))
    if vehicle == "motorcycle":
        amps[::2] *= 1.6  # uneven firing of a V-twin
    length = int(0.08 * SR)
    pulse = dsp.damped_partials(length, rng.uniform(50, 180, 3), [1.0, 0.6, 0.4], [0.02, 0.015, 0.01])
    audio = dsp.convolve_grain(dsp.impulses(n, times, amps), pulse)
    mech = dsp.bandpass(rng.standard_normal(n), 500, 3000) * 0.15
    firing = dsp.lowpass(dsp.impulses(n, times, amps), 60)
    audio += mech * (0.5 + firing / (np.max(np.abs(firing)) + 1e-9))
    if vehicle == "truck":
        clatter = dsp.bandpass(rng.standard_normal(int(0.01 * SR)), 2000, 6000) * dsp.decay(int(0.01 * SR), 0.002)
        audio += 0.4 * dsp.convolve_grain(dsp.impulses(n, times, amps), clatter)
    return Rendered(audio, {"vehicle": vehicle, "rpm": round(rpm)})


@_register("helicopter", "AIRCRAFT", "AIRHeli", rhythmic=True, settings=("outdoors",), ambient=True)
def helicopter(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    motion = _choice(rng, ("hovering", "flying over", "approaching"))
    blade_hz = rng.uniform(9, 22) * rate
    times = dsp.onsets(rng, total, 1 / blade_hz, 0.01)
    length = int(0.06 * SR)
    slap = dsp.lowpass(rng.standard_normal(length), rng.uniform(500, 1500)) * dsp.attack_decay(
        length, 0.002, rng.uniform(0.008, 0.02)
    )
    slap += dsp.damped_partials(length, [rng.uniform(40, 80)], [1.5], [0.02])
    audio = dsp.convolve_grain(dsp.impulses(n, times, rng.uniform(0.8, 1.0, len(times))), slap)
    tail = dsp.onsets(rng, total, 1 / (blade_hz * rng.uniform(4, 6)), 0.01)
    tick = dsp.bandpass(rng.standard_normal(200), 300, 2000) * dsp.decay(200, 0.002)
    audio += 0.3 * dsp.convolve_grain(dsp.impulses(n, tail, np.ones(len(tail))), tick)
    t = dsp.time_axis(n)
    audio += 0.05 * dsp.bandpass(rng.standard_normal(n), 2000, 7000)
    audio += 0.02 * np.sin(2 * np.pi * rng.uniform(3000, 6000) * t)
    if motion != "hovering":
        closest = rng.uniform(0.5, 0.8) if motion == "flying over" else 1.0
        r = np.hypot((t / max(total, 1e-3) - closest) * 4, 0.4)
        audio = audio * 0.4 / r
    return Rendered(audio, {"motion": motion, "blade_hz": round(blade_hz, 2)})


@_register("jackhammer", "TOOLS", "TOOLPneu", rhythmic=True, settings=("outdoors",), ambient=True)
def jackhammer(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    tool = _choice(rng, ("jackhammer", "pneumatic drill", "breaker"))
    blow_hz = rng.uniform(16, 30) * rate
    spans: list[tuple[float, float]] = []
    cursor = rng.uniform(0.0, 0.3)
    while cursor < total:
        length = rng.uniform(1.0, 4.0)
        spans.append((cursor, cursor + length))
        cursor += length + rng.uniform(0.3, 1.5)
    on = dsp.gate(n, spans, 0.03)
    times = dsp.onsets(rng, total, 1 / blow_hz, 0.03)
    length = int(0.05 * SR)
    clank = dsp.damped_partials(
        length, rng.uniform(800, 4000, 5), rng.uniform(0.3, 1.0, 5), rng.uniform(0.004, 0.015, 5)
    )
    clank += dsp.highpass(rng.standard_normal(length), 1000) * dsp.decay(length, 0.002)
    clank += dsp.damped_partials(length, [rng.uniform(60, 120)], [1.0], [0.015])
    audio = dsp.convolve_grain(dsp.impulses(n, times, rng.uniform(0.7, 1.0, len(times))), clank)
    audio += 0.1 * dsp.highpass(rng.standard_normal(n), 2500)
    return Rendered(audio * on, {"tool": tool, "blow_hz": round(blow_hz, 1)})


# -------------------------------------------------------------------------------------------- animals


@_register("birds chirping", "BIRDS", "BIRDSong", pitched=True, rhythmic=True, settings=("outdoors",), ambient=True)
def birds_chirping(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    audio = np.zeros(n)
    birds = int(rng.integers(2, 6))
    for _ in range(birds):
        f0 = min(rng.uniform(2500, 6000) * pitch, 9000.0)
        call = _choice(rng, ("down", "up", "trill", "tweet"))
        level = rng.uniform(0.3, 1.0)
        cursor = rng.uniform(0, 1.5)
        while cursor < total:
            notes = {"down": 1, "up": 1, "trill": int(rng.integers(5, 12)), "tweet": int(rng.integers(2, 4))}[call]
            note_s = rng.uniform(0.03, 0.1) if call != "trill" else rng.uniform(0.02, 0.04)
            for k in range(notes):
                length = int(note_s * SR)
                sweep = np.linspace(0, 1, length)
                f = f0 * (0.7 + 0.6 * sweep) if call == "up" else f0 * (1.3 - 0.5 * sweep)
                note = dsp.harmonic_tone(f, [1.0, 0.1]) * np.hanning(length)
                gap = 0.02 if call == "trill" else rng.uniform(0.05, 0.12)
                dsp.place(audio, note * level, int((cursor + k * (note_s + gap)) * SR))
            cursor += notes * (note_s + 0.05) + rng.exponential(1.2) / rate
    return Rendered(audio, {"birds": birds})


@_register("crickets", "INSECTS", "INSCCrkt", pitched=True, rhythmic=True, settings=("outdoors",), ambient=True)
def crickets(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    chorus = rng.uniform() < 0.5
    audio = 0.005 * dsp.lowpass(rng.standard_normal(n), 800)
    t = dsp.time_axis(n)
    for _ in range(int(rng.integers(3, 9)) if chorus else 1):
        carrier = rng.uniform(3800, 5200) * pitch
        pulses = int(rng.integers(3, 6))
        pulse_hz = rng.uniform(25, 35)
        chirp_s = rng.uniform(0.3, 0.7) / rate
        # Stridulation: a pure carrier gated into pulses, the pulses grouped into chirps.
        gate_times = np.concatenate(
            [c + np.arange(pulses) / pulse_hz for c in dsp.onsets(rng, total, chirp_s, 0.05, rng.uniform(0, chirp_s))]
        )
        syllable = np.hanning(int(SR / pulse_hz * 0.6))
        gate = dsp.convolve_grain(dsp.impulses(n, gate_times, np.ones(len(gate_times))), syllable)
        audio += rng.uniform(0.3, 1.0) * gate * np.sin(2 * np.pi * carrier * t + rng.uniform(0, 6.28))
    return Rendered(audio, {"chorus": "yes" if chorus else "no"})


# ------------------------------------------------------------------------------------------- impacts


@_register("glass breaking", "GLASS", "GLASBrk", min_duration_s=1.5)
def glass_breaking(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    kind = _choice(rng, ("window", "bottle", "drinking glass"))
    audio = np.zeros(n)
    start = rng.uniform(0.05, min(0.5, total * 0.25))
    crack_n = int(0.06 * SR)
    crack = dsp.highpass(rng.standard_normal(crack_n), 1000) * dsp.attack_decay(crack_n, 0.0005, 0.012)
    if kind != "window":
        crack += dsp.damped_partials(crack_n, [rng.uniform(100, 200)], [1.5], [0.02])
    dsp.place(audio, 2.0 * crack, int(start * SR))
    # Shards: many short, very high resonances that thin out as the pieces settle.
    shards = int(rng.integers(40, 200)) * (2 if kind == "window" else 1)
    spread = rng.uniform(0.15, 0.5) * (1.5 if kind == "window" else 1.0)
    times = start + rng.exponential(spread, shards)
    for tm in times:
        length = int(0.08 * SR)
        freqs = rng.uniform(2500, 12000, 3)
        shard = dsp.damped_partials(length, freqs, rng.uniform(0.2, 1.0, 3), rng.uniform(0.005, 0.04, 3))
        dsp.place(audio, shard * np.exp(-(tm - start) / (spread * 2)) * rng.uniform(0.3, 1.0), int(tm * SR))
    return Rendered(audio, {"kind": kind, "shards": shards})


@_register("explosion", "EXPLOSIONS", "EXPL", settings=("outdoors",), min_duration_s=2.0)
def explosion(rng: np.random.Generator, n: int, pitch: float, rate: float) -> Rendered:
    total = _total_s(n)
    kind = _choice(rng, ("blast", "boom", "demolition"))
    start = rng.uniform(0.05, min(0.5, total * 0.2))
    length = int(min(total - start, rng.uniform(2.5, 6.0)) * SR)
    body = dsp.lowpass(dsp.colored_noise(rng, length, 1.0), rng.uniform(800, 3000) if kind != "boom" else 300)
    event = body / (np.std(body) + 1e-9) * dsp.attack_decay(length, 0.003, rng.uniform(0.4, 1.2))
    event += 3 * dsp.damped_partials(length, [rng.uniform(30, 60)], [1.0], [rng.uniform(0.3, 0.8)])
    rumble = dsp.lowpass(dsp.colored_noise(rng, length, 2.0), 200)
    event += 0.6 * rumble / (np.std(rumble) + 1e-9) * dsp.attack_decay(length, 0.2, rng.uniform(1.0, 2.5))
    if kind == "demolition":
        debris = rng.uniform(0.3, length / SR, int(rng.integers(40, 120)))
        clack = dsp.bandpass(rng.standard_normal(400), 300, 3000) * dsp.decay(400, 0.005)
        event += 0.8 * dsp.convolve_grain(dsp.impulses(length, debris, rng.uniform(0.2, 1.0, len(debris))), clack)
    audio = np.zeros(n)
    dsp.place(audio, np.tanh(1.5 * event), int(start * SR))
    return Rendered(audio, {"kind": kind})


CLASSES: tuple[str, ...] = tuple(SOURCES)


def render_source(
    name: str, rng: np.random.Generator, duration_s: float, pitch: float = 1.0, rate: float = 1.0
) -> Rendered:
    """Renders `duration_s` of class `name`, scaled so that its loudest 100 ms has unit RMS."""
    out = SOURCES[name].render(rng, dsp.n_samples(duration_s), pitch, rate)
    audio = dsp.fade_edges(out.audio.copy(), 0.01)
    return Rendered(audio / (dsp.active_level(audio) + 1e-12), dict(out.params))
