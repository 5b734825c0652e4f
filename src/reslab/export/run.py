"""``reslab export``: write a format, reload it with its runtime, compare it with the original.

The export is written into a temporary folder beside the destination, checked there, and only then
moved into place: a failed check leaves no file behind that looks like a good export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..formats import model_files
from ..formats.archives import save_exported_program, save_torchscript
from ..infer.backends import precision_refusal
from ..infer.reference import default_images, reference_batch
from ..infer.selection import load_backend
from ..modelfile import ModelInfo
from ..models import load_model_file, weighted_layers
from ..precision import FP32_RTOL, Agreement, bf16_rtol, check, check_choice, compare
from ..results import Result
from .formats import EXPORT_FORMATS, MIN_OPSET
from .huggingface import check_preprocessing, transformers_logits, write_huggingface


@dataclass
class ExportReport(Result):
    """What ``export_model`` wrote and how closely its runtime's logits match the model file's."""

    format: str
    output: Path
    checked_with: str  # the runtime that reloaded the written file
    notes: list[str]
    agreement: Agreement
    bytes: int

    def text(self) -> str:
        a = self.agreement
        return "\n".join([f"{self.format}: {self.output} ({self.bytes / 1e6:.2f} MB)",
                          *(f"  {note}" for note in self.notes),
                          f"  {a.precision}, checked with {self.checked_with} on {a.line()}"])


def default_output(model_path: Path, fmt: str) -> Path:
    if fmt == "triton":
        return model_path.parent / "triton"
    if fmt == "huggingface":
        return model_path.with_name(f"{model_path.stem}-hf")
    return model_path.with_suffix(EXPORT_FORMATS[fmt][0])


def _write(fmt: str, model: torch.nn.Module, info: ModelInfo, folder: Path, stem: str, opset: int,
           triton_name: str, max_batch_size: int) -> tuple[Path, Path, list[str]]:
    """Write ``fmt`` into ``folder``; returns (what to move, the file to check, notes)."""
    if fmt == "torchscript":
        path = save_torchscript(model, info, folder / f"{stem}.torchscript")
        return path, path, []
    if fmt == "torch-export":
        path = save_exported_program(model, info, folder / f"{stem}.pt2")
        return path, path, []
    if fmt == "huggingface":
        path = write_huggingface(model, info, folder / stem)
        return path, path, ["transformers ResNetForImageClassification: config.json (id2label), model.safetensors, "
                            "preprocessor_config.json (BitImageProcessor)"]
    from ..formats import onnx as onnx_format  # onnx and OpenVINO come with the deploy extra

    proto = onnx_format.to_onnx_proto(model, info, opset)
    if fmt == "onnx":
        path = onnx_format.save_onnx(proto, folder / f"{stem}.onnx")
        return path, path, [f"opset {opset}, dynamic batch axis, metadata in metadata_props"]
    if fmt == "openvino":
        from ..formats.openvino import save_openvino  # openvino: the deploy extra

        path = save_openvino(proto, info, folder / f"{stem}.xml")
        return path, path, [f"OpenVINO IR, fp32 weights, inference precision {info.precision} (.xml + .bin)"]
    from .triton import check_repository, write_repository  # onnx: the deploy extra

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
    for part, target in zip(model_files(source), model_files(destination)):  # an IR's weights travel with it
        os.replace(part, target)


def export_precision(fmt: str, requested: str) -> str:
    """What the exported file is meant to run in. Only an OpenVINO IR carries a bf16 inference precision;
    every other format is fp32, and any runtime may still run it in bf16 (``--precision`` at predict time)."""
    if requested == "int8":
        raise ValueError("an INT8 model is calibrated on real images: use `reslab quantize MODEL --calib-data DATA`")
    if requested == "bf16" and fmt != "openvino":
        raise ValueError(f"--precision bf16: a {fmt} export is fp32 (run it in bf16 with `reslab predict --precision "
                         f"bf16`); only --format openvino writes a bf16 IR")
    if requested == "auto":
        return "bf16" if fmt == "openvino" and precision_refusal("openvino", "bf16", "cpu") is None \
            else "fp32"
    return requested


def export_model(
    model_path: Path, fmt: str, out: Path | None = None, opset: int = 18, verify_images: list[Path] | None = None,
    rtol: float | None = None, triton_name: str | None = None, max_batch_size: int = 32, precision: str = "fp32",
) -> ExportReport:
    """Write ``fmt`` and check it against the model file on real images: within ``rtol`` of the largest
    logit (default: the precision's own tolerance, ``reslab.precision``) and with every top-1 kept."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if opset < MIN_OPSET:
        raise ValueError(f"--opset {opset}: reslab exports opset {MIN_OPSET} or newer")
    precision = export_precision(fmt, check_choice(precision))
    model, info = load_model_file(model_path)
    info = info.with_precision(precision)
    if rtol is None:
        rtol = bf16_rtol(weighted_layers(info.spec)) if precision == "bf16" else FP32_RTOL
    if fmt == "triton":
        out = out or default_output(model_path, fmt)
        destination = out / (triton_name or info.spec.arch)
    elif fmt == "huggingface":  # write_huggingface refuses networks transformers cannot express
        destination = out or default_output(model_path, fmt)
    else:
        destination = out or default_output(model_path, fmt)
        if destination.suffix != EXPORT_FORMATS[fmt][0]:
            raise ValueError(f"{destination}: an export to {fmt} is written to a {EXPORT_FORMATS[fmt][0]} file")
    images = verify_images or default_images()
    batch = reference_batch(info.preprocess, images, info.frames)
    with torch.inference_mode():
        reference = model(torch.from_numpy(batch)).numpy()
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".export-") as tmp:
        written, checked_file, notes = _write(fmt, model, info, Path(tmp), destination.stem, opset,
                                              destination.name, max_batch_size)
        if fmt == "huggingface":
            label, logits = "transformers fp32", _transformers_logits(checked_file, info, batch)
        else:
            runner = load_backend(checked_file, EXPORT_FORMATS[fmt][1], precision=precision, verify_images=images)
            _check_metadata(runner.info, info, checked_file)
            label, logits = runner.label, runner.backend.run(batch)
        agreement: Agreement = compare(reference, logits, rtol, precision)
        check(agreement, f"{fmt} export ({label})")
        _move_into_place(written, destination)
    return ExportReport(fmt, destination, EXPORT_FORMATS[fmt][1], notes, agreement, _size(destination))


def _transformers_logits(folder: Path, info: ModelInfo, batch: np.ndarray) -> np.ndarray:
    """transformers' logits from the folder alone, after checking its classes and preprocessing."""
    logits, classes = transformers_logits(folder, batch)
    if classes != info.classes:
        raise ValueError(f"{folder}/config.json: id2label does not give the model's classes")
    check_preprocessing(folder, info)
    return logits


def _check_metadata(exported: ModelInfo, original: ModelInfo, path: Path) -> None:
    kept = ("classes", "preprocess", "precision", "task", "thresholds")
    if any(getattr(exported, name) != getattr(original, name) for name in kept):
        raise ValueError(f"{path}: the metadata did not survive the export")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return sum(f.stat().st_size for f in model_files(path) if f.is_file())
