"""What the training loop trains: one small interface, one adapter per model family.

The loop precomputes each clip's log-mel once (`features`) and each caption's text input once
(`text_inputs`), then trains on those with augmentations applied to the log-mels, so an epoch costs
only the forward/backward passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from indexer.encoders.mini import MiniClap, MiniConfig, SentenceEncoder, load_mini, minilm_dir, save_mini
from indexer.errors import EncoderLoadError, SoundsearchError
from indexer.types import FloatArray
from indexer.windows import WindowSpec, repeat_pad, split_windows


class Trainable(Protocol):
    sample_rate: int
    window_s: float
    model_id: str
    # True: `features` are outputs of frozen towers (cached once per clip, never augmented as log-mels).
    frozen_features: bool

    def modules(self) -> nn.Module: ...

    def features(self, clip: FloatArray) -> torch.Tensor:
        """Log-mel [frames, mels] of a whole clip (repeat-padded to at least one window)."""
        ...

    def window_frames(self) -> int: ...

    def text_inputs(self, captions: Sequence[str]) -> Any: ...

    def select_text(self, inputs: Any, index: torch.Tensor) -> Any: ...

    def audio_embed(self, log_mel: torch.Tensor) -> torch.Tensor: ...

    def text_embed(self, inputs: Any) -> torch.Tensor: ...

    def logit_scale(self) -> torch.Tensor: ...

    def drift(self, features: torch.Tensor) -> torch.Tensor:
        """Per clip, how far training has moved its embedding from the untrained model's (squared);
        what `TrainConfig.anchor` penalises."""
        ...

    def save(self, out_dir: Path, card: dict[str, Any]) -> None: ...


def _at_least_one_window(clip: FloatArray, window_s: float, sample_rate: int) -> FloatArray:
    """A short clip repeat-padded to one window; a longer one whole (training crops windows from it)."""
    win = round(window_s * sample_rate)
    return repeat_pad(clip, win) if len(clip) < win else clip


class MiniTrainable:
    """`mini`: CNN audio tower + projection over frozen MiniLM sentence vectors; for a two-tower mini
    (mini@3) the towers are frozen and the head is trained on their cached window features."""

    def __init__(self, model: MiniClap, sentences: SentenceEncoder) -> None:
        self.model = model
        self.sentences = sentences
        self.sample_rate = model.cfg.sample_rate
        self.window_s = model.cfg.window_s
        self.model_id = model.cfg.model_id
        self.frozen_features = model.cfg.two_towers
        self.windows = WindowSpec(self.window_s, self.window_s / 2)

    @classmethod
    def create(cls, init: str | None) -> MiniTrainable:
        if init in (None, "scratch"):
            model = MiniClap(MiniConfig())
            return cls(model, SentenceEncoder(minilm_dir(), torch.device("cpu")))
        encoder = load_mini(None if init == "mini" else Path(str(init)), device="cpu")
        return cls(encoder.model, encoder.sentences)

    def modules(self) -> nn.Module:
        return self.model

    def features(self, clip: FloatArray) -> torch.Tensor:
        """Log-mel [frames, mels] of the whole clip; two towers: features [windows, feature_dim] of the
        windows the encoder would embed."""
        if self.frozen_features:
            windows = [
                w.samples for w in split_windows(np.asarray(clip, dtype=np.float32), self.sample_rate, self.windows)
            ]
            return self.model.window_features(windows, torch.device("cpu"))
        wave = _at_least_one_window(clip, self.window_s, self.sample_rate)
        with torch.no_grad():
            return self.model.frontend(torch.from_numpy(np.ascontiguousarray(wave))[None])[0]

    def window_frames(self) -> int:
        return 1 if self.frozen_features else self.model.cfg.frames

    def text_inputs(self, captions: Sequence[str]) -> torch.Tensor:
        return self.sentences.encode(captions)

    def select_text(self, inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return inputs[index]

    def audio_embed(self, log_mel: torch.Tensor) -> torch.Tensor:
        if self.frozen_features:
            return self.model.joint_audio(log_mel[:, 0])  # [batch, 1 window, features]
        return self.model.embed_log_mel(log_mel)

    def text_embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.joint_text(inputs)

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0)

    def drift(self, features: torch.Tensor) -> torch.Tensor:
        if not self.frozen_features:
            raise SoundsearchError("anchoring needs a two-tower mini (its head's residual is the drift)")
        return self.model.head(features[:, 0]).pow(2).sum(dim=1)

    def save(self, out_dir: Path, card: dict[str, Any]) -> None:
        save_mini(self.model, out_dir, card)


class ClapTrainable:
    """A Hugging Face `ClapModel` (hub id in the local cache, or a directory), fine-tuned end to end."""

    def __init__(self, source: str) -> None:
        from indexer.encoders.clap import ClapEncoder, load_hf_clap

        try:
            encoder = load_hf_clap(source, device="cpu")
        except (OSError, ValueError) as exc:
            raise EncoderLoadError(f"cannot load {source!r} for fine-tuning: {exc}") from None
        self.encoder: ClapEncoder = encoder
        self.model = encoder.model.train()
        self.sample_rate = encoder.sample_rate
        self.window_s = encoder.window_seconds
        self.model_id = encoder.model_id
        self.source = source
        self.frozen_features = False

    def modules(self) -> nn.Module:
        return self.model

    def features(self, clip: FloatArray) -> torch.Tensor:
        wave = _at_least_one_window(clip, self.window_s, self.sample_rate)
        with torch.no_grad():
            return self.encoder.audio_features([wave])[0, 0]  # [frames, mels] (unfused models)

    def window_frames(self) -> int:
        return round(self.window_s * self.sample_rate) // self.encoder.frontend.hop_length + 1

    def text_inputs(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        tokens = self.encoder.tokenizer(
            list(captions), padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def select_text(self, inputs: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in inputs.items()}

    def audio_embed(self, log_mel: torch.Tensor) -> torch.Tensor:
        is_longer = torch.zeros((log_mel.shape[0], 1), dtype=torch.bool)
        out = self.model.get_audio_features(input_features=log_mel.unsqueeze(1), is_longer=is_longer)
        return nn.functional.normalize(out.pooler_output, dim=-1)

    def text_embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.normalize(self.model.get_text_features(**inputs).pooler_output, dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale_a.exp().clamp(max=100.0)

    def drift(self, features: torch.Tensor) -> torch.Tensor:
        raise SoundsearchError("anchoring needs a two-tower mini; a CLAP model is fine-tuned end to end")

    def save(self, out_dir: Path, card: dict[str, Any]) -> None:
        from transformers import ClapFeatureExtractor

        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out_dir)
        self.encoder.tokenizer.save_pretrained(out_dir)
        fe = self.encoder.frontend
        ClapFeatureExtractor(truncation="fusion" if fe.fusion else "rand_trunc").save_pretrained(out_dir)
        (out_dir / "training_card.json").write_text(json.dumps(card, indent=2) + "\n")


def create_trainable(init: str | None) -> Trainable:
    """`None`/"scratch" or "mini" (or a mini folder): the mini model; anything else: a HF CLAP model."""
    if init in (None, "scratch", "mini") or (Path(str(init)) / "mini.json").is_file():
        return MiniTrainable.create(init)
    return ClapTrainable(str(init))


def parameters(trainable: Trainable) -> Iterator[nn.Parameter]:
    return (p for p in trainable.modules().parameters() if p.requires_grad)
