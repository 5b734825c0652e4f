"""``reslab bench vs-timm``: reslab's defaults beside timm's own ``train.py`` on one folder of photos.

Both trainers run as the user would run them, in their own processes, on the same ``train/`` and
``val/`` images, model, image size, batch, epochs, workers, seed and precision, each with its own
defaults otherwise (learning rate, schedule, warm-up, augmentation, loss). The precision is reslab's
``--amp auto`` choice unless ``--precision`` sets it; timm then runs the same autocast. Each side's
val top-1 is its last epoch's, its time the wall time of the whole process (start-up, training,
evaluation), per epoch; seeds alternate between the sides, and the table ends with medians.

timm's ``train.py`` is not in timm's pip package: it comes from a clone of its repository
(github.com/huggingface/pytorch-image-models, the tag of the installed timm).
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..hardware import hardware_line
from .options import VsTimmBench
from .output import printed_as_json

TARGET_TIME_RATIO = 0.8  # reslab's wall time at most this fraction of timm's, at a higher top-1
TRAIN_PY_ENV = "TIMM_TRAIN"


@dataclass(frozen=True)
class Side:
    trainer: str  # reslab | timm
    seed: int
    val_top1: float  # after the last epoch, 0-1
    wall_s: float  # the whole process
    epochs: int
    in_run_s: float | None = None  # reslab: from its first epoch to its last (the rest is start-up)
    train_s: float | None = None  # reslab: in its training steps (the rest of in_run_s: validation, checkpoints)

    @property
    def s_per_epoch(self) -> float:
        return self.wall_s / self.epochs


def timm_train_script(given: str | None) -> Path:
    """timm's ``train.py``: ``--timm-train``, else ``$TIMM_TRAIN``; a clear error when neither names one."""
    try:
        version = importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("bench vs-timm needs timm: pip install 'reslab[bench]' (or pip install timm)") from None
    path = given or os.environ.get(TRAIN_PY_ENV)
    if not path:
        raise SystemExit(f"bench vs-timm runs timm's own train.py, which timm's pip package leaves out: "
                         f"git clone --branch v{version} https://github.com/huggingface/pytorch-image-models "
                         f"and pass --timm-train pytorch-image-models/train.py (or set {TRAIN_PY_ENV})")
    if not Path(path).is_file():
        raise SystemExit(f"--timm-train {path}: no such file (timm's train.py, from a clone of its repository)")
    return Path(path)


def class_count(data: Path) -> int:
    """The folder's classes; both trainers need its own ``train/`` and ``val/`` splits to see the same images."""
    missing = [split for split in ("train", "val") if not (data / split).is_dir()]
    if missing:
        raise SystemExit(f"--data {data}: needs {' and '.join(f'{s}/' for s in missing)} with one sub-folder per "
                         f"class (timm's train.py reads those splits; a seeded split would differ between the two)")
    return sum(1 for p in (data / "train").iterdir() if p.is_dir())


def reslab_command(args: VsTimmBench, seed: int, out: Path) -> list[str]:
    amp = {"auto": "--amp", "fp32": "--no-amp", "bf16": "--amp"}[args.precision]
    return [sys.executable, "-m", "reslab", "train", "--data", str(args.data), "--model", args.model,
            "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
            "--workers", str(args.workers), "--seed", str(seed), "--device", args.device,
            "--out-dir", str(out), "--name", f"reslab-{seed}",
            *([amp, "auto"] if args.precision == "auto" else [amp])]


def timm_command(args: VsTimmBench, script: Path, seed: int, out: Path, classes: int, device: str,
                 amp_dtype: str | None) -> list[str]:
    """timm's train.py with the shared settings and nothing else; ``amp_dtype``: None for fp32."""
    return [sys.executable, str(script), "--data-dir", str(args.data), "--train-split", "train",
            "--val-split", "val", "--model", args.model, "--num-classes", str(classes),
            "--img-size", str(args.image_size), "-b", str(args.batch_size), "--epochs", str(args.epochs),
            "-j", str(args.workers), "--seed", str(seed), "--device", device, "--output", str(out),
            "--experiment", f"timm-{seed}", *(["--amp", "--amp-dtype", amp_dtype] if amp_dtype else [])]


