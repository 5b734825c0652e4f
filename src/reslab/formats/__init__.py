"""Every file format reslab writes, read and written in one place: the model file's metadata inside
ONNX, OpenVINO IR, TorchScript and ``.pt2``. Export and inference both build on this package."""

from __future__ import annotations

from pathlib import Path

from ..modelfile import ModelFileError, ModelInfo, read_model_info
from ..paths import file_digest

SUFFIXES = {".safetensors": "reslab", ".onnx": "onnx", ".xml": "openvino", ".torchscript": "torchscript",
            ".pt2": "pt2"}


def model_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelFileError(f"{path}: unknown model format {suffix!r}; expected one of {', '.join(SUFFIXES)}")
    return SUFFIXES[suffix]


def forward_only_reason(path: Path) -> str | None:
    """Why ``path`` cannot give gradients (it is an export, which runs forward only), or None for a
    reslab model file, whose network can be rebuilt layer by layer."""
    if path.suffix.lower() == ".safetensors":
        return None
    return (f"{path}: heat-maps need the network's layers and gradients, which a {path.suffix or 'bare'} file "
            f"cannot give (ONNX, OpenVINO, TorchScript and torch.export files run forward only); "
            f"use the reslab model file (.safetensors) it was exported from")


def model_files(path: Path) -> list[Path]:
    """The files a model consists of: an OpenVINO IR is its ``.xml`` and its ``.bin`` weights."""
    return [path, path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else [path]


def model_digest(path: Path, length: int = 16) -> str:
    """The model's identity: a digest of all its files' contents."""
    return file_digest(*[f for f in model_files(path) if f.is_file()], length=length)


def read_info(path: Path) -> ModelInfo:
    """The ModelInfo stored in any supported file, without building a runtime."""
    fmt = model_format(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if fmt == "reslab":
        return read_model_info(path)
    if fmt == "onnx":
        from .onnx import info_from_onnx, load_onnx  # onnx: the deploy extra

        return info_from_onnx(load_onnx(path), path)
    if fmt == "openvino":
        from .openvino import read_openvino_info  # openvino: the deploy extra

        return read_openvino_info(path)
    from .archives import load_archive  # torch: reading ONNX needs none

    return load_archive(path, fmt)[1]
