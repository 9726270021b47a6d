"""Evaluation datasets in their published on-disk formats → typed, immutable clip records.

Every loader reads metadata only (no audio is decoded) and returns a `Dataset` of `ClipItem`s.
Layouts, as distributed:

* ``esc50``: ``meta/esc50.csv`` (filename, fold, target, category, esc10, src_file, take), audio in
  ``audio/``; folds 1-5, 50 classes in target order. Split ``esc10`` keeps the ESC-10 subset.
* ``urbansound8k``: ``metadata/UrbanSound8K.csv`` (slice_file_name, fsID, start, end, salience, fold,
  classID, class), audio in ``audio/fold{N}/``; folds 1-10, 10 classes in classID order.
* ``audiocaps``: ``{train,val,test}.csv`` (audiocap_id, youtube_id, start_time, caption) in the root or
  in ``dataset/``, ``csv_files/`` or ``metadata/``; audio named by YouTube id, with or without a ``Y``
  prefix, any supported extension, anywhere under the root. Rows are grouped by YouTube id, so each
  clip carries all its captions (5 per clip in val/test). Default split: ``test``.
* ``clotho``: ``clotho_captions_{development,validation,evaluation}.csv`` (file_name, caption_1..5),
  audio in ``{development,validation,evaluation}/`` (or a ``file_name`` relative to the root, as the
  synthetic library writes it). Default split: ``evaluation``.
* ``wavcaps``: one JSON per source (``AudioSet_SL``, ``BBC_Sound_Effects``, ``FreeSound``,
  ``SoundBible``; e.g. ``json_files/SoundBible/sb_final.json``) holding
  ``{"num_captions_per_audio": 1, "data": [{"id", "caption", "audio", "duration", ...}]}``. The released
  JSONs carry the placeholder ``"audio": "wav_path"``, so audio is found by id (``Yb0RFKhbpFJA.wav`` →
  ``Yb0RFKhbpFJA.*``, FreeSound also by ``file_name``) under a folder named after the source; a real
  ``audio`` / ``wav_path`` value is used as given. Split: a source name, or None for all.
* ``csv``: a user CSV (the file itself, or ``captions.csv`` in the root) with columns ``path, caption``
  and optionally ``labels`` (``;``-joined); repeated rows give one clip several captions; paths are
  relative to the CSV's folder.
* ``synth``: the project's synthetic library, ``metadata.csv`` with path, classes (``;``-joined),
  caption_1..caption_5, duration_s, sample_rate, channels, format, events (JSON), params (JSON).

Malformed metadata raises `DatasetError`, naming the file and the row. Rows are numbered like a
spreadsheet shows them: the header is row 1, the first record row 2. JSON entries are named ``data[i]``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from indexer.errors import SoundsearchError

log = logging.getLogger(__name__)

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
US8K_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
CLOTHO_COLUMNS = ("file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5")
WAVCAPS_SOURCES = ("AudioSet_SL", "BBC_Sound_Effects", "FreeSound", "SoundBible")
# The released JSON file names, for JSONs not stored under a folder named after their source.
_WAVCAPS_FILE_PREFIXES = {
    "as": "AudioSet_SL",
    "bbc": "BBC_Sound_Effects",
    "fsd": "FreeSound",
    "sb": "SoundBible",
}
_WAVCAPS_AUDIO_PLACEHOLDER = "wav_path"


class DatasetError(SoundsearchError):
    """Dataset metadata is missing or malformed. The message names the file and the row (or entry)."""

    def __init__(self, path: str | Path, reason: str, *, row: int | None = None, where: str | None = None) -> None:
        self.path = str(path)
        self.row = row
        self.reason = reason
        location = where or (f"row {row}" if row is not None else None)
        super().__init__(f"{self.path}, {location}: {reason}" if location else f"{self.path}: {reason}")


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ClipItem:
    """One audio clip to evaluate: the whole file at `path`.

    `source_start_s` is the clip's offset in the recording it was cut from (AudioCaps start_time,
    UrbanSound8K start); informational only, the file on disk is already the clip.
    """

    clip_id: str
    path: Path
    captions: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    fold: int | None = None
    source_start_s: float | None = None


@dataclass(frozen=True)
class Dataset:
    """A loaded evaluation set. `label_set` is the class vocabulary in its canonical order."""

    kind: str
    root: Path
    split: str | None
    items: tuple[ClipItem, ...]
    label_set: tuple[str, ...] = ()
    multi_label: bool = False
    n_missing: int = 0  # clips left out because their audio was not found (skip_missing=True)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_captions(self) -> int:
        return sum(len(item.captions) for item in self.items)

    def folds(self) -> tuple[int, ...]:
        return tuple(sorted({item.fold for item in self.items if item.fold is not None}))

    def select_fold(self, fold: int) -> Dataset:
        """Only the clips of one fold (the label set stays whole)."""
        available = self.folds()
        if fold not in available:
            have = ", ".join(map(str, available)) or "none"
            raise DatasetError(self.root, f"fold {fold} is not in this {self.kind} dataset (folds: {have})")
        return replace(self, items=tuple(item for item in self.items if item.fold == fold))

    def head(self, n: int) -> Dataset:
        """The first `n` clips, for quick runs (the label set stays whole)."""
        if n < 1:
            raise ValueError(f"limit must be positive, got {n}")
        return replace(self, items=self.items[:n])


# ------------------------------------------------------------------------------------ reading metadata


@dataclass(frozen=True)
class _Entry:
    """A clip as a loader saw it, with where it came from, so later checks can name the row."""

    item: ClipItem
    meta: Path
    where: str
    missing_hint: str = ""


def _read_csv(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (row number, {column: stripped value}) for each non-blank record of a UTF-8 CSV."""
    if not path.is_file():
        raise DatasetError(path, "metadata file not found")
    row = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise DatasetError(path, "empty file: no header row", row=1)
            missing = [c for c in required if c not in header]
            if missing:
                raise DatasetError(
                    path,
                    f"missing column(s) {', '.join(missing)}; the header has: {', '.join(header)}",
                    row=1,
                )
            for row, values in enumerate(reader, start=2):
                if not any(v.strip() for v in values):
                    continue  # blank line, e.g. a trailing newline
                if len(values) != len(header):
                    raise DatasetError(path, f"expected {len(header)} fields, found {len(values)}", row=row)
                yield row, {k: v.strip() for k, v in zip(header, values, strict=True)}
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DatasetError(path, f"malformed CSV ({exc})", row=row + 1) from None


