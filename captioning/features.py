"""Audio features a captioner attends to, from any encoder of the `Encoder` protocol.

One small interface, one implementation per encoder family:

- `MiniFrames` (one-tower `MiniEncoder`, mini@2): the CNN tower's frame tokens before pooling, [n, 15, 128]
  per 10 s window.
- `MiniTowers` (two-tower `MiniEncoder`, mini@3 and later): each CNN frame token with the pretrained aiSFX
  tower's vector of the 2.3 s block nearest to it in time, [n, 15, 128 + 512]; frozen towers only, never
  the trained head, so a head retrained on the same towers leaves the tokens as they are.
- `ClapPatches` (`ClapEncoder`, HF and converted LAION checkpoints): HTSAT's last hidden state, its
  frequency x time patch grid flattened to tokens, [n, F'*T', hidden].
- `PooledVector` (anything else): the pooled, normalised embedding as a one-token memory.

Features are computed in two steps so that a frozen encoder's work is done once per clip (`inputs` then
`tokens` under no_grad, cached by the trainer) while a fine-tuned one runs `tokens` with gradients on
cached `inputs` (the log-mels) every step. A clip longer than one window is cut into non-overlapping
windows (at most `max_windows`, evenly spread) whose tokens are concatenated along time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch import nn

from indexer.encoders.base import Encoder
from indexer.types import FloatArray
from indexer.windows import WindowSpec, window_bounds


class FeatureExtractor(Protocol):
    model_id: str
    sample_rate: int
    window_seconds: float
    dim: int  # feature size of each token
    fine_tunable: bool

    def inputs(self, windows: Sequence[FloatArray]) -> torch.Tensor:
        """Model input for windows of at most `window_seconds` each (no gradients)."""
        ...

    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """[n, tokens, dim] from `inputs`; differentiable when the encoder is fine-tuned."""
        ...

    def module(self) -> nn.Module | None:
        """The encoder's trainable audio module (None: cannot be fine-tuned)."""
        ...


