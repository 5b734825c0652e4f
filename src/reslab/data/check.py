"""``reslab check-data``: what a dataset folder holds, before any training."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .folders import scan_folder
from .images import UnreadableImageError, is_image_file, open_image
from .multilabel import is_multilabel_data, load_multilabel
from .splits import VAL_NAMES
from .videos import is_video_file


def _splits(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise ValueError(f"{root}: dataset folder not found")
    if not (root / "train").is_dir():
        return {"all": root}
    found = {"train": root / "train"}
    for name in (*VAL_NAMES, "test"):
        if (root / name).is_dir():
            found[name] = root / name
    return found


class FileSurvey:
    """What the files themselves are: sizes, modes, exact duplicates (by content) and undecodable ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_hash: dict[str, list[str]] = defaultdict(list)
        self.widths: list[int] = []
        self.heights: list[int] = []
        self.modes: Counter[str] = Counter()
        self.unreadable: list[dict[str, str]] = []

    def add(self, path: Path) -> None:
        data = path.read_bytes()
        name = str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)
        self.by_hash[hashlib.sha1(data).hexdigest()].append(name)
        try:
            with Image.open(path) as img:
                self.modes[img.mode] += 1
            open_image(data)
            self.widths.append(img.size[0])
            self.heights.append(img.size[1])
        except (UnreadableImageError, OSError) as e:
            self.unreadable.append({"file": name, "reason": str(e).removeprefix("<bytes>: ")})

    def into(self, report: dict[str, Any]) -> dict[str, Any]:
        report["unreadable"] = self.unreadable
        report["duplicates"] = [group for group in self.by_hash.values() if len(group) > 1]
        if self.widths:
            w, h = self.widths, self.heights
            report["sizes"] = {
                "width": {"min": min(w), "median": statistics.median(w), "max": max(w)},
                "height": {"min": min(h), "median": statistics.median(h), "max": max(h)},
            }
        report["modes"] = dict(self.modes)
        return report


def check_folder(root: Path) -> dict[str, Any]:
    """Classes and counts per split, class imbalance, image sizes and modes, exact duplicates
    (also across splits: a leak between train and val/test), and files that cannot be decoded.
    A folder with a multi-label index gets label frequencies and co-occurrence instead of classes."""
    if is_multilabel_data(str(root)):
        return check_multilabel(root)
    if holds_videos(root):
        return check_videos(root)
    report: dict[str, Any] = {"root": str(root), "splits": {}}
    survey = FileSurvey(root)
    classes: list[str] | None = None
    for split, folder in _splits(root).items():
        classes, files = scan_folder(folder, classes)
        counts = Counter(classes[y] for y in files.labels)
        present = [counts.get(c, 0) for c in classes]
        report["splits"][split] = {
            "images": len(files),
            "per_class": {c: counts.get(c, 0) for c in classes},
            "imbalance": round(max(present) / max(1, min(present)), 2) if present else None,
        }
        for path in files.paths:
            survey.add(path)
    report["classes"] = classes or []
    report["suggestions"] = imbalance_suggestions(report["splits"].get("train") or report["splits"].get("all"))
    return survey.into(report)


def holds_videos(root: Path) -> bool:
    """A folder whose class folders hold video files and no images."""
    folder = root / "train" if (root / "train").is_dir() else root
    files = [p for p in folder.glob("*/*") if p.is_file()] if folder.is_dir() else []
    return any(is_video_file(p) for p in files) and not any(is_image_file(p) for p in files)


def check_videos(root: Path) -> dict[str, Any]:
    from .video_check import check_video_split  # torch and TorchCodec (FFmpeg): for video folders only

    report: dict[str, Any] = {"root": str(root), "task": "video", "splits": {}, "unreadable": []}
    classes: list[str] | None = None
    for split, folder in _splits(root).items():
        classes, files = scan_folder(folder, classes, is_video_file)
        report["splits"][split] = check_video_split(folder, classes, list(zip(files.paths, files.labels)), root,
                                                    report["unreadable"])
    report["classes"] = classes or []
    return report


