"""CLAP encoders on `transformers.ClapModel`: hub ids, local directories, converted LAION checkpoints.

Preprocessing is ours, not `ClapFeatureExtractor`'s: the extractor crops clips longer than 10 s at
random ("rand_trunc"/"fusion") and, for fused models, marks a random clip of each batch as "longer",
so the same file gets different embeddings on every call. We cut files into deterministic windows
(`indexer.windows`), repeat-pad short ones as LAION does, and compute the same log-mel features on the
torch side (batched STFT, far faster than the extractor's numpy loop), with `is_longer` always false.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from indexer.encoders.base import normalise
from indexer.settings import settings
from indexer.types import FloatArray
from indexer.windows import WindowSpec, embed_clips, repeat_pad

if TYPE_CHECKING:
    from transformers import ClapModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# LAION-CLAP was trained on 77-token texts; longer queries are cut there rather than rejected.
TEXT_MAX_TOKENS = 77


@dataclass(frozen=True)
class MelFrontend:
    """Log-mel settings of a CLAP checkpoint (LAION: 48 kHz, n_fft 1024, hop 480, 64 mels, 50-14000 Hz)."""

    sample_rate: int = 48_000
    window_s: float = 10.0
    n_fft: int = 1024
    hop_length: int = 480
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14_000.0
    # Fused checkpoints were trained on torchaudio's HTK mel bank, unfused ones on librosa's Slaney bank.
    fusion: bool = False
    # LAION's own inference quantises waveforms to int16 and back before the mel; HF's extractor does not.
    quantize_int16: bool = False

    def filter_bank(self) -> np.ndarray:
        from transformers.audio_utils import mel_filter_bank

        htk = self.fusion
        return mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=self.n_mels,
            min_frequency=self.f_min,
            max_frequency=self.f_max,
            sampling_rate=self.sample_rate,
            norm=None if htk else "slaney",
            mel_scale="htk" if htk else "slaney",
        )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def batch_for_memory(
    free_bytes: float, bytes_per_window: float, *, share: float = 0.5, smallest: int = 8, largest: int = 512
) -> int:
    """The largest power of two of windows whose activations take at most `share` of the free memory.

    Half, because the decoders' batches, a FAISS/torch search and other processes share the GPU. Beyond
    a few hundred windows a batch no longer gets faster; below 8, the GPU idles between launches.
    """
    fitting = int(free_bytes * share / max(bytes_per_window, 1.0))
    if fitting < smallest:
        return smallest
    return min(largest, 2 ** int(math.log2(fitting)))


def measured_batch_size(
    embed: Callable[[Sequence[FloatArray]], object], window_samples: int, device: torch.device
) -> int:
    """Batch size for `embed` on a CUDA device: peak memory of a probe batch, scaled to the free memory."""
    probe = 8
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    embed([np.zeros(window_samples, dtype=np.float32)] * probe)
    torch.cuda.synchronize(device)
    per_window = (torch.cuda.max_memory_allocated(device) - before) / probe
    free, _total = torch.cuda.mem_get_info(device)
    return batch_for_memory(free, per_window)


class ClapEncoder:
    """The `Encoder` protocol over a `transformers.ClapModel` and its tokenizer."""

    def __init__(
        self,
        model: ClapModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        frontend: MelFrontend,
        device: str | None = None,
        batch_size: int | None = None,
        hop_s: float = 5.0,
    ) -> None:
        self.model_id = model_id
        self.frontend = frontend
        self.sample_rate = frontend.sample_rate
        self.window_seconds = frontend.window_s
        self.windows = WindowSpec(frontend.window_s, hop_s)
        self.dim = int(model.config.projection_dim)
        self.device = torch.device(device or default_device())
        # bf16 on GPUs that have it, fp16 on older ones; fp32 on CPU where half precision is slower.
        if self.device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.float32
            _configure_cpu_threads()
        # CPU: HTSAT-tiny peaks at batch 2-4 on two cores (benchmarks/bench_encoder.py); larger batches lose.
        self.batch_size = batch_size or (8 if self.device.type == "cuda" else 4)
        torch.nn.Module.to(model, device=self.device, dtype=self.dtype)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.logit_scale = float(model.logit_scale_a.exp().item())
        self._mel_fb = torch.from_numpy(frontend.filter_bank()).float().to(self.device)
        self._window = torch.hann_window(frontend.n_fft, periodic=True, device=self.device)
        if self.device.type == "cuda" and batch_size is None:
            self.batch_size = measured_batch_size(
                self._embed_batch, self.windows.frames(self.sample_rate)[0], self.device
            )

    def __repr__(self) -> str:
        return f"ClapEncoder({self.model_id!r}, dim={self.dim}, device={self.device.type})"

    # --- audio -------------------------------------------------------------------------------------

    def embed_audio(self, clips: Sequence[FloatArray]) -> FloatArray:
        """Embed mono clips at `sample_rate`; clips longer than a window get the mean of their windows."""
        return embed_clips(clips, self.sample_rate, self.windows, self.embed_windows)

    def embed_windows(self, windows: Sequence[FloatArray]) -> FloatArray:
        """Embed clips of at most one window each (shorter ones are repeat-padded)."""
        out = np.empty((len(windows), self.dim), dtype=np.float32)
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start : start + self.batch_size]
            out[start : start + len(batch)] = self._embed_batch(batch)
        return out

    def audio_features(self, windows: Sequence[FloatArray]) -> torch.Tensor:
        """Log-mel input features [n, channels, frames, n_mels] exactly as the model expects them."""
        win, _ = self.windows.frames(self.sample_rate)
        wave = np.stack([repeat_pad(np.asarray(w, dtype=np.float32), win) for w in windows])
        x = torch.from_numpy(wave).to(self.device)
        if self.frontend.quantize_int16:
            x = (x.clamp(-1.0, 1.0) * 32767.0).to(torch.int16).float() / 32767.0
        spec = torch.stft(
            x,
            self.frontend.n_fft,
            hop_length=self.frontend.hop_length,
            window=self._window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [n, freq, frames]
        mel = torch.matmul(power.transpose(1, 2), self._mel_fb).clamp_(min=1e-10)
        log_mel = 10.0 * torch.log10(mel)
        channels = 4 if self.frontend.fusion else 1  # fused models take [global, 3 local crops]
        return log_mel.unsqueeze(1).expand(-1, channels, -1, -1)

    @torch.inference_mode()
    def _embed_batch(self, windows: Sequence[FloatArray]) -> FloatArray:
        features = self.audio_features(windows).to(self.dtype)
        # A window never exceeds the model's 10 s, so nothing is "longer": no random fusion crops.
        is_longer = torch.zeros((len(windows), 1), dtype=torch.bool, device=self.device)
        out = self.model.get_audio_features(input_features=features, is_longer=is_longer)
        return normalise(out.pooler_output.float().cpu().numpy())

    # --- text --------------------------------------------------------------------------------------

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> FloatArray:
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of strings, not a single string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), max(self.batch_size, 32)):
            batch = list(texts[start : start + max(self.batch_size, 32)])
            tokens = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self._text_max_tokens(), return_tensors="pt"
            )
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            emb = self.model.get_text_features(**tokens).pooler_output
            out[start : start + len(batch)] = normalise(emb.float().cpu().numpy())
        return out

    def _text_max_tokens(self) -> int:
        # RoBERTa positions start after the padding index, so two positions are unusable.
        positions = int(self.model.config.text_config.max_position_embeddings) - 2
        return min(TEXT_MAX_TOKENS, positions)


def load_hf_clap(
    source: str,
    *,
    model_id: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    local_files_only: bool = True,
) -> ClapEncoder:
    """Load a `ClapModel` (+ tokenizer and preprocessing settings) from a local directory or the HF cache."""
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    kwargs: dict[str, Any] = {"local_files_only": local_files_only}
    model = ClapModel.from_pretrained(source, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    try:
        fe = ClapFeatureExtractor.from_pretrained(source, **kwargs)
        frontend = MelFrontend(
            sample_rate=int(fe.sampling_rate),
            window_s=float(fe.max_length_s),
            n_fft=int(fe.fft_window_size),
            hop_length=int(fe.hop_length),
            n_mels=int(fe.feature_size),
            f_min=float(fe.frequency_min),
            f_max=float(fe.frequency_max),
            fusion=fe.truncation == "fusion",
        )
    except OSError:
        log.info("%s has no preprocessor_config.json; using LAION-CLAP's preprocessing", source)
        frontend = MelFrontend(fusion=bool(getattr(model.config.audio_config, "enable_fusion", False)))
    return ClapEncoder(
        model, tokenizer, model_id=model_id or source, frontend=frontend, device=device, batch_size=batch_size
    )


_threads_configured = False


def _configure_cpu_threads() -> None:
    """One intra-op thread per core (torch may default to logical CPUs or an inherited limit)."""
    global _threads_configured
    if _threads_configured:
        return
    _threads_configured = True
    n = settings().threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, n))
