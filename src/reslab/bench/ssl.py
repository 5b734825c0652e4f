"""``reslab bench ssl``: what self-supervised pretraining buys when labels are few.

``reslab pretrain`` learns a backbone from every training image without its label (one run, seed 0). Then:
- the kNN classifier of self-supervised benchmarks (k=200, cosine, temperature 0.1; lightly's) scores the test
  images with the training images as its bank, on the pretrained backbone's features and on those of randomly
  initialised ones (one per seed);
- for each share of the labels (1% and 10%, as many images of each class, drawn per seed), the same fine-tuning
  recipe runs from the pretrained backbone (``train --init``) and from random weights (and, with ``--imagenet``,
  from torchvision's ImageNet weights): the same optimizer steps whatever the share, test top-1 after the last.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data.datasets import load_dataset
from ..data.loaders import SkipLog, decode_split
from ..data.preprocess import Preprocess, eval_resize_size
from ..data.splits import ArraySplit, Dataset, subset
from ..features.extract import split_features
from ..features.knn import knn_top1
from ..hardware import hardware_line, resolve_device
from ..models import create_model, load_model_file
from ..pretrain.config import PretrainConfig
from ..pretrain.trainer import Pretrainer
from ..train.trainer import Trainer
from .options import SslBench
from .output import printed_as_json


def labelled_subset(labels: np.ndarray, fraction: float, seed: int, classes: int) -> list[int]:
    """Indices (sorted) of ``fraction`` of the images, as many of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    per_class = max(1, round(fraction * len(labels) / classes))
    picked = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(classes)]
    return sorted(np.concatenate(picked).tolist())


def decoded(dataset: Dataset, size: int) -> Dataset:
    """The training and test images decoded once at their own size (every run and kNN reads these arrays)."""
    pre = Preprocess(size, eval_resize_size(size), (0.0,) * 3, (1.0,) * 3, 3)
    assert dataset.test is not None
    train, test = (s if isinstance(s, ArraySplit) else decode_split(s, pre, SkipLog())
                   for s in (dataset.train, dataset.test))
    return Dataset(dataset.name, dataset.classes, train, test, test)


def knn_score(model: torch.nn.Module, pre: Preprocess, data: Dataset, device: torch.device) -> float:
    assert data.test is not None
    bank, bank_labels = split_features(model, pre, data.train, device)
    test, test_labels = split_features(model, pre, data.test, device)
    return knn_top1(bank, bank_labels, test, test_labels, len(data.classes))


def finetune(args: SslBench, data: Dataset, indices: list[int], seed: int, start: dict, out: Path, name: str) -> float:
    """Test top-1 after ``args.finetune_steps`` steps on the images at ``indices``, from ``start``'s weights."""
    steps_per_epoch = max(1, len(indices) // args.finetune_batch_size)
    cfg = TrainConfig(data=data.name, model=args.model, epochs=math.ceil(args.finetune_steps / steps_per_epoch),
                      batch_size=args.finetune_batch_size, eval_every=10**6, seed=seed, out_dir=str(out), name=name,
                      device=args.device, backbone_lr_scale=args.backbone_lr_scale, **start)
    split = Dataset(data.name, data.classes, subset(data.train, indices), data.val, data.test)
    return float(Trainer(cfg, dataset=split).fit()["best_val_top1"])


def run_ssl_bench(args: SslBench) -> dict:
    device = resolve_device(args.device)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        cfg = PretrainConfig(method=args.method, data=args.data, model=args.model, epochs=args.pretrain_epochs,
                             batch_size=args.pretrain_batch_size, eval_split="test", eval_every=args.pretrain_epochs,
                             out_dir=tmp, name="pretrain", device=args.device)
        pretrained = Pretrainer(cfg).fit()
        backbone = out / "pretrain" / Pretrainer.MODEL_FILE
        times["pretrain"] = time.perf_counter() - start

        start = time.perf_counter()
        model, info = load_model_file(backbone, device)
        pre = info.preprocess
        data = decoded(load_dataset(args.data, None, 0, eval_split="test"), pre.image_size)
        assert isinstance(data.train, ArraySplit)
        knn = {"pretrained": [knn_score(model, pre, data, device)], "random": []}
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            random = create_model(args.model, 0, stem=info.spec.stem, features_only=True).to(device)
            knn["random"].append(knn_score(random, pre, data, device))
        times["knn"] = time.perf_counter() - start

        start = time.perf_counter()
        arms = {"random": {}, args.method: {"init": str(backbone)}}
        if args.imagenet:
            arms["imagenet"] = {"pretrained": True}
        labels = np.asarray(data.train.labels)
        top1: dict[str, dict[float, list[float]]] = {arm: {f: [] for f in args.fractions} for arm in arms}
        for fraction in args.fractions:
            for seed in range(args.seeds):
                indices = labelled_subset(labels, fraction, seed, len(data.classes))
                for arm, weights in arms.items():
                    top1[arm][fraction].append(finetune(args, data, indices, seed, weights, out,
                                                        f"{arm}-{fraction}-{seed}"))
        times["finetune"] = time.perf_counter() - start
    result = {"hardware": hardware_line(device), "method": args.method, "model": args.model,
              "pretrain_epochs": args.pretrain_epochs, "pretrain_images": len(data.train),
              "pretrain_batch_size": args.pretrain_batch_size, "pretrain_precision": pretrained["precision"],
              "knn": knn, "finetune_steps": args.finetune_steps,
              "finetune_top1": {arm: {str(f): v for f, v in runs.items()} for arm, runs in top1.items()},
              "seconds": times}
    if printed_as_json(result, args.json):
        return result
    print(result["hardware"])
    print(f"{args.method} pretraining of {args.model}: {len(data.train)} training images without labels, "
          f"{args.pretrain_epochs} epochs at batch {args.pretrain_batch_size} ({pretrained['precision']}), "
          f"{times['pretrain'] / 60:.1f} min; test top-1 of {len(data.test or [])} images")
    print(f"{'arm':<34}{'labels':>8}" + "".join(f"{'seed ' + str(s):>9}" for s in range(args.seeds))
          + f"{'median':>9}")
    rows = [(f"kNN, {args.method} backbone", "none", knn["pretrained"]),
            ("kNN, random backbone", "none", knn["random"])]
    rows += [(f"fine-tuned from {arm if arm != 'random' else 'random weights'}", f"{fraction:.0%}", runs[fraction])
             for fraction in args.fractions for arm, runs in top1.items()]
    for name, share, values in rows:
        cells = "".join(f"{v:>9.3f}" for v in values) + " " * 9 * (args.seeds - len(values))
        print(f"{name:<34}{share:>8}{cells}{statistics.median(values):>9.3f}")
    print(f"fine-tuning: {args.finetune_steps} steps at batch {args.finetune_batch_size} each "
          f"({times['finetune'] / 60:.1f} min in all); kNN scoring {times['knn']:.0f} s; total "
          f"{sum(times.values()) / 60:.1f} min")
    return result
