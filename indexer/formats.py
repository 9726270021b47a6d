"""The audio files soundsearch reads, by extension: light enough for code that only lists files (the CLI's
fast commands, the scanner, the watcher) to ask without importing the decoding stack (torch)."""

from __future__ import annotations

from pathlib import Path

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


def is_supported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS
