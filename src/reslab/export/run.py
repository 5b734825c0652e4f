"""``reslab export``: write a format, reload it with its runtime, compare it with the original.

The export is written into a temporary folder beside the destination, checked there, and only then
moved into place: a failed check leaves no file behind that looks like a good export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..formats import onnx as onnx_format
from ..formats.archives import save_exported_program, save_torchscript
from ..formats.openvino import save_openvino
from ..infer.backends import load_backend
from ..modelfile import ModelInfo
from ..models import load_model_file
from .formats import EXPORT_FORMATS, MIN_OPSET
from .verify import Agreement, check, compare, default_images, reference_batch


def default_output(model_path: Path, fmt: str) -> Path:
    suffix = EXPORT_FORMATS[fmt][0]
    return model_path.parent / "triton" if fmt == "triton" else model_path.with_suffix(suffix)


def _write(fmt: str, model: torch.nn.Module, info: ModelInfo, folder: Path, stem: str, opset: int,
           triton_name: str, max_batch_size: int) -> tuple[Path, Path, list[str]]:
    """Write ``fmt`` into ``folder``; returns (what to move, the file to check, notes)."""
    if fmt == "torchscript":
        path = save_torchscript(model, info, folder / f"{stem}.torchscript")
        return path, path, []
    if fmt == "torch-export":
        path = save_exported_program(model, info, folder / f"{stem}.pt2")
        return path, path, []
    proto = onnx_format.to_onnx_proto(model, info, opset)
    if fmt == "onnx":
        path = onnx_format.save_onnx(proto, folder / f"{stem}.onnx")
        return path, path, [f"opset {opset}, dynamic batch axis, metadata in metadata_props"]
    if fmt == "openvino":
        path = save_openvino(proto, info, folder / f"{stem}.xml")
        return path, path, ["OpenVINO IR fp32 (.xml + .bin)"]
    from .triton import check_repository, write_repository

    model_dir = write_repository(proto, info, folder, triton_name, max_batch_size)
    checked = check_repository(model_dir)
    return model_dir, model_dir / "1" / "model.onnx", ["triton config checked: " + ", ".join(checked)]


def _move_into_place(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(source, destination)
        return
    os.replace(source, destination)
    if source.suffix == ".xml":  # the IR's weights travel with it
        os.replace(source.with_suffix(".bin"), destination.with_suffix(".bin"))


def export_model(
    model_path: Path, fmt: str, out: Path | None = None, opset: int = 18, verify_images: list[Path] | None = None,
    rtol: float = 1e-3, triton_name: str | None = None, max_batch_size: int = 32,
) -> dict[str, Any]:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if opset < MIN_OPSET:
        raise ValueError(f"--opset {opset}: reslab exports opset {MIN_OPSET} or newer")
    model, info = load_model_file(model_path)
    if fmt == "triton":
        out = out or default_output(model_path, fmt)
        destination = out / (triton_name or info.spec.arch)
    else:
        destination = out or default_output(model_path, fmt)
        if destination.suffix != EXPORT_FORMATS[fmt][0]:
            raise ValueError(f"{destination}: an export to {fmt} is written to a {EXPORT_FORMATS[fmt][0]} file")
    batch = reference_batch(info, verify_images or default_images())
    with torch.inference_mode():
        reference = model(torch.from_numpy(batch)).numpy()
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".export-") as tmp:
        written, checked_file, notes = _write(fmt, model, info, Path(tmp), destination.stem, opset,
                                              destination.name, max_batch_size)
        runner, exported_info = load_backend(checked_file, EXPORT_FORMATS[fmt][1], threads=None)
        _check_metadata(exported_info, info, checked_file)
        agreement: Agreement = compare(reference, runner.run(batch))
        check(agreement, reference, rtol, f"{fmt} export ({runner.name})")
        _move_into_place(written, destination)
    return {
        "format": fmt, "output": str(destination), "checked_with": EXPORT_FORMATS[fmt][1], "notes": notes,
        **asdict(agreement), "bytes": _size(destination),
    }


def _check_metadata(exported: ModelInfo, original: ModelInfo, path: Path) -> None:
    if exported.classes != original.classes or exported.preprocess != original.preprocess:
        raise ValueError(f"{path}: the metadata did not survive the export")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    extra = path.with_suffix(".bin")
    return path.stat().st_size + (extra.stat().st_size if path.suffix == ".xml" and extra.exists() else 0)

