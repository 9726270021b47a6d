"""Encoders behind one protocol, created from a spec by `load_encoder`."""

from indexer.encoders.base import Encoder
from indexer.encoders.registry import load_encoder

__all__ = ["Encoder", "load_encoder"]
