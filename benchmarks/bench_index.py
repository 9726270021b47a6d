"""Indexing throughput: the pipeline vs the naive per-file loop vs the bare encoder, in one run.

Library: N files of mixed formats (WAV/FLAC/OGG/MP3, 22.05-48 kHz, mono/stereo), mostly 0.5-10 s with
one in ten 10-30 s long. Model: an HTSAT-tiny-sized `ClapModel` with random weights, saved to disk and
loaded by both paths. The naive loop is what a user would write: for each file, load at 48 kHz
(soundfile + torchaudio resample), `ClapProcessor`, `get_audio_features`, append to a list.
The bare encoder embeds the very windows the pipeline embeds, already decoded and resampled in memory.

Also: a re-scan of an unchanged library of tiny files (decodes and hashes nothing).

Run: .venv/bin/python -m benchmarks.bench_index [--files 200] [--rounds 2] [--rescan-files 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks._common import machine
from indexer import load_encoder
from indexer.audio import load_audio
from indexer.encoders.clap import ClapEncoder
from indexer.pipeline import IndexOptions, index_paths
from indexer.windows import split_windows
from storage.catalog import Catalog

FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", None)]


def write_library(root: Path, n: int) -> list[Path]:
    gen = np.random.default_rng(0)
    paths = []
    for i in range(n):
        ext, fmt, subtype = FORMATS[i % 4]
        seconds = gen.uniform(10, 30) if i % 10 == 9 else gen.uniform(0.5, 10)
        sr = (44_100, 48_000, 22_050)[i % 3]
        t = np.arange(int(seconds * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * gen.uniform(100, 3000) * t) * np.exp(-t * gen.uniform(0, 1))
        data = np.stack([x, x], axis=1) if i % 2 else x
        path = root / f"folder{i % 7}" / f"sound{i:04d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(
            path, (data + 0.01 * gen.standard_normal(data.shape)).astype(np.float32), sr, format=fmt, subtype=subtype
        )
        paths.append(path)
    return paths


def save_htsat_tiny(out: Path) -> Path:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    from indexer.encoders.tiny import byte_level_tokenizer

    torch.manual_seed(0)
    ClapModel(ClapConfig()).save_pretrained(out)
    byte_level_tokenizer().save_pretrained(out)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(out)
    return out


def naive_loop(model_dir: Path, paths: list[Path]) -> tuple[float, dict[Path, np.ndarray]]:
    from transformers import ClapModel, ClapProcessor

    processor = ClapProcessor.from_pretrained(model_dir)
    model = ClapModel.from_pretrained(model_dir).eval()
    out: dict[Path, np.ndarray] = {}
    t0 = time.perf_counter()
    for p in paths:
        data, sr = sf.read(p, dtype="float32", always_2d=True)
        audio = torch.from_numpy(data.mean(axis=1))
        import torchaudio

        audio = torchaudio.functional.resample(audio, sr, 48_000)
        inputs = processor(audio=audio.numpy(), sampling_rate=48_000, return_tensors="pt")
        with torch.inference_mode():
            out[p] = model.get_audio_features(**inputs).pooler_output[0].numpy()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rescan-files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each path keeps its best")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        paths = write_library(tmp / "lib", args.files)
        model_dir = save_htsat_tiny(tmp / "model")
        encoder = load_encoder(str(model_dir))
        assert isinstance(encoder, ClapEncoder)

        # Bare encoder on the pipeline's own windows, decoded beforehand.
        windows = [
            w.samples for p in paths for w in split_windows(load_audio(p, 48_000).samples, 48_000, encoder.windows)
        ]

        def bare() -> float:
            t0 = time.perf_counter()
            encoder.embed_audio(windows)
            return time.perf_counter() - t0

        def pipeline(workers: int, run: int) -> float:
            with Catalog.open(tmp / f"home-{workers}-{run}") as catalog:
                return index_paths(catalog, encoder, [tmp / "lib"], options=IndexOptions(workers=workers)).seconds

        # Rounds alternate the paths and each keeps its best: this machine's speed drifts by ±10 %
        # from minute to minute, which a single pass would credit to whichever path ran when.
        default = IndexOptions().workers_for("cpu")
        variants = (0, 1, 2)
        best: dict[str, float] = {}
        naive: dict[Path, np.ndarray] = {}
        for run in range(args.rounds):
            times = {"bare": bare(), **{f"w{w}": pipeline(w, run) for w in variants}}
            naive_s, naive = naive_loop(model_dir, paths)
            times["naive"] = naive_s
            best = {k: min(v, best.get(k, v)) for k, v in times.items()}
        with Catalog.open(tmp / f"home-{default}-0") as catalog:
            files = {f.path: f for f in catalog.files()}
            ours = {}
            for p in paths:
                segs = catalog.segments(files[p].id)
                if len(segs) == 1:
                    ours[p] = catalog.vectors([segs[0].id])[0]
        cos = [float(ours[p] @ naive[p] / np.linalg.norm(naive[p])) for p in ours]

        n_win = len(windows)
        print(f"\n{args.files} files, {n_win} windows, batch size {encoder.batch_size}, best of {args.rounds} rounds")
        print("| path | wall s | files/s | windows/s |")
        print("|---|---|---|---|")
        naive_rate = args.files / best["naive"]
        print(f"| naive loop (1 embedding per file) | {best['naive']:.1f} | {naive_rate:.2f} | {naive_rate:.2f} |")
        for w in variants:
            secs = best[f"w{w}"]
            label = "inline decoding" if w == 0 else f"{w} decoder thread{'s' if w > 1 else ''}"
            label += " (default on a CPU model)" if w == default else ""
            print(f"| soundsearch index, {label} | {secs:.1f} | {args.files / secs:.2f} | {n_win / secs:.2f} |")
        print(f"| bare embed_audio on decoded windows | {best['bare']:.1f} | - | {n_win / best['bare']:.2f} |")
        pipe_s = best[f"w{default}"]
        print(f"\npipeline (default) / naive (files/s): {best['naive'] / pipe_s:.2f}x")
        print(f"pipeline (default) / bare encoder (windows/s): {best['bare'] / pipe_s:.0%}")
        print(f"files <= 10 s: min cosine(pipeline, naive) = {min(cos):.6f} over {len(cos)} files")

        rescan(tmp, args.rescan_files)


def rescan(tmp: Path, n: int) -> None:
    lib = tmp / "tiny"
    for i in range(n):
        folder = lib / f"d{i % 100}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"t{i}.wav", np.zeros(64, dtype=np.float32), 8_000)
    encoder = load_encoder("tiny-random")
    with Catalog.open(tmp / "home-tiny") as catalog:
        first = index_paths(catalog, encoder, [lib])
        second = index_paths(catalog, encoder, [lib])
    print(
        f"\nre-scan of {n} unchanged files: {second.seconds * 1e3 / n:.3f} ms per file "
        f"({second.unchanged} unchanged; first indexing took {first.seconds:.0f} s)"
    )


if __name__ == "__main__":
    main()
