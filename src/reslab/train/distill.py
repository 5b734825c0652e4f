"""Knowledge distillation (Hinton et al. 2015): the student learns from the teacher's softened
probabilities as well as from the labels.

loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The T^2 factor keeps the soft term's gradients at the scale of the hard term's as T changes. Multi-label
models distil each label's sigmoid instead (``sigmoid_distillation_loss``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.preprocess import Preprocess
from ..models import load_model_file
from .multilabel_loss import multilabel_loss


def distillation_loss(student: Tensor, teacher: Tensor, labels: Tensor, alpha: float, temperature: float,
                      label_smoothing: float = 0.0, class_weights: Tensor | None = None) -> Tensor:
    """``class_weights`` weigh the labels' term only; the teacher's soft targets carry its own view of the classes."""
    hard = F.cross_entropy(student, labels, weight=class_weights, label_smoothing=label_smoothing)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return (1 - alpha) * hard + alpha * temperature**2 * soft


class Teacher(nn.Module):
    """A trained model file, frozen, in eval mode, fed the student's batches.

    When the teacher was trained with another normalisation or image size, each batch is mapped
    to its inputs (un-normalised, normalised its way, resized) on the device."""

    def __init__(self, path: str | Path, classes: list[str], student: Preprocess, device: torch.device,
                 channels_last: bool = True, task: str = "multiclass") -> None:
        super().__init__()
        model, info = load_model_file(path, device)
        if info.classes != classes:
            raise ValueError(f"{path}: the teacher's classes {info.classes} differ from the data's {classes}")
        if info.task != task:
            raise ValueError(f"{path}: the teacher is a {info.task} model, the student {task}")
        if info.preprocess.in_chans != student.in_chans:
            raise ValueError(f"{path}: the teacher takes {info.preprocess.in_chans}-channel images, "
                             f"the student {student.in_chans}")
        self.model = model.eval().requires_grad_(False)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.student, self.own = student, info.preprocess

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # always in eval mode: BatchNorm uses its running statistics

    def _inputs(self, x: Tensor) -> Tensor:
        s, t = self.student, self.own
        if (s.mean, s.std) != (t.mean, t.std):
            shape = (1, -1, 1, 1)
            raw = x * x.new_tensor(s.std).view(shape) + x.new_tensor(s.mean).view(shape)
            x = (raw - x.new_tensor(t.mean).view(shape)) / x.new_tensor(t.std).view(shape)
        if t.image_size != s.image_size:
            x = F.interpolate(x, size=(t.image_size, t.image_size), mode="bilinear", align_corners=False,
                              antialias=t.image_size < s.image_size)
        return x

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.model(self._inputs(x))


def sigmoid_distillation_loss(student: Tensor, teacher: Tensor, targets: Tensor, alpha: float, temperature: float,
                              label_smoothing: float = 0.0, pos_weight: Tensor | None = None) -> Tensor:
    """The multi-label form: each label's sigmoid(teacher / T) is a soft yes/no target of the student's
    sigmoid(student / T) (binary cross-entropy, x T^2); ``pos_weight`` weighs the labels' term only."""
    hard = multilabel_loss(student, targets, label_smoothing, pos_weight)
    soft = F.binary_cross_entropy_with_logits(student / temperature, torch.sigmoid(teacher / temperature))
    return (1 - alpha) * hard + alpha * temperature**2 * soft
