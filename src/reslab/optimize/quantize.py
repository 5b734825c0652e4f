"""``reslab quantize``: static post-training INT8 through ONNX Runtime's quantisation tools.

QDQ format, per-channel signed weights, unsigned activations, calibrated on real training images
with the eval preprocessing. The result is measured against the fp32 model on the validation
split (top-1, or mAP for a multi-label model; agreement, size, speed) and refused when that drops more
than ``max_drop`` points.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..atomic import atomic_path
from ..data.loaders import SkipLog
from ..data.pipeline import SMALL_IMAGE, make_loader, model_split
from ..evaluate.multilabel import decisions, mean_average_precision
from ..formats import model_format
from ..formats.onnx import info_from_onnx, is_quantized, load_onnx, onnx_metadata, set_metadata, to_onnx_proto
from ..hardware import int8_saturates
from ..infer.backends import OnnxRuntimeBackend
from ..infer.predictor import probabilities_of
from ..modelfile import ModelInfo
from ..models import load_model_file
from ..results import Result
from ..timing import interleaved_images_per_second
from .options import CALIBRATION_BATCH, QuantizeOptions


@dataclass
class Measured:
    """One side of the comparison, the fp32 network or the INT8 one, on the same validation images."""

    score: float  # the report's metric: top-1, or mAP for a multi-label model
    bytes: int
    images_per_s: float  # batch 32, the two networks timed in alternating rounds


@dataclass
class QuantizeReport(Result):
    """The INT8 model ``quantize_model`` wrote, measured against the fp32 model it came from."""

    model: Path
    output: Path
    method: str
    calibration_images: int
    per_channel: bool
    reduce_range: bool
    val_images: int
    val_split: str
    metric: str  # "top1" or "map"
    fp32: Measured
    int8: Measured
    drop_points: float  # 100 x (fp32 - int8) of the metric
    agreement: float  # the share of images whose decision is the same
    skipped_images: list[str]

    def text(self) -> str:
        shown = {"top1": "top-1", "map": "mAP"}[self.metric]
        lines = [f"INT8 ({self.method} calibration on {self.calibration_images} training images, per-channel "
                 f"{self.per_channel}, reduce_range {self.reduce_range}): {self.output}",
                 f"{'':<8}{shown:>8}{'MB':>8}{'images/s':>10}   ({self.val_images} {self.val_split} images, batch 32)"]
        lines += [f"{kind:<8}{m.score:>8.4f}{m.bytes / 1e6:>8.2f}{m.images_per_s:>10.1f}"
                  for kind, m in (("fp32", self.fp32), ("int8", self.int8))]
        lines.append(f"{shown} drop {self.drop_points:.2f} points; predictions agree on {self.agreement:.1%}; "
                     f"{self.int8.images_per_s / self.fp32.images_per_s:.2f}x faster, "
                     f"{self.fp32.bytes / self.int8.bytes:.1f}x smaller")
        return "\n".join(lines)


class QuantizationRejected(ValueError):
    """The INT8 model lost more top-1 (or mAP) than allowed; nothing was written."""


def fp32_source(model_path: Path) -> tuple[onnx.ModelProto, ModelInfo]:
    """The fp32 ONNX graph of a reslab model file or of an fp32 ONNX export."""
    fmt = model_format(model_path)
    if fmt == "reslab":
        model, info = load_model_file(model_path)
        return to_onnx_proto(model, info), info
    if fmt == "onnx":
        proto = load_onnx(model_path)
        if is_quantized(proto):
            raise ValueError(f"{model_path}: already quantised; pass the fp32 model")
        return proto, info_from_onnx(proto, model_path)
    raise ValueError(f"{model_path}: quantisation takes a reslab model file or an fp32 ONNX export, not {fmt}")


def _arrays(batches) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in batches])
    return np.concatenate(xs), np.concatenate(ys)


def _batches(data: str, info: ModelInfo, split: str, limit: int | None, opts: QuantizeOptions, skipped: SkipLog):
    chosen = model_split(data, info.classes, split, opts.cache_dir, opts.seed, limit=limit,
                         task=info.task)
    pre = info.preprocess
    return make_loader(chosen, pre, 64, torch.device("cpu"), skipped, in_memory=pre.image_size <= SMALL_IMAGE)


def _decisions(logits: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Top-1 classes, or a multi-label model's yes/no per label at its thresholds."""
    return decisions(probabilities_of(logits, info), info.thresholds) if info.multilabel else logits.argmax(1)


