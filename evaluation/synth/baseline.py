"""The learnability baseline: logistic regression on log-mel statistics of class-balanced synthetic clips.

It answers two questions about the library: is every class learnable from its sound (accuracy far above
chance), and is the library hard enough to exercise a model (this weak baseline must stay below 100 %).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
import torch
import torchaudio

from evaluation.synth.library import synthesize_clip
from evaluation.synth.sources import CLASSES

MAX_HZ = 8_000.0
_N_MELS = 64


@dataclass(frozen=True)
class BaselineResult:
    accuracy: float
    chance: float
    clips_per_class: int
    folds: int
    per_class_accuracy: dict[str, float]


@cache
def _mel(sample_rate: int) -> torchaudio.transforms.MelSpectrogram:
    # 25 ms windows, 10 ms hop and bands up to 8 kHz at every rate, so clips at 16 and 48 kHz compare.
    window = round(0.025 * sample_rate)
    return torchaudio.transforms.MelSpectrogram(
        sample_rate,
        n_fft=1 << (window - 1).bit_length(),
        win_length=window,
        hop_length=round(0.01 * sample_rate),
        f_max=MAX_HZ,
        n_mels=_N_MELS,
    )


def log_mel_statistics(audio: npt.NDArray[np.float32], sample_rate: int) -> npt.NDArray[np.float32]:
    """Mean and standard deviation over time of each log-mel band (mono, 64 bands up to 8 kHz)."""
    wave = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1) if audio.ndim == 2 else audio))
    with torch.no_grad():
        log_mel = torch.log(_mel(sample_rate)(wave) + 1e-6)
    return torch.cat([log_mel.mean(dim=1), log_mel.std(dim=1)]).numpy().astype(np.float32)


def _fit_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, classes: int) -> torch.Tensor:
    mean, std = train_x.mean(dim=0), train_x.std(dim=0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    model = torch.nn.Linear(train_x.shape[1], classes)
    optimiser = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(train_x), train_y) + 1e-3 * model.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return model(test_x).argmax(dim=1)


def _one_torch_thread() -> None:
    # Worker processes already divide the cores; torch's own threads on top only oversubscribe them.
    torch.set_num_threads(1)


def _clip_features(seed: int, index: int, name: str, max_duration_s: float | None) -> npt.NDArray[np.float32]:
    clip = synthesize_clip(seed, index, foreground=name, max_duration_s=max_duration_s)
    return log_mel_statistics(clip.audio, clip.truth.spec.sample_rate)


def learnability_baseline(
    clips_per_class: int = 20,
    seed: int = 0,
    folds: int = 5,
    max_duration_s: float | None = 4.0,
    workers: int = 1,
) -> BaselineResult:
    """Cross-validated accuracy of the baseline on `clips_per_class` clips of every class.

    The clips are library clips with a forced foreground class (same modifiers, mixtures, rates and
    levels as the library), so the number describes the library, not an easy subset of it.
    """
    jobs = [(label * clips_per_class + k, name) for label, name in enumerate(CLASSES) for k in range(clips_per_class)]
    labels = [label for label in range(len(CLASSES)) for _ in range(clips_per_class)]
    args = ([seed] * len(jobs), [i for i, _ in jobs], [name for _, name in jobs], [max_duration_s] * len(jobs))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_one_torch_thread) as pool:
            features = list(pool.map(_clip_features, *args, chunksize=8))
    else:
        features = list(map(_clip_features, *args))
    x = torch.from_numpy(np.stack(features))
    y = torch.tensor(labels)
    torch.manual_seed(seed)
    fold_of = torch.arange(len(y)) % folds  # every class spread evenly over the folds
    predicted = torch.empty_like(y)
    for fold in range(folds):
        test = fold_of == fold
        predicted[test] = _fit_predict(x[~test], y[~test], x[test], len(CLASSES))
    correct = (predicted == y).float()
    per_class = {name: float(correct[y == i].mean()) for i, name in enumerate(CLASSES)}
    return BaselineResult(float(correct.mean()), 1 / len(CLASSES), clips_per_class, folds, per_class)
