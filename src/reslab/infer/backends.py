"""Inference backends: one ``run(batch) -> logits`` over every format reslab writes.

A backend takes a normalised float32 NCHW batch (NumPy) and returns float32 logits. Which
backends can read which file is decided by the file's suffix:

========================  ====================================
``.safetensors``           torch, onnxruntime, openvino
``.onnx`` (fp32 or INT8)   onnxruntime, openvino
``.xml`` (OpenVINO IR)     openvino
``.torchscript``, ``.pt2`` torch
========================  ====================================

Each runs in one precision (``precision``): fp32, bf16 (torch by autocast, OpenVINO by its precision
hint) or int8 (a quantised ONNX graph). Which runtime and precision to open is chosen in ``selection``.

Devices are given as strings (``cpu``, ``cuda:0``). torch is imported only to run torch, or to load a model
file whose ONNX graph is not cached yet: ONNX Runtime and OpenVINO deployments run without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..atomic import atomic_path
from ..formats import model_format, read_info
from ..hardware import (
    autocast_dtype,
    bf16_refusal,
    memory_format,
    onednn_bf16_refusal,
    onnxruntime_providers,
    openvino_capabilities,
    openvino_config,
    openvino_core,
    use_exact_fp32,
)
from ..modelfile import ModelInfo
from ..paths import cache_root, file_digest
from .memory import runtime_version

if TYPE_CHECKING:
    from torch import nn

BACKENDS = ("torch", "onnxruntime", "openvino")


class Backend(Protocol):
    name: str
    precision: str  # fp32 | bf16 | int8

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def available_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


SUPPORTED = {
    "reslab": ("torch", "onnxruntime", "openvino"),
    "onnx": ("onnxruntime", "openvino"),
    "openvino": ("openvino",),
    "torchscript": ("torch",),
    "pt2": ("torch",),
}


def choose_backend(path: Path, requested: str, device: str) -> list[str]:
    """The backend asked for, checked; for ``auto``, the installed candidates (to be timed); on a
    GPU, torch."""
    fmt = model_format(path)
    usable = [b for b in SUPPORTED[fmt] if b in available_backends()]
    if requested == "auto":
        if device != "cpu" and "torch" in usable:
            return ["torch"]
        return usable
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose auto, {', '.join(BACKENDS)}")
    if requested not in SUPPORTED[fmt]:
        raise ValueError(f"{path}: the {requested} backend cannot run a {fmt} file; it runs with "
                         f"{' or '.join(SUPPORTED[fmt])}")
    if requested not in usable:
        extra = "torch" if requested == "torch" else "deploy"
        raise ValueError(f"backend {requested!r} is not installed (pip install 'reslab[{extra}]')")
    return [requested]


class TorchBackend:
    """Eager (or scripted / exported) PyTorch, channels_last, under inference mode; bf16 by autocast."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str, channels_last: bool = True, precision: str = "fp32") -> None:
        import torch

        self.device = device
        self._device = torch.device(device)
        self.channels_last = channels_last
        self.model = model
        self.precision = precision
        self.autocast_dtype = autocast_dtype(self._device)
        if precision == "fp32":
            use_exact_fp32(self._device)

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._device)
            x = x.contiguous(memory_format=memory_format(self.channels_last, x.dim()))  # images or clips
            with torch.autocast(self._device.type, dtype=self.autocast_dtype, enabled=self.precision == "bf16"):
                return self.model(x).float().cpu().numpy()


class OnnxRuntimeBackend:
    """ONNX Runtime: fp32, or int8 for a quantised graph (its CPU provider has no bf16 kernels)."""

    name = "onnxruntime"

    def __init__(self, model: str | bytes, threads: int | None = None, device: str = "cpu",
                 precision: str = "fp32") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(model, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.precision = precision
        self.device = device if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class OpenVinoBackend:
    """OpenVINO's CPU plugin, told the precision explicitly (it would run fp32 models in bf16 by
    default where bf16 is native)."""

    name = "openvino"

    def __init__(self, model_path: str, threads: int | None = None, precision: str = "fp32") -> None:
        core = openvino_core()
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", **openvino_config(precision)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision = precision
        self.device = "cpu"

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(result[self.compiled.outputs[0]])


def precision_refusal(backend: str, precision: str, device: str) -> str | None:
    """Why ``backend`` cannot run ``precision`` here, or None. int8 comes from a quantised file."""
    if precision != "bf16":
        return None
    if backend == "onnxruntime":
        return "ONNX Runtime's CPU provider has no bf16 kernels (use the openvino or torch backend)"
    if backend == "openvino":
        if "BF16" not in openvino_capabilities():
            return "OpenVINO reports no BF16 capability on this CPU"
        return onednn_bf16_refusal()
    import torch

    return bf16_refusal(torch.device(device))


Key = tuple[str, str]  # (backend, precision)


def open_backends(path: Path, keys: list[Key], device: str, threads: int | None, channels_last: bool,
                  info: ModelInfo | None = None) -> tuple[dict[Key, Backend], ModelInfo]:
    """Each (backend, precision) over the file at ``path``; a model file is loaded (and exported) once.
    ``info``: the file's metadata where the caller has read it already."""
    fmt = model_format(path)
    if fmt in ("torchscript", "pt2"):
        from ..formats.archives import load_archive  # torch: ONNX and OpenVINO serve without it

        module, info = load_archive(path, fmt)
        # an exported program keeps the layout it was traced with: feed it plain NCHW
        return {k: TorchBackend(module.to(device), device, channels_last=False, precision=k[1]) for k in keys}, info
    if fmt == "reslab":
        onnx_keys = [k for k in keys if k[0] != "torch"]
        graph = cached_onnx(path)
        if len(onnx_keys) == len(keys) and graph.is_file():  # its ONNX graph is there: no torch needed
            return _onnx_backends(str(graph), keys, threads, device), info or read_info(path)

        from ..models import load_model_file, weight_rank  # torch: ONNX and OpenVINO serve without it

        model, info = load_model_file(path, device)
        # ONNX Runtime and OpenVINO run the model's ONNX graph, exported once per file and torch version
        opened = _onnx_backends(str(_export_onnx(graph, model, info)), onnx_keys, threads, device) if onnx_keys else {}
        model = model.to(device, memory_format=memory_format(channels_last, weight_rank(model)))
        opened.update({k: TorchBackend(model, device, channels_last, k[1]) for k in keys if k[0] == "torch"})
        return opened, info
    return _onnx_backends(str(path), keys, threads, device), info or read_info(path)


def cached_onnx(path: Path) -> Path:
    """Where the model file's ONNX graph is kept: by file content and the torch version that exports it."""
    return cache_root() / "onnx" / f"{file_digest(path)}-torch{runtime_version('torch')}.onnx"


def _export_onnx(cached: Path, model: nn.Module, info: ModelInfo) -> Path:
    if not cached.is_file():
        from ..formats.onnx import to_onnx_proto  # onnx comes with the deploy extra

        graph = to_onnx_proto(model.cpu(), info).SerializeToString()
        with atomic_path(cached) as tmp:
            tmp.write_bytes(graph)
    return cached


def _onnx_backends(path: str, keys: list[Key], threads: int | None, device: str) -> dict[Key, Backend]:
    """ONNX Runtime and/or OpenVINO over an ONNX file or an OpenVINO IR."""
    return {key: OnnxRuntimeBackend(path, threads, device, key[1]) if key[0] == "onnxruntime"
            else OpenVinoBackend(path, threads, key[1]) for key in keys}
