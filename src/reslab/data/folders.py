"""A folder of class sub-folders: ``train/`` + ``val/`` (+ ``test/``), or one folder split 70/20/10 by class."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .images import is_image_file
from .multilabel import is_multilabel_data
from .splits import (
    VAL_NAMES,
    Dataset,
    FileSplit,
    holdout_validation,
    saved_split,
    split_record,
    stratified_split,
    subset,
)


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(dirs) < 2:
        hint = "; it holds a multi-label index: pass --task multilabel" if is_multilabel_data(str(root)) else ""
        raise ValueError(f"{root}: found {len(dirs)} class sub-folder(s); a classifier needs at least 2 "
                         f"(expected {root}/<class>/<image files>){hint}")
    return dirs


def scan_folder(root: Path, classes: list[str] | None = None,
                files: Callable[[Path], bool] = is_image_file) -> tuple[list[str], FileSplit]:
    """Every image file (or what ``files`` takes) under ``root/<class>/`` (recursively), labelled by its class
    folder."""
    dirs = _class_dirs(root)
    found = [d.name for d in dirs]
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(f"{root}: class folders {unknown} are not in the training classes {classes}")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and files(p):
                paths.append(p)
                labels.append(index[d.name])
    return classes, FileSplit(paths, labels)


def load_folder(root: Path, seed: int = 0, split_file: Path | None = None, hold_out: bool = True,
                files: Callable[[Path], bool] = is_image_file) -> Dataset:
    """``root/train`` + ``root/val`` (+ ``root/test``), or one folder split 70/20/10 by class.
    Without a val folder, 10% of train is held out for validation (unless ``hold_out`` is false).
    ``files``: which files count (images; ``videos.is_video_file`` for videos)."""
    if not root.is_dir():
        raise ValueError(f"{root}: dataset folder not found")
    if (root / "train").is_dir():
        classes, train = scan_folder(root / "train", files=files)
        test = scan_folder(root / "test", classes, files)[1] if (root / "test").is_dir() else None
        val_dir = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
        if val_dir is None:
            train, val = holdout_validation(train, seed) if hold_out else (train, test)
        else:
            val = scan_folder(val_dir, classes, files)[1]
        return Dataset(root.name, classes, train, val, test)

    classes, everything = scan_folder(root, files=files)
    relative = [str(p.relative_to(root)) for p in everything.paths]
    if split_file is not None and split_file.is_file():
        parts = saved_split(split_file, relative)
    else:
        parts = list(stratified_split(everything.labels, seed))
    train, val, test = (subset(everything, idx) for idx in parts)
    return Dataset(root.name, classes, train, val, test, split_file=split_record(seed, classes, relative, parts))