class MiniFrames:
    """`mini`: `AudioTower.frame_features` on the encoder's own log-mels."""

    fine_tunable = True

    def __init__(self, encoder: Encoder) -> None:
        from indexer.encoders.mini import MiniEncoder

        if not isinstance(encoder, MiniEncoder):
            raise TypeError(f"MiniFrames needs a MiniEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.model_id = encoder.model_id
        self.sample_rate = encoder.sample_rate
        self.window_seconds = encoder.window_seconds
        self.dim = encoder.model.cfg.channels[-1]

    def inputs(self, windows: Sequence[FloatArray]) -> torch.Tensor:
        return self.encoder.log_mel(windows).clone()  # clone: an inference tensor cannot enter autograd

    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder.model.audio.frame_features(inputs.to(self.encoder.device))

    def module(self) -> nn.Module | None:
        return self.encoder.model.audio


class MiniTowers:
    """Two-tower `mini`: CNN frame tokens, each with the aiSFX block vector covering its moment.

    Both towers are frozen in a two-tower mini and stay so here: the tokens are what the encoder's towers
    compute, for any head trained on them. Fine-tuning is refused (`train_captioner` raises), since it
    would need the CNN unfrozen in a model whose head was trained on its frozen output.
    """

    fine_tunable = False

    def __init__(self, encoder: Encoder) -> None:
        from indexer.encoders import aisfx
        from indexer.encoders.mini import MiniEncoder

        if not isinstance(encoder, MiniEncoder) or not encoder.model.cfg.two_towers:
            raise TypeError(f"MiniTowers needs a two-tower MiniEncoder, got {encoder.model_id!r}")
        self.encoder = encoder
        self.model_id = encoder.model_id
        self.sample_rate = encoder.sample_rate
        self.window_seconds = encoder.window_seconds
        cfg = encoder.model.cfg
        self.dim = cfg.channels[-1] + aisfx.DIM
        # A frame token pools 2^blocks log-mel frames (one 2x time pooling per conv block); its centre, in s.
        per_token = 2 ** len(cfg.channels)
        self._token_centres_s = (
            (torch.arange(cfg.frames // per_token, dtype=torch.float64) * per_token + (per_token - 1) / 2)
            * cfg.hop_length
            / cfg.cnn_sr
        )

    def inputs(self, windows: Sequence[FloatArray]) -> torch.Tensor:
        from indexer.encoders import aisfx

        model, device = self.encoder.model, self.encoder.device
        with torch.inference_mode():
            frames = model.audio.frame_features(self.encoder.log_mel(windows))  # [n, t, 128]
            blocks = model.aisfx_blocks(windows, device)
            aligned = []
            for w, vectors in zip(windows, blocks, strict=True):
                # The CNN sees a short window repeat-padded: a token past its end hears the clip from the start.
                seconds = max(len(w), 1) / self.sample_rate
                times = torch.remainder(self._token_centres_s, seconds)
                nearest = (times[:, None] - aisfx.block_centres_s(len(w))[None, :]).abs().argmin(dim=1)
                aligned.append(vectors[nearest.to(device)])
            out = torch.cat([frames, torch.stack(aligned)], dim=2)
        return out.clone()  # clone: an inference tensor cannot enter autograd (the mapper's)

    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs

    def module(self) -> nn.Module | None:
        return None


class ClapPatches:
    """HF `ClapModel` (HTSAT): the audio encoder's last hidden state, patch grid flattened to tokens."""

    fine_tunable = True

    def __init__(self, encoder: Encoder) -> None:
        from indexer.encoders.clap import ClapEncoder

        if not isinstance(encoder, ClapEncoder):
            raise TypeError(f"ClapPatches needs a ClapEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.model_id = encoder.model_id
        self.sample_rate = encoder.sample_rate
        self.window_seconds = encoder.window_seconds
        self.dim = int(encoder.model.config.audio_config.hidden_size)

    def inputs(self, windows: Sequence[FloatArray]) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder.audio_features(windows).float().cpu()

    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = inputs.to(enc.device, enc.dtype)
        # A window never exceeds the model's 10 s: nothing is "longer", no random fusion crops.
        is_longer = torch.zeros((x.shape[0], 1), dtype=torch.bool, device=enc.device)
        hidden = enc.model.audio_model(input_features=x, is_longer=is_longer).last_hidden_state
        # [n, hidden, freq', time'] → [n, time' x freq', hidden], time-major so tokens run in time order.
        return hidden.permute(0, 3, 2, 1).flatten(1, 2).float()

    def module(self) -> nn.Module | None:
        return self.encoder.model.audio_model


class PooledVector:
    """Any other encoder: its pooled embedding as a single memory token (frozen only)."""

    fine_tunable = False

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.model_id = encoder.model_id
        self.sample_rate = encoder.sample_rate
        self.window_seconds = encoder.window_seconds
        self.dim = encoder.dim

    def inputs(self, windows: Sequence[FloatArray]) -> torch.Tensor:
        return torch.from_numpy(self.encoder.embed_audio(list(windows))).unsqueeze(1)

    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs

    def module(self) -> nn.Module | None:
        return None


def feature_extractor(encoder: Encoder) -> FeatureExtractor:
    """The richest features this encoder exposes: frame/patch tokens where it has them, else its vector."""
    from indexer.encoders.clap import ClapEncoder
    from indexer.encoders.mini import MiniEncoder

    inner = getattr(encoder, "inner", encoder)  # the server's LockedEncoder wraps the real one
    if isinstance(inner, MiniEncoder):
        return MiniTowers(inner) if inner.model.cfg.two_towers else MiniFrames(inner)
    if isinstance(inner, ClapEncoder):
        return ClapPatches(inner)
    return PooledVector(encoder)


def clip_windows(samples: FloatArray, sample_rate: int, window_s: float, max_windows: int) -> list[FloatArray]:
    """Non-overlapping windows covering a clip (end-aligned last one); at most `max_windows`, evenly spread."""
    samples = np.asarray(samples, dtype=np.float32)
    bounds = window_bounds(len(samples), sample_rate, WindowSpec(window_s, window_s))
    if len(bounds) > max_windows:
        keep = np.linspace(0, len(bounds) - 1, max_windows).round().astype(int)
        bounds = [bounds[i] for i in keep]
    return [samples[a:b] for a, b in bounds]


@torch.no_grad()
def clip_tokens(extractor: FeatureExtractor, clips: Sequence[FloatArray], max_windows: int) -> list[torch.Tensor]:
    """Frozen-encoder tokens of whole clips: [tokens_i, dim] each, windows concatenated in time order."""
    views: list[FloatArray] = []
    owner: list[int] = []
    for i, clip in enumerate(clips):
        parts = clip_windows(clip, extractor.sample_rate, extractor.window_seconds, max_windows)
        views += parts
        owner += [i] * len(parts)
    per_window = extractor.tokens(extractor.inputs(views)).float().cpu() if views else torch.zeros(0)
    out: list[list[torch.Tensor]] = [[] for _ in clips]
    for row, i in enumerate(owner):
        out[i].append(per_window[row])
    return [torch.cat(parts) for parts in out]
