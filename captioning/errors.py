"""Errors of the captioning package: all `SoundsearchError`s, so the CLI exits 2 with one clear line."""

from __future__ import annotations

from indexer.errors import SoundsearchError


class CaptioningError(SoundsearchError):
    """A captioner cannot be built, trained, loaded or run on this input."""


class MetricsError(CaptioningError):
    """The caption metrics cannot run (Java missing, mismatched inputs, ...)."""