def _text(path: Path, row: int, values: dict[str, str], column: str) -> str:
    value = values[column]
    if not value:
        raise DatasetError(path, f"empty {column}", row=row)
    return value


def _integer(path: Path, row: int, values: dict[str, str], column: str, lo: int, hi: int) -> int:
    raw = values[column]
    try:
        value = int(raw)
    except ValueError:
        raise DatasetError(path, f"{column} {raw!r} is not an integer", row=row) from None
    if not lo <= value <= hi:
        raise DatasetError(path, f"{column} {value} is not one of {lo}..{hi}", row=row)
    return value


def _number(path: Path, row: int, values: dict[str, str], column: str) -> float:
    raw = values[column]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(path, f"{column} {raw!r} is not a number", row=row)
    return value


def _audio_extensions() -> frozenset[str]:
    # Imported here, not at the top: indexer.audio pulls in torch, which `soundsearch --help` and
    # metadata-only checks should not pay for.
    from indexer.formats import SUPPORTED_EXTENSIONS

    return frozenset(SUPPORTED_EXTENSIONS)


def _audio_files(root: Path) -> dict[str, list[Path]]:
    """Every supported audio file under `root`, by file stem (sorted paths, so lookups are stable)."""
    extensions = _audio_extensions()
    by_stem: dict[str, list[Path]] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in extensions:
                by_stem.setdefault(os.path.splitext(name)[0], []).append(Path(folder, name))
    return by_stem


