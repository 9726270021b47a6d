"""Audio + caption pairs for training, from any source the evaluation loaders read, or from file names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.datasets import DatasetError, load_dataset
from indexer.audio import is_supported
from indexer.metadata import parse_ucs, words
from indexer.scan import walk_audio


@dataclass(frozen=True)
class Pair:
    path: Path
    captions: tuple[str, ...]
    # Clips with the same (non-empty) class set are treated as positives of each other in the loss.
    classes: tuple[str, ...] = ()
    # Labels naming the clip's main sound. Each is also trained on as a short caption of its own that
    # counts as a positive for every clip carrying it (CLAP's keyword-to-caption), which is what ties
    # bare label names, as zero-shot prompts use them, to the audio.
    keywords: tuple[str, ...] = ()


def load_pairs(data: str, *, captions_from_filenames: bool = False) -> list[Pair]:
    """`data` is a synthetic library folder (metadata.csv), a `path,caption` CSV, `KIND:ROOT` for a
    dataset loader (clotho, audiocaps, wavcaps, ...), or, with `captions_from_filenames`, any folder
    of audio files whose names and folders become the captions."""
    if captions_from_filenames:
        return _pairs_from_filenames(Path(data))
    path = Path(data)
    if ":" in data and not path.exists():
        kind, root = data.split(":", 1)
        dataset = load_dataset(kind, Path(root))
    elif path.is_dir():
        if not (path / "metadata.csv").is_file():
            raise DatasetError(
                path, "no metadata.csv here: use KIND:ROOT, a path,caption CSV, or --captions-from-filenames"
            )
        dataset = load_dataset("synth", path)
    elif path.suffix.lower() == ".csv":
        dataset = load_dataset("csv", path)
    else:
        raise DatasetError(path, "not found: give a folder, a CSV file or KIND:ROOT")
    # The synthetic library lists the foreground class first and the background sources after it: only
    # the foreground names the clip. Other datasets' labels all describe it.
    main = 1 if dataset.kind == "synth" else None
    pairs = [
        Pair(item.path, tuple(item.captions), tuple(sorted(item.labels)), tuple(item.labels[:main]))
        for item in dataset.items
    ]
    if not pairs:
        raise DatasetError(path, "no audio with captions found")
    return pairs


def caption_from_name(path: Path, root: Path) -> str:
    """ "DOOR_WoodCreakSlow_ME_01.wav" in "Foley/Doors" → "wood creak slow door, foley doors" """
    ucs = parse_ucs(path.stem)
    name_words = words(ucs.fx_name) if ucs else [w for w in words(path.stem) if not w.isdigit()]
    folder_words = [w for part in path.parent.relative_to(root).parts for w in words(part)]
    text = " ".join(name_words) or path.stem
    return f"{text}, {' '.join(folder_words)}" if folder_words else text


def _pairs_from_filenames(root: Path) -> list[Pair]:
    if not root.is_dir():
        raise DatasetError(root, "not a folder")
    found, _ = walk_audio(root, confine_to=None)
    pairs = [Pair(Path(f.path), (caption_from_name(Path(f.path), root),)) for f in found if is_supported(f.path)]
    if not pairs:
        raise DatasetError(root, "no audio files found")
    return pairs
