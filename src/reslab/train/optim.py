"""Optimizer and learning-rate schedule factories (stepped once per optimizer step)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from ..config import TrainConfig
from .defaults import warmup_steps

HEAD = "fc"  # the classifier's module name in every reslab ResNet (torchvision's layout)


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, lr: float,
                     backbone_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers only, unless asked otherwise:
    decaying BatchNorm scales and biases only hurts (as in timm and torchvision's recipes).
    The backbone (everything but the head) learns at ``backbone_lr_scale`` times the head's rate."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        head = backbone_lr_scale == 1.0 or name.split(".")[0] == HEAD
        decayed = decay_norm_and_bias or param.ndim > 1
        groups.setdefault((head, decayed), []).append(param)
    return [{"params": params, "weight_decay": weight_decay if decayed else 0.0,
             "lr": lr if head else lr * backbone_lr_scale}
            for (head, decayed), params in sorted(groups.items(), key=lambda kv: (not kv[0][1], not kv[0][0]))]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``cfg`` as ``defaults.resolve_defaults`` returns it: the learning rate a number."""
    if not isinstance(cfg.lr, float | int) or isinstance(cfg.lr, bool):
        raise ValueError(f"the optimizer needs a resolved learning rate, got {cfg.lr!r}")
    scale = cfg.backbone_lr_scale if cfg.backbone_lr_scale is not None else 1.0
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, cfg.lr, scale)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "lars":
        from lightly.utils.lars import LARS  # lightly: the ssl extra

        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """The multiplier of the base learning rate at an optimizer step: linear warm-up, then the schedule."""
    total = cfg.epochs * steps_per_epoch
    warmup = warmup_steps(cfg, steps_per_epoch)

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