def _run(command: list[str], log: Path) -> float:
    """Wall seconds of ``command``; its output goes to ``log``, shown if it fails."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({done.returncode}); its output:\n"
                         + log.read_text()[-4000:])
    return wall


def epoch_rows(table: Path) -> list[dict[str, str]]:
    with table.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{table}: no epoch was written")
    return rows


def run_reslab(args: VsTimmBench, seed: int, out: Path) -> tuple[Side, dict]:
    wall = _run(reslab_command(args, seed, out), out / f"reslab-{seed}.log")
    run = out / f"reslab-{seed}"
    summary = json.loads((run / "summary.json").read_text())
    epochs = epoch_rows(run / "metrics.csv")
    last = epochs[-1]
    return Side("reslab", seed, float(last["val_top1"]), wall, args.epochs, float(last["elapsed_s"]),
                sum(float(e["seconds"]) for e in epochs)), summary


def run_timm(args: VsTimmBench, script: Path, seed: int, out: Path, classes: int, device: str,
             amp_dtype: str | None) -> Side:
    wall = _run(timm_command(args, script, seed, out, classes, device, amp_dtype), out / f"timm-{seed}.log")
    top1 = float(epoch_rows(out / f"timm-{seed}" / "summary.csv")[-1]["eval_top1"]) / 100  # timm writes percent
    return Side("timm", seed, top1, wall, args.epochs)


def medians(sides: list[Side], trainer: str) -> dict[str, float]:
    mine = [s for s in sides if s.trainer == trainer]
    return {"val_top1": statistics.median(s.val_top1 for s in mine),
            "wall_s": statistics.median(s.wall_s for s in mine),
            "s_per_epoch": statistics.median(s.s_per_epoch for s in mine)}


def run_vs_timm_bench(args: VsTimmBench) -> dict:
    args.data = Path(args.data).resolve()
    script = timm_train_script(args.timm_train)
    classes = class_count(args.data)
    sides: list[Side] = []
    with tempfile.TemporaryDirectory(prefix="vs-timm-") as tmp:
        out = Path(args.out_dir).resolve() if args.out_dir else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for seed in range(args.seeds):
            side, summary = run_reslab(args, seed, out)  # first: its --amp auto choice is timm's precision
            sides.append(side)
            amp_dtype = summary["precision_choice"]["dtype"] if summary["amp"] else None
            sides.append(run_timm(args, script, seed, out, classes, summary["device"], amp_dtype))
    ours, theirs = medians(sides, "reslab"), medians(sides, "timm")
    ratio = ours["wall_s"] / theirs["wall_s"]
    result = {
        "hardware": hardware_line(), "timm": importlib.metadata.version("timm"), "timm_train": str(script),
        "data": str(args.data), "classes": classes, "model": args.model, "image_size": args.image_size,
        "batch_size": args.batch_size, "epochs": args.epochs, "workers": args.workers,
        "precision": amp_dtype or "float32", "device": summary["device"],
        "rows": [{**asdict(s), "s_per_epoch": s.s_per_epoch} for s in sides],
        "medians": {"reslab": ours, "timm": theirs}, "time_ratio": ratio,
        "target_met": ours["val_top1"] > theirs["val_top1"] and ratio <= TARGET_TIME_RATIO,
    }
    if printed_as_json(result, args.json):
        return result
    print(result["hardware"])
    print(f"timm {result['timm']} ({script}); {args.data}: {classes} classes; {args.model} {args.image_size} px, "
          f"batch {args.batch_size}, {args.epochs} epochs, {args.workers} workers, {result['precision']} on "
          f"{result['device']} ({'reslab --amp auto' if args.precision == 'auto' else '--precision'}'s choice), "
          f"each trainer's defaults otherwise")
    print(f"{'trainer':<9}{'seed':>5}{'val top-1':>11}{'wall s':>9}{'s/epoch':>9}")
    for s in sides:
        print(f"{s.trainer:<9}{s.seed:>5}{s.val_top1:>11.4f}{s.wall_s:>9.1f}{s.s_per_epoch:>9.1f}")
    for name, m in (("reslab", ours), ("timm", theirs)):
        print(f"{name + ' median':<14}{m['val_top1']:>11.4f}{m['wall_s']:>9.1f}{m['s_per_epoch']:>9.1f}")
    verdict = "met" if result["target_met"] else "not met"
    print(f"reslab/timm: top-1 {ours['val_top1'] - theirs['val_top1']:+.4f}, wall time {ratio:.2f}x (target: a "
          f"higher top-1 in at most {TARGET_TIME_RATIO}x the time: {verdict})")
    if ratio > TARGET_TIME_RATIO:
        mine = [s for s in sides if s.trainer == "reslab"]
        in_run = statistics.median(s.in_run_s for s in mine)
        train = statistics.median(s.train_s for s in mine)
        print(f"where reslab's time went (medians): {train:.1f} s in training steps, {in_run - train:.1f} s in "
              f"validation and checkpoints, {ours['wall_s'] - in_run:.1f} s before and after the epochs (imports, "
              f"listing the data, its statistics, --amp auto's timing on a first run)")
    return result
