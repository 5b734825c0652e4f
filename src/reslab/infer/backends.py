"""Inference backends: one ``run(batch) -> logits`` over every format reslab writes.

A backend takes a normalised float32 NCHW batch (NumPy) and returns float32 logits. Which
backends can read which file is decided by the file's suffix:

========================  ====================================
``.safetensors``           torch, onnxruntime, openvino
``.onnx`` (fp32 or INT8)   onnxruntime, openvino
``.xml`` (OpenVINO IR)     openvino
``.torchscript``, ``.pt2`` torch
========================  ====================================
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..formats import model_format, read_info
from ..hardware import openvino_config
from ..formats.archives import load_archive
from ..formats.onnx import to_onnx_proto
from ..modelfile import ModelFileError, ModelInfo
from ..models import load_model_file

BACKENDS = ("torch", "onnxruntime", "openvino")


class Backend(Protocol):
    name: str

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


def choose_backend(path: Path, requested: str, device: torch.device) -> str | list[str]:
    """The backend asked for, checked; for ``auto``, the installed candidates (to be timed)."""
    fmt = model_format(path)
    usable = [b for b in SUPPORTED[fmt] if b in available_backends()]
    if requested == "auto":
        if device.type != "cpu" and "torch" in usable:
            return "torch"
        return usable[0] if len(usable) == 1 else usable
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose auto, {', '.join(BACKENDS)}")
    if requested not in SUPPORTED[fmt]:
        raise ValueError(f"{path}: the {requested} backend cannot run a {fmt} file; it runs with "
                         f"{' or '.join(SUPPORTED[fmt])}")
    if requested not in usable:
        raise ValueError(f"backend {requested!r} is not installed (pip install 'reslab[deploy]')")
    return requested


def fastest(backends: dict[str, Backend], info: ModelInfo, batch: int = 8) -> str:
    """The backend with the lowest median time on a batch of ``batch``: measured on this machine."""
    from ..timing import timed_calls

    pre = info.preprocess
    x = np.random.default_rng(0).standard_normal((batch, pre.in_chans, pre.image_size, pre.image_size),
                                                 dtype=np.float32)
    times = {name: float(np.median(timed_calls(lambda b=b: b.run(x), seconds=0.3, warmup=0.1)))
             for name, b in backends.items()}
    return min(times, key=times.__getitem__)


class TorchBackend:
    """Eager (or scripted / exported) PyTorch, channels_last, under inference mode."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, channels_last: bool = True) -> None:
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=self.memory_format)
        return self.model(x).float().cpu().numpy()


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model: str | bytes, threads: int | None = None, device: torch.device | None = None) -> None:
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

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, model_path: str, threads: int | None = None, precision: str = "fp32") -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", **openvino_config(precision)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(result[self.compiled.outputs[0]])


def load_backend(
    path: str | Path, backend: str = "auto", device: str | torch.device = "cpu", threads: int | None = None,
    channels_last: bool = True,
) -> tuple[Backend, ModelInfo]:
    """Open ``path`` with ``backend``. ``auto``: torch on a GPU; on the CPU, every installed backend
    that can read the file is built and timed on a small batch, and the fastest is kept."""
    path = Path(path)
    device = torch.device(device)
    model_format(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    chosen = choose_backend(path, backend, device)
    names = [chosen] if isinstance(chosen, str) else chosen
    if threads and "torch" in names:
        torch.set_num_threads(threads)
    opened, info = _open(path, names, device, threads, channels_last)
    if len(opened) == 1:
        return next(iter(opened.values())), info
    return opened[fastest(opened, info)], info


def _open(path: Path, names: list[str], device: torch.device, threads: int | None,
          channels_last: bool) -> tuple[dict[str, Backend], ModelInfo]:
    """Each named backend over the file at ``path``; a model file is loaded (and exported) once."""
    fmt = model_format(path)
    if fmt in ("torchscript", "pt2"):
        module, info = load_archive(path, fmt)
        # an exported program keeps the layout it was traced with: feed it plain NCHW
        return {"torch": TorchBackend(module.to(device), device, channels_last=False)}, info
    if fmt == "reslab":
        model, info = load_model_file(path, device)
        opened: dict[str, Backend] = {}
        if set(names) - {"torch"}:  # ONNX Runtime and OpenVINO run the model's ONNX graph, built in memory
            opened = _onnx_backends(_onnx_bytes(model, info), names, threads, device)
        if "torch" in names:
            layout = torch.channels_last if channels_last else torch.contiguous_format
            opened["torch"] = TorchBackend(model.to(device, memory_format=layout), device, channels_last)
        return opened, info
    info = read_info(path)
    return _onnx_backends(str(path), names, threads, device), info


def _onnx_bytes(model: nn.Module, info: ModelInfo) -> bytes:
    return to_onnx_proto(model.cpu(), info).SerializeToString()


def _onnx_backends(source: str | bytes, names: list[str], threads: int | None,
                   device: torch.device) -> dict[str, Backend]:
    """ONNX Runtime and/or OpenVINO over an ONNX file (path) or graph (bytes)."""
    opened: dict[str, Backend] = {}
    if "onnxruntime" in names:
        opened["onnxruntime"] = OnnxRuntimeBackend(source, threads, device)
    if "openvino" in names:
        if isinstance(source, bytes):
            with tempfile.TemporaryDirectory() as tmp:
                onnx_path = os.path.join(tmp, "model.onnx")
                Path(onnx_path).write_bytes(source)
                opened["openvino"] = OpenVinoBackend(onnx_path, threads)
        else:
            opened["openvino"] = OpenVinoBackend(source, threads)
    return opened