def _finish(
    kind: str,
    root: Path,
    split: str | None,
    entries: list[_Entry],
    *,
    check_files: bool,
    skip_missing: bool,
    label_set: Sequence[str] | None = None,
) -> Dataset:
    kept: list[ClipItem] = []
    for entry in entries:
        if check_files and not entry.item.path.is_file():
            if skip_missing:
                continue
            hint = entry.missing_hint or str(entry.item.path)
            raise DatasetError(entry.meta, f"audio file not found: {hint}", where=entry.where)
        kept.append(entry.item)
    n_missing = len(entries) - len(kept)
    if n_missing:
        log.warning("%s: %d of %d clips have no audio on disk and were skipped", kind, n_missing, len(entries))
    if not kept:
        raise DatasetError(root, f"no {kind} clips found" + (" with audio on disk" if entries else ""))
    if label_set is None:
        label_set = sorted({label for item in kept for label in item.labels})
    return Dataset(
        kind=kind,
        root=root,
        split=split,
        items=tuple(kept),
        label_set=tuple(label_set),
        multi_label=any(len(item.labels) > 1 for item in kept),
        n_missing=n_missing,
    )


def _pick_split(kind: str, root: Path, split: str | None, default: str, aliases: dict[str, str]) -> str:
    chosen = aliases.get((split or default).lower(), (split or default).lower())
    if chosen not in set(aliases.values()):
        raise DatasetError(
            root, f"unknown {kind} split {split!r} (use one of: {', '.join(sorted(set(aliases.values())))})"
        )
    return chosen


# ------------------------------------------------------------------------------------- classification


def _class_order(path: Path, rows: list[tuple[int, int, str]]) -> tuple[str, ...]:
    """Check that class index and class name agree on every row; return the names in index order."""
    name_of: dict[int, str] = {}
    index_of: dict[str, int] = {}
    for row, index, name in rows:
        if name_of.setdefault(index, name) != name or index_of.setdefault(name, index) != index:
            raise DatasetError(path, f"class {name!r} with index {index} contradicts an earlier row", row=row)
    return tuple(name_of[i] for i in sorted(name_of))


