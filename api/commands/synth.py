"""`soundsearch synth OUT_DIR`: write a procedurally generated sound library with captions and ground truth.

    soundsearch synth out/synth --n 2000 --seed 0

writes the audio (WAV/FLAC/OGG/MP3, 16-48 kHz, mono/stereo, 1-30 s, 27 classes, modifiers and mixtures) in
nested folders, ``metadata.csv`` (classes, five captions, events, parameters), ``dataset/test.csv`` in the
AudioCaps format and ``clotho_captions_evaluation.csv`` in the Clotho format. The same seed always writes
the same bytes; clip i does not depend on --n.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic sound library with captions (for evaluation and training)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write the library into")
    parser.add_argument("--n", type=int, default=2000, help="number of clips (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--max-duration", type=float, default=None, metavar="SECONDS", help="cap clip lengths (quick libraries)"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes rendering clips (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of a line of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `soundsearch --help` does not pay for numpy/scipy/soundfile imports.
    from evaluation.synth import generate_library

    summary = generate_library(
        args.out_dir,
        args.n,
        args.seed,
        max_duration_s=args.max_duration,
        workers=args.workers,
        progress=False if args.no_progress else None,
    )
    if args.json:
        report = {
            "out_dir": str(summary.out_dir),
            "clips": summary.clips,
            "audio_s": summary.audio_s,
            "elapsed_s": round(summary.elapsed_s, 2),
            "clips_per_s": round(summary.clips / summary.elapsed_s, 2),
            "class_counts": summary.class_counts,
            "metadata_csv": str(summary.metadata_csv),
            "audiocaps_csv": str(summary.audiocaps_csv),
            "clotho_csv": str(summary.clotho_csv),
        }
        print(json.dumps(report, indent=2))
    else:
        print(
            f"wrote {summary.clips} clips ({summary.audio_s / 60:.1f} min of audio, "
            f"{len(summary.class_counts)} classes) to {summary.out_dir} in {summary.elapsed_s:.1f} s; "
            f"ground truth in {summary.metadata_csv.name}"
        )
    return 0
