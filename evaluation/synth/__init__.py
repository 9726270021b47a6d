"""Procedural sound library with ground truth: 27 recognisable classes, modifiers, mixtures and captions.

Deterministic from a seed (clip `i` depends only on `(seed, i)`), pure numpy/scipy, no system binaries.

    from evaluation.synth import generate_library, synthesize_clip, CLASSES
    summary = generate_library(Path("out/synth"), n=2000, seed=0)
    clip = synthesize_clip(seed=0, index=12)   # in memory: clip.audio [samples, channels], clip.truth
"""

from evaluation.synth.library import (
    ClipSpec,
    ClipTruth,
    Event,
    LibrarySummary,
    SynthClip,
    generate_library,
    plan_clip,
    render_clip,
    synthesize_clip,
)
from evaluation.synth.modifiers import Modifiers
from evaluation.synth.sources import CLASSES

__all__ = [
    "CLASSES",
    "ClipSpec",
    "ClipTruth",
    "Event",
    "LibrarySummary",
    "Modifiers",
    "SynthClip",
    "generate_library",
    "plan_clip",
    "render_clip",
    "synthesize_clip",
]
