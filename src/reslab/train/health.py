"""Signs that a run has gone wrong, said when they show: a non-finite loss stops the run at once; a first
epoch whose training loss is above that of uniform guessing gets a warning; a model that ends no better
than always answering the commonest class is called what it is."""

from __future__ import annotations

import math

from torch import Tensor

NOT_LEARNING_SIGMAS = 2.0  # a validation top-1 within this many binomial standard deviations of chance
ABOVE_UNIFORM = 1.05  # a first epoch's loss this far above uniform guessing: a from-scratch start hovers at it


class TrainingDiverged(ValueError):
    """The training loss became inf or nan: the weights are lost to it, so the run stops."""


def diverged_message(loss: float, epoch: int, step: int, lr: float, saved_epochs: int, data: str, model: str) -> str:
    kept = (f"the run folder keeps epoch {saved_epochs}, the last good one (last.pt)" if saved_epochs
            else "no checkpoint was written")
    return (f"training diverged: the training loss is {loss} at step {step} of epoch {epoch} (lr {lr:.4g}); {kept}. "
            f"Lower the learning rate (for example --lr {lr / 10:.2g}), or let `reslab lr-find --data {data} "
            f"--model {model}` suggest one (`--lr auto` runs it before training)")


def uniform_guess_loss(task: str, num_classes: int, distilled: bool, pos_weighted: bool) -> float | None:
    """The training loss of a network that answers every image uniformly: ln K for a softmax over K
    classes (label smoothing and class weights leave it unchanged), ln 2 for independent sigmoids.
    None where the loss has other terms (distillation, positive weights)."""
    if distilled or pos_weighted:
        return None
    return math.log(2) if task == "multilabel" else math.log(num_classes)


def above_uniform_warning(train_loss: float, uniform: float | None) -> str:
    if uniform is None or not train_loss > ABOVE_UNIFORM * uniform:
        return ""
    return (f"  warning: the training loss stayed above uniform guessing ({uniform:.3f}): the learning rate may be "
            f"too high (lower --lr, or `reslab lr-find`)")


def chance_top1(confusion: Tensor) -> tuple[float, float]:
    """The top-1 of always answering the split's commonest class, and the margin within which a top-1
    is no better than it (``NOT_LEARNING_SIGMAS`` binomial standard deviations on this many images)."""
    per_class = confusion.sum(dim=1).double()
    count = float(per_class.sum())
    chance = float(per_class.max()) / count
    return chance, NOT_LEARNING_SIGMAS * math.sqrt(chance * (1 - chance) / count)


def learned_nothing(top1: float, confusion: Tensor) -> str:
    """A sentence for the summary if ``top1`` is at chance on the split ``confusion`` counts, else ''."""
    chance, margin = chance_top1(confusion)
    if top1 > chance + margin:
        return ""
    return (f"the model learned nothing: its best val top-1 {top1:.4f} is within {margin:.3f} of always answering "
            f"the commonest class ({chance:.4f}). Check the labels, lower --lr or try `reslab lr-find`, or train "
            f"longer")