def _score(logits: np.ndarray, labels: np.ndarray, info: ModelInfo) -> float:
    """Top-1, or a multi-label model's macro mAP."""
    if info.multilabel:
        return mean_average_precision(labels, probabilities_of(logits, info))[0]
    return float((logits.argmax(1) == labels).mean())


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over preprocessed training images."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        usable = len(images) - len(images) % CALIBRATION_BATCH
        self.feeds = iter([{input_name: images[i : i + CALIBRATION_BATCH]} for i in range(0, usable,
                                                                                           CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def quantize_onnx(fp32_path: Path, out_path: Path, calibration: np.ndarray, method: str = "minmax",
                  per_channel: bool = True, reduce_range: bool = False) -> None:
    """Static INT8 (QDQ, u8 activations, s8 weights) of an fp32 ONNX file, calibrated on ``calibration``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out_path.with_name(f"{out_path.stem}-prepared.onnx")
    quant_pre_process(str(fp32_path), str(prepared))  # shape inference, BatchNorm folded into the convs
    calibrate_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile}[method]
    try:
        quantize_static(
            str(prepared), str(out_path), _Calibration(calibration, "input"), quant_format=QuantFormat.QDQ,
            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=calibrate_method, reduce_range=reduce_range,
        )
    finally:
        prepared.unlink(missing_ok=True)


def quantize_model(model_path: Path, opts: QuantizeOptions, out: Path | None = None) -> QuantizeReport:
    proto, info = fp32_source(model_path)
    out = out or model_path.with_name(f"{model_path.stem}-int8.onnx")
    if out.suffix != ".onnx":
        raise ValueError(f"{out}: the INT8 model is written as ONNX (.onnx)")
    skipped = SkipLog()
    calibration, _ = _arrays(_batches(opts.calib_data, info, "train", opts.calib_images, opts, skipped))
    val_x, val_y = _arrays(_batches(opts.val_data or opts.calib_data, info, opts.val_split, opts.val_images, opts,
                                    skipped))
    reduce_range = opts.reduce_range == "on" or (opts.reduce_range == "auto" and int8_saturates())
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(proto, str(fp32_path))
        quantize_onnx(fp32_path, int8_path, calibration, opts.method, opts.per_channel, reduce_range)
        int8_proto = onnx.load(str(int8_path))
        fp32_run, int8_run = OnnxRuntimeBackend(str(fp32_path)), OnnxRuntimeBackend(str(int8_path))
        logits_fp32, logits_int8 = (np.concatenate([run(val_x[i : i + 64]) for i in range(0, len(val_x), 64)])
                                    for run in (fp32_run.run, int8_run.run))
        metric = "map" if info.multilabel else "top1"
        speed_batch = val_x[:32] if len(val_x) >= 32 else np.resize(val_x, (32, *val_x.shape[1:]))
        speeds = interleaved_images_per_second({"fp32": fp32_run.run, "int8": int8_run.run}, speed_batch)
        fp32, int8 = (Measured(_score(logits, val_y, info), path.stat().st_size, speeds[kind])
                      for kind, logits, path in (("fp32", logits_fp32, fp32_path), ("int8", logits_int8, int8_path)))
    report = QuantizeReport(
        model=model_path, output=out, method=opts.method,
        calibration_images=len(calibration) - len(calibration) % CALIBRATION_BATCH, per_channel=opts.per_channel,
        reduce_range=reduce_range, val_images=len(val_y), val_split=opts.val_split, metric=metric,
        fp32=fp32, int8=int8, drop_points=100 * (fp32.score - int8.score),
        agreement=float((_decisions(logits_fp32, info) == _decisions(logits_int8, info)).mean()),
        skipped_images=sorted(skipped.files))
    if report.drop_points > opts.max_drop and not opts.force:
        shown = "mAP" if info.multilabel else "top-1"
        raise QuantizationRejected(
            f"INT8 {shown} {int8.score:.4f} is {report.drop_points:.2f} points below fp32 {fp32.score:.4f} "
            f"on {report.val_images} images (--max-drop {opts.max_drop}); nothing written. Try --method entropy "
            f"or percentile, more --calib-images, or --force")
    kept = {p.key: p.value for p in proto.metadata_props}
    set_metadata(int8_proto, kept | onnx_metadata(info.with_precision("int8")))
    recorded = {k: getattr(report, k) for k in ("method", "calibration_images", "per_channel", "reduce_range",
                                                 "metric", "val_images")}
    set_metadata(int8_proto, {"quantization": json.dumps(
        recorded | {f"{metric}_fp32": fp32.score, f"{metric}_int8": int8.score, "options": asdict(opts)})})
    with atomic_path(out) as tmp_out:
        onnx.save_model(int8_proto, str(tmp_out))
    return report
