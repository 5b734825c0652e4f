"""The machine's measured fp32 peak: the best of several large matrix products (FMA-bound), each run
through a different library, since none is fastest everywhere. torch's ``mm`` goes to its BLAS (MKL
on x86, which may take a narrower code path on AMD CPUs), a 1x1 convolution to oneDNN, and ONNX
Runtime's ``MatMul`` to its own MLAS kernels; the peak is the fastest of them, and says which it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..hardware import onnxruntime_providers
from ..timing import timed_calls


@dataclass(frozen=True)
class GemmPeak:
    gflops: float
    kernel: str  # the product that reached it
    kernels: dict[str, float]  # GFLOP/s of each product measured

    def describe(self) -> str:
        return f"{self.gflops:.1f} GFLOP/s ({self.kernel}, the fastest of {len(self.kernels)} fp32 products)"


def _best_gflops(run: Callable[[], object], flop: float) -> float:
    """GFLOP/s of the fastest of the calls made in about 0.6 s (at least three), after one warm-up."""
    return flop / min(timed_calls(run, seconds=0.6, min_calls=3, warmup=0.0)) / 1e9


def _onnxruntime_matmul(n: int) -> Callable[[], object]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {k: rng.standard_normal((n, n), dtype=np.float32) for k in "ab"}
    return lambda: session.run(None, feed)


def measure_gemm_peak() -> GemmPeak:
    """The best GFLOP/s of fp32 matrix products on this CPU: the practical FMA peak it is compared to."""
    kernels: dict[str, float] = {}
    for n in (1024, 2048):
        a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        kernels[f"torch.mm {n}x{n}"] = _best_gflops(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), 2 * n**3)
    # a 1x1 convolution over 64x64 pixels, 1024 -> 1024 channels: a (4096 x 1024) x (1024 x 1024) product
    x = torch.randn(1, 1024, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        kernels["oneDNN 1x1 convolution 4096x1024x1024"] = _best_gflops(lambda: F.conv2d(x, w), 2 * 4096 * 1024**2)
    if "CPUExecutionProvider" in onnxruntime_providers():
        kernels["ONNX Runtime MatMul 2048x2048"] = _best_gflops(_onnxruntime_matmul(2048), 2 * 2048**3)
    best = max(kernels, key=kernels.__getitem__)
    return GemmPeak(kernels[best], best, kernels)


def best_peak(*peaks: GemmPeak) -> GemmPeak:
    """A shared machine's clock drifts: the peak is the best of measurements spread over a benchmark."""
    return max(peaks, key=lambda p: p.gflops)
