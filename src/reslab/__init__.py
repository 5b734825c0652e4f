"""reslab: image classification with residual networks in PyTorch."""

from .infer.predictor import Prediction, Predictor
from .modelfile import ModelInfo, load_model_file, save_model_file
from .models import count_macs, count_params, create_model, list_models

__version__ = "0.1.0"
__all__ = [
    "ModelInfo", "Prediction", "Predictor", "count_macs", "count_params", "create_model", "list_models",
    "load_model_file", "save_model_file", "__version__",
]
