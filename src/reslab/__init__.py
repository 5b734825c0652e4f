"""reslab: image classification with residual networks in PyTorch.

The names below load on first use, so ``import reslab`` (and the ONNX Runtime / OpenVINO paths) do not
import torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

_EXPORTS = {
    "Prediction": ".infer.predictor", "Predictor": ".infer.predictor", "ModelInfo": ".modelfile",
    "save_model_file": ".modelfile", "count_macs": ".models", "count_params": ".models",
    "create_model": ".models", "list_models": ".models", "load_model_file": ".models",
}

if TYPE_CHECKING:
    from .infer.predictor import Prediction, Predictor
    from .modelfile import ModelInfo, save_model_file
    from .models import count_macs, count_params, create_model, list_models, load_model_file

__all__ = [
    "ModelInfo", "Prediction", "Predictor", "count_macs", "count_params", "create_model", "list_models",
    "load_model_file", "save_model_file", "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reslab' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
