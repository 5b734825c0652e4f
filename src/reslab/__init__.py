"""reslab: image classification with residual networks in PyTorch."""

from .models import count_macs, count_params, create_model, list_models
from .modelfile import ModelInfo, load_model_file, save_model_file

__version__ = "0.1.0"
__all__ = [
    "ModelInfo", "count_macs", "count_params", "create_model", "list_models", "load_model_file",
    "save_model_file", "__version__",
]
