"""``reslab bench multilabel``: a multi-label set made from a JPEG pack (the shipped CIFAR-10 sample by
default): pictures of two images each, labelled with both classes (``data.sample.write_mosaics``). A
model is trained with ``--task multilabel`` under each seed and evaluated on the test split at its tuned
thresholds, beside the label-frequency baseline (every image scored with the training frequency of each
label: its AP is the label's share of the test images)."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np

from ..config import TrainConfig
from ..data.multilabel import load_multilabel
from ..data.sample import SAMPLE_PACK, write_mosaics
from ..evaluate.multilabel import mean_average_precision
from ..evaluate.report import run_eval
from ..hardware import hardware_line, resolve_device
from ..train.trainer import Trainer
from .options import MultilabelBench
from .output import printed_as_json

FIGURES = ("map", "map_micro", "f1_samples", "exact_match", "f1_macro")
WIDTHS = (8, 8, 11, 8, 10)


def run_multilabel_bench(args: MultilabelBench) -> dict:
    device = resolve_device(args.device)
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_mosaics(Path(args.data or SAMPLE_PACK), Path(tmp) / "mosaics", sizes, seed=0)
        dataset = load_multilabel(str(data))
        train, test = np.asarray(dataset.train.labels), np.asarray(dataset.test.labels)
        baseline = mean_average_precision(test, np.broadcast_to(train.mean(0), test.shape).astype(np.float64))
        for seed in range(args.seeds):
            cfg = TrainConfig(data=str(data), task="multilabel", model=args.model, epochs=args.epochs,
                              batch_size=args.batch_size, lr=args.lr, seed=seed, device=args.device, out_dir=tmp,
                              name=f"seed-{seed}")
            Trainer(cfg).fit()
            report = run_eval(cfg.run_dir / "best.safetensors", str(data), cfg.run_dir / "eval", split="test",
                              device=args.device)
            rows.append({"seed": seed, **{k: report.metrics[k] for k in FIGURES}})
    medians = {k: statistics.median(r[k] for r in rows) for k in FIGURES}
    spread = max(r["map"] for r in rows) - min(r["map"] for r in rows)
    result = {"hardware": hardware_line(device), "sizes": sizes, "labels_per_image": float(test.sum(1).mean()),
              "baseline_map": baseline[0], "baseline_map_micro": baseline[1], "rows": rows, "medians": medians,
              "map_spread": spread}
    if printed_as_json(result, args.json):
        return result
    print(result["hardware"])
    print(f"mosaics of two CIFAR-10 images ({sizes}); {args.model}, {args.epochs} epochs, {args.seeds} seeds; "
          f"test split at the thresholds tuned on val ({result['labels_per_image']:.2f} labels per image)")
    print(f"{'':<22}{'mAP':>8}{'micro':>8}{'sample-F1':>11}{'exact':>8}{'macro-F1':>10}")
    print(f"{'label frequency':<22}{baseline[0]:>8.4f}{baseline[1]:>8.4f}{'-':>11}{'-':>8}{'-':>10}")
    for r in rows:
        print(f"{'seed ' + str(r['seed']):<22}" + "".join(f"{r[k]:>{w}.4f}" for k, w in zip(FIGURES, WIDTHS)))
    print(f"{'median':<22}" + "".join(f"{medians[k]:>{w}.4f}" for k, w in zip(FIGURES, WIDTHS)))
    print(f"mAP {medians['map'] / baseline[0]:.2f}x the label-frequency baseline (spread over seeds {spread:.4f})")
    return result
