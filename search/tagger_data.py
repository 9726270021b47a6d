"""What a tagger learns from: labelled files (a `path,label` CSV or a folder per class) and their vectors.

Vectors come from the catalog (stored segment embeddings; nothing is decoded) and are kept grouped by
file as `Bags`, so a head can pool them per file (mean vector) or score every segment (multiple-instance).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.audio import load_audio
from indexer.encoders.base import Encoder, mean_pool
from indexer.scan import walk_audio
from indexer.types import FloatArray
from indexer.windows import WindowSpec, split_windows
from search.tagger_config import TaggerError
from storage.catalog import Catalog, FileStatus
from storage.vectors import IdArray

BoolArray = npt.NDArray[np.bool_]
LABEL_SEPARATOR = ";"
MAX_LISTED = 5  # paths named in an error message before "and N more"


@dataclass(frozen=True)
class Bags:
    """Segment vectors grouped by file: the segments of file `i` are `vectors[owners == i]` (contiguous)."""

    file_ids: IdArray  # [n_files]
    vectors: FloatArray  # [n_segments, dim]
    owners: IdArray  # [n_segments], 0..n_files-1, non-decreasing

    def __len__(self) -> int:
        return len(self.file_ids)

    @property
    def starts(self) -> IdArray:
        return np.searchsorted(self.owners, np.arange(len(self))).astype(np.int64)

    def pooled(self) -> FloatArray:
        """One vector per file: the renormalised mean of its segments (as `Catalog.file_vectors`)."""
        return mean_pool(self.vectors, self.owners, len(self))

    def subset(self, index: Sequence[int] | IdArray) -> Bags:
        """The bags of files `index`, in that order."""
        index = np.asarray(index, dtype=np.int64)
        starts = self.starts
        counts = np.bincount(self.owners, minlength=len(self))[index]
        begin = np.repeat(starts[index], counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return Bags(self.file_ids[index], self.vectors[begin + offset], np.repeat(np.arange(len(index)), counts))


def load_bags(catalog: Catalog, file_ids: Sequence[int] | None = None) -> Bags:
    """Stored vectors of indexed files (all OK files when `file_ids` is None), ordered by file id."""
    seg_ids, owner_ids = catalog.segment_owners(file_ids)
    files, inverse = np.unique(owner_ids, return_inverse=True)
    return Bags(files.astype(np.int64), catalog.segment_vectors(seg_ids), inverse.astype(np.int64))


def embed_files(encoder: Encoder, spec: WindowSpec, paths: Sequence[str | Path]) -> Bags:
    """Bags for audio files outside the catalog, windowed as the catalog windows its files."""
    clips: list[FloatArray] = []
    owners: list[int] = []
    for i, path in enumerate(paths):
        audio = load_audio(path, encoder.sample_rate)
        windows = split_windows(audio.samples, encoder.sample_rate, spec)
        clips.extend(w.samples for w in windows)
        owners.extend([i] * len(windows))
    vectors = encoder.embed_audio(clips) if clips else np.zeros((0, encoder.dim), dtype=np.float32)
    return Bags(-np.ones(len(paths), dtype=np.int64), vectors, np.asarray(owners, dtype=np.int64))


# --- labels ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledPaths:
    """Labels per file as the user gave them (paths not yet checked against a catalog)."""

    source: str  # for messages: the CSV or the folder
    rows: tuple[tuple[Path, tuple[str, ...]], ...]


@dataclass(frozen=True)
class LabelledFiles:
    """Labelled files of a catalog: `targets[i, c]` says file `file_ids[i]` carries `labels[c]`."""

    labels: tuple[str, ...]
    file_ids: IdArray
    targets: BoolArray


def normalised_path(path: str | Path) -> str:
    return os.path.normpath(Path(path).expanduser().absolute())


def read_labels_csv(path: str | Path) -> LabelledPaths:
    """Rows of a `path,label` CSV (several labels per cell joined by ';'); relative paths are resolved
    against the CSV's folder. Merges repeated paths."""
    csv_path = Path(path).expanduser()
    try:
        text = csv_path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets write a byte-order mark
    except OSError as exc:
        raise TaggerError(f"cannot read labels file {csv_path}: {exc.strerror or exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "path" not in header or "label" not in header:
        raise TaggerError(f"{csv_path}: the first row must be the header `path,label` (found {','.join(header)!r})")
    reader.fieldnames = header
    merged: dict[Path, list[str]] = {}
    for line, row in enumerate(reader, start=2):
        raw_path, cell = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not raw_path:
            raise TaggerError(f"{csv_path}, line {line}: empty path")
        labels = [label.strip() for label in cell.split(LABEL_SEPARATOR)]
        if not cell or any(not label for label in labels):
            raise TaggerError(f"{csv_path}, line {line}: empty label for {raw_path}")
        file_path = Path(raw_path).expanduser()
        if not file_path.is_absolute():
            file_path = csv_path.parent / file_path
        bucket = merged.setdefault(file_path, [])
        bucket.extend(label for label in labels if label not in bucket)
    if not merged:
        raise TaggerError(f"{csv_path}: no labelled files (only a header row?)")
    return LabelledPaths(str(csv_path), tuple((p, tuple(labels)) for p, labels in merged.items()))


def labels_from_folders(root: str | Path) -> LabelledPaths:
    """A folder per class: every audio file under `root/CLASS/` (at any depth) is labelled CLASS."""
    base = Path(root).expanduser().absolute()
    if not base.is_dir():
        raise TaggerError(f"{base}: not a folder (--from-folders takes a folder with one sub-folder per class)")
    rows: list[tuple[Path, tuple[str, ...]]] = []
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found, _issues = walk_audio(sub, confine_to=None)
        rows.extend((Path(f.path), (sub.name,)) for f in found)
    if not rows:
        raise TaggerError(f"{base}: no audio files in class sub-folders (expected {base}/CLASS/file.wav)")
    return LabelledPaths(str(base), tuple(rows))


def resolve_labels(
    catalog: Catalog, labelled: LabelledPaths, *, multi_label: bool, min_classes: int = 2
) -> LabelledFiles:
    """Match labelled paths to indexed files; refuse unknown paths, several labels per file in single-label
    mode, and fewer than `min_classes` classes (training needs two: it must see what a class is not)."""
    ok: dict[str, int] = {}
    failed: set[str] = set()
    for f in catalog.files():
        key = normalised_path(f.path)
        if f.status == FileStatus.OK:
            ok[key] = f.id
        else:
            failed.add(key)
    unknown = [str(p) for p, _ in labelled.rows if normalised_path(p) not in ok]
    if unknown:
        not_indexed = [p for p in unknown if normalised_path(p) not in failed]
        why = "are not in the catalog (index them first)" if not_indexed else "failed to index"
        raise TaggerError(f"{len(unknown)} labelled file(s) in {labelled.source} {why}: {_listing(unknown)}")
    if not multi_label:
        several = [str(p) for p, labels in labelled.rows if len(labels) > 1]
        if several:
            raise TaggerError(
                f"{len(several)} file(s) in {labelled.source} have several labels ({_listing(several)}); "
                "train with --multi-label, or give one label per file"
            )
    labels = tuple(sorted({label for _, row_labels in labelled.rows for label in row_labels}))
    if len(labels) < min_classes:
        raise TaggerError(
            f"{labelled.source} has a single class ({labels[0]!r}): a tagger needs labelled files of at least two "
            "classes, so that it sees what a class is not"
        )
    column = {label: c for c, label in enumerate(labels)}
    ids: dict[int, set[int]] = {}
    for p, row_labels in labelled.rows:
        ids.setdefault(ok[normalised_path(p)], set()).update(column[label] for label in row_labels)
    file_ids = np.array(sorted(ids), dtype=np.int64)
    targets = np.zeros((len(file_ids), len(labels)), dtype=bool)
    for i, fid in enumerate(file_ids):
        targets[i, sorted(ids[int(fid)])] = True
    if not multi_label and (targets.sum(axis=1) > 1).any():
        raise TaggerError(f"{labelled.source} lists the same file under different labels; use --multi-label")
    return LabelledFiles(labels, file_ids, targets)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")
