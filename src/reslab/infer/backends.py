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
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..modelfile import ModelFileError, ModelInfo, load_model_file

METADATA_FILE = "reslab.json"  # the ModelInfo inside TorchScript and .pt2 archives
BACKENDS = ("torch", "onnxruntime", "openvino")


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def available_backends() -> list[str]:
    return ["torch"] + [b for b in BACKENDS[1:] if importlib.util.find_spec(b) is not None]


def model_format(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".safetensors": "reslab", ".onnx": "onnx", ".xml": "openvino", ".torchscript": "torchscript",
               ".pt2": "pt2"}
    if suffix not in formats:
        raise ModelFileError(f"{path}: unknown model format {suffix!r}; expected one of {', '.join(formats)}")
    return formats[suffix]


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
    from ..bench.timing import timed_calls

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

    def __init__(self, model_path: str, threads: int | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(result[self.compiled.outputs[0]])


def read_info(path: Path) -> ModelInfo:
    """The ModelInfo stored in any supported file, without building a runtime."""
    fmt = model_format(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if fmt == "reslab":
        from ..modelfile import read_model_info

        return read_model_info(path)
    if fmt == "onnx":
        from ..export.onnx_export import info_from_onnx, load_onnx

        return info_from_onnx(load_onnx(path), path)
    if fmt == "openvino":
        return _openvino_info(path)
    return _archive_info(path, fmt)


def _openvino_info(path: Path) -> ModelInfo:
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as e:
        raise ModelFileError(f"{path}: not a readable OpenVINO IR ({e})") from e
    if not model.has_rt_info(["reslab"]):
        raise ModelFileError(f"{path}: an OpenVINO IR without reslab metadata (export it with `reslab export`)")
    return ModelInfo.from_metadata({"reslab": model.get_rt_info(["reslab"]).astype(str)}, path)


def _archive_info(path: Path, fmt: str) -> ModelInfo:
    return _load_archive(path, fmt)[1]


def _load_archive(path: Path, fmt: str) -> tuple[nn.Module, ModelInfo]:
    """A TorchScript or ``torch.export`` archive and the ModelInfo stored beside the program."""
    extra = {METADATA_FILE: ""}
    try:
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        else:
            module = torch.export.load(str(path), extra_files=extra).module()
    except Exception as e:  # zipfile, pickle-free loaders and version checks all raise their own
        raise ModelFileError(f"{path}: not a readable {fmt} archive ({e})") from e
    if not extra[METADATA_FILE]:
        raise ModelFileError(f"{path}: a {fmt} archive without reslab metadata (export it with `reslab export`)")
    return module, ModelInfo.from_metadata({"reslab": extra[METADATA_FILE]}, path)


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
    if isinstance(chosen, str):
        return _open(path, chosen, device, threads, channels_last)
    opened = {name: _open(path, name, device, threads, channels_last) for name in chosen}
    best = fastest({name: runner for name, (runner, _) in opened.items()}, next(iter(opened.values()))[1])
    return opened[best]


def _open(path: Path, backend: str, device: torch.device, threads: int | None,
          channels_last: bool) -> tuple[Backend, ModelInfo]:
    fmt = model_format(path)
    if backend == "torch" and threads:
        torch.set_num_threads(threads)
    if fmt == "reslab":
        model, info = load_model_file(path, device)
        if backend == "torch":
            return TorchBackend(model.to(memory_format=torch.channels_last if channels_last else
                                         torch.contiguous_format), device, channels_last), info
        return _from_module(model, info, backend, threads, device), info
    if fmt in ("torchscript", "pt2"):
        module, info = _load_archive(path, fmt)
        # an exported program keeps the layout it was traced with: feed it plain NCHW
        return TorchBackend(module.to(device), device, channels_last=False), info
    info = read_info(path)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(str(path), threads, device), info
    return OpenVinoBackend(str(path), threads), info


def _from_module(model: nn.Module, info: ModelInfo, backend: str, threads: int | None,
                 device: torch.device) -> Backend:
    """A model file run by ONNX Runtime or OpenVINO: exported to ONNX first, in memory."""
    from ..export.onnx_export import to_onnx_proto

    proto = to_onnx_proto(model.cpu(), info)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(proto.SerializeToString(), threads, device)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        Path(onnx_path).write_bytes(proto.SerializeToString())
        return OpenVinoBackend(onnx_path, threads)
