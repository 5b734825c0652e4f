"""Video datasets: a folder of class sub-folders of video files (``train/<class>/*.mp4``, the UCF101/HMDB51
layout; ``val/``, ``test/`` or the seeded 70/20/10 split as for images), or a CSV index ``path,label`` with
optional ``start,end`` seconds (several labelled segments of one file)."""

from __future__ import annotations

import csv
from pathlib import Path

from .folders import load_folder
from .splits import Dataset, FileSplit, VideoSplit, holdout_validation, split_record, stratified_split

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")

def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _whole(split: FileSplit | None) -> VideoSplit | None:
    return None if split is None else VideoSplit(list(split.paths), list(split.labels), [None] * len(split))


def load_videos(data: str, seed: int = 0, split_file: Path | None = None, hold_out: bool = True) -> Dataset:
    path = Path(data)
    if path.suffix.lower() == ".csv":
        return load_video_index(path, seed, hold_out)
    folder = load_folder(path, seed, split_file, hold_out, files=is_video_file)
    if len(folder.train) == 0:
        raise ValueError(f"{path}: no video files ({', '.join(VIDEO_SUFFIXES)}) under its class folders")
    return Dataset(folder.name, folder.classes, _whole(folder.train), _whole(folder.val), _whole(folder.test),
                   split_file=folder.split_file, task="video")


def load_video_index(index: Path, seed: int = 0, hold_out: bool = True) -> Dataset:
    """``path,label[,start,end]`` rows (paths relative to the CSV's folder), split 70/20/10 by class."""
    if not index.is_file():
        raise ValueError(f"{index}: video index not found")
    with index.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise ValueError(f"{index}: expected a header with columns path,label (and optionally start,end)")
    classes = sorted({row["label"] for row in rows})
    if len(classes) < 2:
        raise ValueError(f"{index}: {len(classes)} label(s); a classifier needs at least 2")
    paths, labels, segments = [], [], []
    for line, row in enumerate(rows, start=2):
        paths.append(index.parent / row["path"])
        labels.append(classes.index(row["label"]))
        start, end = row.get("start") or "", row.get("end") or ""
        if bool(start) != bool(end):
            raise ValueError(f"{index}, line {line}: give both start and end (seconds), or neither")
        try:
            segment = (float(start), float(end)) if start else None
        except ValueError:
            raise ValueError(f"{index}, line {line}: start {start!r} and end {end!r} must be seconds") from None
        if segment is not None and not 0 <= segment[0] < segment[1]:
            raise ValueError(f"{index}, line {line}: the segment {segment} must have 0 <= start < end")
        segments.append(segment)
    everything = VideoSplit(paths, labels, segments)
    relative = [f"{row['path']}@{row.get('start') or ''}-{row.get('end') or ''}" for row in rows]
    parts = list(stratified_split(labels, seed))
    train, val, test = (everything.take(p) for p in parts)
    if not val.paths and hold_out:
        train, val = holdout_validation(train, seed)
    return Dataset(index.stem, classes, train, val, test, split_file=split_record(seed, classes, relative, parts),
                   task="video")
