"""``Predictor``: a model file in, top-k classes out, with the model's own preprocessing.

Split as TorchServe's handlers are: ``preprocess`` (decode + the shared ``Preprocess``),
``inference`` (one batched forward pass) and ``postprocess`` (softmax, top-k, class names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from ..data.images import UnreadableImageError, is_image_file, normalize_mode, open_image
from ..modelfile import ModelInfo, load_model_file


@dataclass
class Prediction:
    index: int
    label: str
    probability: float


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as the image files inside them (recursively, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
        else:
            paths.append(item)
    return paths


class Predictor:
    def __init__(self, model: nn.Module, info: ModelInfo, device: str | torch.device = "cpu",
                 channels_last: bool = True) -> None:
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        self.info = info
        self.preprocess_one = info.preprocess

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        model, info = load_model_file(path, device)
        return cls(model, info, device)

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    def preprocess(self, images: Sequence[Image.Image | bytes | str | Path]) -> Tensor:
        channels = self.info.preprocess.in_chans
        decoded = [img if isinstance(img, Image.Image) else open_image(img, channels) for img in images]
        return torch.stack([self.preprocess_one(normalize_mode(img, channels)) for img in decoded])

    @torch.inference_mode()
    def inference(self, batch: Tensor) -> Tensor:
        x = batch.to(self.device).contiguous(memory_format=self.memory_format)
        return self.model(x).float().softmax(1).cpu()

    def postprocess(self, probabilities: Tensor, topk: int = 5) -> list[list[Prediction]]:
        k = min(topk, probabilities.shape[1])
        values, indices = probabilities.topk(k, dim=1)
        return [
            [Prediction(int(i), self.classes[int(i)], float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(values, indices)
        ]

    def predict(self, images: Sequence[Image.Image | bytes | str | Path], topk: int = 5) -> list[list[Prediction]]:
        return self.postprocess(self.inference(self.preprocess(images)), topk)

    def predict_files(self, inputs: Sequence[str | Path], topk: int = 5, batch_size: int = 32) -> list[dict]:
        """One entry per image file: its top-k, or its error. An unreadable file does not stop the rest."""
        results: list[dict] = []
        paths = expand_inputs(inputs)
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            readable, images = [], []
            for path in chunk:
                try:
                    images.append(open_image(path, self.info.preprocess.in_chans))
                    readable.append(path)
                except (UnreadableImageError, FileNotFoundError, IsADirectoryError) as e:
                    message = str(e) if isinstance(e, UnreadableImageError) else f"{path}: file not found"
                    results.append({"file": str(path), "error": message})
            if images:
                for path, preds in zip(readable, self.predict(images, topk)):
                    results.append({"file": str(path), "predictions": [vars(p) for p in preds]})
        order = {str(p): i for i, p in enumerate(paths)}
        return sorted(results, key=lambda r: order.get(r["file"], -1))
