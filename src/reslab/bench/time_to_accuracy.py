"""``reslab bench time-to-accuracy``: train a recipe on CIFAR-10 and print the wall time at which the
test accuracy first reaches each target.

The recipe trains on all 50,000 training images and evaluates the 10,000 test images
(``eval_split: test``) with its own evaluation settings: how often (``eval_every``, and after the last
epoch) and how (e.g. flip TTA). The clock
runs from the first training step to the end of each evaluation: evaluation is included; reading
and decoding the dataset and building the model are timed apart. Where a target is not reached,
the best accuracy and its time are printed instead.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..config import config_from_dict, load_yaml
from ..hardware import hardware_line
from ..train.trainer import Trainer
from .options import JPEG_COPY, TimeToAccuracyBench
from .output import printed_as_json


def describe_copy(data: str) -> str:
    if data == "cifar10":
        return "CIFAR-10 (original release, through torchvision)"
    if Path(data).resolve() == JPEG_COPY.resolve():
        return f"CIFAR-10 (JPEG copy, quality 75: {data})"
    return f"CIFAR-10 ({data})"


def time_to_targets(history: list[dict[str, float]], targets: list[float]) -> list[dict]:
    """For each target (a fraction): the first epoch whose test top-1 reaches it, or the best reached."""
    evaluated = [r for r in history if "val_top1" in r]
    best = max(evaluated, key=lambda r: r["val_top1"])
    rows = []
    for target in targets:
        hit = next((r for r in evaluated if r["val_top1"] >= target), None)
        rows.append({"target": target, "reached": hit is not None,
                     "epoch": int((hit or best)["epoch"]), "seconds": (hit or best)["elapsed_s"],
                     "top1": (hit or best)["val_top1"]})
    return rows


def run_time_to_accuracy(args: TimeToAccuracyBench) -> dict:
    data = args.data or (str(JPEG_COPY) if JPEG_COPY.is_file() else "cifar10")
    targets = [float(t) / 100 for t in args.targets.split(",") if t]
    overrides = {"data": data, "eval_split": "test", "device": args.device, "seed": args.seed, "name": "run"}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.amp is not None:
        overrides["amp"] = args.amp
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict({**load_yaml(args.config), **overrides, "out_dir": args.out_dir or tmp})
        start = time.perf_counter()
        trainer = Trainer(cfg)
        setup = time.perf_counter() - start
        trainer.fit()
        history = trainer.history
    device = trainer.rt.device
    result = {
        "recipe": args.config, "data": describe_copy(data), "model": cfg.model, "epochs": cfg.epochs,
        "hardware": hardware_line(device), "precision": trainer.precision_label, "setup_s": setup,
        "epochs_run": [{k: r.get(k) for k in ("epoch", "image_size", "seconds", "val_top1", "elapsed_s")}
                       for r in history],
        "targets": time_to_targets(history, targets),
    }
    if printed_as_json(result, args.json):
        return result
    print(f"\n{result['hardware']}")
    print(f"time to accuracy: {result['recipe']} ({cfg.model}, {cfg.epochs} epochs, {result['precision']}) on "
          f"{result['data']}")
    print(f"set-up (read and decode the data, build the model) {setup:.1f} s, not in the times below")
    print(f"{'epoch':>5}{'size':>6}{'train s':>9}{'test top-1':>12}{'elapsed s':>11}")
    for r in result["epochs_run"]:
        top1 = f"{r['val_top1'] * 100:>11.2f}%" if r["val_top1"] is not None else f"{'-':>12}"
        print(f"{r['epoch']:>5}{r['image_size']:>6}{r['seconds']:>9.1f}{top1}{r['elapsed_s']:>11.1f}")
    for t in result["targets"]:
        if t["reached"]:
            print(f"{t['target'] * 100:.1f}%: reached after epoch {t['epoch']}, {t['seconds']:.1f} s "
                  f"({t['seconds'] / 60:.2f} min) of training and evaluation")
        else:
            print(f"{t['target'] * 100:.1f}%: not reached; best {t['top1'] * 100:.2f}% after epoch {t['epoch']}, "
                  f"{t['seconds']:.1f} s")
    return result
