"""Multi-label evaluation: each label is a yes/no question, answered by its own sigmoid probability.

Ranking quality is average precision (AP) per label, averaged over labels (macro mAP) or over every
image-label pair (micro mAP): it needs no threshold. Decisions need one per label, tuned on the
validation split to maximise that label's F1 and stored in the model file; precision, recall and F1,
sample-based F1 and the exact-match ratio are reported at those thresholds. The arithmetic is
scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..collectives import gather_across_ranks
from ..modelfile import DEFAULT_THRESHOLD
from .metrics import folded_batchnorm, forward_batches


def average_precisions(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """AP of each label; NaN for a label with no positive image (its AP is undefined)."""
    from sklearn.metrics import average_precision_score

    return np.array([average_precision_score(targets[:, c], probabilities[:, c]) if targets[:, c].any() else np.nan
                     for c in range(targets.shape[1])])


def mean_average_precision(targets: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """(macro mAP over the labels that occur, micro mAP over every image-label pair)."""
    from sklearn.metrics import average_precision_score

    per_label = average_precisions(targets, probabilities)
    macro = float(np.nanmean(per_label)) if not np.isnan(per_label).all() else 0.0
    micro = float(average_precision_score(targets.ravel(), probabilities.ravel())) if targets.any() else 0.0
    return macro, micro


def tune_thresholds(targets: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per label, the probability threshold (predict the label at or above it) with the best F1 on these
    images; 0.5 for a label with no positive image among them."""
    from sklearn.metrics import precision_recall_curve

    thresholds = []
    for c in range(targets.shape[1]):
        if not targets[:, c].any():
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        precision, recall, cuts = precision_recall_curve(targets[:, c], probabilities[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        thresholds.append(float(cuts[int(np.argmax(f1))]))
    return thresholds


def decisions(probabilities: np.ndarray, thresholds: list[float] | None) -> np.ndarray:
    """Multi-hot predictions: each label at or above its threshold (0.5 where none are given)."""
    cut = np.asarray(thresholds if thresholds is not None else DEFAULT_THRESHOLD, dtype=probabilities.dtype)
    return (probabilities >= cut).astype(np.int64)


def threshold_metrics(targets: np.ndarray, probabilities: np.ndarray, thresholds: list[float] | None
                      ) -> dict[str, float]:
    """Decision quality at the thresholds: micro and macro precision/recall/F1, sample-based F1 (the mean
    of each image's F1; an image with no labels and none predicted counts as right) and exact match."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    predicted = decisions(probabilities, thresholds)
    micro = precision_recall_fscore_support(targets, predicted, average="micro", zero_division=0)
    macro = precision_recall_fscore_support(targets, predicted, average="macro", zero_division=0)
    return {"precision_micro": float(micro[0]), "recall_micro": float(micro[1]), "f1_micro": float(micro[2]),
            "precision_macro": float(macro[0]), "recall_macro": float(macro[1]), "f1_macro": float(macro[2]),
            "f1_samples": float(f1_score(targets, predicted, average="samples", zero_division=1.0)),
            "exact_match": float(accuracy_score(targets, predicted))}


def per_label_report(targets: np.ndarray, probabilities: np.ndarray, thresholds: list[float],
                     classes: list[str]) -> list[dict]:
    from sklearn.metrics import precision_recall_fscore_support

    predicted = decisions(probabilities, thresholds)
    precision, recall, f1, support = precision_recall_fscore_support(targets, predicted, average=None,
                                                                     zero_division=0)
    ap = average_precisions(targets, probabilities)
    return [{"class": name, "ap": None if np.isnan(a) else float(a), "threshold": float(t), "precision": float(p),
             "recall": float(r), "f1": float(f), "support": int(s)}
            for name, a, t, p, r, f, s in zip(classes, ap, thresholds, precision, recall, f1, support)]


@dataclass
class MultilabelResult:
    loss: float
    targets: np.ndarray  # (N, labels) 0/1
    probabilities: np.ndarray  # (N, labels) sigmoid outputs
    thresholds: list[float] | None = None  # those of the model evaluated (None: 0.5 for every label)
    worst: list[tuple[float, np.ndarray, np.ndarray, Tensor]] = field(default_factory=list)  # (loss, true, p, image)

    @property
    def count(self) -> int:
        return len(self.targets)

    @cached_property
    def map_macro_micro(self) -> tuple[float, float]:
        """Computed once: the epoch's row and the choice of the best epoch both need it."""
        return mean_average_precision(self.targets, self.probabilities)

    @property
    def score(self) -> float:
        return self.map_macro_micro[0]

    def summary(self) -> dict[str, float]:
        macro, micro = self.map_macro_micro
        return {"loss": self.loss, "map": macro, "map_micro": micro,
                **threshold_metrics(self.targets, self.probabilities, self.thresholds), "count": self.count}

    def row(self) -> dict[str, float]:
        """The epoch's validation figures, as ``metrics.csv`` names them (decisions at 0.5: the thresholds
        are tuned on these images only for the model that is kept)."""
        summary = self.summary()
        return {"val_loss": self.loss, "val_map": summary["map"], "val_map_micro": summary["map_micro"],
                "val_f1_samples": summary["f1_samples"], "val_exact_match": summary["exact_match"]}


@torch.inference_mode()
def evaluate_multilabel(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device,
                        tta: bool = False, keep_worst: int = 0, channels_last: bool = False, amp: bool = False,
                        amp_dtype: str = "bfloat16", across_ranks: bool = False,
                        thresholds: list[float] | None = None) -> MultilabelResult:
    """Sigmoid probabilities of every image of ``batches`` and the mean binary cross-entropy; ``keep_worst``
    keeps the images with the highest loss (summed over their labels)."""
    model = folded_batchnorm(model.eval(), channels_last)
    targets, probabilities, losses = [], [], []
    worst: list[tuple[float, np.ndarray, np.ndarray, Tensor]] = []
    for x, y, logits in forward_batches(model, batches, device, tta, channels_last, amp, amp_dtype, multilabel=True):
        y = y.float()
        per_image = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1)
        p = logits.sigmoid()
        targets.append(y.cpu())
        probabilities.append(p.cpu())
        losses.append(per_image.cpu())
        if keep_worst:
            for i in per_image.argsort(descending=True)[:keep_worst].tolist():
                worst.append((float(per_image[i]), y[i].cpu().numpy(), p[i].cpu().numpy(), x[i].float().cpu()))
            worst = sorted(worst, key=lambda w: -w[0])[:keep_worst]
    if not targets:
        raise ValueError("nothing to evaluate: the split has no readable images")
    all_targets, all_probabilities, all_losses = torch.cat(targets), torch.cat(probabilities), torch.cat(losses)
    if across_ranks:
        all_targets, all_probabilities, all_losses = (gather_across_ranks(t)
                                                      for t in (all_targets, all_probabilities, all_losses))
    labels = all_targets.shape[1]
    return MultilabelResult(float(all_losses.double().sum()) / (len(all_losses) * labels),
                            all_targets.numpy().astype(np.int64), all_probabilities.double().numpy(), thresholds, worst)
