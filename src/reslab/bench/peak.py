"""The machine's measured floating-point peak: large fp32 matrix products (FMA-bound)."""

from __future__ import annotations

import time

import torch


def measure_gemm_peak(device: torch.device | str = "cpu", size: int = 4096, repeats: int = 10) -> float:
    """Best GFLOP/s of ``size``-square fp32 matrix products: the practical FMA peak of this device."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