def check_multilabel(data: Path) -> dict[str, Any]:
    """A multi-label set: images per split, each label's frequency, labels per image, images without a
    label, and which labels come together (co-occurrence counts over all images)."""
    dataset = load_multilabel(str(data))
    report: dict[str, Any] = {"root": str(data), "task": "multilabel", "classes": dataset.classes, "splits": {}}
    survey = FileSurvey(data if data.is_dir() else data.parent)
    all_targets = []
    parts = {"train": dataset.train, "val": dataset.val, "test": dataset.test}
    for split, files in parts.items():
        if files is None or (split == "val" and files is dataset.test):
            continue
        targets = np.asarray(files.labels)
        all_targets.append(targets)
        per_label = targets.sum(0)
        present = per_label[per_label > 0]
        report["splits"][split] = {
            "images": len(files), "without_labels": int((targets.sum(1) == 0).sum()),
            "labels_per_image": round(float(targets.sum(1).mean()), 3),
            "per_class": {c: int(n) for c, n in zip(dataset.classes, per_label)},
            "imbalance": round(float(present.max() / present.min()), 2) if len(present) else None,
        }
        for path in files.paths:
            survey.add(path)
    targets = np.concatenate(all_targets)
    together = targets.T @ targets
    report["co_occurrence"] = together.tolist()
    pairs = [(int(together[i, j]), dataset.classes[i], dataset.classes[j])
             for i in range(len(dataset.classes)) for j in range(i + 1, len(dataset.classes)) if together[i, j]]
    report["top_pairs"] = [{"labels": [a, b], "images": n} for n, a, b in sorted(pairs, reverse=True)[:10]]
    train = report["splits"]["train"]
    report["suggestions"] = ([f"labels are imbalanced ({train['imbalance']}:1 between the most and least frequent "
                              f"in train): try --pos-weight balanced, and judge models by macro mAP"]
                             if train["imbalance"] and train["imbalance"] >= IMBALANCE_TO_SUGGEST else [])
    return survey.into(report)


IMBALANCE_TO_SUGGEST = 3.0  # max/min class ratio of the training images above which weighting is suggested


def imbalance_suggestions(split: dict[str, Any] | None) -> list[str]:
    """What to train with when the training classes are far from equal in size."""
    if not split or not split["imbalance"] or split["imbalance"] < IMBALANCE_TO_SUGGEST:
        return []
    rare = min(split["per_class"], key=split["per_class"].get)
    return [f"classes are imbalanced ({split['imbalance']}:1, rarest {rare!r} with {split['per_class'][rare]} "
            f"images): train with --class-weights balanced (or effective) or --sampler balanced, and judge "
            f"models by balanced accuracy and macro-F1, which `reslab eval` reports beside top-1"]


def format_report(report: dict[str, Any]) -> str:
    if report.get("task") == "video":
        from .video_check import format_video_report  # the video survey's module (torch): for video folders only

        return format_video_report(report)
    multilabel = report.get("task") == "multilabel"
    lines = [f"{report['root']}: {len(report['classes'])} {'labels (multi-label)' if multilabel else 'classes'}"]
    for split, info in report["splits"].items():
        counts = ", ".join(f"{c} {n}" for c, n in info["per_class"].items())
        if multilabel:
            lines.append(f"  {split}: {info['images']} images, {info['labels_per_image']} labels per image, "
                         f"{info['without_labels']} without any (max/min label ratio {info['imbalance']}): {counts}")
        else:
            lines.append(f"  {split}: {info['images']} images (max/min class ratio {info['imbalance']}): {counts}")
    if multilabel:
        pairs = ", ".join(f"{'+'.join(p['labels'])} {p['images']}" for p in report["top_pairs"])
        lines.append(f"  most frequent pairs: {pairs or 'none'} (full matrix: co_occurrence in --json)")
    if "sizes" in report:
        w, h = report["sizes"]["width"], report["sizes"]["height"]
        lines.append(f"  sizes: width {w['min']}..{w['max']} (median {w['median']}), "
                     f"height {h['min']}..{h['max']} (median {h['median']}); modes {report['modes']}")
    lines.append(f"  duplicates: {len(report['duplicates'])} groups of identical files")
    for group in report["duplicates"][:10]:
        lines.append(f"    {' = '.join(group)}")
    lines.append(f"  unreadable: {len(report['unreadable'])} files")
    for item in report["unreadable"]:
        lines.append(f"    {item['file']}: {item['reason']}")
    lines.extend(f"  suggestion: {text}" for text in report["suggestions"])
    return "\n".join(lines)
