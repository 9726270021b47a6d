"""Supervised tagging: a head trained on the catalog's stored embeddings tags the rest of the library.

    from search.tagger import train_tagger, save_tagger, load_tagger, apply_tagger
    from search.tagger_data import read_labels_csv

    tagger, validation = train_tagger(catalog, read_labels_csv("labels.csv"), "ucs", TrainConfig())
    save_tagger(catalog, tagger, enabled=True)            # <home>/taggers/ucs.safetensors + ucs.json
    apply_tagger(catalog, load_tagger(catalog, "ucs"))    # tags every file (source "tagger:ucs")

A head belongs to the embedding space it was trained on (model id and dim in its JSON); loading it for a
catalog of another space is refused. Single-label heads tag each file with its best label; multi-label
heads with every label whose score reaches the label's threshold (calibrated on validation files).
Enabled heads also tag the files an indexing run adds or changes (`apply_enabled_taggers`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from indexer.encoders.base import Encoder
from indexer.types import FloatArray
from indexer.windows import WindowSpec
from search.tagger_config import TaggerError, TrainConfig
from search.tagger_data import (
    Bags,
    BoolArray,
    LabelledFiles,
    LabelledPaths,
    embed_files,
    load_bags,
    normalised_path,
    resolve_labels,
)
from search.tagger_metrics import TaggerReport, evaluate
from search.tagger_model import Head, TrainedHead, ZeroShotPrior, predict, train_head
from storage.atomic import atomic_path, atomic_write_text
from storage.catalog import Catalog

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TAGGERS_FOLDER = "taggers"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
APPLY_CHUNK_SEGMENTS = 65_536  # vectors scored at a time: bounds memory on large libraries
SQL_CHUNK = 10_000  # ids per `IN (...)` query: SQLite caps the number of bound parameters

Tags = list[tuple[str, float]]


@dataclass(frozen=True)
class TaggerInfo:
    """A head's JSON: what it predicts, how, and for which embedding space."""

    name: str
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    multi_label: bool
    pooling: str
    hidden: int
    model_id: str
    dim: int
    enabled: bool = False
    trained: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            **asdict(self),
            "labels": list(self.labels),
            "thresholds": list(self.thresholds),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerInfo:
        if data.get("format") != FORMAT_VERSION:
            raise TaggerError(f"tagger {data.get('name')!r} has format {data.get('format')!r}, not {FORMAT_VERSION}")
        return cls(
            name=str(data["name"]),
            labels=tuple(data["labels"]),
            thresholds=tuple(float(t) for t in data["thresholds"]),
            multi_label=bool(data["multi_label"]),
            pooling=str(data["pooling"]),
            hidden=int(data["hidden"]),
            model_id=str(data["model_id"]),
            dim=int(data["dim"]),
            enabled=bool(data.get("enabled", False)),
            trained=data.get("trained"),
        )


@dataclass(frozen=True)
class FileTags:
    file_id: int | None  # None for a file outside the catalog
    path: str
    tags: tuple[tuple[str, float], ...]  # best first

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "tags": [{"label": lb, "score": round(s, 6)} for lb, s in self.tags]}


