"""The learning-rate range test (Smith 2017, as fastai's ``lr_find``): a few hundred training steps with the
learning rate growing exponentially, the smoothed loss recorded at each, stopped once the loss has clearly
diverged. The run's own steps are used (its data, augmentation, loss, precision and parameter groups) and
the network, its optimiser-free state and the random streams are put back afterwards, so a run that
starts after the test starts exactly as it would have without it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..collectives import sum_across_ranks
from ..models import set_train_mode
from .checkpoint import restore_rng_state, rng_state
from .optim import build_optimizer
from .options import LrFindOptions

if TYPE_CHECKING:
    from .trainer import Trainer

START_LR, END_LR, STEPS = LrFindOptions.start_lr, LrFindOptions.end_lr, LrFindOptions.steps
SMOOTHING = 0.98  # exponential moving average of the loss, debiased
DIVERGED = 4.0  # stop once the smoothed loss is this many times its minimum
SUGGESTION_BELOW_MINIMUM = 10.0  # the suggestion: an order of magnitude below the lowest loss's rate
SKIP_START = 0.1  # of the points: the first smoothed values rest on a handful of losses


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    start_lr: float
    end_lr: float

    def _lowest(self) -> int:
        start = int(SKIP_START * len(self.losses))
        return min(range(start, len(self.losses)), key=self.losses.__getitem__)

    @property
    def minimum_lr(self) -> float:
        return self.lrs[self._lowest()]

    @property
    def steepest_lr(self) -> float:
        """Where the smoothed loss falls fastest against log(lr) (the steps are equal in it), before its minimum."""
        start, end = int(SKIP_START * len(self.losses)), self._lowest()
        if end - start < 2:
            return self.lrs[end]
        return self.lrs[min(range(start, end), key=lambda i: self.losses[i + 1] - self.losses[i])]

    def as_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "minimum_lr": self.minimum_lr, "steepest_lr": self.steepest_lr,
                "steps": len(self.lrs), "lrs": self.lrs, "losses": self.losses}

    @property
    def suggestion(self) -> float:
        return max(self.lrs[0], self.minimum_lr / SUGGESTION_BELOW_MINIMUM)

    def line(self) -> str:
        return (f"lr {self.suggestion:.4g} from a range test of {len(self.lrs)} steps ({self.start_lr:g} to "
                f"{self.lrs[-1]:.3g}): the loss was lowest at {self.minimum_lr:.3g}, the suggestion is a tenth of "
                f"that (steepest descent at {self.steepest_lr:.3g})")


def range_test(trainer: Trainer, steps: int = STEPS, start_lr: float = START_LR, end_lr: float = END_LR) -> RangeTest:
    """The test on ``trainer``'s network and data; ``trainer.cfg`` gives the optimiser and its groups."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"the range test needs 0 < start lr < end lr, got {start_lr} and {end_lr}")
    if steps < 10:
        raise ValueError(f"the range test needs at least 10 steps, got {steps}")
    model, rt = trainer.model, trainer.rt
    saved_weights, saved_rng = copy.deepcopy(model.state_dict()), rng_state()
    optimizer = build_optimizer(model, replace(trainer.cfg, lr=start_lr))
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    scheduler = LambdaLR(optimizer, lambda step: growth ** step)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=trainer.scaler.is_enabled())
    lrs: list[float] = []
    smoothed: list[float] = []
    raw: list[float] = []
    average = 0.0
    set_train_mode(model, True)
    try:
        for step, (x, y) in enumerate(_batches(trainer, steps)):
            _, loss = trainer.forward_loss(x, y, trainer.data.preprocess.image_size)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            value = float(sum_across_ranks(loss.detach().double().reshape(1))) / rt.world_size
            lrs.append(optimizer.param_groups[0]["lr"])
            scheduler.step()
            if not math.isfinite(value):
                break
            raw.append(value)
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed.append(average / (1 - SMOOTHING ** (step + 1)))
            if smoothed[-1] > DIVERGED * min(smoothed):
                break
    finally:
        model.load_state_dict(saved_weights)
        restore_rng_state(saved_rng)
    lrs = lrs[:len(smoothed)]
    if len(smoothed) < 3:
        raise ValueError(f"the range test diverged within {len(smoothed)} steps of lr {start_lr:g}: start lower "
                         f"(--start-lr)")
    return RangeTest(lrs, smoothed, raw, start_lr, end_lr)


def _batches(trainer: Trainer, steps: int):
    """``steps`` training batches, over as many epochs of the loader as that takes."""
    loader, epoch, given = trainer.data.train, 0, 0
    while given < steps:
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch
            given += 1
            if given == steps:
                return
        epoch += 1
