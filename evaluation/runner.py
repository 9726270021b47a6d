"""Run an encoder over an evaluation dataset: decode, embed in batches, score, compute metrics.

Retrieval: every clip is embedded once, every caption once; similarity = cosine (the encoder returns
L2-normalised rows), then `evaluation.metrics.retrieval_metrics` applies the AudioCaps/Clotho protocol.

Zero-shot: each class name becomes a prompt per template (``_`` → space, as LAION did for ESC-50:
"This is a sound of {label}."); with several templates the class embedding is the renormalised mean of
its prompt embeddings (prompt ensembling). A clip's score for a class is the cosine between them.
No training is involved, so every clip of the chosen folds is scored; per-fold accuracy is reported too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluation.datasets import ClipItem, Dataset, DatasetError
from evaluation.metrics import (
    RetrievalResult,
    ZeroShotResult,
    retrieval_metrics_from_embeddings,
    zeroshot_multi_label,
    zeroshot_single_label,
)
from evaluation.prompts import DEFAULT_TEMPLATE, LABEL_PLACEHOLDER
from indexer.encoders.base import Encoder
from indexer.types import FloatArray

Decoder = Callable[[Path, int], FloatArray]


def decode_clip(path: Path, sample_rate: int) -> FloatArray:
    """The one place evaluation decodes audio: the project's loader, mono float32 at `sample_rate`."""
    from indexer.audio import load_audio  # here, not at the top: it pulls in torch

    return load_audio(path, sample_rate).samples


def _decoded_batches(
    paths: Sequence[Path], sample_rate: int, batch_size: int, workers: int, decode: Decoder
) -> Iterator[list[FloatArray]]:
    """Batches of decoded clips, decoding the next batch in threads while the caller embeds this one.

    Only two batches are in flight at a time, so memory stays bounded whatever the dataset size.
    """
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(batch: Sequence[Path]) -> list[Future[FloatArray]]:
            return [pool.submit(decode, p, sample_rate) for p in batch]

        pending = submit(batches[0]) if batches else []
        for k in range(len(batches)):
            current, pending = pending, (submit(batches[k + 1]) if k + 1 < len(batches) else [])
            yield [f.result() for f in current]


def _check_embeddings(what: str, out: FloatArray, n: int, dim: int) -> FloatArray:
    if out.shape != (n, dim):
        raise RuntimeError(f"encoder returned {what} embeddings of shape {out.shape}, expected ({n}, {dim})")
    return out


def embed_clips(
    encoder: Encoder,
    items: Sequence[ClipItem],
    *,
    batch_size: int = 16,
    workers: int = 2,
    progress: bool = True,
    decode: Decoder = decode_clip,
) -> FloatArray:
    """Audio embeddings [len(items), dim] of the clips, in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    out = np.zeros((len(items), encoder.dim), dtype=np.float32)
    done = 0
    paths = [item.path for item in items]
    with tqdm(total=len(items), unit="clip", desc="embedding audio", disable=not progress) as bar:
        for clips in _decoded_batches(paths, encoder.sample_rate, batch_size, workers, decode):
            emb = _check_embeddings("audio", np.asarray(encoder.embed_audio(clips)), len(clips), encoder.dim)
            out[done : done + len(clips)] = emb
            done += len(clips)
            bar.update(len(clips))
    return out


def embed_texts(encoder: Encoder, texts: Sequence[str], *, batch_size: int = 256) -> FloatArray:
    """Text embeddings [len(texts), dim], in order."""
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        out[start : start + len(chunk)] = _check_embeddings(
            "text", np.asarray(encoder.embed_text(chunk)), len(chunk), encoder.dim
        )
    return out


# -------------------------------------------------------------------------------------------- retrieval


def caption_index(dataset: Dataset) -> tuple[list[str], list[int]]:
    """All captions in clip order, and for each the index of its clip."""
    captions = [text for item in dataset.items for text in item.captions]
    mapping = [i for i, item in enumerate(dataset.items) for _ in item.captions]
    return captions, mapping


def evaluate_retrieval(
    encoder: Encoder,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    text_batch_size: int = 256,
    progress: bool = True,
    decode: Decoder = decode_clip,
) -> RetrievalResult:
    """Text→audio and audio→text retrieval metrics of `encoder` on a captioned dataset."""
    captions, mapping = caption_index(dataset)
    if not captions:
        raise DatasetError(dataset.root, f"the {dataset.kind} dataset has no captions to retrieve with")
    audio = embed_clips(encoder, dataset.items, batch_size=batch_size, progress=progress, decode=decode)
    text = embed_texts(encoder, captions, batch_size=text_batch_size)
    return retrieval_metrics_from_embeddings(audio, text, mapping)


# -------------------------------------------------------------------------------------------- zero-shot


def label_text(label: str) -> str:
    """A class name as it reads in a prompt: ESC-50's ``chirping_birds`` → ``chirping birds``."""
    return label.replace("_", " ").strip()


def class_embeddings(encoder: Encoder, class_names: Sequence[str], templates: Sequence[str]) -> FloatArray:
    """One L2-normalised text embedding per class: the renormalised mean over the templates."""
    if not templates:
        raise ValueError("at least one prompt template is needed")
    bad = [t for t in templates if LABEL_PLACEHOLDER not in t]
    if bad:
        raise ValueError(f"prompt templates must contain {LABEL_PLACEHOLDER}: {bad}")
    # replace(), not format(): a template may contain other braces.
    prompts = [t.replace(LABEL_PLACEHOLDER, label_text(name)) for name in class_names for t in templates]
    emb = embed_texts(encoder, prompts).reshape(len(class_names), len(templates), encoder.dim).mean(axis=1)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    normalised: FloatArray = (emb / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalised


def evaluate_zeroshot(
    encoder: Encoder,
    dataset: Dataset,
    labels: Sequence[str] | None = None,
    templates: Sequence[str] = (DEFAULT_TEMPLATE,),
    *,
    batch_size: int = 16,
    progress: bool = True,
    decode: Decoder = decode_clip,
) -> ZeroShotResult:
    """Zero-shot classification of every clip against `labels` (default: the dataset's label set).

    Single-label datasets get accuracy (overall, per class, per fold), a confusion matrix and mAP;
    multi-label datasets get mAP.
    """
    class_names = tuple(labels) if labels is not None else dataset.label_set
    if not class_names:
        raise DatasetError(dataset.root, f"the {dataset.kind} dataset has no class labels to classify with")
    index = {name: i for i, name in enumerate(class_names)}
    for item in dataset.items:
        unknown = [label for label in item.labels if label not in index]
        if unknown:
            raise DatasetError(item.path, f"labelled {unknown[0]!r}, which is not in the label set")
        if not dataset.multi_label and len(item.labels) != 1:
            raise DatasetError(item.path, f"has {len(item.labels)} labels in a single-label dataset")

    text = class_embeddings(encoder, class_names, templates)
    audio = embed_clips(encoder, dataset.items, batch_size=batch_size, progress=progress, decode=decode)
    scores = audio.astype(np.float64) @ text.astype(np.float64).T

    if dataset.multi_label:
        targets = np.zeros(scores.shape, dtype=bool)
        for row, item in enumerate(dataset.items):
            targets[row, [index[label] for label in item.labels]] = True
        return zeroshot_multi_label(scores, targets, class_names)
    folds = [item.fold for item in dataset.items]
    return zeroshot_single_label(
        scores,
        [index[item.labels[0]] for item in dataset.items],
        class_names,
        folds=None if None in folds else [f for f in folds if f is not None],
    )
