"""A Triton Inference Server model repository for the ONNX Runtime backend, checked offline.

Layout: ``<repo>/<name>/config.pbtxt``, ``<repo>/<name>/1/model.onnx``, ``<repo>/<name>/labels.txt``.
The check parses ``config.pbtxt`` with Triton's own ``ModelConfig`` schema (from ``tritonclient``)
and applies the rules Triton applies when it loads an ONNX model: names, data types and the
non-batch dims of every input and output match the graph, whose batch axis must be dynamic.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from ..atomic import write_text_atomic
from ..modelfile import ModelInfo

ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
                  onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.UINT8: "TYPE_UINT8"}


class TritonConfigError(ValueError):
    pass


def _dims(value_info: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]


def config_text(name: str, proto: onnx.ModelProto, max_batch_size: int, max_queue_delay_us: int,
                info: ModelInfo) -> str:
    def tensor(v: onnx.ValueInfoProto, extra: str = "") -> str:
        dims = ", ".join(str(d) for d in _dims(v)[1:])
        dtype = ONNX_TO_TRITON[v.type.tensor_type.elem_type]
        return f'  {{\n    name: "{v.name}"\n    data_type: {dtype}\n    dims: [ {dims} ]\n{extra}  }}'

    inputs = ",\n".join(tensor(v, "    format: FORMAT_NCHW\n") for v in proto.graph.input)
    outputs = ",\n".join(tensor(v, '    label_filename: "labels.txt"\n') for v in proto.graph.output)
    return (f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
            f"{task_parameters(info)}")


def task_parameters(info: ModelInfo) -> str:
    """How clients read the logits: the task, and a multi-label model's thresholds (comma-separated)."""
    values = {"task": info.task, **({"thresholds": ",".join(map(str, info.thresholds))} if info.thresholds else {})}
    return "".join(f'parameters {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}\n' for k, v in values.items())


def write_repository(proto: onnx.ModelProto, info: ModelInfo, repo: Path, name: str, max_batch_size: int = 32,
                     max_queue_delay_us: int = 2000) -> Path:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(model_dir / "1" / "model.onnx"))
    write_text_atomic(model_dir / "labels.txt", "".join(f"{c}\n" for c in info.classes))
    write_text_atomic(model_dir / "config.pbtxt", config_text(name, proto, max_batch_size, max_queue_delay_us, info))
    return model_dir


def parse_config(path: Path):
    """``config.pbtxt`` as Triton's ``ModelConfig`` message (unknown fields and bad enums are errors)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise TritonConfigError(f"{path}: {e}") from e


def check_repository(model_dir: Path) -> list[str]:
    """Triton's loading rules for an ONNX model, checked offline; returns what was checked."""
    from tritonclient.grpc import model_config_pb2

    config = parse_config(model_dir / "config.pbtxt")
    problems: list[str] = []
    if config.name != model_dir.name:
        problems.append(f"config name {config.name!r} differs from the folder name {model_dir.name!r}")
    model_path = model_dir / "1" / "model.onnx"
    if not model_path.is_file():
        raise TritonConfigError(f"{model_path}: missing (Triton loads <name>/<version>/model.onnx)")
    graph = onnx.load(str(model_path)).graph
    for kind, declared, actual in (("input", config.input, graph.input), ("output", config.output, graph.output)):
        by_name = {v.name: v for v in actual}
        if len(declared) != len(actual):
            problems.append(f"{len(declared)} {kind}s declared, the graph has {len(actual)}")
        for tensor in declared:
            graph_tensor = by_name.get(tensor.name)
            if graph_tensor is None:
                problems.append(f"{kind} {tensor.name!r} is not in the graph (it has {sorted(by_name)})")
                continue
            dims = _dims(graph_tensor)
            if config.max_batch_size > 0:
                if dims[0] != -1:
                    problems.append(f"{kind} {tensor.name!r}: max_batch_size > 0 needs a dynamic first axis")
                dims = dims[1:]
            if list(tensor.dims) != dims:
                problems.append(f"{kind} {tensor.name!r}: dims {list(tensor.dims)} but the graph has {dims}")
            dtype = model_config_pb2.DataType.Name(tensor.data_type)
            expected = ONNX_TO_TRITON.get(graph_tensor.type.tensor_type.elem_type)
            if dtype != expected:
                problems.append(f"{kind} {tensor.name!r}: data_type {dtype} but the graph has {expected}")
            if kind == "output" and tensor.label_filename:
                labels = model_dir / tensor.label_filename
                count = len(labels.read_text().splitlines()) if labels.is_file() else 0
                if count != dims[-1]:
                    problems.append(f"{labels}: {count} labels for {dims[-1]} outputs")
    if problems:
        raise TritonConfigError(f"{model_dir / 'config.pbtxt'}: " + "; ".join(problems))
    return ["config parsed with Triton's ModelConfig schema", "folder name", "input/output names",
            "data types", "dims (dynamic batch axis)", "labels"]
