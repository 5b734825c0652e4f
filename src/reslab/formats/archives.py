"""TorchScript (traced, frozen) and ``torch.export`` (.pt2) archives with the ModelInfo inside.

``torch.export`` is the format to prefer: TorchScript is deprecated in recent PyTorch releases and
kept for deployments that already load it (LibTorch C++, older serving stacks).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..modelfile import ModelFileError, ModelInfo

METADATA_FILE = "reslab.json"  # the ModelInfo inside TorchScript and .pt2 archives


def _example(info: ModelInfo, batch: int = 2) -> torch.Tensor:
    pre = info.preprocess
    return torch.randn(batch, pre.in_chans, pre.image_size, pre.image_size)


def save_torchscript(model: nn.Module, info: ModelInfo, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice: the docs say what to prefer
        traced = torch.jit.trace(model.eval().cpu(), _example(info))
        frozen = torch.jit.freeze(traced)
        torch.jit.save(frozen, str(path), _extra_files={METADATA_FILE: info.to_metadata()["reslab"]})
    return path


def save_exported_program(model: nn.Module, info: ModelInfo, path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model.eval().cpu(), (_example(info),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path), extra_files={METADATA_FILE: info.to_metadata()["reslab"]})
    return path


def load_archive(path: Path, fmt: str) -> tuple[nn.Module, ModelInfo]:
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
