"""What ``reslab pretrain`` learns from: any image data reslab reads, with or without class folders."""

from __future__ import annotations

from pathlib import Path

from ..data.datasets import load_dataset
from ..data.images import is_image_file
from ..data.multilabel import is_multilabel_data
from ..data.splits import Dataset, FileSplit
from ..data.videos import is_video_file
from .config import PretrainConfig

UNLABELLED = "unlabelled"
STATS_IMAGES = 64  # a folder without classes has no val split: these images stand in for it, never scored


def _class_folders(root: Path) -> int:
    return sum(1 for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def pretrain_dataset(cfg: PretrainConfig, split_file: Path | None) -> Dataset:
    """The splits of ``cfg.data``. A folder without class sub-folders (images anywhere below it) is one unlabelled
    training split. A multi-label index and a folder of videos are refused: the methods take still images, and
    the kNN monitor one class per image."""
    root = Path(cfg.data)
    if is_multilabel_data(cfg.data):
        raise ValueError(f"{cfg.data} holds a multi-label index: pretrain's kNN monitor scores one class per image. "
                         f"Pass the folder of the images themselves (labels are not needed), or a folder of class "
                         f"folders")
    if root.is_dir():
        files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        images = [p for p in files if is_image_file(p)]
        if not images and any(is_video_file(p) for p in files):
            raise ValueError(f"{root} holds videos: simclr, moco and byol here learn from still images (pass a "
                             f"folder of images, or frames extracted from the videos)")
        if not (root / "train").is_dir() and _class_folders(root) < 2:
            if not images:
                raise ValueError(f"{root}: no image files found")
            return Dataset(root.name, [UNLABELLED], FileSplit(images, [0] * len(images)),
                           FileSplit(images[:STATS_IMAGES], [0] * min(len(images), STATS_IMAGES)), None)
    return load_dataset(cfg.data, cfg.cache_dir, cfg.seed, split_file, cfg.eval_split,
                        columns=(cfg.image_column, cfg.label_column))


def is_labelled(dataset: Dataset) -> bool:
    return dataset.classes != [UNLABELLED]
