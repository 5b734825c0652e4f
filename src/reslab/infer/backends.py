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
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..formats import model_format, read_info
from ..formats.archives import load_archive
from ..hardware import autocast_dtype, bf16_refusal, openvino_capabilities, openvino_config, use_exact_fp32
from ..modelfile import ModelInfo
from ..models import load_model_file
from ..paths import cache_root, file_digest

BACKENDS = ("torch", "onnxruntime", "openvino")


class Backend(Protocol):
    name: str
    precision: str  # fp32 | bf16 | int8

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def available_backends() -> list[str]:
    return ["torch"] + [b for b in BACKENDS[1:] if importlib.util.find_spec(b) is not None]


SUPPORTED = {
    "reslab": ("torch", "onnxruntime", "openvino"),
    "onnx": ("onnxruntime", "openvino"),
    "openvino": ("openvino",),
    "torchscript": ("torch",),
    "pt2": ("torch",),
}


def choose_backend(path: Path, requested: str, device: torch.device) -> list[str]:
    """The backend asked for, checked; for ``auto``, the installed candidates (to be timed); on a
    GPU, torch."""
    fmt = model_format(path)
    usable = [b for b in SUPPORTED[fmt] if b in available_backends()]
    if requested == "auto":
        if device.type != "cpu" and "torch" in usable:
            return ["torch"]
        return usable
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose auto, {', '.join(BACKENDS)}")
    if requested not in SUPPORTED[fmt]:
        raise ValueError(f"{path}: the {requested} backend cannot run a {fmt} file; it runs with "
                         f"{' or '.join(SUPPORTED[fmt])}")
    if requested not in usable:
        raise ValueError(f"backend {requested!r} is not installed (pip install 'reslab[deploy]')")
    return [requested]


class TorchBackend:
    """Eager (or scripted / exported) PyTorch, channels_last, under inference mode; bf16 by autocast."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, channels_last: bool = True,
                 precision: str = "fp32") -> None:
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model
        self.precision = precision
        if precision == "fp32":
            use_exact_fp32(device)

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=autocast_dtype(self.device), enabled=self.precision == "bf16"):
            return self.model(x).float().cpu().numpy()


class OnnxRuntimeBackend:
    """ONNX Runtime: fp32, or int8 for a quantised graph (its CPU provider has no bf16 kernels)."""

    name = "onnxruntime"

    def __init__(self, model: str | bytes, threads: int | None = None, device: torch.device | None = None,
                 precision: str = "fp32") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(model, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.precision = precision

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class OpenVinoBackend:
    """OpenVINO's CPU plugin, told the precision explicitly (it would run fp32 models in bf16 by
    default where bf16 is native)."""

    name = "openvino"

    def __init__(self, model_path: str, threads: int | None = None, precision: str = "fp32") -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", **openvino_config(precision)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision = precision

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(result[self.compiled.outputs[0]])


def precision_refusal(backend: str, precision: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run ``precision`` here, or None. int8 comes from a quantised file."""
    if precision != "bf16":
        return None
    if backend == "onnxruntime":
        return "ONNX Runtime's CPU provider has no bf16 kernels (use the openvino or torch backend)"
    if backend == "openvino" and "BF16" not in openvino_capabilities():
        return "OpenVINO reports no BF16 capability on this CPU"
    return bf16_refusal(device if backend == "torch" else torch.device("cpu"))


Key = tuple[str, str]  # (backend, precision)


def open_backends(path: Path, keys: list[Key], device: torch.device, threads: int | None,
                  channels_last: bool) -> tuple[dict[Key, Backend], ModelInfo]:
    """Each (backend, precision) over the file at ``path``; a model file is loaded (and exported) once."""
    fmt = model_format(path)
    if fmt in ("torchscript", "pt2"):
        module, info = load_archive(path, fmt)
        # an exported program keeps the layout it was traced with: feed it plain NCHW
        return {k: TorchBackend(module.to(device), device, channels_last=False, precision=k[1]) for k in keys}, info
    if fmt == "reslab":
        model, info = load_model_file(path, device)
        onnx_keys = [k for k in keys if k[0] != "torch"]
        # ONNX Runtime and OpenVINO run the model's ONNX graph, built in memory once
        opened = _onnx_backends(str(_onnx_file(path, model, info)), onnx_keys, threads, device) if onnx_keys else {}
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(device, memory_format=layout)
        opened.update({k: TorchBackend(model, device, channels_last, k[1]) for k in keys if k[0] == "torch"})
        return opened, info
    return _onnx_backends(str(path), keys, threads, device), read_info(path)


def _onnx_file(path: Path, model: nn.Module, info: ModelInfo) -> Path:
    """The model file's ONNX graph, exported once per file content and torch version, then reused."""
    cached = cache_root() / "onnx" / f"{file_digest(path)}-torch{torch.__version__}.onnx"
    if not cached.is_file():
        from ..formats.onnx import to_onnx_proto  # onnx comes with the deploy extra

        graph = to_onnx_proto(model.cpu(), info).SerializeToString()
        with atomic_path(cached) as tmp:
            tmp.write_bytes(graph)
    return cached


def _onnx_backends(path: str, keys: list[Key], threads: int | None, device: torch.device) -> dict[Key, Backend]:
    """ONNX Runtime and/or OpenVINO over an ONNX file or an OpenVINO IR."""
    return {key: OnnxRuntimeBackend(path, threads, device, key[1]) if key[0] == "onnxruntime"
            else OpenVinoBackend(path, threads, key[1]) for key in keys}
