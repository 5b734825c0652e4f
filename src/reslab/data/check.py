"""``reslab check-data``: what a dataset folder holds, before any training."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

from .datasets import VAL_NAMES, scan_folder
from .images import UnreadableImageError, open_image


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


def check_folder(root: Path) -> dict[str, Any]:
    """Classes and counts per split, class imbalance, image sizes and modes, exact duplicates
    (also across splits: a leak between train and val/test), and files that cannot be decoded."""
    report: dict[str, Any] = {"root": str(root), "splits": {}, "unreadable": [], "duplicates": []}
    by_hash: dict[str, list[str]] = defaultdict(list)
    widths, heights = [], []
    modes: Counter[str] = Counter()
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
            data = path.read_bytes()
            by_hash[hashlib.sha1(data).hexdigest()].append(str(path.relative_to(root)))
            try:
                with Image.open(path) as img:
                    modes[img.mode] += 1
                open_image(data)
                widths.append(img.size[0])
                heights.append(img.size[1])
            except (UnreadableImageError, OSError) as e:
                reason = str(e).removeprefix("<bytes>: ")
                report["unreadable"].append({"file": str(path.relative_to(root)), "reason": reason})
    report["classes"] = classes or []
    report["suggestions"] = imbalance_suggestions(report["splits"].get("train") or report["splits"].get("all"))
    report["duplicates"] = [group for group in by_hash.values() if len(group) > 1]
    if widths:
        report["sizes"] = {
            "width": {"min": min(widths), "median": statistics.median(widths), "max": max(widths)},
            "height": {"min": min(heights), "median": statistics.median(heights), "max": max(heights)},
        }
    report["modes"] = dict(modes)
    return report


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
    lines = [f"{report['root']}: {len(report['classes'])} classes"]
    for split, info in report["splits"].items():
        counts = ", ".join(f"{c} {n}" for c, n in info["per_class"].items())
        lines.append(f"  {split}: {info['images']} images (max/min class ratio {info['imbalance']}): {counts}")
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
