"""Audio + caption pairs for training, from any source the evaluation loaders read, or from file names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.datasets import DatasetError, load_dataset
from indexer.audio import probe
from indexer.errors import AudioDecodeError
from indexer.formats import is_supported
from indexer.metadata import read_embedded_text
from indexer.scan import walk_audio
from training.captions import weak_captions


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


def load_pairs(data: str, *, captions_from_metadata: bool = False) -> list[Pair]:
    """`data` is a synthetic library folder (metadata.csv), a `path,caption` CSV, `KIND:ROOT` for a
    dataset loader (clotho, audiocaps, wavcaps, ...), or, with `captions_from_metadata`, any folder
    of audio files whose names, folders and embedded tags become weak captions (`training.captions`)."""
    if captions_from_metadata:
        return _pairs_from_metadata(Path(data))
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


def _pairs_from_metadata(root: Path) -> list[Pair]:
    """Files that decode and have at least one informative caption; takes of one sound (same name up to
    numbering, same folder) are each other's positives, and files named alike share the name as keyword."""
    if not root.is_dir():
        raise DatasetError(root, "not a folder")
    found, _ = walk_audio(root, confine_to=None)
    pairs = []
    for f in found:
        path = Path(f.path)
        if not is_supported(f.path):
            continue
        try:
            probe(path)
        except AudioDecodeError:
            continue  # one unreadable file does not stop training
        weak = weak_captions(path, root, read_embedded_text(path))
        if weak.captions:
            pairs.append(Pair(path, weak.captions, (weak.family,), (weak.keyword,) if weak.keyword else ()))
    if not pairs:
        raise DatasetError(root, "no audio files with informative names or tags found")
    return pairs