def load_esc50(
    root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """ESC-50 (2000 clips, 5 folds, 50 classes); split ``esc10`` keeps the ESC-10 subset."""
    subset = (split or "esc50").lower()
    if subset not in ("esc50", "esc10", "all"):
        raise DatasetError(root, f"unknown esc50 split {split!r} (use esc50 or esc10)")
    meta = root / "meta" / "esc50.csv"
    entries: list[_Entry] = []
    classes: list[tuple[int, int, str]] = []
    for row, v in _read_csv(meta, ESC50_COLUMNS):
        filename = _text(meta, row, v, "filename")
        fold = _integer(meta, row, v, "fold", 1, 5)
        target = _integer(meta, row, v, "target", 0, 49)
        category = _text(meta, row, v, "category")
        if v["esc10"] not in ("True", "False"):
            raise DatasetError(meta, f"esc10 {v['esc10']!r} is not True or False", row=row)
        classes.append((row, target, category))
        if subset == "esc10" and v["esc10"] != "True":
            continue
        item = ClipItem(clip_id=filename, path=root / "audio" / filename, labels=(category,), fold=fold)
        entries.append(_Entry(item, meta, f"row {row}"))
    order = _class_order(meta, classes)
    if subset == "esc10":
        kept = {e.item.labels[0] for e in entries}
        order = tuple(c for c in order if c in kept)
    return _finish("esc50", root, split, entries, check_files=check_files, skip_missing=skip_missing, label_set=order)


def load_urbansound8k(
    root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """UrbanSound8K (8732 slices, 10 folds, 10 classes). It has no splits: folds select subsets."""
    if split is not None:
        raise DatasetError(root, "urbansound8k has no splits; use a fold instead")
    meta = root / "metadata" / "UrbanSound8K.csv"
    entries: list[_Entry] = []
    classes: list[tuple[int, int, str]] = []
    for row, v in _read_csv(meta, US8K_COLUMNS):
        name = _text(meta, row, v, "slice_file_name")
        fold = _integer(meta, row, v, "fold", 1, 10)
        class_id = _integer(meta, row, v, "classID", 0, 9)
        label = _text(meta, row, v, "class")
        start = _number(meta, row, v, "start")
        _number(meta, row, v, "end")
        classes.append((row, class_id, label))
        item = ClipItem(
            clip_id=name,
            path=root / "audio" / f"fold{fold}" / name,
            labels=(label,),
            fold=fold,
            source_start_s=start,
        )
        entries.append(_Entry(item, meta, f"row {row}"))
    order = _class_order(meta, classes)
    return _finish(
        "urbansound8k",
        root,
        None,
        entries,
        check_files=check_files,
        skip_missing=skip_missing,
        label_set=order,
    )


# ------------------------------------------------------------------------------------------- captions


def load_audiocaps(
    root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """AudioCaps: one clip per YouTube id with all its captions, audio found by id under the root."""
    chosen = _pick_split(
        "audiocaps",
        root,
        split,
        "test",
        {"train": "train", "val": "val", "validation": "val", "test": "test"},
    )
    candidates = [root / sub / f"{chosen}.csv" for sub in ("", "dataset", "csv_files", "metadata")]
    meta = next((p for p in candidates if p.is_file()), None)
    if meta is None:
        raise DatasetError(root, f"no {chosen}.csv found (looked in: {', '.join(str(p.parent) for p in candidates)})")
    captions: dict[str, list[str]] = {}
    first: dict[str, tuple[int, float]] = {}
    for row, v in _read_csv(meta, AUDIOCAPS_COLUMNS):
        _integer(meta, row, v, "audiocap_id", 0, 2**63 - 1)
        youtube_id = _text(meta, row, v, "youtube_id")
        start = _number(meta, row, v, "start_time")
        caption = _text(meta, row, v, "caption")
        if youtube_id in first and first[youtube_id][1] != start:
            log.warning(
                "%s row %d: %s has start_time %s, earlier rows %s",
                meta,
                row,
                youtube_id,
                start,
                first[youtube_id][1],
            )
        first.setdefault(youtube_id, (row, start))
        captions.setdefault(youtube_id, []).append(caption)
    audio = _audio_files(root)
    entries: list[_Entry] = []
    for youtube_id, texts in captions.items():
        found = audio.get(youtube_id, []) + audio.get(f"Y{youtube_id}", [])
        # The same id under several folders (e.g. train/ and test/): prefer the one named like the split.
        found.sort(key=lambda p: chosen not in p.relative_to(root).parts[:-1])
        path = found[0] if found else root / f"{youtube_id}.wav"
        row, start = first[youtube_id]
        item = ClipItem(clip_id=youtube_id, path=path, captions=tuple(texts), source_start_s=start)
        hint = f"no {youtube_id}.* or Y{youtube_id}.* under {root}"
        entries.append(_Entry(item, meta, f"row {row}", missing_hint=hint))
    return _finish("audiocaps", root, chosen, entries, check_files=check_files, skip_missing=skip_missing)


def load_clotho(
    root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """Clotho v2.1: five captions per clip, audio in the folder named after the split."""
    aliases = {
        "development": "development", "dev": "development", "train": "development",
        "validation": "validation", "val": "validation",
        "evaluation": "evaluation", "eval": "evaluation", "test": "evaluation",
    }  # fmt: skip
    chosen = _pick_split("clotho", root, split, "evaluation", aliases)
    meta = root / f"clotho_captions_{chosen}.csv"
    entries: list[_Entry] = []
    for row, v in _read_csv(meta, CLOTHO_COLUMNS):
        name = _text(meta, row, v, "file_name")
        texts = tuple(_text(meta, row, v, c) for c in CLOTHO_COLUMNS[1:])
        path = root / chosen / name
        if not path.is_file() and (root / name).is_file():
            path = root / name  # a file_name relative to the root (the synthetic library writes these)
        entries.append(_Entry(ClipItem(clip_id=name, path=path, captions=texts), meta, f"row {row}"))
    return _finish("clotho", root, chosen, entries, check_files=check_files, skip_missing=skip_missing)


def _wavcaps_source(path: Path, root: Path) -> str | None:
    """The WavCaps source a file belongs to, from a folder named after it (any case, any suffix)."""
    for part in reversed(path.relative_to(root).parts[:-1]):
        for source in WAVCAPS_SOURCES:
            if source.lower() in part.lower():
                return source
    return None


def _wavcaps_json_files(root: Path, wanted: str | None) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*.json")):
        source = _wavcaps_source(path, root) or _WAVCAPS_FILE_PREFIXES.get(path.stem.split("_")[0].lower())
        if source is not None and "blacklist" not in path.stem.lower() and wanted in (None, source):
            found.append((source, path))
    return found


def _wavcaps_captions(path: Path, where: str, entry: dict[str, Any]) -> tuple[str, ...]:
    # The multi-caption variant (num_captions_per_audio > 1) uses caption_1..caption_n.
    multi = [entry[k] for k in sorted(entry) if k.startswith("caption_")]
    texts = [entry["caption"]] if "caption" in entry else multi
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise DatasetError(path, "missing or empty caption", where=where)
    return tuple(t.strip() for t in texts)


def load_wavcaps(
    root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """WavCaps JSON files; `split` picks one source (e.g. ``SoundBible``), None takes all."""
    wanted = None
    if split is not None:
        wanted = next((s for s in WAVCAPS_SOURCES if s.lower() == split.lower()), None)
        if wanted is None:
            raise DatasetError(root, f"unknown wavcaps source {split!r} (use one of: {', '.join(WAVCAPS_SOURCES)})")
    files = _wavcaps_json_files(root, wanted)
    if not files:
        raise DatasetError(root, "no WavCaps JSON files found (expected e.g. json_files/SoundBible/sb_final.json)")
    audio: dict[tuple[str | None, str], list[Path]] = {}
    for stem, paths in _audio_files(root).items():
        for p in paths:
            # Files outside any source folder are filed under None and matched by stem alone.
            audio.setdefault((_wavcaps_source(p, root), stem), []).append(p)
    entries: list[_Entry] = []
    for source, path in files:
        for i, entry in enumerate(_wavcaps_entries(path)):
            where = f"data[{i}]"
            if not isinstance(entry, dict):
                raise DatasetError(path, f"expected an object, found {type(entry).__name__}", where=where)
            if "id" not in entry and "audio" not in entry:
                raise DatasetError(path, "entry has neither 'id' nor 'audio'", where=where)
            clip_id = str(entry.get("id", entry.get("audio")))
            audio_path = _wavcaps_audio(root, path, source, entry, audio)
            item = ClipItem(
                clip_id=f"{source}/{clip_id}", path=audio_path, captions=_wavcaps_captions(path, where, entry)
            )
            entries.append(_Entry(item, path, where, missing_hint=f"{audio_path} (id {clip_id!r}, source {source})"))
    return _finish("wavcaps", root, wanted, entries, check_files=check_files, skip_missing=skip_missing)


def _wavcaps_entries(path: Path) -> list[Any]:
    try:
        with path.open(encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"invalid JSON ({exc.msg})", where=f"line {exc.lineno}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"not UTF-8 text ({exc.reason})") from None
    data = doc.get("data") if isinstance(doc, dict) else doc  # early releases were a bare list
    if not isinstance(data, list):
        raise DatasetError(path, 'expected {"data": [...]} or a list of entries')
    return data


def _wavcaps_audio(
    root: Path,
    meta: Path,
    source: str,
    entry: dict[str, Any],
    audio: dict[tuple[str | None, str], list[Path]],
) -> Path:
    for key in ("audio", "wav_path"):
        value = entry.get(key)
        if isinstance(value, str) and value and value != _WAVCAPS_AUDIO_PLACEHOLDER:
            given = Path(value)
            if given.is_absolute():
                return given
            return next((p for p in (root / given, meta.parent / given) if p.is_file()), root / given)
    stems: list[str] = []
    for field_name in ("id", "file_name"):
        if field_name in entry:
            name = str(entry[field_name])
            stem, ext = os.path.splitext(name)
            stems.append(stem if ext.lower() in _audio_extensions() else name)
    for stem in stems:
        # A file in another source's folder is never taken: ids repeat across sources (FreeSound and
        # SoundBible both use small integers). Outside source folders only an unambiguous stem counts.
        in_source = audio.get((source, stem), [])
        unfiled = audio.get((None, stem), [])
        if in_source or len(unfiled) == 1:
            return (in_source or unfiled)[0]
    return root / source / f"{stems[0] if stems else 'unknown'}.flac"


# ------------------------------------------------------------------------------ user and synthetic data


def _split_labels(raw: str) -> tuple[str, ...]:
    return tuple(label.strip() for label in raw.split(";") if label.strip())


def load_caption_csv(
    root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """A user CSV ``path,caption[,labels]``; repeated paths collect several captions."""
    if split is not None:
        raise DatasetError(root, "a caption CSV has no splits")
    meta = root if root.is_file() else root / "captions.csv"
    captions: dict[str, list[str]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    first_row: dict[str, int] = {}
    for row, v in _read_csv(meta, ("path", "caption")):
        rel = _text(meta, row, v, "path")
        row_labels = _split_labels(v.get("labels", ""))
        if not v["caption"] and not row_labels:
            raise DatasetError(meta, "empty caption", row=row)
        first_row.setdefault(rel, row)
        if v["caption"]:
            captions.setdefault(rel, []).append(v["caption"])
        labels[rel] = tuple(dict.fromkeys(labels.get(rel, ()) + row_labels))
    entries = [
        _Entry(
            ClipItem(clip_id=rel, path=meta.parent / rel, captions=tuple(captions.get(rel, ())), labels=labels[rel]),
            meta,
            f"row {row}",
        )
        for rel, row in first_row.items()
    ]
    return _finish("csv", meta.parent, None, entries, check_files=check_files, skip_missing=skip_missing)


def load_synth(
    root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """The project's synthetic library (``metadata.csv`` written by ``evaluation.synth``)."""
    if split is not None:
        raise DatasetError(root, "the synthetic library has no splits")
    meta = root / "metadata.csv"
    entries: list[_Entry] = []
    for row, v in _read_csv(meta, ("path", "classes", "caption_1")):
        rel = _text(meta, row, v, "path")
        caption_columns = sorted((c for c in v if c.startswith("caption_")), key=lambda c: int(c.split("_")[1]))
        texts = tuple(v[c] for c in caption_columns if v[c])
        if not texts:
            raise DatasetError(meta, "no caption (caption_1.. are all empty)", row=row)
        for column in ("events", "params"):
            if v.get(column):
                try:
                    json.loads(v[column])
                except json.JSONDecodeError as exc:
                    raise DatasetError(meta, f"{column} is not valid JSON ({exc.msg})", row=row) from None
        item = ClipItem(clip_id=rel, path=root / rel, captions=texts, labels=_split_labels(v["classes"]))
        entries.append(_Entry(item, meta, f"row {row}"))
    return _finish("synth", root, None, entries, check_files=check_files, skip_missing=skip_missing)


# ------------------------------------------------------------------------------------------- registry

Loader = Callable[..., Dataset]

LOADERS: dict[str, Loader] = {
    "esc50": load_esc50,
    "urbansound8k": load_urbansound8k,
    "audiocaps": load_audiocaps,
    "clotho": load_clotho,
    "wavcaps": load_wavcaps,
    "csv": load_caption_csv,
    "synth": load_synth,
}
_ALIASES = {"esc-50": "esc50", "us8k": "urbansound8k", "urbansound": "urbansound8k"}
DATASET_KINDS: tuple[str, ...] = tuple(LOADERS)


def load_dataset(
    kind: str, root: Path, split: str | None = None, *, check_files: bool = True, skip_missing: bool = False
) -> Dataset:
    """Load a dataset by kind (one of `DATASET_KINDS`) from `root`.

    `check_files` verifies that every clip's audio exists; `skip_missing` then drops clips without
    audio (partial AudioCaps downloads are common) instead of failing, counting them in `n_missing`.
    """
    name = _ALIASES.get(kind.lower(), kind.lower())
    if name not in LOADERS:
        raise DatasetError(root, f"unknown dataset kind {kind!r} (use one of: {', '.join(DATASET_KINDS)})")
    root = Path(root)
    if not root.exists():
        raise DatasetError(root, "dataset root not found")
    return LOADERS[name](root, split, check_files=check_files, skip_missing=skip_missing)
