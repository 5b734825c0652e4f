"""The open inference protocol (KServe v2 / Triton) over HTTP: request parsing and response building.

Inputs arrive as JSON (``data``, flat or nested) or with Triton's binary tensor extension (the JSON
header's length in ``Inference-Header-Content-Length``, raw little-endian tensors after it), so
``tritonclient.http`` works unchanged either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# the v2 inference request as this server reads it (JSON Schema cannot say that the data's length is the product
# of the shape, nor that the shape is the model's [N, C, H, W] ([N, C, T, H, W] for video): both are refused: 400)
V2_INFER_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"], "properties": {
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
                "name": {"const": INPUT_NAME}, "datatype": {"const": "FP32"},
                "shape": {"type": "array", "minItems": 4, "maxItems": 5, "items": {"type": "integer", "minimum": 1}},
                "data": {"type": "array", "items": {"type": "number"}}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                               "properties": {"name": {"const": OUTPUT_NAME}}}}}}}}}}
HEADER_LENGTH = "inference-header-content-length"


class V2Error(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InferRequest:
    id: str | None
    tensor: np.ndarray  # float32 (N, C, H, W)
    binary_output: bool


def model_metadata(name: str, version: str, platform: str, sample: tuple[int, ...], classes: int,
                   task: str = "multiclass", thresholds: list[float] | None = None) -> dict:
    """The output is the network's logits; ``parameters`` say how to read them: a softmax over the classes
    (multiclass), or each label's sigmoid against its threshold (multilabel)."""
    activation = "sigmoid" if task == "multilabel" else "softmax"
    return {
        "name": name, "versions": [version], "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *sample]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, classes]}],
        "parameters": {"task": task, "activation": activation,
                       **({"thresholds": thresholds} if thresholds is not None else {})},
    }


def parse_infer_request(body: bytes, header_length: str | None, sample: tuple[int, ...]) -> InferRequest:
    """``sample``: one input's shape, (C, H, W), or (C, T, H, W) for a video model."""
    expected = f"[N, {', '.join(map(str, sample))}]"
    try:
        split = int(header_length) if header_length is not None else len(body)
        request = json.loads(body[:split])
    except (ValueError, UnicodeDecodeError) as e:
        raise V2Error(400, f"the inference request is not valid JSON ({e})") from None
    binary = body[split:]
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise V2Error(400, f"expected one input named {INPUT_NAME!r} (FP32, shape {expected})")
    spec = inputs[0]
    if spec.get("name") != INPUT_NAME:
        raise V2Error(400, f"unknown input {spec.get('name')!r}; the model's input is {INPUT_NAME!r}")
    if spec.get("datatype") != "FP32":
        raise V2Error(400, f"input datatype {spec.get('datatype')!r}; expected 'FP32'")
    shape = spec.get("shape")
    if (not isinstance(shape, list) or len(shape) != len(sample) + 1 or not all(isinstance(d, int) for d in shape)
            or tuple(shape[1:]) != sample or shape[0] < 1):
        raise V2Error(400, f"input shape {shape}; expected {expected}, a batch of preprocessed images")
    count = int(np.prod(shape))
    size = (spec.get("parameters") or {}).get("binary_data_size")
    try:
        if size is not None:
            if size != 4 * count or len(binary) < size:
                raise V2Error(400, f"binary input of {size} bytes; shape {shape} in FP32 needs {4 * count}")
            data = np.frombuffer(binary[:size], dtype="<f4")
        else:
            data = np.asarray(spec.get("data"), dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise V2Error(400, f"input data is not a list of numbers (shape {expected})") from None
    if data.size != count:
        raise V2Error(400, f"input data has {data.size} values; shape {shape} needs {count}")
    outputs = request.get("outputs") or []
    for out in outputs:
        if not isinstance(out, dict) or out.get("name") != OUTPUT_NAME:
            raise V2Error(400, f"unknown output {out.get('name') if isinstance(out, dict) else out!r}; "
                               f"the model's output is {OUTPUT_NAME!r}")
    params = request.get("parameters") or {}
    binary_output = bool(params.get("binary_data_output")) or any(
        (o.get("parameters") or {}).get("binary_data") for o in outputs)
    return InferRequest(request.get("id"), data.reshape(shape).astype(np.float32, copy=False), binary_output)


def infer_response(name: str, version: str, request: InferRequest, logits: np.ndarray) -> tuple[bytes, dict]:
    """Body and extra headers of the response: JSON, or JSON + binary logits when asked for."""
    output: dict[str, Any] = {"name": OUTPUT_NAME, "datatype": "FP32", "shape": list(logits.shape)}
    payload: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": [output]}
    if request.id is not None:
        payload["id"] = request.id
    raw = logits.astype("<f4").tobytes()
    if request.binary_output:
        output["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps(payload).encode()
        return header + raw, {"Inference-Header-Content-Length": str(len(header)),
                              "Content-Type": "application/octet-stream"}
    output["data"] = logits.astype(np.float32).reshape(-1).tolist()
    return json.dumps(payload).encode(), {"Content-Type": "application/json"}
