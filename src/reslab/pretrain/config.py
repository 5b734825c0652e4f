"""The typed configuration of ``reslab pretrain``: every training field, then the method's own. Needs no torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..features.options import KNN_K, KNN_TEMPERATURE
from ..options import option

METHOD_CHOICES = ("simclr", "moco", "byol")
TEMPERATURE = {"simclr": 0.5, "moco": 0.1}  # NT-Xent's, as in lightly's CIFAR-10 benchmarks
PROJECTION_DIM = {"simclr": 128, "moco": 128, "byol": 256}


# training fields that a self-supervised run has no use for: no flags, and refused when a YAML file sets them
NOT_APPLICABLE = ("task", "teacher", "kd_alpha", "kd_temperature", "progressive_sizes", "preset", "auto_augment",
                  "color_jitter", "random_erasing", "crop_padding", "sampler", "class_weights", "effective_beta",
                  "pos_weight", "label_smoothing", "tta", "dropout", "clip_frames", "frame_stride", "eval_clips",
                  "flip")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass
class PretrainConfig(TrainConfig):
    """A self-supervised run: the images of ``data`` without their labels (kept for the kNN monitor only)."""

    method: str = option("simclr", help="simclr (NT-Xent between the two views, negatives from the batch) | moco "
                         "(MoCo v2: a momentum encoder and a memory bank of negatives) | byol (a momentum target and "
                         "a predictor, no negatives)", choices=METHOD_CHOICES)
    epochs: int = option(100, help="pretraining epochs")
    batch_size: int = option(256, help="images per step (per process); each gives two views")
    eval_every: int = option(5, help="the kNN monitor every N epochs (and after the last); it picks the best epoch")
    temperature: float | None = option(None, help="NT-Xent temperature (default: 0.5 for simclr, 0.1 for moco)")
    projection_dim: int | None = option(None, help="the projection head's output size (default: 128, byol 256)")
    hidden_dim: int | None = option(None, help="the heads' hidden size (default: the backbone's feature width, "
                                    "twice it for byol)")
    momentum_base: float = option(0.99, help="moco/byol: the momentum encoder's decay at the start, rising to 1 "
                                  "along a cosine over the run")
    memory_bank: int = option(4096, help="moco: negatives kept from earlier batches")
    knn_k: int = option(KNN_K, help="kNN monitor: neighbours voting")
    knn_temperature: float = option(KNN_TEMPERATURE, help="kNN monitor: temperature of the similarity weights")

    def __post_init__(self) -> None:
        super().__post_init__()
        changed = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(self)
                   if f.name in NOT_APPLICABLE and getattr(self, f.name) != _default(f)]
        if self.lr == "auto":
            changed.append("--lr auto")
        if changed:
            raise ValueError(f"pretrain learns from images without their labels, in views of the method's own "
                             f"augmentation (lightly's); it takes no {', '.join(changed)}")
        if self.decode == "gpu":
            raise ValueError("pretrain decodes images on the CPU, where lightly's transforms make the views of large "
                             "images (small ones are augmented a batch at a time on the training device): leave out "
                             "--decode gpu")
        if self.in_chans != 3:
            raise ValueError("pretrain's views jitter colour and hue: the images are RGB (in_chans 3)")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"config field 'temperature' must be positive, got {self.temperature}")
        if not 0.0 <= self.momentum_base <= 1.0:
            raise ValueError(f"config field 'momentum_base' must be between 0 and 1, got {self.momentum_base}")
        for name in ("memory_bank", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"config field {name!r} must be at least 1, got {getattr(self, name)}")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.method}-{self.model}-{Path(self.data).name}"

    @property
    def nt_xent_temperature(self) -> float:
        return self.temperature if self.temperature is not None else TEMPERATURE.get(self.method, 0.5)

    @property
    def projection_size(self) -> int:
        return self.projection_dim or PROJECTION_DIM[self.method]
