"""Training options of a tagging head, and the tagger's error type (no heavy imports: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.errors import SoundsearchError

POOLINGS = ("file", "mil", "mean")
# How strongly a head is held to its start: with few labels and a zero-shot start, strongly (measured on
# the synthetic library, 10 files per class: 1e-3 → 97.2 %, 0.3 → 97.9 %; zero-shot alone 97.6 %).
WEIGHT_DECAYS = (1e-3, 1e-2, 0.1, 0.3, 1.0)


class TaggerError(SoundsearchError):
    """A tagger cannot be trained, loaded or applied as asked."""


@dataclass(frozen=True)
class TrainConfig:
    multi_label: bool = False
    hidden: int = 0  # 0: linear head; N: plus an MLP branch with N hidden units
    pooling: str = "file"
    zero_shot_init: bool = False
    max_epochs: int = 300
    patience: int = 30  # epochs without a better validation loss before stopping
    learning_rate: float = 1e-2
    # L2 toward the initial linear weights (zero-shot or zero) and on the MLP. None: the head is trained
    # with each of WEIGHT_DECAYS and keeps the one with the best validation loss.
    weight_decay: float | None = None
    mixup_alpha: float = 0.4  # Beta(α, α) mixing weights; 0 turns mixup off
    val_fraction: float = 0.2
    batch_size: int = 64
    min_epoch_samples: int = 512  # small label sets: several steps between validation checks
    balanced: bool = True
    dropout: float = 0.1
    seed: int = 0

    def check(self) -> None:
        if self.pooling not in POOLINGS:
            raise TaggerError(f"unknown pooling {self.pooling!r}: use one of {', '.join(POOLINGS)}")
        if self.hidden < 0:
            raise TaggerError(f"--hidden must be 0 (linear head) or a number of hidden units, got {self.hidden}")
        if not 0.0 < self.val_fraction < 1.0:
            raise TaggerError(f"validation fraction must be between 0 and 1, got {self.val_fraction}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise TaggerError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.max_epochs < 0 or self.patience < 1 or self.batch_size < 1 or self.mixup_alpha < 0:
            raise TaggerError("epochs, patience, batch size and mixup alpha must be positive")
