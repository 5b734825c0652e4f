"""Which training path runs which augmentation, and the one function behind each: the table that
``pipeline.training_path`` and the in-memory path read to choose or refuse a path.

The paths: ``memory`` (small images decoded once, augmented a batch at a time), ``gpu`` (nvJPEG and batch
operations on the GPU), ``cpu`` (reduced-scale decoding and crops in workers, batch normalisation and
jitter) and ``per-image`` (the ``cpu`` path's read step, then torchvision's per-image policies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .options import AugmentOptions

PATHS = ("memory", "gpu", "cpu", "per-image")


@dataclass(frozen=True)
class Augmentation:
    name: str
    requested: Callable[[AugmentOptions], bool]
    paths: tuple[str, ...]  # the paths that run it
    implementation: str  # where it lives: one function per operation, whichever path runs it


AUGMENTATIONS = (
    Augmentation("RandomResizedCrop + flip (preset imagenet)", lambda a: a.preset == "imagenet",
                 ("gpu", "cpu", "per-image"),
                 "boxes and flips: crops.train_draw; pixels: batch_ops.resized_crops on the GPU, the read step "
                 "decoding.TrainCrops in CPU workers (a JPEG decoded at a reduced scale, then cropped)"),
    Augmentation("pad-and-crop + flip (preset cifar)", lambda a: a.preset == "cifar", ("memory", "per-image"),
                 "batch_ops.shifted_crops and batch_ops.flip_where"),
    Augmentation("colour jitter", lambda a: a.color_jitter > 0, PATHS, "batch_ops.color_jitter"),
    Augmentation("RandAugment or TrivialAugment", lambda a: a.auto_augment != "none", ("memory", "per-image"),
                 "torchvision v2, per image (transforms.train_policies)"),
    Augmentation("random erasing", lambda a: a.random_erasing > 0, ("memory", "per-image"),
                 "torchvision v2, per image (transforms.train_policies)"),
)


def not_run_by(path: str, augment: AugmentOptions) -> list[str]:
    """The augmentations ``augment`` asks for that ``path`` does not run."""
    return [a.name for a in AUGMENTATIONS if a.requested(augment) and path not in a.paths]
