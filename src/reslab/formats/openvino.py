"""OpenVINO IR (``.xml`` + ``.bin``) through OpenVINO's own converter, from the ONNX graph, with the
model file's metadata in the IR's ``rt_info``."""

from __future__ import annotations

from pathlib import Path

import onnx

from ..hardware import openvino_core
from ..modelfile import ModelFileError, ModelInfo


def save_openvino(proto: onnx.ModelProto, info: ModelInfo, path: Path) -> Path:
    import openvino as ov

    onnx_path = path.with_suffix(".onnx")
    onnx.save_model(proto, str(onnx_path))
    try:
        model = ov.convert_model(str(onnx_path))
    finally:
        onnx_path.unlink()
    model.set_rt_info(info.to_metadata()["reslab"], ["reslab"])
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def read_openvino_info(path: Path) -> ModelInfo:
    try:
        model = openvino_core().read_model(str(path))
    except RuntimeError as e:
        raise ModelFileError(f"{path}: not a readable OpenVINO IR ({e})") from e
    if not model.has_rt_info(["reslab"]):
        raise ModelFileError(f"{path}: an OpenVINO IR without reslab metadata (export it with `reslab export`)")
    return ModelInfo.from_metadata({"reslab": model.get_rt_info(["reslab"]).astype(str)}, path)
