"""ONNX export with a dynamic batch axis, and the model file's metadata in ``metadata_props``.

The metadata makes an exported file enough on its own to serve: class names, image size,
resize policy and normalisation travel inside it (the full ``ModelInfo`` under the key ``reslab``,
and the common fields under their own keys for tools that read ONNX metadata directly).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from ..atomic import atomic_path
from ..modelfile import ModelFileError, ModelInfo

if TYPE_CHECKING:
    from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 18


def onnx_metadata(info: ModelInfo) -> dict[str, str]:
    pre = info.preprocess
    return {
        **info.to_metadata(),
        "classes": json.dumps(info.classes),
        "image_size": str(pre.image_size),
        "resize_size": str(pre.resize_size),
        "interpolation": pre.interpolation,
        "mean": json.dumps(pre.mean),
        "std": json.dumps(pre.std),
        "preprocess": json.dumps(asdict(pre)),
        "precision": info.precision,
        "task": info.task,  # the output is logits: softmax them (multiclass), or sigmoid each (multilabel)
        **({"thresholds": json.dumps(info.thresholds)} if info.thresholds is not None else {}),
    }


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value


def info_from_onnx(proto: onnx.ModelProto, path: Path) -> ModelInfo:
    metadata = {p.key: p.value for p in proto.metadata_props}
    if "reslab" not in metadata:
        raise ModelFileError(f"{path}: an ONNX model without reslab metadata (export it with `reslab export`)")
    info = ModelInfo.from_metadata(metadata, path)
    return info.with_precision("int8") if is_quantized(proto) else info


def is_quantized(proto: onnx.ModelProto) -> bool:
    """A static INT8 graph: QuantizeLinear/DequantizeLinear pairs around its operators."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)


def to_onnx_proto(model: nn.Module, info: ModelInfo, opset: int = OPSET) -> onnx.ModelProto:
    """The network as an ONNX graph (torch's dynamo exporter) with a dynamic batch axis."""
    import torch

    example = torch.randn(2, *info.sample_shape())  # a video model's clips: (N, C, T, H, W), T fixed
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model.eval().float().cpu(), (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        opset_version=opset, dynamic_shapes={"x": {0: batch}}, dynamo=True, verbose=False,
    )
    program.optimize()
    proto = program.model_proto
    proto.producer_name = "reslab"
    set_metadata(proto, onnx_metadata(info))
    return proto


def save_onnx(proto: onnx.ModelProto, path: Path) -> Path:
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    onnx.checker.check_model(str(path))
    return path


def load_onnx(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{path}: not a readable ONNX model ({e})") from e
