"""What a model argument names: a file, a torchvision name (``resnet50[:TAG]``), a Hugging Face id
(``hf:ORG/NAME[@rev]``) or a Hugging Face folder. Recognised here without importing torch; resolved
to a model file by ``models.pretrained``."""

from __future__ import annotations

import re
from pathlib import Path

TORCHVISION_NAME = re.compile(r"(resnet\d+|r3d_18|mc3_18|r2plus1d_18)(?::(\w+))?")  # and its video ResNets
HF_PREFIX = "hf:"
TORCHVISION_SUFFIXES = (".pth", ".pt")


def is_model_name(source: str | Path) -> bool:
    text = str(source)
    return text.startswith(HF_PREFIX) or TORCHVISION_NAME.fullmatch(text) is not None


def output_stem(source: str) -> str:
    """A file name for what is made from a named model: ``resnet50``, ``resnet50-IMAGENET1K_V2``, ``resnet-50``."""
    return str(source).removeprefix(HF_PREFIX).partition("@")[0].rstrip("/").split("/")[-1].replace(":", "-")


def is_plain_file(source: str | Path, weights: str | Path | None = None) -> bool:
    """A model file to open as it is (nothing to download or convert)."""
    path = Path(source)
    return (weights is None and not is_model_name(source) and not path.is_dir()
            and path.suffix.lower() not in TORCHVISION_SUFFIXES)
