"""An encoder loaded at its first use, for the commands that may never need it.

A text search of names and tags (`soundsearch search --mode text`) never embeds anything, yet the search
engine takes an encoder and checks it against the catalog's model. Loading the model means importing torch and
transformers (seconds) and reading the weights; this stand-in answers `model_id` and `dim` from the catalog's
record of its model and loads the real one only when something else is asked of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from indexer.encoders.base import Encoder
from indexer.types import FloatArray


class LazyEncoder:
    # Declared for the Encoder protocol, answered by the loaded model through `__getattr__`.
    sample_rate: int
    window_seconds: float

    def __init__(self, model_id: str, dim: int, load: Callable[[], Encoder]) -> None:
        self.model_id = model_id
        self.dim = dim
        self._load = load
        self._inner: Encoder | None = None
        self._loading = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._inner is not None

    def inner(self) -> Encoder:
        with self._loading:
            if self._inner is None:
                self._inner = self._load()
            return self._inner

    def embed_audio(self, clips: Sequence[FloatArray]) -> FloatArray:
        return self.inner().embed_audio(clips)

    def embed_text(self, texts: Sequence[str]) -> FloatArray:
        return self.inner().embed_text(texts)

    def __getattr__(self, name: str) -> Any:
        # The protocol's sample_rate and window_seconds, and what some backends add (batch_size, device...).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner(), name)
