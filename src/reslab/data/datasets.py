"""Datasets by name (cifar10, cifar100) or by path (a folder of class sub-folders), and their splits."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..atomic import write_text_atomic
from ..paths import data_cache
from .images import is_image_file, open_image

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
    import struct
    import zipfile

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


Split = FileSplit | ArraySplit | PackSplit
EncodedSplit = FileSplit | PackSplit  # images still to be decoded: each one's ``source(i)``


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


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(dirs) < 2:
        from .multilabel import is_multilabel_data

        hint = "; it holds a multi-label index: pass --task multilabel" if is_multilabel_data(str(root)) else ""
        raise ValueError(f"{root}: found {len(dirs)} class sub-folder(s); a classifier needs at least 2 "
                         f"(expected {root}/<class>/<image files>){hint}")
    return dirs


def scan_folder(root: Path, classes: list[str] | None = None) -> tuple[list[str], FileSplit]:
    """Every image file under ``root/<class>/`` (recursively), labelled by its class folder."""
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
            if p.is_file() and is_image_file(p):
                paths.append(p)
                labels.append(index[d.name])
    return classes, FileSplit(paths, labels)


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
    if isinstance(split, PackSplit):
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


def load_folder(root: Path, seed: int = 0, split_file: Path | None = None, hold_out: bool = True) -> Dataset:
    """``root/train`` + ``root/val`` (+ ``root/test``), or one folder split 70/20/10 by class.
    Without a val folder, 10% of train is held out for validation (unless ``hold_out`` is false)."""
    if not root.is_dir():
        raise ValueError(f"{root}: dataset folder not found")
    if (root / "train").is_dir():
        classes, train = scan_folder(root / "train")
        test = scan_folder(root / "test", classes)[1] if (root / "test").is_dir() else None
        val_dir = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
        if val_dir is None:
            train, val = holdout_validation(train, seed) if hold_out else (train, test)
        else:
            val = scan_folder(val_dir, classes)[1]
        return Dataset(root.name, classes, train, val, test)

    classes, everything = scan_folder(root)
    relative = [str(p.relative_to(root)) for p in everything.paths]
    if split_file is not None and split_file.is_file():
        parts = saved_split(split_file, relative)
    else:
        parts = list(stratified_split(everything.labels, seed))
    train, val, test = (subset(everything, idx) for idx in parts)
    return Dataset(root.name, classes, train, val, test, split_file=split_record(seed, classes, relative, parts))


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


def load_cifar(name: str, root: Path, seed: int = 0, hold_out: bool = True) -> Dataset:
    """CIFAR-10/100 through torchvision: read from ``root``, downloaded there when online."""
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    try:
        train = cls(str(root), train=True, download=True)
        test = cls(str(root), train=False, download=True)
    except (OSError, RuntimeError) as e:
        raise ValueError(
            f"{name}: not found in {root} and could not be downloaded ({e}). Offline, put the original "
            f"python-version archive's folder in {root}, or pass an image folder as --data."
        ) from e

    def arrays(ds) -> ArraySplit:
        return ArraySplit(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets))

    test_split = arrays(test)
    train_split, val_split = holdout_validation(arrays(train), seed) if hold_out else (arrays(train), test_split)
    return Dataset(name, list(train.classes), train_split, val_split, test_split)


def _decode_pack(path: Path, blob: np.ndarray, offsets: np.ndarray, name: str) -> np.ndarray:
    """JPEG/PNG bytes laid end to end -> uint8 (N, H, W, C); all images must share one size."""
    def decode(i: int) -> np.ndarray:  # an unreadable image raises an error naming the pack, split and index
        return np.asarray(open_image(blob[offsets[i] : offsets[i + 1]].tobytes(), name=f"{path} {name}[{i}]"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(decode, range(len(offsets) - 1)))
    if len({im.shape for im in images}) > 1:
        raise ValueError(f"{path}: the {name} images differ in size; use an image folder for such data")
    return np.stack(images)


def load_arrays(path: Path, seed: int = 0, hold_out: bool = True) -> Dataset:
    """An ``.npz`` of images per split ``train``, optional ``val`` and ``test``, each either decoded
    (``x_<split>``: uint8 (N, H, W, C) or (N, H, W)) or encoded (``<split>_jpeg`` bytes end to end with
    ``<split>_offsets``), with labels ``y_<split>`` and optional ``classes``: CIFAR-10 as arrays, or
    packed as JPEGs as in reslab's shipped sample."""
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    from .pack import is_pack, load_pack

    if is_pack(arrays):
        return load_pack(path, arrays, seed, hold_out)

    def split(name: str) -> ArraySplit | None:
        if f"{name}_jpeg" in arrays.files and f"{name}_offsets" in arrays.files:
            images = _decode_pack(path, arrays[f"{name}_jpeg"], arrays[f"{name}_offsets"], name)
        elif f"x_{name}" in arrays.files:
            images = arrays[f"x_{name}"]
        else:
            return None
        if f"y_{name}" not in arrays.files:
            raise ValueError(f"{path}: has {name} images but no y_{name} labels")
        labels = arrays[f"y_{name}"].astype(np.int64)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
            raise ValueError(f"{path}: x_{name} must be uint8 (N, H, W, C) or (N, H, W) with one label per image, "
                             f"got {images.dtype} {images.shape} and {len(labels)} labels")
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return ArraySplit(np.ascontiguousarray(images), labels)

    train, val, test = split("train"), split("val"), split("test")
    if train is None:
        raise ValueError(f"{path}: no training images (x_train, or train_jpeg + train_offsets; "
                         f"found {', '.join(arrays.files)})")
    count = int(train.labels.max()) + 1
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else [str(i) for i in range(count)]
    if val is None:
        train, val = holdout_validation(train, seed) if hold_out else (train, test)
    return Dataset(path.stem, classes, train, val, test)


def load_dataset(data: str, cache_dir: str | Path | None, seed: int = 0, split_file: Path | None = None,
                 eval_split: str = "val", columns: tuple[str | None, str | None] = (None, None),
                 hold_out: bool | None = None, task: str = "multiclass") -> Dataset:
    """``eval_split="test"``: the test split is evaluated in place of val, and no training images
    are held out for validation (how test-accuracy recipes and time-to-accuracy benchmarks train).
    ``columns``: the image and label columns of ``hf:`` data (None: found by their feature types).
    ``hold_out=False``: no training images held out whatever the eval split (val is then the test split,
    or None where there is neither). ``task="multilabel"``: an index of labels beside the images
    (``data.multilabel``)."""
    hold_out = eval_split == "val" if hold_out is None else hold_out
    cache_dir = data_cache(cache_dir)
    if task == "multilabel":
        from .multilabel import load_multilabel

        dataset = load_multilabel(data, seed, split_file, hold_out)
    elif data.startswith("hf:"):
        from .hf import load_hf

        dataset = load_hf(data, cache_dir, seed, hold_out, *columns)
    elif data in ("cifar10", "cifar100"):
        dataset = load_cifar(data, cache_dir / data, seed, hold_out)
    elif data.endswith(".npz"):
        dataset = load_arrays(Path(data), seed, hold_out)
    else:
        dataset = load_folder(Path(data), seed=seed, split_file=split_file, hold_out=hold_out)
    if eval_split == "test":
        if dataset.test is None:
            raise ValueError(f"{data}: eval_split 'test' needs a test split (a test/ folder), and there is none")
        dataset = replace(dataset, val=dataset.test)
    return dataset


def write_split(record: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(record, indent=1))
