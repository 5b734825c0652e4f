"""The defaults that follow the run: the learning rate scaled to the global batch, a short warm-up sized
to the run, and fine-tuning's slower backbone. Each is resolved once into the config (so ``config.yaml``
reproduces the run from its folder alone) and said in one line.

The scaling rules are those of Goyal et al. (2017) and timm: linear in the batch for SGD, square root
for AdamW, from a learning rate given at a reference batch of 256.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import TrainConfig

REFERENCE_BATCH = 256
LR_BASE = {"sgd": 0.1, "adamw": 1e-3, "lars": 0.3}  # at REFERENCE_BATCH (LARS: SimCLR's recipe)
LINEAR = ("sgd", "lars")  # optimizers whose rate grows linearly with the batch; AdamW's by the square root
WARMUP_FRACTION = 0.05  # of the run's optimizer steps...
WARMUP_MAX_STEPS = 300  # ...but never more than this many
ONECYCLE_WARMUP_FRACTION = 0.25  # one-cycle always climbs first
FINETUNE_BACKBONE_LR_SCALE = 0.1  # pretrained layers learn 10x slower than the new head


@dataclass(frozen=True)
class RunShape:
    """What the defaults depend on: the batch over all processes and micro-batches, the run's length,
    and whether it starts from pretrained weights."""

    batch_size: int
    world_size: int
    accumulate: int
    steps_per_epoch: int  # optimizer steps
    transfer: bool

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size * self.accumulate


def scaled_lr(lr_base: float, optimizer: str, global_batch: int) -> float:
    ratio = global_batch / REFERENCE_BATCH
    return lr_base * (ratio if optimizer in LINEAR else math.sqrt(ratio))


def default_warmup_steps(schedule: str, total_steps: int) -> int:
    if schedule == "onecycle":
        return max(1, round(ONECYCLE_WARMUP_FRACTION * total_steps))
    return max(1, min(WARMUP_MAX_STEPS, math.ceil(WARMUP_FRACTION * total_steps)))


def warmup_is_set(cfg: TrainConfig) -> bool:
    """Whether the user (or a recipe) gave the warm-up. One-cycle climbs for a quarter of the run unless told
    otherwise: its warm-up is its first half-cycle, so 0 there means the default."""
    return cfg.warmup_epochs is not None and not (cfg.schedule == "onecycle" and cfg.warmup_epochs == 0)


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of linear warm-up: the one set, or the default for the run."""
    if warmup_is_set(cfg):
        return round(cfg.warmup_epochs * steps_per_epoch)
    return default_warmup_steps(cfg.schedule, cfg.epochs * steps_per_epoch)


def _batch_words(shape: RunShape) -> str:
    parts = [str(shape.batch_size)]
    if shape.world_size > 1:
        parts.append(f"{shape.world_size} processes")
    if shape.accumulate > 1:
        parts.append(f"{shape.accumulate} micro-batches")
    return f"{shape.global_batch}" + (f" = {' x '.join(parts)}" if len(parts) > 1 else "")


def _lr_line(cfg: TrainConfig, lr_base: float, shape: RunShape) -> str:
    if cfg.lr is not None:
        return f"lr {cfg.lr:.4g} (set)"
    lr = scaled_lr(lr_base, cfg.optimizer, shape.global_batch)
    batch = _batch_words(shape)
    if cfg.optimizer in LINEAR:
        formula, rule = f"{lr_base:g} x {shape.global_batch}/{REFERENCE_BATCH}", f"linearly ({cfg.optimizer.upper()})"
    else:
        formula, rule = f"{lr_base:g} x sqrt({shape.global_batch}/{REFERENCE_BATCH})", "by the square root (AdamW)"
    return (f"lr {lr:.4g} = {formula} (--lr-base {lr_base:g} at a batch of {REFERENCE_BATCH}, scaled {rule} to the "
            f"global batch {batch}; --lr sets it, --lr auto finds it)")


def _warmup_line(cfg: TrainConfig, steps: int, shape: RunShape) -> str:
    epochs = steps / shape.steps_per_epoch
    if warmup_is_set(cfg):
        return f"warm-up {steps} steps ({epochs:.3g} epochs, set)"
    if cfg.schedule == "onecycle":
        why = "one-cycle's climb: a quarter of the run"
    else:
        total = cfg.epochs * shape.steps_per_epoch
        why = f"{WARMUP_FRACTION:.0%} of the run's {total} steps, at most {WARMUP_MAX_STEPS}; --warmup-epochs sets it"
    return f"warm-up {steps} steps ({epochs:.3g} epochs: {why})"


def _backbone_line(cfg: TrainConfig, scale: float, lr: float) -> str:
    if scale == 1.0:
        return ""
    why = "set" if cfg.backbone_lr_scale is not None else "fine-tuning pretrained weights; --backbone-lr-scale sets it"
    return f"backbone lr {lr * scale:.4g} = {scale:g} x the head's ({why})"


def resolve_defaults(cfg: TrainConfig, shape: RunShape) -> tuple[TrainConfig, list[str]]:
    """The config with every run-dependent default filled in, and a line for each saying what it chose
    and why. ``cfg.lr`` must not be ``"auto"`` here: the range test resolves that first."""
    if cfg.lr == "auto":
        raise ValueError("resolve --lr auto (the range test) before the other defaults")
    lr_base = cfg.lr_base if cfg.lr_base is not None else LR_BASE[cfg.optimizer]
    lines = [_lr_line(cfg, lr_base, shape)]
    lr = cfg.lr if cfg.lr is not None else scaled_lr(lr_base, cfg.optimizer, shape.global_batch)
    steps = warmup_steps(cfg, shape.steps_per_epoch)
    lines.append(_warmup_line(cfg, steps, shape))
    scale = cfg.backbone_lr_scale
    if scale is None:
        scale = FINETUNE_BACKBONE_LR_SCALE if shape.transfer else 1.0
    lines.append(_backbone_line(cfg, scale, lr))
    resolved = replace(cfg, lr=lr, lr_base=lr_base, warmup_epochs=steps / shape.steps_per_epoch,
                       backbone_lr_scale=scale)
    return resolved, [line for line in lines if line]
