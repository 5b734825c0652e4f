"""The model file: safetensors weights plus the metadata every later step needs.

Its metadata is read without torch (ONNX Runtime and OpenVINO deployments have none); its weights with it.

It is the contract between training and evaluation, prediction, export and serving: architecture
and options, class names and preprocessing travel with the weights, so nothing else is needed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from .atomic import atomic_path
from .data.preprocess import Clip, Preprocess
from .version import __version__

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = "reslab-model"
FORMAT_VERSION = 2  # 2: video models (a clip record); image models are still written as 1, which older reslab reads
DEFAULT_THRESHOLD = 0.5  # a multi-label model's decision threshold where none was tuned


@dataclass
class ModelSpec:
    """Everything needed to rebuild a network: stored in every model file."""

    arch: str
    num_classes: int = 1000
    in_chans: int = 3
    stem: str | None = None  # None: the family's own (imagenet for ResNet-18.., cifar for ResNet-20..)
    dropout: float = 0.0
    zero_init_residual: bool = False
    se: bool = False
    features_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)  # layers narrowed by structured pruning

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class ModelFileError(ValueError):
    """A file that is not a readable reslab model file."""


@dataclass
class ModelInfo:
    spec: ModelSpec
    classes: list[str]
    preprocess: Preprocess
    training: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"  # what the file is meant to run in: fp32, bf16 (a checked bf16 export) or int8
    task: str = "multiclass"  # multiclass (softmax over the classes) | multilabel (a sigmoid per label) | video
    thresholds: list[float] | None = None  # multilabel: each label's decision threshold, tuned on val
    clip: Clip | None = None  # video: how clips are drawn (the frame size and normalisation are ``preprocess``'s)

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    @property
    def frames(self) -> int | None:
        """A video model's frames per clip (its input is (N, C, T, H, W)); None for an image model."""
        return self.clip.frames if self.clip is not None else None

    def sample_shape(self) -> tuple[int, ...]:
        """One input of the network: (C, H, W) for an image, (C, T, H, W) for a video model's clip."""
        pre = self.preprocess
        return (pre.in_chans, *((self.frames,) if self.frames else ()), pre.image_size, pre.image_size)

    @property
    def decision_thresholds(self) -> list[float] | None:
        """A multi-label model's threshold per label (0.5 where none were tuned); None for a single-label one."""
        if not self.multilabel:
            return None
        return self.thresholds or [DEFAULT_THRESHOLD] * len(self.classes)

    def with_precision(self, precision: str) -> ModelInfo:
        return dataclasses.replace(self, precision=precision)

    def to_metadata(self) -> dict[str, str]:
        payload = {
            "format": FORMAT,
            "format_version": 2 if self.clip is not None else 1,
            "model": self.spec.to_dict(),
            "classes": self.classes,
            "preprocess": asdict(self.preprocess),
            "training": self.training,
            "precision": self.precision,
            "task": self.task,
            **({"thresholds": self.thresholds} if self.thresholds is not None else {}),
            **({"clip": asdict(self.clip)} if self.clip is not None else {}),
        }
        return {"reslab": json.dumps(payload)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None, path: Path) -> ModelInfo:
        if not metadata or "reslab" not in metadata:
            raise ModelFileError(f"{path}: a safetensors file without reslab metadata (not a reslab model file)")
        try:
            payload = json.loads(metadata["reslab"])
            if payload.get("format") != FORMAT:
                raise ModelFileError(f"{path}: metadata format is {payload.get('format')!r}, expected {FORMAT!r}")
            _check_version(payload, path)
            return cls(
                spec=ModelSpec.from_dict(payload["model"]),
                classes=list(payload["classes"]),
                preprocess=Preprocess(**payload["preprocess"]),
                training=payload.get("training", {}),
                precision=payload.get("precision", "fp32"),
                task=payload.get("task", "multiclass"),
                thresholds=payload.get("thresholds"),
                clip=Clip(**payload["clip"]) if payload.get("clip") else None,
            )
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ModelFileError(f"{path}: damaged reslab metadata ({e})") from e


def _check_version(payload: dict[str, Any], path: Path) -> None:
    """A file of a newer layout is refused rather than misread; older layouts load (their missing fields
    take the defaults they had)."""
    version = payload.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path}: damaged reslab metadata (format_version {version!r}, expected a positive "
                             f"integer)")
    if version > FORMAT_VERSION:
        writer = payload.get("training", {}).get("reslab") if isinstance(payload.get("training"), dict) else None
        raise ModelFileError(f"{path}: model file format version {version}"
                             f"{f' (written by reslab {writer})' if writer else ''}; this reslab ({__version__}) "
                             f"reads versions up to {FORMAT_VERSION}: pip install --upgrade reslab")


def save_model_file(path: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write weights and metadata atomically: a crash leaves the old file or the new one, never half."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=info.to_metadata())
    return path


def _checked(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    return path


def read_model_info(path: str | Path) -> ModelInfo:
    """The metadata alone: reads the file's header, not its weights."""
    path = _checked(path)
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header alone: no torch needed
            metadata = f.metadata()
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise ModelFileError(f"{path}: not a readable safetensors model file ({e})") from e
    return ModelInfo.from_metadata(metadata, path)


def read_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    from safetensors.torch import load_file

    info = read_model_info(path)
    try:
        state = load_file(str(path))
    except Exception as e:  # a valid header over damaged tensor data
        raise ModelFileError(f"{path}: not a readable safetensors model file ({e})") from e
    return state, info
