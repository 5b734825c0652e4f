"""``reslab bench video``: clips made from real photos with a moving camera (``data.moving``), two tasks.

- motion: the same photos panned left or right, the class being the direction (flips off). A 3D network
  (``resnet20-3d`` by default, ``--model``) against the same 2D network run on each frame with its logits
  averaged (``resnet20-frames``), which cannot see the order of the frames and so should stay near 50%.
- appearance: the class is the photo's. The 2D network trained on more photos of the same classes (``--init-photos``),
  inflated (``-3d``) and fine-tuned on the clips; the same 3D network from scratch; the per-frame average; and with
  ``--finetune r3d_18`` (or ``mc3_18``, ``r2plus1d_18``) torchvision's video network from its Kinetics weights.

Each network is trained ``--seeds`` times and evaluated on clips of photos it never saw (video-level top-1:
the mean probability of evenly spread clips). The clip loader alone is timed too (clips/s, 2 workers).
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import TrainConfig
from ..data.clips import ClipRead
from ..data.datasets import load_dataset
from ..data.decoding import NormalizeBatch
from ..data.folders import scan_folder
from ..data.images import open_image
from ..data.loaders import SkipLog
from ..data.moving import write_clip_set
from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from ..data.streams import StreamLoader
from ..evaluate.report import run_eval
from ..hardware import hardware_line, resolve_device
from ..models import architecture
from ..train.trainer import Trainer
from .options import VideoBench
from .output import printed_as_json


def _photos(folder: Path, classes: int, per_class: int, short_side: int) -> list[tuple[torch.Tensor, str]]:
    names, split = scan_folder(folder)
    picked: dict[int, list[Path]] = {}
    for path, label in zip(split.paths, split.labels):
        if label < classes and len(picked.setdefault(label, [])) < per_class:
            picked[label].append(path)
    pairs = []
    for label, paths in sorted(picked.items()):
        for path in paths:
            image = open_image(path, channels=3)
            scale = short_side / min(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            pairs.append((torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous(), names[label]))
    return pairs


def _classes(pairs: list[tuple[torch.Tensor, str]]) -> list[list[tuple[torch.Tensor, str]]]:
    """``pairs`` grouped by class, in their order."""
    groups: dict[str, list] = {}
    for pair in pairs:
        groups.setdefault(pair[1], []).append(pair)
    return list(groups.values())


def clips_per_second(data: Path, frames: int, size: int, batch_size: int, device: torch.device) -> float:
    """The training loader alone: decode, crop, flip, normalise; median of three epochs after a first."""
    dataset = load_dataset(str(data), None, task="video")
    pre = Preprocess(size, size, IMAGENET_MEAN, IMAGENET_STD)
    loader = StreamLoader(dataset.train, ClipRead(pre, frames, 1, 0, train=True), NormalizeBatch(pre, device, 0.2),
                          batch_size, SkipLog("video"), device, workers=2, shuffle=True)
    rates = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        for _, y in loader:
            seen += len(y)
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def _arm(name: str, data: Path, model: str, args: VideoBench, out: Path, seed: int, **extra) -> dict:
    cfg = TrainConfig(data=str(data), task="video", model=model, clip_frames=args.frames, frame_stride=1,
                      eval_clips=3, image_size=args.size, epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                      device=args.device, out_dir=str(out), name=f"{name}-{seed}", **extra)
    start = time.perf_counter()
    Trainer(cfg).fit()
    seconds = time.perf_counter() - start
    report = run_eval(cfg.run_dir / "best.safetensors", str(data), cfg.run_dir / "eval", split="test",
                      device=args.device)
    return {"arm": name, "model": model, "seed": seed, "test_top1": report.metrics["top1"],
            "clip_top1": report.metrics["clip_top1"], "train_s": seconds}


def run_video_bench(args: VideoBench) -> dict:
    device = resolve_device(args.device)
    root = Path(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        train_dir = root / "train" if (root / "train").is_dir() else root
        test_dir = root / "val" if (root / "val").is_dir() else train_dir
        stills = _photos(train_dir, args.classes, max(args.photos, args.init_photos), 2 * args.size)
        train = [p for label in _classes(stills) for p in label[: args.photos]]
        test = _photos(test_dir, args.classes, max(2, args.photos // 3), 2 * args.size)
        photos = {"train": [p for i, p in enumerate(train) if i % 6], "val": train[::6], "test": test}  # by class
        start = time.perf_counter()
        clips = {task: write_clip_set(photos, out / task, task, args.frames, args.size) for task in args.tasks}
        written_s = time.perf_counter() - start
        rate = clips_per_second(clips[args.tasks[0]], args.frames, args.size, args.batch_size, device)
        # the 2D network the inflated one starts from: trained on more photos of the same classes (the clips'
        # training photos among them), validated on the clips' validation photos, never shown a test photo
        held_out = {id(p) for p in photos["val"]}
        still = out / "photos"
        for split, pairs in {**photos, "train": [p for p in stills if id(p) not in held_out]}.items():
            for i, (photo, label) in enumerate(pairs):
                (still / split / label).mkdir(parents=True, exist_ok=True)
                (still / split / label / f"{i:05d}.png").write_bytes(_png(photo))
        # ResNet-18...: the 3x3 stem without pooling for frames of CIFAR's size, else the 7x7 one (4x cheaper)
        stem = {"stem": "cifar" if args.size < 64 else "imagenet"} if architecture(args.model).family == "imagenet" \
            else {}
        flat = TrainConfig(data=str(still), model=args.model, image_size=args.size, epochs=args.init_epochs,
                           batch_size=64, device=args.device, out_dir=str(out), name="photos-2d", **stem)
        Trainer(flat).fit()
        flat_top1 = run_eval(flat.run_dir / "best.safetensors", str(still), flat.run_dir / "eval", split="test",
                             device=args.device).metrics["top1"]
        deep, frames = f"{args.model}-3d", f"{args.model}-frames"
        for seed in range(args.seeds):
            if "motion" in clips:
                rows.append(_arm("motion 3D", clips["motion"], deep, args, out, seed, flip=False, **stem))
                rows.append(_arm("motion 2D average", clips["motion"], frames, args, out, seed, flip=False, **stem))
            if "appearance" in clips:
                appearance = clips["appearance"]
                rows.append(_arm("appearance inflated", appearance, deep, args, out, seed,
                                 weights=str(flat.run_dir / "best.safetensors"), **stem))
                rows.append(_arm("appearance scratch", appearance, deep, args, out, seed, **stem))
                rows.append(_arm("appearance 2D average", appearance, frames, args, out, seed, **stem))
                if args.finetune:
                    rows.append(_arm(f"appearance {args.finetune}", appearance, args.finetune, args, out, seed,
                                     pretrained=True))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    medians = {arm: statistics.median(r["test_top1"] for r in rows if r["arm"] == arm) for arm in arms}
    result = {"hardware": hardware_line(device), "photos": {k: len(v) for k, v in photos.items()},
              "photos_2d": {"train": len(stills) - len(photos["val"]), "test_top1": flat_top1},
              "frames": args.frames, "size": args.size, "epochs": args.epochs, "clips_per_s": rate,
              "clips_written_s": written_s, "rows": rows, "medians": medians,
              "chance": {"motion": 0.5, "appearance": 1 / args.classes}}
    if printed_as_json(result, args.json):
        return result
    print(result["hardware"])
    print(f"clips from {args.data}: {result['photos']} photos, {args.frames} frames of {args.size} px, "
          f"H.264 ({written_s:.0f} s to write); {args.epochs} epochs each, video-level test top-1")
    print(f"clip loader alone (decode, crop, flip, jitter, normalise; 2 workers): {rate:.1f} clips/s")
    print(f"2D {args.model} inflated from: trained on {result['photos_2d']['train']} photos for {args.init_epochs} "
          f"epochs, test top-1 on the test photos {flat_top1:.4f}")
    print(f"{'arm':<24}{'model':<17}{'seed':>5}{'test top-1':>12}{'clip top-1':>12}{'train s':>9}")
    for r in rows:
        print(f"{r['arm']:<24}{r['model']:<17}{r['seed']:>5}{r['test_top1']:>12.4f}{r['clip_top1']:>12.4f}"
              f"{r['train_s']:>9.0f}")
    for arm, value in medians.items():
        print(f"median {arm:<30}{value:.4f}")
    print(f"chance: motion 0.50, appearance {1 / args.classes:.2f}")
    return result


def _png(photo: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()
