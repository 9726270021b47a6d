"""Audio-embedding throughput of an HTSAT-tiny-sized CLAP (random weights) on this machine.

Reports 10-second clips per second for batch sizes 1, 2, 4, 8 and 16, split into our torch log-mel
front end and the model, and compares the front end with `ClapFeatureExtractor` (the naive path).
The indexer's throughput target is measured against these numbers.

Run: .venv/bin/python -m benchmarks.bench_encoder [--clips 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks._common import machine
from indexer.encoders.clap import ClapEncoder, MelFrontend
from indexer.encoders.tiny import byte_level_tokenizer


def htsat_tiny_encoder(batch_size: int) -> ClapEncoder:
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(0)
    model = ClapModel(ClapConfig())  # defaults: HTSAT-tiny audio tower, RoBERTa-base text tower
    return ClapEncoder(
        model,
        byte_level_tokenizer(),
        model_id="htsat-tiny-random",
        frontend=MelFrontend(),
        batch_size=batch_size,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=32)
    args = parser.parse_args()
    from transformers import ClapFeatureExtractor

    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(480_000)).astype(np.float32) for _ in range(args.clips)]
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print("| batch | clips/s (front end + model) | front end only, clips/s |")
    print("|---|---|---|")
    for batch in (1, 2, 4, 8, 16):
        enc = htsat_tiny_encoder(batch)
        enc.embed_windows(clips[:batch])  # warm-up
        t0 = time.perf_counter()
        enc.embed_windows(clips)
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(clips), batch):
            enc.audio_features(clips[i : i + batch])
        front = time.perf_counter() - t0
        print(f"| {batch} | {len(clips) / total:.2f} | {len(clips) / front:.0f} |")
    fe = ClapFeatureExtractor(truncation="rand_trunc")
    t0 = time.perf_counter()
    fe(clips, sampling_rate=48_000, return_tensors="pt")
    print(f"\nClapFeatureExtractor (numpy) front end: {len(clips) / (time.perf_counter() - t0):.0f} clips/s")


if __name__ == "__main__":
    main()
