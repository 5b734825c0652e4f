"""OpenVINO IR (``.xml`` + ``.bin``) through OpenVINO's own converter, from the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import onnx

from ..modelfile import ModelInfo


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
