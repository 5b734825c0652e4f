"""reslab: image classification with residual networks in PyTorch."""

from .modelfile import ModelInfo, load_model_file, save_model_file
from .models import count_macs, count_params, create_model, list_models

__version__ = "0.1.0"
__all__ = [
    "ModelInfo", "count_macs", "count_params", "create_model", "list_models", "load_model_file",
    "save_model_file", "__version__",
]
