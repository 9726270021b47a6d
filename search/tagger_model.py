"""The tagging head and its training loop.

The head is linear in the embedding, optionally plus a small MLP branch whose output layer starts at
zero: `logits = W·z + b (+ MLP(z))` with `z = (x − centre)·√dim`, the centring and scaling that let a
linear probe on unit vectors train at an ordinary learning rate.

- Pooling: "file" scores the renormalised mean of a file's segment vectors; "mil" (multiple-instance)
  scores every segment and takes the per-class maximum logit over a file's segments, so a sound present
  in one window of a long ambience still counts; "mean" averages the segments' probabilities, as the
  zero-shot classifier does, so a zero-shot start equals it on long files too. Training and prediction
  share the same code path.
- Zero-shot initialisation: the zero-shot classifier of `search.zeroshot` *is* a linear head (single-label:
  softmax of `scale·cos(x, label)`; multi-label: sigmoid of `scale·(cos(x, label) − cos(x, null))`), so
  its weights start the linear part exactly, and the L2 penalty pulls toward them instead of toward zero:
  with few labels, the head moves from the text prior only as far as the data asks.
- Training: class-balanced sampling, mixup on embeddings (for bags: each segment is mixed with a random
  segment of the partner file), early stopping on validation loss, and, for multi-label heads,
  per-class thresholds that maximise F1 on the validation files.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from indexer.types import FloatArray
from search.tagger_config import WEIGHT_DECAYS, TaggerError, TrainConfig
from search.tagger_data import Bags, BoolArray

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ZeroShotPrior:
    """Linear weights of the zero-shot classifier: `scale · directions · x` are its logits."""

    directions: FloatArray  # [n_labels, dim]
    scale: float


class Head(nn.Module):
    centre: torch.Tensor  # a buffer: the training inputs' mean, saved with the weights

    def __init__(self, dim: int, n_labels: int, hidden: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.input_scale = math.sqrt(dim)
        self.register_buffer("centre", torch.zeros(dim))
        self.linear = nn.Linear(dim, n_labels)
        self.mlp: nn.Sequential | None = None
        if hidden:
            self.mlp = nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_labels)
            )
            out = self.mlp[-1]
            assert isinstance(out, nn.Linear)
            nn.init.zeros_(out.weight)  # the branch starts silent: a zero-shot start stays exact
            nn.init.zeros_(out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The centring and scaling are folded into the first layers' weights rather than applied to x:
        # the same function without two passes over 100k x dim inputs.
        logits = _centred_linear(self.linear, x, self.centre, self.input_scale)
        if self.mlp is not None:
            first = self.mlp[0]
            assert isinstance(first, nn.Linear)
            logits = logits + self.mlp[1:](_centred_linear(first, x, self.centre, self.input_scale))
        return logits

    def set_zero_shot(self, prior: ZeroShotPrior) -> None:
        """Make the linear part compute the zero-shot logits exactly, whatever the centre."""
        w = torch.from_numpy(prior.directions).float() * prior.scale
        with torch.no_grad():
            self.linear.weight.copy_(w / self.input_scale)
            self.linear.bias.copy_(w @ self.centre)


def _centred_linear(layer: nn.Linear, x: torch.Tensor, centre: torch.Tensor, scale: float) -> torch.Tensor:
    """`layer((x - centre) * scale)`, computed as one affine map of x."""
    w = layer.weight * scale
    return nn.functional.linear(x, w, layer.bias - w @ centre)


def pool_logits(
    logits: torch.Tensor, owners: torch.Tensor, n_files: int, pooling: str = "mil", multi_label: bool = False
) -> torch.Tensor:
    """Per-file logits from per-input logits ("file": one input per file, returned as it is). "mil": the
    per-class maximum over a file's segments. "mean": the mean of the segments' probabilities, returned
    as the logits whose softmax (sigmoid) gives it back: how the zero-shot classifier pools windows."""
    if pooling != "mean":
        return _scatter_max(logits, owners, n_files)
    log_n = torch.log(torch.bincount(owners, minlength=n_files).clamp(min=1).to(logits.dtype))[:, None]
    # In log space: a mean of saturated probabilities keeps its gradient (a clamp would zero it).
    if not multi_label:  # log of the mean softmax: softmax of it gives the mean back
        return _scatter_logsumexp(torch.log_softmax(logits, dim=1), owners, n_files) - log_n
    log_p = _scatter_logsumexp(nn.functional.logsigmoid(logits), owners, n_files) - log_n
    log_q = _scatter_logsumexp(nn.functional.logsigmoid(-logits), owners, n_files) - log_n
    return log_p - log_q  # logit of the mean sigmoid


def _scatter_max(values: torch.Tensor, owners: torch.Tensor, n_files: int) -> torch.Tensor:
    """Per file, the per-column maximum over its rows."""
    index = owners[:, None].expand(-1, values.shape[1])
    empty = torch.full((n_files, values.shape[1]), -torch.inf, dtype=values.dtype)
    return empty.scatter_reduce(0, index, values, reduce="amax", include_self=False)


def _scatter_logsumexp(values: torch.Tensor, owners: torch.Tensor, n_files: int) -> torch.Tensor:
    """Per file, log Σ exp(values) over its rows."""
    peak = _scatter_max(values, owners, n_files).detach()
    sums = torch.zeros_like(peak).index_add(0, owners, torch.exp(values - peak[owners]))
    return peak + torch.log(sums)


def head_inputs(bags: Bags, pooling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """What the head scores for these files: pooled file vectors, or every segment with its owner."""
    if pooling == "file":
        return torch.from_numpy(bags.pooled()), torch.arange(len(bags))
    return torch.from_numpy(np.ascontiguousarray(bags.vectors)), torch.from_numpy(bags.owners)


def to_probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)


def predict(head: Head, bags: Bags, pooling: str, multi_label: bool) -> FloatArray:
    """Scores [n_files, n_labels] in [0, 1]."""
    head.eval()
    with one_thread(), torch.inference_mode():
        x, owners = head_inputs(bags, pooling)
        logits = pool_logits(head(x), owners, len(bags), pooling, multi_label)
        return to_probabilities(logits, multi_label).numpy()


# --- training --------------------------------------------------------------------------------------


@dataclass
class TrainedHead:
    head: Head
    thresholds: FloatArray  # [n_labels]
    epochs: int  # epochs run (the best state is kept)
    best_epoch: int
    val_loss: float
    train_index: np.ndarray
    val_index: np.ndarray
    val_scores: FloatArray
    weight_decay: float  # the one trained with (chosen on validation when the config left it open)


def check_class_counts(labels: tuple[str, ...], targets: BoolArray, minimum: int = 2) -> None:
    counts = targets.sum(axis=0)
    few = [f"{labels[c]} ({int(counts[c])})" for c in np.flatnonzero(counts < minimum)]
    if few:
        raise TaggerError(
            f"every class needs at least {minimum} labelled files (one goes to the validation split); too few: "
            + ", ".join(few[:10])
            + (f" and {len(few) - 10} more" if len(few) > 10 else "")
        )


def split_validation(targets: BoolArray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: each class gives about `fraction` of its files (at least one) to validation and keeps
    at least one for training. Rarest classes are served first, so multi-label files are not overdrawn."""
    in_val = np.zeros(len(targets), dtype=bool)
    for c in np.argsort(targets.sum(axis=0), kind="stable"):
        members = np.flatnonzero(targets[:, c])
        want = max(1, round(fraction * len(members)))
        need = min(want - int(in_val[members].sum()), len(members) - 1 - int(in_val[members].sum()))
        free = rng.permutation(members[~in_val[members]])
        in_val[free[: max(0, need)]] = True
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def calibrate_thresholds(scores: FloatArray, targets: BoolArray) -> FloatArray:
    """Per class, the score cut that maximises F1 on these files (midway between neighbouring scores)."""
    thresholds = np.full(scores.shape[1], DEFAULT_THRESHOLD, dtype=np.float32)
    for c in range(scores.shape[1]):
        positives = targets[:, c]
        if not positives.any():
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        s, y = scores[order, c], positives[order]
        tp = np.cumsum(y)
        f1 = 2 * tp / (np.arange(1, len(s) + 1) + y.sum())  # keeping the top k: 2TP / (k + P)
        distinct = np.append(s[1:] < s[:-1], True)  # cut only between different scores
        k = int(np.argmax(np.where(distinct, f1, -1.0)))
        thresholds[c] = s[k] if k == len(s) - 1 else (s[k] + s[k + 1]) / 2
    return thresholds


