"""The export formats: file suffix and the runtime each export is checked with."""

EXPORT_FORMATS = {
    "onnx": (".onnx", "onnxruntime"),
    "torchscript": (".torchscript", "torch"),
    "torch-export": (".pt2", "torch"),
    "openvino": (".xml", "openvino"),
    "triton": ("", "onnxruntime"),  # a model repository folder
    "huggingface": ("", "transformers"),  # a transformers model folder
}
MIN_OPSET = 17