class Tagger:
    """A trained head with its labels and thresholds."""

    def __init__(self, head: Head, info: TaggerInfo) -> None:
        self.head = head
        self.info = info
        self._thresholds = np.asarray(info.thresholds, dtype=np.float32)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def source(self) -> str:
        """The tag source this head writes under in the catalog."""
        return f"tagger:{self.info.name}"

    def scores(self, bags: Bags) -> FloatArray:
        """Per-file scores [n_files, n_labels] in [0, 1]."""
        if bags.vectors.shape[1:] != (self.info.dim,):
            raise TaggerError(f"tagger {self.name!r} takes {self.info.dim}-d vectors, got {bags.vectors.shape[1:]}")
        return predict(self.head, bags, self.info.pooling, self.info.multi_label)

    def tags(self, scores: FloatArray) -> list[Tags]:
        """The tags of each file, best first: its best label (single-label) or every label at threshold."""
        labels = self.info.labels
        if not self.info.multi_label:
            best = scores.argmax(axis=1)
            top = scores[np.arange(len(scores)), best]
            return [[(labels[c], s)] for c, s in zip(best.tolist(), top.tolist(), strict=True)]
        files, columns = np.nonzero(scores >= self._thresholds)
        values = scores[files, columns]
        order = np.lexsort((-values, files))  # by file, best first
        out: list[Tags] = [[] for _ in range(len(scores))]
        for f, c, s in zip(files[order].tolist(), columns[order].tolist(), values[order].tolist(), strict=True):
            out[f].append((labels[c], s))
        return out

    def check_space(self, model_id: str, dim: int) -> None:
        if (self.info.model_id, self.info.dim) != (model_id, dim):
            raise TaggerError(
                f"tagger {self.name!r} was trained on embeddings of model {self.info.model_id!r} "
                f"(dim {self.info.dim}); this catalog holds {model_id!r} (dim {dim}): "
                "retrain it on this catalog's files"
            )

    def save(self, folder: Path) -> Path:
        """Write NAME.safetensors, then NAME.json (last, so a JSON always has its weights)."""
        folder.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        with atomic_path(folder / f"{self.name}.safetensors") as tmp:
            save_file(weights, tmp)
        atomic_write_text(folder / f"{self.name}.json", json.dumps(self.info.to_dict(), indent=2))
        return folder / f"{self.name}.json"

    @classmethod
    def load(cls, folder: Path, name: str) -> Tagger:
        info = read_info(folder, name)
        head = Head(info.dim, len(info.labels), info.hidden)
        try:
            head.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
        except (OSError, RuntimeError) as exc:
            raise TaggerError(f"cannot load the weights of tagger {name!r} from {folder}: {exc}") from None
        head.eval()
        return cls(head, info)


# --- storage in the catalog home ---------------------------------------------------------------------


