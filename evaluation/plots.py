"""Training curves drawn as PNG files (matplotlib's file-only backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_curves(
    epochs: Sequence[dict[str, Any]],
    path: Path,
    *,
    loss_title: str,
    metrics: Sequence[str],
    metrics_title: str,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Training loss on the left; the validation `metrics` recorded in every epoch on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [h["epoch"] for h in epochs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(x, [h["loss"] for h in epochs], marker="o")
    left.set(title=loss_title, xlabel="epoch")
    for key in metrics:
        values = [h.get(key) for h in epochs]
        if all(v is not None for v in values):  # e.g. SPIDEr only where SPICE ran
            right.plot(x, values, marker="o", label=key)
    right.set(title=metrics_title, xlabel="epoch")
    if ylim is not None:
        right.set_ylim(*ylim)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
