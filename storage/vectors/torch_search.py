"""Exact inner-product search with torch: the GPU path when FAISS cannot use the GPU.

The PyPI `faiss-gpu-cu12` wheels carry no kernels for Hopper (H100/H200), and `faiss-cpu` has no GPU
support at all. On such machines exact search runs on the GPU with torch: the vectors live on the device
in bf16 (fp16 where bf16 is missing), a query batch is one matmul plus `topk`, in row chunks whenever
the vectors (or the score matrix) do not fit the device's free memory (then chunks stream from pinned
host memory). Reduced-precision scores can reorder near-ties, so the top `k + margin` candidates are
re-scored in fp32 from the host copy: the ids and scores equal FAISS's `IndexFlatIP` (ties aside).

On CPU tensors the same code runs in fp32; the tests compare it with FAISS exact search.
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.settings import settings
from indexer.types import FloatArray
from storage.vectors.base import IdArray, empty_result, faiss

# Extra candidates re-scored in fp32 after a reduced-precision pass.
RESCORE_MARGIN = 32
# Fraction of free device memory the resident vectors may take.
DEVICE_MEMORY_SHARE = 0.6


def faiss_gpu_usable() -> bool:
    """FAISS has GPU support and kernels for this GPU (the PyPI cu12 wheels lack Hopper, sm_90)."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return False
    if settings().faiss_gpu:  # a faiss built for this GPU (conda, source)
        return True
    return torch.cuda.is_available() and torch.cuda.get_device_capability(0)[0] < 9


def choose_backend(device: str = "auto") -> str | None:
    """ "faiss-gpu", "torch" or None (FAISS on the CPU) for `device` ("auto", "cuda[:n]", "cpu")."""
    if device == "cpu":
        return "torch"  # explicitly asked: torch on CPU tensors
    if device == "auto" and not torch.cuda.is_available():
        return None
    if faiss_gpu_usable():
        return "faiss-gpu"
    return "torch" if torch.cuda.is_available() else None


def torch_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def reduced_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class TorchExactSearch:
    """Exact top-k by inner product over `vectors` (rows labelled by `ids`)."""

    def __init__(
        self,
        vectors: FloatArray,
        ids: IdArray,
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        self.host = np.ascontiguousarray(vectors, dtype=np.float32)
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(self.host) != len(self.ids):
            raise ValueError(f"{len(self.host)} vectors but {len(self.ids)} ids")
        self.device = torch.device(device or torch_device())
        self.dtype = dtype or reduced_dtype(self.device)
        self.dim = self.host.shape[1] if self.host.ndim == 2 else 0
        itemsize = torch.finfo(self.dtype).bits // 8
        total = self.host.nbytes // 4 * itemsize
        self.resident = self.device.type == "cpu" or total <= DEVICE_MEMORY_SHARE * _free_bytes(self.device)
        self.chunk_rows = chunk_rows or (1 << 20 if self.resident else 1 << 18)
        host = torch.from_numpy(self.host)
        if self.resident:
            self.vectors = host.to(self.device, self.dtype) if self.dtype != torch.float32 else host.to(self.device)
        else:  # streamed chunk by chunk from pinned host memory
            self.vectors = host.to(self.dtype).pin_memory()
        self._position = {int(i): p for p, i in enumerate(self.ids)} if len(self.ids) < 5_000_000 else None

    def search(self, queries: FloatArray, k: int, allowed_ids: IdArray | None = None) -> tuple[FloatArray, IdArray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        nq, k = len(queries), max(1, k)
        rows: np.ndarray | None = None
        if allowed_ids is not None:
            rows = self._rows_of(np.asarray(allowed_ids, dtype=np.int64))
        n = len(self.ids) if rows is None else len(rows)
        out_s, out_i = empty_result(nq, k)
        if n == 0 or nq == 0:
            return out_s, out_i
        reduced = self.dtype != torch.float32
        fetch = min(n, k + RESCORE_MARGIN if reduced else k)
        q = torch.from_numpy(queries).to(self.device, self.dtype)
        best_s: torch.Tensor | None = None
        best_p: torch.Tensor | None = None
        with torch.inference_mode():
            for start in range(0, n, self.chunk_rows):
                stop = min(n, start + self.chunk_rows)
                if rows is None:
                    block = self.vectors[start:stop]
                    positions = torch.arange(start, stop, device=self.device)
                else:
                    sel = torch.from_numpy(rows[start:stop])
                    block = self.vectors[sel.to(self.vectors.device)]
                    positions = sel.to(self.device)
                block = block.to(self.device, non_blocking=True)
                scores = q @ block.T
                top_s, top_j = torch.topk(scores.float(), min(fetch, stop - start), dim=1)
                top_p = positions[top_j]
                if best_s is None:
                    best_s, best_p = top_s, top_p
                else:
                    assert best_p is not None
                    merged_s = torch.cat([best_s, top_s], dim=1)
                    merged_p = torch.cat([best_p, top_p], dim=1)
                    best_s, order = torch.topk(merged_s, min(fetch, merged_s.shape[1]), dim=1)
                    best_p = torch.gather(merged_p, 1, order)
        assert best_s is not None and best_p is not None
        cand: np.ndarray = best_p.cpu().numpy()
        cand_s: np.ndarray = best_s.cpu().numpy()
        if reduced:  # re-score the candidates exactly (fp32, host copy) and re-rank
            cand_s = np.einsum("qd,qcd->qc", queries, self.host[cand])
        rank = np.lexsort((cand, -cand_s), axis=1)[:, :k]
        top = min(k, cand.shape[1])
        out_s[:, :top] = np.take_along_axis(cand_s, rank, axis=1)[:, :top]
        out_i[:, :top] = self.ids[np.take_along_axis(cand, rank, axis=1)[:, :top]]
        return out_s, out_i

    def _rows_of(self, allowed: IdArray) -> np.ndarray:
        if self._position is not None:
            rows = [self._position.get(int(i), -1) for i in np.unique(allowed)]
            arr = np.array(rows, dtype=np.int64)
            return np.sort(arr[arr >= 0])
        return np.nonzero(np.isin(self.ids, allowed))[0].astype(np.int64)


def _free_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return 1 << 62
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)
