"""The aiSFX audio tower: a 9-layer CNN pretrained on commercial sound-effects libraries.

Ma & Lerch, "Representation Learning for the Automatic Indexing of Sound Effects Libraries", ISMIR 2022;
weights from the `aisfx` 0.1.2 package (`aisfx/models/checkpoint.pth`, CC BY 4.0, © 2022 A. B. Ma and
A. Lerch), trained to classify the UCS categories of nine commercial libraries. Its package pins old
numpy/librosa, so this module re-implements what inference needs: the log-mel front end (44.1 kHz,
2048-sample frames, hop 1024, 96 HTK mel bands with unit-sum weights, log10(1e4·x + 1), scaled by the
paper's 0..9.4578 range) and `EmbeddingNet('max', 3, 1, 64)`: four double-conv blocks (64..512 channels)
→ mean over frequency → max over time = one 512-d vector per ~2.3 s block (100 frames).

A window is cut into blocks with a half-block hop (the paper's hop); a window shorter than one block is
zero-padded to one, as the package's `blocking` does. The level is left as it is: the paper's Essentia
loader (`EasyLoader`, replayGain −6 dB = gain 1) does not normalise, and the network was trained on
those features. (The package's librosa path peak-normalises and was this module's first model; with the
level kept and short windows zero-padded, the tower's family mAP on the real-recordings test packages
went from 0.419 to 0.431; fed the package's own Essentia spectrograms instead, the same network scores
within 0.003 of this front end.)
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 44_100
N_FFT, HOP = 2048, 1024
N_MELS = 96
BLOCK_FRAMES, BLOCK_HOP = 100, 50
LOG_MAX = 9.457798957824707  # the paper's min-max range of log10(1e4·mel + 1) over its training data
DIM = 512


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, pool) if pool > 1 else x


class AisfxNet(nn.Module):
    """`EmbeddingNet('max', 3, 1, 64)`: log-mel blocks [n, 100, 96] → [n, 512]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_block1 = _ConvBlock(1, 64)
        self.conv_block2 = _ConvBlock(64, 128)
        self.conv_block3 = _ConvBlock(128, 256)
        self.conv_block4 = _ConvBlock(256, 512)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        x = blocks.unsqueeze(1)
        x = self.conv_block1(x, 2)
        x = self.conv_block2(x, 2)
        x = self.conv_block3(x, 2)
        x = self.conv_block4(x, 1)
        return x.mean(dim=3).amax(dim=2)


class AisfxFrontend(nn.Module):
    """Waveform [samples] at 44.1 kHz → the network's input [frames, 96]."""

    fbank: torch.Tensor
    window: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        fb = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm=None, mel_scale="htk"
        )
        self.register_buffer("fbank", fb / fb.sum(dim=0, keepdim=True).clamp(min=1e-10), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, N_FFT, HOP, window=self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.abs().pow(2).T  # [frames, freqs]
        return torch.log10(power @ self.fbank * 1e4 + 1.0) / LOG_MAX


def blocks_of(log_mel: torch.Tensor) -> torch.Tensor:
    """[frames, 96] → [n, 100, 96]: blocks at a half-block hop, the last one aligned to the end; a
    window shorter than one block is zero-padded (silence: log10(1e4·0 + 1) = 0) to fill it."""
    frames = log_mel.shape[0]
    if frames < BLOCK_FRAMES:
        log_mel = F.pad(log_mel, (0, 0, 0, BLOCK_FRAMES - frames))
    return torch.stack([log_mel[s : s + BLOCK_FRAMES] for s in _block_starts(frames)])


def _block_starts(frames: int) -> list[int]:
    frames = max(frames, BLOCK_FRAMES)
    starts = list(range(0, frames - BLOCK_FRAMES + 1, BLOCK_HOP))
    if starts[-1] + BLOCK_FRAMES < frames:
        starts.append(frames - BLOCK_FRAMES)
    return starts


def block_centres_s(n_samples: int) -> torch.Tensor:
    """Centre time (seconds) of each of `blocks_of`'s blocks for a waveform of `n_samples` at 44.1 kHz."""
    frames = 1 + n_samples // HOP  # torch.stft with center=True: frame i is centred on sample i * HOP
    starts = torch.tensor(_block_starts(frames), dtype=torch.float64)
    return (starts + (BLOCK_FRAMES - 1) / 2) * HOP / SAMPLE_RATE


def checkpoint_state(path: str) -> dict[str, torch.Tensor]:
    """The embedding network's weights from the `aisfx` package's checkpoint (its classifier heads dropped)."""
    weights, _datasets = torch.load(path, map_location="cpu", weights_only=False)
    prefix = "embedding_net."
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
