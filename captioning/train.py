"""Training a captioner: precomputed audio tokens, a mapping network and a decoder, selected by SPIDEr.

- A frozen encoder's tokens are computed once per clip; epochs then run only the mapping network and the
  decoder. A fine-tuned encoder (`fine_tune_encoder`) has its inputs (log-mels) cached instead and runs
  with gradients at a lower learning rate.
- Every (clip, caption) pair is visited once per epoch. Cross-entropy with label smoothing; AdamW with
  linear warmup then cosine decay; gradient clipping; bf16 autocast on GPU.
- After every epoch the validation clips are captioned (beam search) and scored; the best epoch by
  SPIDEr is saved, by CIDEr-D where SPICE is unavailable (the history names which). A checkpoint after
  every epoch makes runs resumable; data order is seeded per epoch, so a resumed run sees the same batches.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerFast

from captioning.captioner import Captioner
from captioning.data import AudioSource, CaptionClip, decode_file
from captioning.errors import CaptioningError
from captioning.features import FeatureExtractor, clip_windows
from captioning.metrics import caption_metrics
from captioning.model import CaptionModel, DecodeConfig, pad_tokens
from captioning.store import SMALL, CaptionerSpec, pretrained_decoder, save_captioner, small_decoder_config
from captioning.tokenizer import tokenizer_from_json, tokenizer_to_json, train_word_vocab
from evaluation.plots import plot_curves
from storage.atomic import atomic_path
from training.loop import source_key

CHECKPOINT = "checkpoint.pt"
BEST = "best"


@dataclass(frozen=True)
class CaptionTrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 5e-4
    encoder_lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 200
    label_smoothing: float = 0.1
    clip_grad_norm: float = 1.0
    max_tokens: int = 40
    max_windows: int = 3
    seed: int = 0
    fine_tune_encoder: bool = False
    mixed_precision: bool = True  # bf16 autocast, GPU only
    vocab_size: int = 2000  # the small decoder's word vocabulary (at most)
    # Words seen fewer times stay [UNK]. 1 keeps a weakly captioned real clip's one-off name words.
    vocab_min_count: int = 2
    d_model: int = 256
    layers: int = 3
    prefix_tokens: int = 8
    val_decode: DecodeConfig = field(default_factory=DecodeConfig)
    val_meteor: bool = False  # METEOR's JVM adds seconds per epoch; final evaluation runs it
    # False: validate by loss only and keep the lowest (quick runs and tests; the JVM tools take seconds).
    val_metrics: bool = True
    spice_dir: str | None = None


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    history: History
    best_dir: Path
    best: dict[str, Any]


def _clip_inputs(
    extractor: FeatureExtractor,
    clips: Sequence[CaptionClip],
    source: AudioSource,
    cfg: CaptionTrainConfig,
    progress: Callable[[str], None] | None,
    cache_dir: Path | None = None,
) -> list[torch.Tensor]:
    """Per clip: tokens [t, dim] (frozen encoder) or stacked window inputs (fine-tuned encoder).

    With `cache_dir`, the result is kept in one file named by everything it depends on (the extractor,
    the windowing, what is cached and the clips in order, a file by its size and mtime as well), so a rerun
    on the same clips skips the encoder, the costly part of a run on the CPU.
    """

    cache: Path | None = None
    if cache_dir is not None:
        identity = json.dumps(
            [
                extractor.model_id,
                extractor.sample_rate,
                extractor.window_seconds,
                cfg.max_windows,
                cfg.fine_tune_encoder,
                [source_key(c.key) for c in clips],
            ]
        )
        name = f"{extractor.model_id.replace('/', '_')}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.pt"
        cache = cache_dir / name
        if cache.is_file():
            if progress:
                progress(f"audio features of {len(clips)} clips from {cache}")
            cached: list[torch.Tensor] = torch.load(cache, weights_only=True)
            return cached
    out: list[torch.Tensor] = []
    for start in range(0, len(clips), 32):
        batch = clips[start : start + 32]
        audio = [source(c.key, extractor.sample_rate) for c in batch]
        for samples in audio:
            windows = clip_windows(samples, extractor.sample_rate, extractor.window_seconds, cfg.max_windows)
            inputs = extractor.inputs(windows)
            if cfg.fine_tune_encoder:
                out.append(inputs.cpu())
            else:
                with torch.no_grad():
                    out.append(extractor.tokens(inputs).float().cpu().flatten(0, 1))
        if progress and (start // 32) % 10 == 0:
            progress(f"audio features: {min(start + 32, len(clips))}/{len(clips)} clips")
    if cache is not None:
        with atomic_path(cache) as tmp:  # a run killed while writing leaves no truncated cache behind
            torch.save(out, tmp)
    return out


def build_model(
    decoder: str,
    extractor: FeatureExtractor,
    captions: Sequence[str],
    cfg: CaptionTrainConfig,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> CaptionModel:
    """A new model; `tokenizer` (a resumed run's) replaces training one, whose ids can differ run to run."""
    if decoder == SMALL:
        tokenizer = tokenizer or train_word_vocab(captions, cfg.vocab_size, cfg.vocab_min_count)
        from transformers import BartForConditionalGeneration

        config = small_decoder_config(len(tokenizer), tokenizer, d_model=cfg.d_model, layers=cfg.layers)
        return CaptionModel(BartForConditionalGeneration(config), tokenizer, extractor.dim, cfg.prefix_tokens)
    model, tokenizer = pretrained_decoder(decoder)
    return CaptionModel(model, tokenizer, extractor.dim, cfg.prefix_tokens)


def train_captioner(
    extractor: FeatureExtractor,
    encoder_spec: str,
    decoder: str,
    train_clips: Sequence[CaptionClip],
    val_clips: Sequence[CaptionClip],
    out_dir: Path,
    cfg: CaptionTrainConfig,
    *,
    resume: bool = True,
    source: AudioSource = decode_file,
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    stop_after_epoch: int | None = None,
    card: dict[str, Any] | None = None,
    feature_cache: Path | None = None,
) -> TrainResult:
    """Train; the best epoch's captioner is saved in `out_dir / "best"` (loadable by `load_captioner`).

    `feature_cache`: a folder keeping the clips' audio features between runs (see `_clip_inputs`)."""
    if cfg.fine_tune_encoder and not extractor.fine_tunable:
        raise CaptioningError(f"encoder {extractor.model_id!r} exposes no trainable audio module to fine-tune")
    if not train_clips or not val_clips:
        raise CaptioningError("need training and validation clips")
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tr = _clip_inputs(extractor, train_clips, source, cfg, progress, feature_cache)
    va = _clip_inputs(extractor, val_clips, source, cfg, progress, feature_cache)
    pairs = [(i, c) for i, clip in enumerate(train_clips) for c in clip.captions]
    ckpt = out_dir / CHECKPOINT
    state = torch.load(ckpt, weights_only=False, map_location=device) if resume and ckpt.exists() else None
    # A resumed run takes the vocabulary it was trained with from the checkpoint, whatever the data now holds.
    saved_tokenizer = tokenizer_from_json(state["tokenizer"]) if state and state.get("tokenizer") else None
    model = build_model(decoder, extractor, [c for _, c in pairs], cfg, saved_tokenizer).to(device)
    encoder_module = extractor.module() if cfg.fine_tune_encoder else None
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "lr": cfg.lr}]
    if encoder_module is not None:
        groups.append({"params": list(encoder_module.parameters()), "lr": cfg.encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(pairs) / cfg.batch_size)
    total = max(1, steps_per_epoch * cfg.epochs)
    warmup = max(1, min(cfg.warmup_steps, total // 10 or 1))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    spec = CaptionerSpec(
        encoder=encoder_spec,
        encoder_model_id=extractor.model_id,
        feature_dim=extractor.dim,
        decoder_source=decoder,
        decoder_config=model.decoder.config.to_dict(),
        prefix_tokens=cfg.prefix_tokens,
        max_windows=cfg.max_windows,
        max_tokens=cfg.max_tokens,
        fine_tuned_encoder=cfg.fine_tune_encoder,
        decode=cfg.val_decode,
    )
    history, best, start_epoch = History(), -math.inf, 0
    if state is not None:
        model.load_state_dict(state["model"])
        if encoder_module is not None and state.get("encoder") is not None:
            encoder_module.load_state_dict(state["encoder"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, best, start_epoch = History(state["history"]), state["best"], state["epoch"] + 1
        if progress:
            progress(f"resumed from {ckpt} after epoch {start_epoch}")
    amp = cfg.mixed_precision and device.type == "cuda"

    def tokens_of(batch: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if encoder_module is None:
            return [t.to(device) for t in batch]
        return [extractor.tokens(x.to(device)).flatten(0, 1) for x in batch]

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        if encoder_module is not None:
            encoder_module.train()
        rng = np.random.default_rng([cfg.seed, epoch])  # per-epoch seed: resume == uninterrupted
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(len(pairs))
        losses: list[float] = []
        t0 = time.perf_counter()
        for step in range(steps_per_epoch):
            chosen = [pairs[j] for j in order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
            x, mask = pad_tokens(tokens_of([tr[i] for i, _ in chosen]))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = model.loss(
                    x, mask, [c for _, c in chosen], max_tokens=cfg.max_tokens, label_smoothing=cfg.label_smoothing
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for g in groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.item()))
            if on_step:
                on_step(epoch, step, losses[-1])
        train_s = time.perf_counter() - t0
        model.eval()
        if encoder_module is not None:
            encoder_module.eval()
        with torch.no_grad():
            val_tokens = [t for start in range(0, len(va), 64) for t in tokens_of(va[start : start + 64])]
            val_loss = _mean_loss(model, val_tokens, val_clips, cfg, device)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "val_loss": val_loss,
            "lr": float(schedule.get_last_lr()[0]),
        }
        summary = f"val loss {val_loss:.3f}"
        score, reason = -val_loss, None
        record["selected_by"] = "val_loss"
        if cfg.val_metrics:
            predictions = Captioner(model, extractor, spec, decode=cfg.val_decode).caption_tokens(val_tokens)
            scores = caption_metrics(
                predictions, [c.captions for c in val_clips], meteor=cfg.val_meteor, spice_dir=cfg.spice_dir
            )
            record.update({k: v for k, v in scores.to_dict().items() if k != "spice_unavailable"})
            record.update(selected_by=scores.selection_name, examples=predictions[:3])
            score, reason = scores.selection_score, scores.spice_unavailable
            summary += f", {scores.summary(reason=False)} e.g. {predictions[0]!r}"
            if epoch == start_epoch and reason and progress:
                progress(f"SPICE unavailable: {reason}; selecting by CIDEr-D")
        record["train_seconds"] = train_s
        record["seconds"] = time.perf_counter() - t0
        history.epochs.append(record)
        if score > best:
            best = score
            meta = {
                **(card or {}),
                "trained_on_clips": len(train_clips),
                "validation_clips": len(val_clips),
                "config": _jsonable(asdict(cfg)),
                "validation": {k: v for k, v in record.items() if k != "examples"},
                "spice_unavailable": reason,
            }
            save_captioner(model, spec, out_dir / BEST, card=meta, extractor=extractor)
        torch.save(
            {
                "model": model.state_dict(),
                "encoder": encoder_module.state_dict() if encoder_module is not None else None,
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "history": history.epochs,
                "best": best,
                "epoch": epoch,
                "tokenizer": tokenizer_to_json(model.tokenizer),
            },
            ckpt,
        )
        (out_dir / "history.json").write_text(json.dumps(history.epochs, indent=2) + "\n")
        plot_curves(
            history.epochs,
            out_dir / "curves.png",
            loss_title="training loss (label-smoothed CE)",
            metrics=("cider_d", "spider", "bleu_4", "rouge_l", "val_loss"),
            metrics_title="validation",
        )
        if progress:
            progress(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.3f}, {summary} ({record['seconds']:.0f} s)"
            )
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    best_record = max(history.epochs, key=_selection)
    return TrainResult(history, out_dir / BEST, best_record)


def _selection(record: dict[str, Any]) -> float:
    if record["selected_by"] == "val_loss":
        return -float(record["val_loss"])
    return float(record["spider"] if record.get("spider") is not None else record["cider_d"])


@torch.no_grad()
def _mean_loss(
    model: CaptionModel,
    tokens: Sequence[torch.Tensor],
    clips: Sequence[CaptionClip],
    cfg: CaptionTrainConfig,
    device: torch.device,
) -> float:
    """Validation cross-entropy over every (clip, caption) pair, without label smoothing."""
    pairs = [(i, c) for i, clip in enumerate(clips) for c in clip.captions]
    total, count = 0.0, 0
    for start in range(0, len(pairs), 128):
        chunk = pairs[start : start + 128]
        x, mask = pad_tokens([tokens[i].to(device) for i, _ in chunk])
        total += float(
            model.loss(x, mask, [c for _, c in chunk], max_tokens=cfg.max_tokens, label_smoothing=0.0)
        ) * len(chunk)
        count += len(chunk)
    return total / max(1, count)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))


def with_epochs(cfg: CaptionTrainConfig, epochs: int) -> CaptionTrainConfig:
    return replace(cfg, epochs=epochs)
