"""``reslab bench imbalance``: what class weights and the balanced sampler do on a deliberately
imbalanced set. The training split of a JPEG pack (the shipped CIFAR-10 sample by default) keeps every
image of its first classes and 1 in ``ratio`` of the others; val stays balanced. Each recipe trains on
the same images under each seed, and the table gives val balanced accuracy, macro-F1 and top-1 after
the last epoch, with medians over seeds."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np

from ..config import TrainConfig
from ..data.sample import SAMPLE_PACK
from ..hardware import hardware_line, resolve_device
from ..train.trainer import Trainer
from .options import ImbalanceBench
from .output import printed_as_json

RECIPES = {"none": {}, "class-weights balanced": {"class_weights": "balanced"},
           "class-weights effective": {"class_weights": "effective"}, "sampler balanced": {"sampler": "balanced"}}


def imbalanced_pack(source: Path, out: Path, ratio: int) -> list[int]:
    """``out``: ``source`` with the training images of its second half of classes cut to 1 in ``ratio``;
    the training images per class."""
    z = np.load(source)
    labels, offsets, blob = z["y_train"], z["train_offsets"], z["train_jpeg"]
    rare = set(range(len(z["classes"]) // 2, len(z["classes"])))
    seen = dict.fromkeys(range(len(z["classes"])), 0)
    kept = []
    for i, label in enumerate(labels.tolist()):
        if label not in rare or seen[label] % ratio == 0:
            kept.append(i)
        seen[label] += 1
    pieces = [blob[offsets[i] : offsets[i + 1]] for i in kept]
    arrays = {k: z[k] for k in z.files if not k.startswith("train_") and k != "y_train"}
    arrays.update(train_jpeg=np.concatenate(pieces), train_offsets=np.cumsum([0] + [len(p) for p in pieces]),
                  y_train=labels[kept])
    np.savez(out, **arrays)
    return np.bincount(labels[kept], minlength=len(z["classes"])).tolist()


def run_imbalance_bench(args: ImbalanceBench) -> dict:
    device = resolve_device(args.device)
    recipes = {name: RECIPES[name] for name in args.recipes.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "imbalanced.npz"
        counts = imbalanced_pack(Path(args.data or SAMPLE_PACK), data, args.ratio)
        for seed in range(args.seeds):
            for name, fields in recipes.items():
                cfg = TrainConfig(data=str(data), model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                                  lr=args.lr, warmup_epochs=0, seed=seed, device=args.device, out_dir=tmp,
                                  name=f"{name.replace(' ', '-')}-{seed}", **fields)
                trainer = Trainer(cfg)
                trainer.fit()
                last = trainer.history[-1]
                rows.append({"recipe": name, "seed": seed, "balanced_accuracy": last["val_balanced_accuracy"],
                             "macro_f1": last["val_macro_f1"], "top1": last["val_top1"]})
    medians = {name: {key: statistics.median(r[key] for r in rows if r["recipe"] == name)
                      for key in ("balanced_accuracy", "macro_f1", "top1")} for name in recipes}
    spreads = {name: max(r["balanced_accuracy"] for r in rows if r["recipe"] == name)
               - min(r["balanced_accuracy"] for r in rows if r["recipe"] == name) for name in recipes}
    result = {"hardware": hardware_line(device), "train_counts": counts, "ratio": args.ratio, "rows": rows,
              "medians": medians, "balanced_accuracy_spread": spreads}
    if printed_as_json(result, args.json):
        return result
    print(result["hardware"])
    print(f"training images per class {counts} ({args.ratio}:1); {args.model}, {args.epochs} epochs, "
          f"{args.seeds} seeds; val (balanced) after the last epoch")
    print(f"{'recipe':<26}{'balanced acc':>13}{'spread':>8}{'macro-F1':>10}{'top-1':>8}{'vs none':>9}")
    for name, m in medians.items():
        gain = m["balanced_accuracy"] - medians.get("none", m)["balanced_accuracy"]
        print(f"{name:<26}{m['balanced_accuracy']:>13.4f}{spreads[name]:>8.4f}{m['macro_f1']:>10.4f}"
              f"{m['top1']:>8.4f}{gain:>+9.4f}")
    return result
