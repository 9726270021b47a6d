"""Indexing progress on a terminal (tqdm), for the CLI and the demo."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from search.indexing import RunProgress


class TqdmProgress(RunProgress):
    """Files, audio hours and ETA on a terminal; silent when stderr is not one."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: tqdm[Any] | None = None
        self.audio_s = 0.0

    def start(self, files: int, audio_seconds: float) -> None:
        if self.enabled:
            self.bar = tqdm(total=files, unit="file", desc="indexing", dynamic_ncols=True)

    def advance(self, files: int, audio_seconds: float) -> None:
        self.audio_s += audio_seconds
        if self.bar is not None:
            self.bar.update(files)
            self.bar.set_postfix_str(f"{self.audio_s / 3600:.2f} h audio", refresh=False)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
