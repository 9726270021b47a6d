"""Audio decoding, encoders, the catalog and its vector index: everything below search and captioning.

The encoder names are imported on first use (PEP 562), so that a process which only decodes audio
(`indexer.decoding`'s worker processes) does not load the model code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from indexer.errors import AudioDecodeError, EncoderLoadError, SoundsearchError

if TYPE_CHECKING:
    from indexer.encoders import Encoder, load_encoder

__all__ = ["AudioDecodeError", "Encoder", "EncoderLoadError", "SoundsearchError", "load_encoder"]


def __getattr__(name: str) -> Any:
    if name in ("Encoder", "load_encoder"):
        from indexer import encoders

        return getattr(encoders, name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
