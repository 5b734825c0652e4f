"""``reslab bench label-issues``: how well ``reslab find-label-issues`` finds labels known to be wrong.

A copy of a JPEG pack (the shipped CIFAR-10 sample by default) gets a seeded fraction of its training
labels flipped to another class at random; ``find-label-issues`` then cross-trains the recipe on it (or, with
``--features MODEL``, cross-validates a linear probe on that model's frozen features), and the flagged images
(as many as cleanlab estimates there are label issues) are compared with the flips: precision (flagged images
that were flipped), recall (flips that were flagged), and both for the top-ranked images as many as there are
flips."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import config_from_dict, load_yaml
from ..curate.label_issues import find_label_issues
from ..data.sample import SAMPLE_PACK
from ..hardware import hardware_line, resolve_device
from .options import LabelIssuesBench
from .output import printed_as_json


def per_class_images(labels: np.ndarray, images: int, classes: int) -> np.ndarray:
    """Indices (sorted) of the first ``images // classes`` images of each class in the pack's order: a pack may be
    sorted by class (CIFAR-10's JPEG copy is), so its first images are not a sample of every class."""
    per_class = images // classes
    picked = [np.flatnonzero(labels == c)[:per_class] for c in range(classes)]
    if min(len(p) for p in picked) < per_class:
        raise ValueError(f"--images {images}: some class has fewer than {per_class} training images")
    return np.sort(np.concatenate(picked))


def keep_training_images(arrays: dict[str, np.ndarray], indices: np.ndarray) -> None:
    """``arrays`` (a JPEG pack's) with only the training images at ``indices``, in their order."""
    ends = arrays["train_offsets"]
    arrays["train_jpeg"] = np.concatenate([arrays["train_jpeg"][ends[i] : ends[i + 1]] for i in indices])
    arrays["train_offsets"] = np.concatenate([[0], np.cumsum(ends[indices + 1] - ends[indices])]).astype(ends.dtype)
    arrays["y_train"] = arrays["y_train"][indices]


def flipped_pack(source: Path, out: Path, fraction: float, seed: int, images: int | None = None) -> np.ndarray:
    """``out``: ``source`` (with ``images`` of its training images, as many of each class: ``per_class_images``)
    with ``fraction`` of the training labels moved to another class, drawn with ``seed``; the indices flipped."""
    z = np.load(source)
    arrays = {k: z[k] for k in z.files}
    classes = len(arrays["classes"])
    if images is not None and images < len(arrays["y_train"]):
        keep_training_images(arrays, per_class_images(arrays["y_train"].astype(np.int64), images, classes))
    labels = arrays["y_train"].astype(np.int64)
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), round(fraction * len(labels)), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    arrays["y_train"] = noisy
    np.savez(out, **arrays)
    return flipped


def precision_recall(found: set[int], truth: set[int]) -> tuple[float, float]:
    hits = len(found & truth)
    return hits / max(1, len(found)), hits / max(1, len(truth))


def run_label_issues_bench(args: LabelIssuesBench) -> dict:
    device = resolve_device(args.device)
    recipe = load_yaml(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "flipped.npz"
        flipped = flipped_pack(Path(args.data or SAMPLE_PACK), data, args.flip, args.seed, args.images)
        overrides = {"data": str(data), "out_dir": tmp, "name": "search", "device": args.device, "seed": args.seed}
        if args.epochs:
            overrides["epochs"] = args.epochs
        cfg = config_from_dict({**recipe, **overrides})
        start = time.perf_counter()
        report = find_label_issues(cfg, folds=args.folds, features=Path(args.features) if args.features else None)
        seconds = time.perf_counter() - start
    ranked = [int(row["image"].removeprefix("train[").removesuffix("]")) for row in report["issues"]]
    truth = set(flipped.tolist())
    precision, recall = precision_recall(set(ranked), truth)
    top_precision, top_recall = precision_recall(set(ranked[: len(truth)]), truth)
    result = {"hardware": hardware_line(device), "images": report["images"], "flipped": len(truth),
              "flagged": len(ranked), "precision": precision, "recall": recall,
              "precision_at_flips": top_precision, "recall_at_flips": top_recall,
              "estimated_issues": report["estimated_issues"], "out_of_sample_top1": report["out_of_sample_top1"],
              "warning": report["warning"], "method": report["method"],
              "epochs": None if args.features else cfg.epochs, "model": args.features or cfg.model,
              "seconds": seconds}
    if printed_as_json(result, args.json):
        return result
    print(result["hardware"])
    how = report["method"] if args.features else f"{report['method']} of {cfg.model}, {cfg.epochs} epochs each"
    print(f"{result['images']} training images, {len(truth)} labels flipped ({args.flip:.0%}); {how} "
          f"({seconds:.0f} s); out-of-sample top-1 {result['out_of_sample_top1']:.3f}; cleanlab estimates "
          f"{result['estimated_issues']} label issues")
    if result["warning"]:
        print(f"warning: {result['warning']}")
    print(f"{'set':<28}{'images':>8}{'precision':>11}{'recall':>8}")
    print(f"{'flagged by cleanlab':<28}{len(ranked):>8}{precision:>11.3f}{recall:>8.3f}")
    print(f"{'top-ranked, as many as flips':<28}{min(len(ranked), len(truth)):>8}{top_precision:>11.3f}"
          f"{top_recall:>8.3f}")
    return result
