"""What every dataset kind produces: splits of images (files, pack entries or arrays) and their labels, and the
seeded stratified splitting they share."""

from __future__ import annotations

import json
import random
import struct
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic

VAL_NAMES = ("val", "valid", "validation")
SPLIT_NAMES = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.2, 0.1)
HOLDOUT_FRACTIONS = (0.9, 0.1, 0.0)


@dataclass
class FileSplit:
    """Images on disk: paths and labels (integers, or multi-hot rows for multi-label data)."""

    paths: list[Path]
    labels: list[int] | np.ndarray  # multi-hot rows (N, classes) for multi-label data

    def __len__(self) -> int:
        return len(self.paths)

    def source(self, i: int) -> Path:
        return self.paths[i]


class PackSplit:
    """Encoded images in a pack (``reslab pack``): bytes end to end in a file, memory-mapped in each
    process that reads them (worker processes open their own map; nothing is copied to them)."""

    def __init__(self, file: Path, key: str, starts: np.ndarray, ends: np.ndarray, labels: list[int],
                 names: list[str]) -> None:
        self.file, self.key = file, key
        self.starts, self.ends, self.labels, self.names = starts, ends, labels, names
        self.paths = [Path(n) for n in names]  # where each image came from, relative to the packed folder
        self._blob: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def source(self, i: int) -> bytes:
        if self._blob is None:
            self._blob = npz_member_map(self.file, self.key)
        return self._blob[self.starts[i] : self.ends[i]].tobytes()

    def take(self, indices: list[int]) -> PackSplit:
        return PackSplit(self.file, self.key, self.starts[indices], self.ends[indices],
                         [self.labels[i] for i in indices], [self.names[i] for i in indices])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_blob": None}


def npz_member_map(path: Path, key: str) -> np.ndarray:
    """A memory map of one array stored uncompressed in an ``.npz`` (``np.savez``): nothing is read until used."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return np.load(path)[key]
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        return np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape)


@dataclass
class ArraySplit:
    """Decoded images in memory: uint8 (N, C, H, W) and labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


Segment = tuple[float, float] | None  # (start, end) seconds of the file; None: all of it


@dataclass(frozen=True)
class VideoSource:
    path: Path
    segment: Segment = None


@dataclass
class VideoSplit:
    """Videos (or segments of them) and their labels."""

    paths: list[Path]
    labels: list[int]
    segments: list[Segment]

    def __len__(self) -> int:
        return len(self.paths)

    def source(self, i: int) -> VideoSource:
        return VideoSource(self.paths[i], self.segments[i])

    def take(self, indices: list[int]) -> VideoSplit:
        return VideoSplit([self.paths[i] for i in indices], [self.labels[i] for i in indices],
                          [self.segments[i] for i in indices])


Split = FileSplit | ArraySplit | PackSplit | VideoSplit
EncodedSplit = FileSplit | PackSplit | VideoSplit  # still to be decoded: each one's ``source(i)``


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split | None
    split_file: dict | None = None  # the generated 70/20/10 split, to be written into the run
    packed_from: dict | None = None  # a pack's record: the folder it was made from, and how
    task: str = "multiclass"  # multiclass (one integer label per image) | multilabel (multi-hot rows)


def stratified_split(labels: list[int], seed: int, fractions=SPLIT_FRACTIONS) -> tuple[list[int], ...]:
    """Indices of train/val/test, split class by class with a seeded shuffle (repeatable)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[y].append(i)
    rng = random.Random(seed)
    parts: tuple[list[int], ...] = ([], [], [])
    for y in sorted(by_class):
        idx = by_class[y]
        rng.shuffle(idx)
        n = len(idx)
        n_val = min(n - 1, max(1, round(n * fractions[1]))) if n > 1 and fractions[1] > 0 else 0
        n_test = min(n - 1 - n_val, round(n * fractions[2])) if n > 2 else 0
        n_train = n - n_val - n_test
        parts[0].extend(idx[:n_train])
        parts[1].extend(idx[n_train : n_train + n_val])
        parts[2].extend(idx[n_train + n_val :])
    return tuple(sorted(p) for p in parts)


def subset(split: Split, indices: list[int]) -> Split:
    if isinstance(split, PackSplit | VideoSplit):
        return split.take(indices)
    if isinstance(split, ArraySplit):
        return ArraySplit(split.images[indices], split.labels[indices])
    labels = split.labels[indices] if isinstance(split.labels, np.ndarray) else [split.labels[i] for i in indices]
    return FileSplit([split.paths[i] for i in indices], labels)


def holdout_validation(train: Split, seed: int) -> tuple[Split, Split]:
    """Hold out a stratified, seeded 10% of ``train`` for validation, where a dataset has none:
    the test split is never used to pick a model."""
    labels = [int(y) for y in train.labels]
    keep, val, _ = stratified_split(labels, seed, fractions=HOLDOUT_FRACTIONS)
    return subset(train, keep), subset(train, val)


def saved_split(split_file: Path, relative: list[str]) -> list[list[int]]:
    """Indices of train/val/test in ``relative`` (the files found now) as a run's ``split.json`` lists them."""
    saved = json.loads(split_file.read_text())
    position = {r: i for i, r in enumerate(relative)}
    missing = [r for part in SPLIT_NAMES for r in saved.get(part, []) if r not in position]
    if missing:
        raise ValueError(f"{split_file}: {len(missing)} files of the saved split are gone, e.g. {missing[0]}")
    return [[position[r] for r in saved.get(part, [])] for part in SPLIT_NAMES]


def split_record(seed: int, classes: list[str], relative: list[str], parts: list[list[int]]) -> dict:
    """The generated split as the run's ``split.json`` keeps it: the files of each part, by relative path."""
    return {"seed": seed, "fractions": SPLIT_FRACTIONS, "classes": classes,
            **{name: [relative[i] for i in idx] for name, idx in zip(SPLIT_NAMES, parts)}}


def write_split(record: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(record, indent=1))
