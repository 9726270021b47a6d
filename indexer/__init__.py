"""Audio decoding, encoders and (later) the catalog: everything below search and captioning."""

from indexer.encoders import Encoder, load_encoder
from indexer.errors import AudioDecodeError, EncoderLoadError, SoundsearchError

__all__ = ["AudioDecodeError", "Encoder", "EncoderLoadError", "SoundsearchError", "load_encoder"]
