"""Evaluation: loss, top-1/top-5, confusion matrix, per-class precision/recall/F1, worst images."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..collectives import sum_across_ranks
from ..hardware import autocast_dtype, memory_format
from ..models import weight_rank


@dataclass
class Figures:
    """What ``reslab eval`` reports of a split, for either task."""

    metrics: dict[str, float]  # loss, top1, top5, balanced_accuracy, macro_f1, count; multi-label: map, ...
    per_class: list[dict]  # one row per class: precision, recall, f1, support (multi-label: ap, threshold too)
    fp32: dict[str, float] | None = None  # bf16 runs: the same split in fp32 and the decisions' agreement
    thresholds: str | None = None  # multi-label: "tuned on val" or "0.5"


@dataclass
class EvalResult:
    loss: float
    top1: float
    top5: float
    count: int
    confusion: Tensor  # (true, predicted) counts
    worst: list[tuple[float, int, int, Tensor]] = field(default_factory=list)  # (p_true, true, pred, image)
    predictions: Tensor | None = None  # top-1 of each image in order (one process)

    @property
    def balanced_accuracy(self) -> float:
        return balanced_accuracy(self.confusion)

    @property
    def macro_f1(self) -> float:
        return macro_f1(self.confusion)

    @property
    def score(self) -> float:
        """What picks the best epoch: top-1 (a multi-label result's is its mAP)."""
        return self.top1

    def summary(self) -> dict[str, float]:
        return {"loss": self.loss, "top1": self.top1, "top5": self.top5, "balanced_accuracy": self.balanced_accuracy,
                "macro_f1": self.macro_f1, "count": self.count}

    def row(self) -> dict[str, float]:
        """The epoch's validation figures, as ``metrics.csv`` names them."""
        return {"val_loss": self.loss, "val_top1": self.top1, "val_top5": self.top5,
                "val_balanced_accuracy": self.balanced_accuracy, "val_macro_f1": self.macro_f1}


def confusion_csv(confusion: torch.Tensor, classes: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, confusion.tolist()):
        writer.writerow([name, *row])
    return buffer.getvalue()


def per_class_report(confusion: Tensor, classes: list[str]) -> list[dict]:
    """Precision, recall and F1 of each class from a confusion matrix (rows: true, columns: predicted)."""
    c = confusion.double()
    tp = c.diag()
    predicted, actual = c.sum(0), c.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    return [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, actual)
    ]


def balanced_accuracy(confusion: Tensor) -> float:
    """The mean of the recalls of the classes that occur: what top-1 would be with every class equally
    frequent (scikit-learn's ``balanced_accuracy_score``)."""
    c = confusion.double()
    actual = c.sum(1)
    present = actual > 0
    return float((c.diag()[present] / actual[present]).mean()) if present.any() else 0.0


def macro_f1(confusion: Tensor) -> float:
    """The unweighted mean of the per-class F1 over the classes that occur or are predicted
    (scikit-learn's ``f1_score(average="macro")``)."""
    c = confusion.double()
    tp, predicted, actual = c.diag(), c.sum(0), c.sum(1)
    seen = (predicted > 0) | (actual > 0)
    f1 = 2 * tp / (predicted + actual).clamp(min=1)
    return float(f1[seen].mean()) if seen.any() else 0.0


def autocast_context(device: torch.device, amp: bool, dtype: str = "bfloat16"):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype(device, dtype))


def folded_batchnorm(model: nn.Module, channels_last: bool) -> nn.Module:
    """A copy of an eval-mode model with each BatchNorm folded into the convolution before it: the
    same outputs (to float rounding), a quarter faster on CPUs. The model itself is left as it is;
    one that torch.fx cannot trace is returned unchanged."""
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(model)
    except (torch.fx.proxy.TraceError, TypeError, RuntimeError, NotImplementedError):
        return model
    return fused.to(memory_format=memory_format(True, weight_rank(fused))) if channels_last else fused


def forward_batches(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device,
                    tta: bool = False, channels_last: bool = False, amp: bool = False, amp_dtype: str = "bfloat16",
                    multilabel: bool = False) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(images, labels, logits) of each batch, on the device. ``tta`` averages the probabilities of each
    image and its horizontal mirror (softmax, or each label's sigmoid) and gives back their logits."""
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=memory_format(True, x.dim()))
        with autocast_context(device, amp, amp_dtype):
            logits = model(x).float()
            if tta:
                mirrored = model(x.flip(-1)).float()  # width: the last axis of images and clips
                logits = (torch.logit((logits.sigmoid() + mirrored.sigmoid()) / 2, eps=1e-7) if multilabel
                          else torch.log((logits.softmax(1) + mirrored.softmax(1)) / 2))
        yield x, y, logits


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    device: torch.device,
    tta: bool = False,
    keep_worst: int = 0,
    channels_last: bool = False,
    amp: bool = False,
    amp_dtype: str = "bfloat16",
    across_ranks: bool = False,
) -> EvalResult:
    """Average loss and accuracy over every image of ``batches``; ``tta`` averages the
    probabilities of each image and its horizontal mirror. ``across_ranks``: each process holds a
    shard of the split, and the figures are summed over all processes."""
    model = folded_batchnorm(model.eval(), channels_last)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top1, top5, count = 0.0, 0, 0, 0
    worst: list[tuple[float, int, int, Tensor]] = []
    predictions: list[Tensor] = []
    k = min(5, num_classes)
    for x, y, logits in forward_batches(model, batches, device, tta, channels_last, amp, amp_dtype):
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        topk = logits.topk(k, dim=1).indices
        pred = topk[:, 0]
        predictions.append(pred.cpu())
        top1 += int((pred == y).sum())
        top5 += int((topk == y[:, None]).any(1).sum())
        count += len(y)
        confusion += torch.bincount((y * num_classes + pred).cpu(), minlength=num_classes**2).view(
            num_classes, num_classes)
        if keep_worst:
            p_true = logits.softmax(1).gather(1, y[:, None])[:, 0]
            for i in p_true.argsort()[:keep_worst].tolist():
                worst.append((float(p_true[i]), int(y[i]), int(pred[i]), x[i].float().cpu()))
            worst = sorted(worst, key=lambda w: w[0])[:keep_worst]
    if across_ranks:
        totals = torch.cat([torch.tensor([loss_sum, top1, top5, count], dtype=torch.float64),
                            confusion.flatten().double()]).to(device)
        totals = sum_across_ranks(totals).cpu()
        loss_sum, top1, top5, count = totals[:4].tolist()
        confusion = totals[4:].round().long().view(num_classes, num_classes)
    if count == 0:
        raise ValueError("nothing to evaluate: the split has no readable images")
    return EvalResult(loss_sum / count, top1 / count, top5 / count, int(count), confusion, worst,
                      torch.cat(predictions))
