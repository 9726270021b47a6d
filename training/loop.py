"""Contrastive (InfoNCE) training of a CLAP-style model on audio + caption pairs.

- Every clip's log-mel and every caption's text input are computed once; epochs then only run the
  model. Augmentations act on log-mels: gain (a dB offset), time shift (a random window of a long clip
  or a roll of a repeat-padded one), mixing a second clip underneath at -20 to -10 dB, SpecAugment.
- Loss: symmetric InfoNCE with a learnable temperature. Clips sharing the same class set (when the data
  has classes, like the synthetic library) count as positives of each other, so identical-looking
  pairs in a batch are not pushed apart.
- Keywords (a clip's labels, when the data has them) are trained on as short captions of their own,
  positive for every clip that carries them: bare label names then mean what zero-shot prompts need.
- Validation after every epoch: text→audio and audio→text R@1/5/10 on held-out clips with all their
  captions, and zero-shot accuracy over their keywords. The best epoch (`selection_score`) is saved;
  a checkpoint after every epoch makes runs resumable, and data order and augmentations are seeded
  per epoch, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from evaluation.metrics import retrieval_metrics_from_embeddings
from evaluation.plots import plot_curves
from indexer.audio import load_audio
from indexer.errors import SoundsearchError
from storage.atomic import atomic_path
from training.data import Pair
from training.models import Trainable, parameters

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    val_fraction: float = 0.1
    spec_augment: bool = True
    mix_probability: float = 0.3
    gain_db: float = 6.0
    keyword_probability: float = 0.25  # how often a clip with keywords is shown one instead of a caption
    # Weight of the penalty on how far training moves the embeddings of `anchored` clips from where the
    # untrained model put them (two-tower mini: the head's residual). It keeps what the synthetic library
    # taught mini@2 (zero-shot on it) while the head learns the real recordings.
    anchor: float = 0.0


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Prepared:
    features: list[torch.Tensor]  # per clip [frames, mels]
    text_inputs: Any  # all captions, then all keyword captions, flat
    caption_owner: np.ndarray  # caption index → clip index (captions only)
    group: np.ndarray  # clip → positive-group id
    keyword_of: np.ndarray  # caption index → keyword id, -1 for a clip's own captions
    clip_keywords: np.ndarray  # [clips, keywords] bool: the clip carries the keyword
    choices: list[np.ndarray]  # clip → indices of its own captions
    keyword_choices: list[np.ndarray]  # clip → indices of its keyword captions

    @property
    def has_keywords(self) -> bool:
        return bool(self.clip_keywords.shape[1])


AudioSource = Callable[[Pair, int], np.ndarray]


def decode_pair(pair: Pair, sample_rate: int) -> np.ndarray:
    return load_audio(pair.path, sample_rate).samples


class ClipCache(Protocol):
    def get(self, pair: Pair, compute: Callable[[], torch.Tensor]) -> torch.Tensor: ...

    def save(self) -> None: ...


def source_key(source: str | Path) -> str:
    """What a clip's cached features depend on: an in-memory clip's id (the synthetic library's), or a
    file's resolved path, size and mtime, so that an edited file is computed again."""
    path = Path(source)
    if not path.exists():
        return str(source)
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


class FeatureCache:
    """Per-clip features of frozen towers kept on disk (one torch file), so that a second run, a resumed
    run or another head trained on the same clips skips decoding and the towers. A file's key carries its
    size and mtime: an edited file is recomputed."""

    def __init__(self, path: Path, model_id: str) -> None:
        self.path = path
        self.model_id = model_id
        self.items: dict[str, torch.Tensor] = {}
        if path.is_file():
            state = torch.load(path, weights_only=True)
            if state.get("model_id") == model_id:
                self.items = state["items"]
        self._unsaved = 0

    def get(self, pair: Pair, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = source_key(pair.path)
        if key not in self.items:
            self.items[key] = compute().to(torch.float16)
            self._unsaved += 1
            if self._unsaved >= 200:
                self.save()
        return self.items[key].float()

    def save(self) -> None:
        if self._unsaved:
            with atomic_path(self.path) as tmp:
                torch.save({"model_id": self.model_id, "items": self.items}, tmp)
            self._unsaved = 0


def clip_features(
    trainable: Trainable,
    pairs: Sequence[Pair],
    progress: Callable[[str], None] | None = None,
    source: AudioSource = decode_pair,
    cache: ClipCache | None = None,
) -> list[torch.Tensor]:
    """Every clip decoded at the model's rate and turned into what the trainable trains on."""
    features = []
    for i, pair in enumerate(pairs):

        def compute(pair: Pair = pair) -> torch.Tensor:
            return trainable.features(source(pair, trainable.sample_rate))

        features.append(cache.get(pair, compute) if cache is not None else compute())
        if progress and i % 200 == 0:
            progress(f"decoded {i}/{len(pairs)} clips")
    if cache is not None:
        cache.save()
    return features


def prepare(
    trainable: Trainable,
    pairs: Sequence[Pair],
    progress: Callable[[str], None] | None = None,
    source: AudioSource = decode_pair,
    cache: ClipCache | None = None,
) -> _Prepared:
    """Decode every clip at the model's rate and compute its features; encode every caption and keyword."""
    features = clip_features(trainable, pairs, progress, source, cache)
    captions = [c for p in pairs for c in p.captions]
    owner = np.array([i for i, p in enumerate(pairs) for _ in p.captions], dtype=np.int64)
    vocabulary = list(dict.fromkeys(k for p in pairs for k in p.keywords))
    keyword_id = {k: n for n, k in enumerate(vocabulary)}
    clip_keywords = np.zeros((len(pairs), len(vocabulary)), dtype=bool)
    for i, p in enumerate(pairs):
        clip_keywords[i, [keyword_id[k] for k in p.keywords]] = True
    if progress:
        progress(f"encoding {len(captions)} captions and {len(vocabulary)} keywords")
    keys = [p.classes if p.classes else (f"#{i}",) for i, p in enumerate(pairs)]
    ids = {k: n for n, k in enumerate(dict.fromkeys(keys))}
    n_caps = len(captions)
    return _Prepared(
        features=features,
        text_inputs=trainable.text_inputs(captions + vocabulary),
        caption_owner=owner,
        group=np.array([ids[k] for k in keys]),
        keyword_of=np.concatenate([np.full(n_caps, -1), np.arange(len(vocabulary))]).astype(np.int64),
        clip_keywords=clip_keywords,
        choices=np.split(np.arange(n_caps), np.cumsum([len(p.captions) for p in pairs])[:-1]),
        keyword_choices=[n_caps + np.array([keyword_id[k] for k in p.keywords], dtype=np.int64) for p in pairs],
    )


def positives_for(data: _Prepared, clips: np.ndarray, texts: np.ndarray) -> torch.Tensor:
    """[clips, texts] bool: a caption is a positive of every clip in its owner's group; a keyword
    caption of every clip carrying that keyword."""
    keyword = data.keyword_of[texts]
    is_caption = keyword < 0
    owner = np.where(is_caption, data.caption_owner[np.where(is_caption, texts, 0)], -1)
    by_group = data.group[clips][:, None] == np.where(is_caption, data.group[owner], -1)[None, :]
    if not data.has_keywords:
        return torch.from_numpy(by_group)
    by_keyword = data.clip_keywords[clips][:, np.where(is_caption, 0, keyword)] & ~is_caption[None, :]
    return torch.from_numpy(by_group | by_keyword)


def split_pairs(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    if len(pairs) < 4:
        raise SoundsearchError(f"need at least 4 audio/caption pairs to train, got {len(pairs)}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = max(2, round(fraction * len(pairs)))
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]


def _crop(feat: torch.Tensor, frames: int, rng: np.random.Generator) -> torch.Tensor:
    if feat.shape[0] > frames:
        start = int(rng.integers(0, feat.shape[0] - frames + 1))
        return feat[start : start + frames]
    return torch.roll(feat, int(rng.integers(0, frames)), dims=0)  # repeat-padded: a roll is a time shift


def _augment(
    batch: torch.Tensor, pool: list[torch.Tensor], frames: int, cfg: TrainConfig, rng: np.random.Generator
) -> torch.Tensor:
    out = batch.clone()
    n = out.shape[0]
    out += torch.from_numpy(rng.uniform(-cfg.gain_db, cfg.gain_db, size=(n, 1, 1)).astype(np.float32))
    for i in range(n):
        if rng.random() < cfg.mix_probability:
            other = _crop(pool[int(rng.integers(0, len(pool)))], frames, rng)
            level = float(rng.uniform(-20.0, -10.0))
            # Mixing adds powers: log-domain sum of the two dB spectrograms.
            out[i] = 10.0 * torch.log10(10.0 ** (out[i] / 10.0) + 10.0 ** ((other + level) / 10.0))
        if cfg.spec_augment:
            t0, t_len = int(rng.integers(0, frames)), int(rng.integers(0, frames // 8 + 1))
            f0, f_len = int(rng.integers(0, out.shape[2])), int(rng.integers(0, out.shape[2] // 8 + 1))
            floor = out[i].min()
            out[i, t0 : t0 + t_len, :] = floor
            out[i, :, f0 : f0 + f_len] = floor
    return out


def _pick_caption(data: _Prepared, clip: int, cfg: TrainConfig, rng: np.random.Generator) -> int:
    keywords = data.keyword_choices[clip]
    if len(keywords) and rng.random() < cfg.keyword_probability:
        return int(rng.choice(keywords))
    return int(rng.choice(data.choices[clip]))


def contrastive_loss(
    audio: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (audio i, text i) pairs where `positives[i, j]` marks every
    text j that describes audio i (at least the diagonal)."""
    logits = scale * audio @ text.T
    log_a2t = torch.log_softmax(logits, dim=1)
    log_t2a = torch.log_softmax(logits, dim=0)
    loss_a2t = -(torch.logsumexp(log_a2t.masked_fill(~positives, -1e9), dim=1)).mean()
    loss_t2a = -(torch.logsumexp(log_t2a.masked_fill(~positives, -1e9), dim=0)).mean()
    return (loss_a2t + loss_t2a) / 2


@torch.no_grad()
def validate(trainable: Trainable, data: _Prepared) -> dict[str, float]:
    module = trainable.modules()
    module.eval()
    frames = trainable.window_frames()
    audio = torch.cat(
        [
            trainable.audio_embed(torch.stack([f[:frames] for f in data.features[s : s + 64]]))
            for s in range(0, len(data.features), 64)
        ]
    )
    n_caps = len(data.caption_owner)
    text = torch.cat(
        [
            trainable.text_embed(trainable.select_text(data.text_inputs, torch.arange(s, min(s + 256, n_caps))))
            for s in range(0, n_caps, 256)
        ]
    )
    result = retrieval_metrics_from_embeddings(audio.numpy(), text.numpy(), data.caption_owner)
    t2a, a2t = result.text_to_audio, result.audio_to_text
    metrics = {
        "t2a_R@1": t2a.recall_at[1],
        "t2a_R@10": t2a.recall_at[10],
        "a2t_R@1": a2t.recall_at[1],
        "a2t_R@10": a2t.recall_at[10],
    }
    if data.has_keywords:
        # Zero-shot over the validation clips' keywords: is the best-scoring keyword one the clip carries?
        keywords = trainable.text_embed(
            trainable.select_text(data.text_inputs, torch.arange(n_caps, n_caps + data.clip_keywords.shape[1]))
        )
        best = (audio @ keywords.T).argmax(dim=1).numpy()
        labelled = data.clip_keywords.any(axis=1)  # clips without keywords have no right answer
        metrics["zeroshot"] = float(data.clip_keywords[np.arange(len(best)), best][labelled].mean())
    return metrics


def selection_score(metrics: dict[str, float]) -> float:
    """What picks the best epoch: text→audio R@10, averaged with zero-shot accuracy where there are keywords."""
    if "zeroshot" in metrics:
        return (metrics["t2a_R@10"] + metrics["zeroshot"]) / 2
    return metrics["t2a_R@10"]


def train(
    trainable: Trainable,
    pairs: Sequence[Pair],
    out_dir: Path,
    cfg: TrainConfig,
    *,
    resume: bool = True,
    progress: Callable[[str], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    stop_after_epoch: int | None = None,
    source: AudioSource = decode_pair,
    cache: ClipCache | None = None,
    val_pairs: Sequence[Pair] | None = None,
    anchored: Callable[[Pair], bool] | None = None,
) -> History:
    """Train and save the best model in `out_dir`; returns the per-epoch history. Validation is on
    `val_pairs` when given, else on a random `cfg.val_fraction` of `pairs`. Trainables whose towers are
    frozen keep their clip features in `cache` (default: `out_dir/features.pt`)."""
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if val_pairs is None:
        train_pairs, val_pairs = split_pairs(pairs, cfg.val_fraction, cfg.seed)
    else:
        train_pairs = list(pairs)
    if cache is None and trainable.frozen_features:
        cache = FeatureCache(out_dir / "features.pt", trainable.model_id)
    if trainable.frozen_features:  # features are tower outputs, not log-mels: no log-mel augmentations
        cfg = replace(cfg, gain_db=0.0, mix_probability=0.0, spec_augment=False)
    tr = prepare(trainable, train_pairs, progress, source, cache)
    va = prepare(trainable, val_pairs, progress, source, cache)
    module = trainable.modules()
    optimizer = torch.optim.AdamW(list(parameters(trainable)), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_pairs) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
    )
    history, best, start_epoch = History(), -1.0, 0
    ckpt = out_dir / CHECKPOINT
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history = History(state["history"])
        best, start_epoch = state["best"], state["epoch"] + 1
        if progress:
            progress(f"resumed from {ckpt} after epoch {start_epoch}")
    frames = trainable.window_frames()
    is_anchored = np.array([bool(cfg.anchor and anchored and anchored(p)) for p in train_pairs])
    for epoch in range(start_epoch, cfg.epochs):
        module.train()
        rng = np.random.default_rng([cfg.seed, epoch])  # per-epoch seed: resume == uninterrupted
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(len(train_pairs))
        losses = []
        t0 = time.perf_counter()
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            mels = torch.stack([_crop(tr.features[i], frames, rng) for i in idx])
            mels = _augment(mels, tr.features, frames, cfg, rng)
            caption_idx = np.array([_pick_caption(tr, i, cfg, rng) for i in idx])
            audio = trainable.audio_embed(mels)
            text = trainable.text_embed(trainable.select_text(tr.text_inputs, torch.from_numpy(caption_idx)))
            loss = contrastive_loss(audio, text, trainable.logit_scale(), positives_for(tr, idx, caption_idx))
            if is_anchored[idx].any():
                loss = loss + cfg.anchor * trainable.drift(mels[torch.from_numpy(is_anchored[idx])]).mean()
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(list(parameters(trainable)), 5.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if on_step:
                on_step(epoch, step, losses[-1])
        metrics = validate(trainable, va)
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"), **metrics}
        record["seconds"] = time.perf_counter() - t0
        history.epochs.append(record)
        if selection_score(metrics) > best:
            best = selection_score(metrics)
            trainable.save(
                out_dir / "best", {"trained_on": len(train_pairs), "config": asdict(cfg), "validation": record}
            )
        torch.save(
            {
                "model": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "history": history.epochs,
                "best": best,
                "epoch": epoch,
            },
            ckpt,
        )
        (out_dir / "history.json").write_text(json.dumps(history.epochs, indent=2) + "\n")
        plot_curves(
            history.epochs,
            out_dir / "curves.png",
            loss_title="training loss",
            metrics=tuple(k for k in ("t2a_R@1", "t2a_R@10", "a2t_R@1", "a2t_R@10", "zeroshot") if k in record),
            metrics_title="validation recall",
            ylim=(0, 1),
        )
        if progress:
            progress(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.3f}, t2a R@10 {metrics['t2a_R@10']:.3f}, "
                f"a2t R@10 {metrics['a2t_R@10']:.3f}"
                + (f", zero-shot {metrics['zeroshot']:.3f}" if "zeroshot" in metrics else "")
                + f" ({record['seconds']:.0f} s)"
            )
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return history
