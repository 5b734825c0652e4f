"""Optimizer and learning-rate schedule factories (stepped once per optimizer step)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ..config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers only, unless asked otherwise:
    decaying BatchNorm scales and biases only hurts (as in timm and torchvision's recipes)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if decay_norm_and_bias or param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """The multiplier of the base learning rate at an optimizer step: linear warm-up, then the schedule."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and warmup == 0:
        warmup = max(1, round(0.25 * total))  # one-cycle always climbs first: a quarter of training

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        epoch = step / steps_per_epoch
        if cfg.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if cfg.schedule == "step":
            return cfg.gamma ** int(epoch // cfg.step_size)
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        if cfg.schedule == "onecycle":  # linear up (the warm-up), then linear down to zero
            return max(0.0, (total - step) / max(1, total - warmup))
        return 1.0  # constant

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LRScheduler:
    return LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch))
