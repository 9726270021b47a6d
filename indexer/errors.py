"""The project's exception hierarchy: every user-facing failure is a `SoundsearchError`."""

from __future__ import annotations

from pathlib import Path


class SoundsearchError(Exception):
    """Base class for errors a user can act on (bad input, missing model, inconsistent catalog)."""


class AudioDecodeError(SoundsearchError):
    """A file could not be read as audio. Carries the path and a human-readable reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EncoderLoadError(SoundsearchError):
    """An encoder spec could not be turned into a working model (offline, wrong format, ...)."""
