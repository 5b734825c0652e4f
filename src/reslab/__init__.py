"""reslab: image classification with residual networks in PyTorch."""

from .infer.predictor import Prediction, Predictor
from .modelfile import ModelInfo, save_model_file
from .models import count_macs, count_params, create_model, list_models, load_model_file
from .version import __version__

__all__ = [
    "ModelInfo", "Prediction", "Predictor", "count_macs", "count_params", "create_model", "list_models",
    "load_model_file", "save_model_file", "__version__",
]