class _Trainer:
    def __init__(self, bags: Bags, targets: BoolArray, config: TrainConfig, prior: ZeroShotPrior | None) -> None:
        self.config = config
        self.prior = prior
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.bags = bags
        self.targets = torch.from_numpy(targets.astype(np.float32))
        self.counts = torch.from_numpy(np.bincount(bags.owners, minlength=len(bags)))
        self.starts = torch.from_numpy(bags.starts)
        x = bags.pooled() if config.pooling == "file" else bags.vectors
        self.inputs = torch.from_numpy(np.ascontiguousarray(x))
        self.input_owners = bags.owners
        if config.pooling == "file":
            self.counts = torch.ones(len(bags), dtype=torch.int64)
            self.starts = torch.arange(len(bags))
            self.input_owners = np.arange(len(bags))
        self.head = Head(bags.vectors.shape[1], targets.shape[1], config.hidden, config.dropout)

    def pool(self, logits: torch.Tensor, owners: torch.Tensor, n_files: int) -> torch.Tensor:
        return pool_logits(logits, owners, n_files, self.config.pooling, self.config.multi_label)

    def loss(self, logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
        if self.config.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, soft_targets)
        return -(soft_targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()

    def batch(self, files: torch.Tensor, mix: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment inputs, their owner in the batch, and the batch's (mixed) targets."""
        counts = self.counts[files]
        owners = torch.repeat_interleave(torch.arange(len(files)), counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        x = self.inputs[torch.repeat_interleave(self.starts[files], counts) + offsets]
        y = self.targets[files]
        if mix:
            lam = torch.from_numpy(self.rng.beta(self.config.mixup_alpha, self.config.mixup_alpha, len(files))).float()
            partner = torch.from_numpy(self.rng.permutation(len(files)))
            partner_files = files[partner][owners]
            pick = (torch.rand(len(owners)) * self.counts[partner_files]).long()
            x_partner = self.inputs[self.starts[partner_files] + pick]
            seg_lam = lam[owners][:, None]
            x = seg_lam * x + (1 - seg_lam) * x_partner
            y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
        return x, owners, y

    def sampling_weights(self, index: np.ndarray) -> np.ndarray:
        """Per file: 1 / frequency of its rarest class, so every class is drawn about equally often."""
        t = self.targets[index].numpy().astype(bool)
        freq = t.sum(axis=0)
        inverse = np.where(t, 1.0 / np.maximum(freq, 1), 0.0).max(axis=1)
        inverse = np.where(inverse > 0, inverse, 1.0 / len(index))  # files with no label (multi-label negatives)
        return inverse / inverse.sum()

    def run(self, train_index: np.ndarray, val_index: np.ndarray) -> TrainedHead:
        cfg = self.config
        head = self.head
        head.centre.copy_(self.inputs[torch.from_numpy(np.isin(self.input_owners, train_index))].mean(dim=0))
        anchors: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.prior is not None:
            head.set_zero_shot(self.prior)
            anchors.append((head.linear.weight, head.linear.weight.detach().clone()))
        else:
            anchors.append((head.linear.weight, torch.zeros_like(head.linear.weight)))
        if head.mlp is not None:
            anchors.extend(
                (p, torch.zeros_like(p)) for name, p in head.mlp.named_parameters() if name.endswith("weight")
            )
        optimiser = torch.optim.Adam(head.parameters(), lr=cfg.learning_rate)
        weights = self.sampling_weights(train_index) if cfg.balanced else None
        val_files = torch.from_numpy(val_index)
        # The starting head competes too: with few labels, validation may prefer the zero-shot start.
        start_loss = self._val_loss(val_files) if self.prior is not None else math.inf
        best = (start_loss, 0, copy.deepcopy(head.state_dict()))
        epoch = 0
        for epoch in range(1, cfg.max_epochs + 1):
            head.train()
            size = max(len(train_index), cfg.min_epoch_samples)
            order = self.rng.choice(train_index, size=size, p=weights)
            for start in range(0, len(order), cfg.batch_size):
                files = torch.from_numpy(order[start : start + cfg.batch_size])
                x, owners, y = self.batch(files, mix=cfg.mixup_alpha > 0)
                loss = self.loss(self.pool(head(x), owners, len(files)), y)
                loss = loss + (cfg.weight_decay or 0.0) * sum(((p - a) ** 2).sum() for p, a in anchors)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            val_loss = self._val_loss(val_files)
            if val_loss < best[0] - 1e-6:
                best = (val_loss, epoch, copy.deepcopy(head.state_dict()))
            elif epoch - best[1] >= cfg.patience:
                break
        if cfg.max_epochs == 0:
            best = (self._val_loss(val_files), 0, best[2])
        head.load_state_dict(best[2])
        val_scores = self._scores(val_files)
        val_targets = self.targets[val_files].numpy().astype(bool)
        thresholds = (
            calibrate_thresholds(val_scores, val_targets)
            if cfg.multi_label
            else np.zeros(val_targets.shape[1], dtype=np.float32)
        )
        return TrainedHead(
            head, thresholds, epoch, best[1], best[0], train_index, val_index, val_scores, cfg.weight_decay or 0.0
        )

    def _scores(self, files: torch.Tensor) -> FloatArray:
        self.head.eval()
        with torch.inference_mode():
            x, owners, _ = self.batch(files, mix=False)
            logits = self.pool(self.head(x), owners, len(files))
            return to_probabilities(logits, self.config.multi_label).numpy().astype(np.float32)

    def _val_loss(self, files: torch.Tensor) -> float:
        self.head.eval()
        with torch.inference_mode():
            x, owners, y = self.batch(files, mix=False)
            return float(self.loss(self.pool(self.head(x), owners, len(files)), y))


def train_head(
    bags: Bags,
    targets: BoolArray,
    labels: tuple[str, ...],
    config: TrainConfig,
    prior: ZeroShotPrior | None = None,
) -> TrainedHead:
    """Train on a stratified split of these files and keep the state with the best validation loss."""
    config.check()
    if prior is not None and prior.directions.shape != (len(labels), bags.vectors.shape[1]):
        raise ValueError(f"zero-shot prior of shape {prior.directions.shape} does not fit {len(labels)} labels")
    check_class_counts(labels, targets)
    train_index, val_index = split_validation(targets, config.val_fraction, np.random.default_rng(config.seed))
    decays = WEIGHT_DECAYS if config.weight_decay is None else (config.weight_decay,)
    with one_thread():
        trained = [
            _Trainer(bags, targets, replace(config, weight_decay=wd), prior).run(train_index, val_index)
            for wd in decays
        ]
    return min(trained, key=lambda t: t.val_loss)


@contextmanager
def one_thread() -> Iterator[None]:
    """Training steps are tiny matrix products and scoring is memory-bound: on a busy CPU, torch's worker
    threads only wait on each other (training: 42 s with two threads against 0.3 s with one, while
    another job used the cores; pooling 100k vectors: 0.29 s against 0.10 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
