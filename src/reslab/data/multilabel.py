"""Multi-label datasets: images on disk with an index of their labels, any number per image (or none).

The index lies beside the images: ``labels.csv`` (columns ``path`` and ``labels``, the labels separated
by ``;`` or ``|``, an optional ``split`` column of train/val/test) or ``labels.json`` (an object of
path -> list of labels); or one index per split (``train.csv``, ``val.csv``, ``test.csv``, or the same in
JSON). Paths are relative to the index's folder. Without split information the images are split
70/20/10, seeded, by iterative stratification (Sechidis et al. 2011): each label's images are spread over
the splits in those proportions as far as the label combinations allow.

Labels are multi-hot rows (int64 0/1, one column per class), so that every loader carries them as it
carries single labels.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from .splits import (
    HOLDOUT_FRACTIONS,
    SPLIT_FRACTIONS,
    SPLIT_NAMES,
    Dataset,
    FileSplit,
    saved_split,
    split_record,
    subset,
)

INDEX_NAMES = ("labels.csv", "labels.json")
SEPARATORS = re.compile(r"[;|]")
Entry = tuple[str, list[str], str | None]  # image path as written, its labels, its split (None: not given)


def is_multilabel_data(data: str) -> bool:
    """A path that holds (or is) a multi-label index."""
    path = Path(data)
    if path.is_file():
        return path.suffix.lower() in (".csv", ".json")
    return path.is_dir() and any((path / name).is_file() for name in (*INDEX_NAMES, "train.csv", "train.json"))


def _split_labels(text: str) -> list[str]:
    return [label.strip() for label in SEPARATORS.split(text) if label.strip()]


def _read_csv(path: Path, split: str | None) -> list[Entry]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "path" not in columns or "labels" not in columns:
            raise ValueError(f"{path}: expected a header with columns 'path' and 'labels' (labels separated by ';' "
                             f"or '|'; optional 'split'), found {columns}")
        entries = []
        for line, row in enumerate(reader, start=2):
            if not row["path"]:
                raise ValueError(f"{path}, line {line}: empty 'path'")
            given = (row.get("split") or "").strip().lower() or None
            if given is not None and given not in SPLIT_NAMES:
                raise ValueError(f"{path}, line {line}: split {given!r} is not one of {', '.join(SPLIT_NAMES)}")
            entries.append((row["path"].strip(), _split_labels(row["labels"] or ""), split or given))
    return entries


def _read_json(path: Path, split: str | None) -> list[Entry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of image path -> list of labels, got {type(data).__name__}")
    entries = []
    for image, labels in data.items():
        if isinstance(labels, str):
            labels = _split_labels(labels)
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"{path}: the labels of {image!r} must be a list of strings, got {labels!r}")
        entries.append((image, [x.strip() for x in labels if x.strip()], split))
    return entries


def read_index(path: Path, split: str | None = None) -> list[Entry]:
    return _read_json(path, split) if path.suffix.lower() == ".json" else _read_csv(path, split)


def find_entries(data: Path) -> tuple[Path, list[Entry]]:
    """The index's folder and its entries: one index file, or one per split."""
    if data.is_file():
        return data.parent, read_index(data)
    for name in INDEX_NAMES:
        if (data / name).is_file():
            return data, read_index(data / name)
    for suffix in (".csv", ".json"):
        if (data / f"train{suffix}").is_file():
            return data, [e for split in SPLIT_NAMES if (data / f"{split}{suffix}").is_file()
                          for e in read_index(data / f"{split}{suffix}", split)]
    raise ValueError(f"{data}: no multi-label index; expected {' or '.join(INDEX_NAMES)} (or train.csv/val.csv/"
                     f"test.csv) beside the images, with columns path,labels")


def iterative_split(targets: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[list[int]]:
    """Indices of each part, by iterative stratification (Sechidis, Tsoumakas and Vlahavas 2011): the
    rarest label left is dealt out first, each of its images to the part that most lacks that label."""
    rng = np.random.default_rng(seed)
    n = len(targets)
    wanted = np.asarray(fractions, dtype=np.float64) * n
    wanted_per_label = np.outer(fractions, targets.sum(0)).astype(np.float64)
    parts: list[list[int]] = [[] for _ in fractions]
    left = np.ones(n, dtype=bool)

    def assign(i: int, scores: np.ndarray) -> None:
        best = np.flatnonzero(scores == scores.max())
        if len(best) > 1:  # ties: the part that lacks the most images, then a seeded draw
            best = best[wanted[best] == wanted[best].max()]
        part = int(rng.choice(best))
        parts[part].append(i)
        wanted[part] -= 1
        wanted_per_label[part] -= targets[i]
        left[i] = False

    while True:
        counts = targets[left].sum(0)
        present = np.flatnonzero(counts > 0)
        if len(present) == 0:
            break
        rarest = present[counts[present] == counts[present].min()]
        label = int(rng.choice(rarest))
        for i in rng.permutation(np.flatnonzero(left & (targets[:, label] > 0))):
            assign(int(i), wanted_per_label[:, label])
    for i in rng.permutation(np.flatnonzero(left)):  # images without labels: where images are lacking
        assign(int(i), wanted)
    return [sorted(p) for p in parts]


def multi_hot(entries: list[Entry], classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    targets = np.zeros((len(entries), len(classes)), dtype=np.int64)
    for row, (_, labels, _) in enumerate(entries):
        for label in labels:
            targets[row, index[label]] = 1
    return targets


def load_multilabel(data: str, seed: int = 0, split_file: Path | None = None, hold_out: bool = True) -> Dataset:
    """A multi-label dataset from its index; ``split_file``: a run's saved split, reused when it exists."""
    root, entries = find_entries(Path(data))
    if not entries:
        raise ValueError(f"{data}: the multi-label index lists no images")
    paths = [Path(p) if Path(p).is_absolute() else root / p for p, _, _ in entries]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"{data}: {len(missing)} images of the index are missing, e.g. {missing[0]}")
    classes = sorted({label for _, labels, _ in entries for label in labels})
    if len(classes) < 2:
        raise ValueError(f"{data}: found {len(classes)} distinct label(s); a classifier needs at least 2")
    targets = multi_hot(entries, classes)
    relative = [p for p, _, _ in entries]
    given = [s for _, _, s in entries]
    record = None
    if split_file is not None and split_file.is_file():
        parts = saved_split(split_file, relative)
        record = split_record(seed, classes, relative, parts)
    elif any(s is not None for s in given):
        unsplit = [r for r, s in zip(relative, given) if s is None]
        if unsplit:
            raise ValueError(f"{data}: {len(unsplit)} images have no split while others do, e.g. {unsplit[0]}")
        parts = [[i for i, s in enumerate(given) if s == part] for part in SPLIT_NAMES]
        if not parts[0]:
            raise ValueError(f"{data}: the split column names no training images")
        if not parts[1] and hold_out:  # hold out 10% of train for validation, stratified
            keep, val, _ = iterative_split(targets[parts[0]], HOLDOUT_FRACTIONS, seed)
            parts = [[parts[0][i] for i in keep], [parts[0][i] for i in val], parts[2]]
    else:
        parts = iterative_split(targets, SPLIT_FRACTIONS, seed)
        record = split_record(seed, classes, relative, parts)
    everything = FileSplit(paths, targets)
    train, val, test = (subset(everything, idx) if idx else None for idx in parts)
    if train is None:
        raise ValueError(f"{data}: no training images")
    return Dataset(Path(data).stem if Path(data).is_file() else Path(data).name, classes, train,
                   val if val is not None else test, test, split_file=record, task="multilabel")