def tagger_folder(catalog: Catalog) -> Path:
    return catalog.home / TAGGERS_FOLDER


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise TaggerError(f"bad tagger name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name


def read_info(folder: Path, name: str) -> TaggerInfo:
    path = folder / f"{check_name(name)}.json"
    if not path.is_file():
        raise TaggerError(f"no tagger named {name!r} in {folder.parent} (see `soundsearch tagger list`)")
    try:
        return TaggerInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise TaggerError(f"{path} is not a tagger description: {exc}") from None


def list_taggers(catalog: Catalog) -> list[TaggerInfo]:
    folder = tagger_folder(catalog)
    return [read_info(folder, p.stem) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def load_tagger(catalog: Catalog, name: str) -> Tagger:
    """A saved head, checked against the catalog's embedding space."""
    tagger = Tagger.load(tagger_folder(catalog), name)
    binding = catalog.binding
    if binding is None:
        raise TaggerError(f"catalog {catalog.home} has no indexed files yet")
    tagger.check_space(binding.model_id, binding.dim)
    return tagger


def save_tagger(catalog: Catalog, tagger: Tagger, *, enabled: bool | None = None) -> Path:
    """Save into the catalog home; `enabled=None` keeps the setting of a head saved under the same name."""
    folder = tagger_folder(catalog)
    if enabled is None:
        previous = folder / f"{tagger.name}.json"
        enabled = previous.is_file() and read_info(folder, tagger.name).enabled
    tagger.info = replace(tagger.info, enabled=enabled)
    return tagger.save(folder)


def set_enabled(catalog: Catalog, name: str, enabled: bool) -> None:
    """Whether the head tags the files each indexing run adds or changes."""
    tagger = load_tagger(catalog, name)
    tagger.info = replace(tagger.info, enabled=enabled)
    tagger.save(tagger_folder(catalog))


# --- training and evaluation -------------------------------------------------------------------------


def zero_shot_prior(encoder: Encoder, labels: Sequence[str], multi_label: bool) -> ZeroShotPrior:
    """The zero-shot classifier's own weights for these labels (its prompt ensembles; '_' read as a space)."""
    from search.zeroshot import ZeroShotClassifier

    zs = ZeroShotClassifier(encoder, [label.replace("_", " ") for label in labels], multi_label=multi_label)
    directions = zs.label_vectors - zs.null_vector[None, :] if multi_label else zs.label_vectors
    return ZeroShotPrior(np.ascontiguousarray(directions, dtype=np.float32), zs.scale)


def check_finetune(encoder: Encoder) -> None:
    """`--finetune-encoder` is refused, with the reason: heads live on the catalog's stored embeddings, and
    a fine-tuned encoder would make every stored vector stale (the whole library re-embedded with it)."""
    from indexer.encoders.clap import ClapEncoder

    if not isinstance(encoder, ClapEncoder):
        raise TaggerError(
            f"--finetune-encoder needs a Hugging Face CLAP model; it is not available for the catalog's encoder "
            f"{encoder.model_id!r}. Train the head on the stored embeddings (without --finetune-encoder)"
        )
    raise TaggerError(
        "--finetune-encoder is not available yet: a fine-tuned audio encoder changes the embedding space, so every "
        "stored vector would have to be recomputed with it. Train the head on the stored embeddings (without "
        "--finetune-encoder)"
    )


def fit_tagger(
    name: str,
    bags: Bags,
    targets: BoolArray,
    labels: tuple[str, ...],
    config: TrainConfig,
    *,
    model_id: str,
    prior: ZeroShotPrior | None = None,
) -> tuple[Tagger, TrainedHead, TaggerReport]:
    """Train a head on these bags; returns it with its training run and its report on the validation split."""
    check_name(name)
    trained = train_head(bags, targets, labels, config, prior)
    validation = evaluate(
        trained.val_scores, targets[trained.val_index], labels, trained.thresholds, config.multi_label
    )
    info = TaggerInfo(
        name=name,
        labels=labels,
        thresholds=tuple(float(t) for t in trained.thresholds),
        multi_label=config.multi_label,
        pooling=config.pooling,
        hidden=config.hidden,
        model_id=model_id,
        dim=int(bags.vectors.shape[1]),
        trained={
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": len(bags),
            "train_files": len(trained.train_index),
            "val_files": len(trained.val_index),
            "epochs": trained.epochs,
            "best_epoch": trained.best_epoch,
            "val_loss": round(trained.val_loss, 6),
            "zero_shot_init": prior is not None,
            "weight_decay": trained.weight_decay,
            "config": asdict(config),
            "validation": {k: v for k, v in validation.to_dict().items() if k in ("accuracy", "macro_f1", "map")},
        },
    )
    return Tagger(trained.head, info), trained, validation


def _labelled_bags(catalog: Catalog, labelled: LabelledFiles) -> Bags:
    bags = load_bags(catalog, labelled.file_ids.tolist())
    missing = np.setdiff1d(labelled.file_ids, bags.file_ids)
    if len(missing):
        paths = catalog.paths(missing.tolist())
        raise TaggerError(f"{len(missing)} labelled file(s) have no stored vectors, e.g. {next(iter(paths.values()))}")
    return bags  # ordered by file id, as `labelled.file_ids`


def train_tagger(
    catalog: Catalog,
    labelled: LabelledPaths,
    name: str,
    config: TrainConfig | None = None,
    *,
    encoder: Encoder | None = None,
) -> tuple[Tagger, TaggerReport]:
    """Train on labelled indexed files. `encoder` (the catalog's model) is needed for zero-shot init."""
    cfg = config or TrainConfig()
    binding = catalog.binding
    if binding is None:
        raise TaggerError(f"catalog {catalog.home} has no indexed files yet")
    files = resolve_labels(catalog, labelled, multi_label=cfg.multi_label)
    prior = None
    if cfg.zero_shot_init:
        if encoder is None:
            raise TaggerError("zero-shot initialisation needs the catalog's model to embed the label names")
        catalog.check_model(encoder.model_id, encoder.dim)
        prior = zero_shot_prior(encoder, files.labels, cfg.multi_label)
    bags = _labelled_bags(catalog, files)
    tagger, _, validation = fit_tagger(
        name, bags, files.targets, files.labels, cfg, model_id=binding.model_id, prior=prior
    )
    return tagger, validation


def evaluate_tagger(catalog: Catalog, tagger: Tagger, labelled: LabelledPaths) -> TaggerReport:
    """A saved head on labelled files (best held out from its training)."""
    files = resolve_labels(catalog, labelled, multi_label=tagger.info.multi_label, min_classes=1)
    unknown = sorted(set(files.labels) - set(tagger.info.labels))
    if unknown:
        raise TaggerError(f"labels that tagger {tagger.name!r} does not know: {', '.join(unknown[:10])}")
    column = [tagger.info.labels.index(label) for label in files.labels]
    targets = np.zeros((len(files.file_ids), len(tagger.info.labels)), dtype=bool)
    targets[:, column] = files.targets
    scores = tagger.scores(_labelled_bags(catalog, files))
    return evaluate(scores, targets, tagger.info.labels, np.asarray(tagger.info.thresholds), tagger.info.multi_label)


@dataclass(frozen=True)
class CrossValidation:
    report: TaggerReport  # over every file's out-of-fold prediction
    fold_accuracy: tuple[float, ...]
    fold_map: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "folds": len(self.fold_accuracy),
            "fold_accuracy": [round(a, 6) for a in self.fold_accuracy],
            "fold_map": [round(a, 6) for a in self.fold_map],
        }


def stratified_folds(targets: BoolArray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold per file: rarest classes first, each file goes where its class is scarcest (then smallest fold)."""
    fold = np.full(len(targets), -1)
    for c in np.argsort(targets.sum(axis=0), kind="stable"):
        for m in rng.permutation(np.flatnonzero(targets[:, c] & (fold < 0))):
            of_class = np.bincount(fold[targets[:, c] & (fold >= 0)], minlength=k)
            sizes = np.bincount(fold[fold >= 0], minlength=k)
            fold[m] = int(np.lexsort((sizes, of_class))[0])
    return fold


def cross_validate_bags(
    bags: Bags,
    targets: BoolArray,
    labels: tuple[str, ...],
    config: TrainConfig,
    k: int,
    prior: ZeroShotPrior | None = None,
) -> CrossValidation:
    if k < 2:
        raise TaggerError(f"cross-validation needs at least 2 folds, got {k}")
    fold = stratified_folds(targets, k, np.random.default_rng(config.seed))
    scores = np.zeros(targets.shape, dtype=np.float32)
    thresholds = np.zeros(targets.shape, dtype=np.float32)
    accuracy, m_ap = [], []
    for f in range(k):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        try:
            trained = train_head(bags.subset(train), targets[train], labels, config, prior)
        except TaggerError as exc:
            raise TaggerError(f"fold {f + 1} of {k}: {exc}") from None
        scores[test] = predict(trained.head, bags.subset(test), config.pooling, config.multi_label)
        thresholds[test] = trained.thresholds
        fold_report = evaluate(scores[test], targets[test], labels, trained.thresholds, config.multi_label)
        accuracy.append(fold_report.accuracy)
        m_ap.append(fold_report.mean_average_precision)
    report = evaluate(scores, targets, labels, thresholds, config.multi_label)
    return CrossValidation(report, tuple(accuracy), tuple(m_ap))


def cross_validate(
    catalog: Catalog,
    labelled: LabelledPaths,
    config: TrainConfig,
    k: int,
    *,
    encoder: Encoder | None = None,
) -> CrossValidation:
    """k-fold cross-validation of a training configuration on labelled indexed files."""
    files = resolve_labels(catalog, labelled, multi_label=config.multi_label)
    prior = None
    if config.zero_shot_init:
        if encoder is None:
            raise TaggerError("zero-shot initialisation needs the catalog's model to embed the label names")
        prior = zero_shot_prior(encoder, files.labels, config.multi_label)
    return cross_validate_bags(_labelled_bags(catalog, files), files.targets, files.labels, config, k, prior)


# --- applying ------------------------------------------------------------------------------------------


def apply_tagger(
    catalog: Catalog, tagger: Tagger, file_ids: Sequence[int] | None = None, *, save: bool = True
) -> dict[int, Tags]:
    """Tags of indexed files (all of them when `file_ids` is None) by file id, from their stored vectors;
    `save` writes them into the catalog under `tagger.source`, replacing that head's earlier tags there."""
    if file_ids is None:
        groups: list[list[int] | None] = [None]
    else:
        ids = sorted({int(i) for i in file_ids})
        groups = [ids[i : i + SQL_CHUNK] for i in range(0, len(ids), SQL_CHUNK)]
    tagged: dict[int, Tags] = {}
    for group in groups:
        tagged.update(_tag_stored(catalog, tagger, group))
    if save and tagged:
        catalog.set_tags(tagger.source, tagged)
    return tagged


def _tag_stored(catalog: Catalog, tagger: Tagger, file_ids: list[int] | None) -> dict[int, Tags]:
    seg_ids, owners = catalog.segment_owners(file_ids)
    files, inverse = np.unique(owners, return_inverse=True)
    first_segment = np.searchsorted(inverse, np.arange(len(files) + 1))
    tagged: dict[int, Tags] = {}
    start = 0
    while start < len(files):
        # Chunks end on file boundaries (segments are ordered by file): a file's segments are scored together.
        stop = int(np.searchsorted(first_segment, first_segment[start] + APPLY_CHUNK_SEGMENTS, "right")) - 1
        stop = min(max(stop, start + 1), len(files))
        a, b = first_segment[start], first_segment[stop]
        bags = Bags(files[start:stop], catalog.segment_vectors(seg_ids[a:b]), inverse[a:b] - start)
        tagged.update(zip(bags.file_ids.tolist(), tagger.tags(tagger.scores(bags)), strict=True))
        start = stop
    return tagged


def with_paths(catalog: Catalog, tagged: dict[int, Tags]) -> list[FileTags]:
    """Tagged indexed files with their paths, in path order (for listings and JSON)."""
    ids = list(tagged)
    paths: dict[int, str] = {}
    for i in range(0, len(ids), SQL_CHUNK):
        paths.update(catalog.paths(ids[i : i + SQL_CHUNK]))
    return sorted((FileTags(fid, paths[fid], tuple(tagged[fid])) for fid in ids if fid in paths), key=lambda r: r.path)


def tag_paths(
    catalog: Catalog, tagger: Tagger, paths: Sequence[str | Path], encoder: Encoder | None = None, *, save: bool = True
) -> list[FileTags]:
    """Tag files by path, in the order given: indexed ones from their stored vectors (tags saved), others
    embedded with `encoder` (the catalog's model; their tags are only returned)."""
    indexed = {normalised_path(f.path): f.id for f in catalog.files(status="ok")}
    known = [indexed[normalised_path(p)] for p in paths if normalised_path(p) in indexed]
    stored = apply_tagger(catalog, tagger, known, save=save) if known else {}
    outside = [p for p in paths if normalised_path(p) not in indexed]
    fresh: dict[str, Tags] = {}
    if outside:
        binding = catalog.binding
        if encoder is None or binding is None:
            raise TaggerError(f"{outside[0]} is not indexed: tagging it needs the catalog's model")
        catalog.check_model(encoder.model_id, encoder.dim)
        bags = embed_files(encoder, WindowSpec(binding.window_s, binding.hop_s), outside)
        fresh = {normalised_path(p): tags for p, tags in zip(outside, tagger.tags(tagger.scores(bags)), strict=True)}
    results = []
    for p in paths:
        key = normalised_path(p)
        fid = indexed.get(key)
        tags = stored[fid] if fid is not None else fresh[key]
        results.append(FileTags(fid, str(p), tuple(tags)))
    return results


def apply_enabled_taggers(catalog: Catalog, file_ids: Sequence[int]) -> dict[str, int]:
    """Run every enabled head on these files (an indexing run's new and changed files); returns files
    tagged per head. A head of another embedding space is skipped with a warning: indexing goes on."""
    done: dict[str, int] = {}
    if not file_ids:
        return done
    for info in list_taggers(catalog):
        if not info.enabled:
            continue
        try:
            tagger = load_tagger(catalog, info.name)
        except TaggerError as exc:
            log.warning("tagger %s skipped: %s", info.name, exc)
            continue
        done[info.name] = len(apply_tagger(catalog, tagger, file_ids))
        log.info("tagger %s tagged %d file(s)", info.name, done[info.name])
    return done
