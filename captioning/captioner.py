"""`Captioner`: caption clips and files with a trained captioning model.

Long files: a file up to `whole_max_s` (default 30 s, three 10 s windows) is captioned as a whole, the way
training sees clips of AudioCaps (10 s) and Clotho (15-30 s). A longer file is captioned per segment:
consecutive non-overlapping windows, streamed from disk (a two-hour file is never held in memory),
captioned in batches, with runs of identical captions merged into one time-stamped segment. The file's
caption is then the segment caption covering the most time. `soundsearch caption --json` lists the
segments with their start and end seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from captioning.errors import CaptioningError
from captioning.features import FeatureExtractor, feature_extractor
from captioning.model import CaptionModel, DecodeConfig, pad_tokens
from captioning.store import WEIGHTS_DIR, CaptionerSpec, load_caption_model
from indexer.encoders.base import Encoder
from indexer.types import FloatArray
from indexer.windows import Window, WindowSpec, iter_windows

DEFAULT_WHOLE_MAX_S = 30.0


@dataclass(frozen=True)
class SegmentCaption:
    start_s: float
    end_s: float
    caption: str


@dataclass(frozen=True)
class FileCaption:
    path: str
    caption: str
    duration_s: float
    mode: str  # "whole" or "segments"
    segments: tuple[SegmentCaption, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Captioner:
    """A caption model bound to its audio feature extractor. Satisfies the server's `Captioner` hook."""

    def __init__(
        self,
        model: CaptionModel,
        extractor: FeatureExtractor,
        spec: CaptionerSpec,
        *,
        decode: DecodeConfig | None = None,
        model_id: str = "captioner",
        card: dict[str, Any] | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model = model.eval()
        self.extractor = extractor
        self.spec = spec
        self.decode = decode or spec.decode
        self.model_id = model_id
        self.card = card or {}
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    # --- clips -------------------------------------------------------------------------------------

    @torch.no_grad()
    def caption_tokens(self, tokens: Sequence[torch.Tensor], decode: DecodeConfig | None = None) -> list[str]:
        """Captions for precomputed audio tokens ([t_i, dim] per clip)."""
        out: list[str] = []
        for start in range(0, len(tokens), self.batch_size):
            x, mask = pad_tokens([t.to(self.device) for t in tokens[start : start + self.batch_size]])
            out += self.model.generate(x, mask, decode or self.decode)
        return out

    @torch.no_grad()
    def caption_clips(self, clips: Sequence[FloatArray], decode: DecodeConfig | None = None) -> list[str]:
        """One caption per clip (mono float32 at the encoder's rate), each captioned as a whole."""
        from captioning.features import clip_tokens

        for i, clip in enumerate(clips):
            if len(clip) == 0:
                raise CaptioningError(f"clip {i} is empty")
        out: list[str] = []
        for start in range(0, len(clips), self.batch_size):
            tokens = clip_tokens(self.extractor, clips[start : start + self.batch_size], self.spec.max_windows)
            out += self.caption_tokens(tokens, decode)
        return out

    # --- files -------------------------------------------------------------------------------------

    def caption(self, path: str | Path) -> str:
        """The server's hook: one caption for a file."""
        return self.caption_file(path).caption

    def caption_file(
        self, path: str | Path, *, whole_max_s: float = DEFAULT_WHOLE_MAX_S, decode: DecodeConfig | None = None
    ) -> FileCaption:
        from indexer.audio import load_audio, probe

        info = probe(path)  # AudioDecodeError (a SoundsearchError) with a clear reason for unreadable files
        if info.duration_s <= whole_max_s:
            audio = load_audio(path, self.extractor.sample_rate)
            (caption,) = self.caption_clips([audio.samples], decode)
            return FileCaption(str(path), caption, audio.duration_s, "whole")
        segments = self._segments(path, decode)
        if not segments:
            raise CaptioningError(f"{path}: no audio to caption")
        totals: dict[str, float] = {}
        for seg in segments:
            totals[seg.caption] = totals.get(seg.caption, 0.0) + seg.end_s - seg.start_s
        best = max(totals, key=lambda c: totals[c])  # ties: the earliest (dicts keep insertion order)
        return FileCaption(str(path), best, segments[-1].end_s, "segments", tuple(segments))

    def _segments(self, path: str | Path, decode: DecodeConfig | None) -> list[SegmentCaption]:
        from indexer.audio import stream_audio

        sr = self.extractor.sample_rate
        spec = WindowSpec(self.extractor.window_seconds, self.extractor.window_seconds)
        merged: list[SegmentCaption] = []
        for batch in _batches(iter_windows(stream_audio(path, sr), sr, spec), self.batch_size):
            with torch.no_grad():
                tokens = self.extractor.tokens(self.extractor.inputs([w.samples for w in batch])).float()
            captions = self.caption_tokens(list(tokens), decode)
            for w, caption in zip(batch, captions, strict=True):
                # The end-aligned last window overlaps its predecessor: its segment starts where that one ended.
                start = max(w.start_s, merged[-1].end_s) if merged else w.start_s
                if merged and merged[-1].caption == caption:
                    merged[-1] = SegmentCaption(merged[-1].start_s, w.end_s, caption)
                else:
                    merged.append(SegmentCaption(start, w.end_s, caption))
        return merged


def _batches(windows: Iterator[Window], size: int) -> Iterator[list[Window]]:
    batch: list[Window] = []
    for w in windows:
        batch.append(w)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_captioner(
    folder: str | Path | None = None,
    *,
    encoder: Encoder | None = None,
    device: str | None = None,
    decode: DecodeConfig | None = None,
) -> Captioner:
    """Load a saved captioner (default: the one shipped in the package), with its encoder.

    Pass `encoder` to share one already loaded (the server's); it must be the model the captioner was
    trained on, and must not be one the captioner fine-tuned (those weights are the captioner's own).
    """
    from indexer.encoders.registry import load_encoder

    path = Path(folder) if folder is not None else WEIGHTS_DIR
    model, spec, encoder_state, card = load_caption_model(path)
    if encoder is None:
        encoder = load_encoder(spec.encoder, device=device)
    elif encoder.model_id != spec.encoder_model_id or spec.fine_tuned_encoder:
        raise CaptioningError(
            f"the captioner in {path} was trained on {spec.encoder_model_id!r}"
            + (" (fine-tuned)" if spec.fine_tuned_encoder else "")
            + f", not on the given encoder {encoder.model_id!r}"
        )
    extractor = feature_extractor(encoder)
    if extractor.dim != spec.feature_dim:
        raise CaptioningError(
            f"encoder {spec.encoder!r} gives {extractor.dim}-d features, the captioner wants {spec.feature_dim}"
        )
    if encoder_state:
        module = extractor.module()
        if module is None:
            raise CaptioningError(f"{path} holds fine-tuned encoder weights, but {spec.encoder!r} cannot take them")
        module.load_state_dict({k: v.float() for k, v in encoder_state.items()})
        module.eval()
    dev = getattr(extractor, "encoder", None)
    model.to(getattr(dev, "device", torch.device("cpu")))
    return Captioner(model, extractor, spec, decode=decode, model_id=f"captioner:{path.resolve().name}", card=card)
