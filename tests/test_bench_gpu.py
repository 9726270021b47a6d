"""The GPU benchmark runs end to end at small sizes on whatever device is here, so it is ready when a GPU is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_gpu_benchmark_runs_and_its_search_is_exact(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--clips", "6", "--bare-windows", "4", "--vectors", "30000", "--rounds", "2"]
    subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gpu", *args, "--batches", "1,8", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = json.loads(out.read_text())
    assert result["encoder"]["windows_per_s"] > 0
    assert result["indexing"]["failed"] == 0 and result["indexing"]["clips"] == 6
    assert result["indexing"]["windows_per_s"] > 0
    assert result["search"]["recall_at_10_vs_faiss"] == 1.0
    assert result["search"]["batch1_qps"] > 0 and result["search"]["batch8_qps"] > 0
