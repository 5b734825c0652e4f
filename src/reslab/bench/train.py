"""``reslab bench train``: training images/s, reslab's path against the loop most tutorials write.

Both sides train the same network at the same batch size on the same images, one after the other
in one run; each runs ``--epochs`` epochs and the first is discarded as warm-up.
- baseline: torchvision ``ImageFolder`` + per-image transforms in a ``DataLoader`` (2 workers),
  eager NCHW, fp32.
- reslab: ``reslab train``'s own ``Trainer`` (images decoded once into memory, augmented a batch
  at a time, channels_last).

``--vs-steps`` (the default on a GPU with ``--data``): ``reslab train`` on a folder or pack of photos
against raw training steps of the same network on a batch already on the device: the fraction of the
model's speed the data path lets through.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets
from torchvision.transforms import v2

from ..config import TrainConfig
from ..data.preprocess import DATASET_STATS
from ..data.sample import SAMPLE_PACK, materialize
from ..hardware import bf16_refusal, hardware_line, resolve_device
from ..models import count_macs, create_model
from ..train.trainer import Trainer
from .modes import MODES, compare_modes, print_modes_table, sample_batch
from .options import TrainBench
from .output import printed_as_json
from .peak import best_peak, measure_gemm_peak


def _subset_folder(source: Path, images: int, out: Path) -> Path:
    """A train/ + val/ folder with ``images`` training images spread evenly over the classes."""
    classes = sorted(d.name for d in (source / "train").iterdir() if d.is_dir())
    per_class = -(-images // len(classes))
    for split, count in (("train", per_class), ("val", 2)):
        src_split = source / split if (source / split).is_dir() else source / "train"
        for c in classes:
            (out / split / c).mkdir(parents=True, exist_ok=True)
            for f in sorted((src_split / c).iterdir())[:count]:
                (out / split / c / f.name).symlink_to(f.resolve())
    return out


def baseline_epochs(
    folder: Path, model_name: str, stem: str, batch_size: int, epochs: int, workers: int
) -> list[float]:
    mean, std = DATASET_STATS["cifar10"]
    transform = v2.Compose([
        v2.ToImage(), v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std),
    ])
    dataset = datasets.ImageFolder(str(folder / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True)
    model = create_model(model_name, num_classes=len(dataset.classes), stem=stem).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    rates = []
    for _ in range(epochs):
        seen, start = 0, time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def bench_trainer(folder: Path, model_name: str, stem: str, batch_size: int, epochs: int, run_root: Path,
                  amp: bool | str) -> Trainer:
    return Trainer(TrainConfig(data=str(folder), model=model_name, stem=stem, batch_size=batch_size, epochs=epochs,
                               lr=0.05, out_dir=str(run_root), name=f"bench-amp-{amp}", device="cpu", amp=amp))


def reslab_epochs(
    folder: Path, model_name: str, stem: str, batch_size: int, epochs: int, run_root: Path, amp: bool = False
) -> list[float]:
    trainer = bench_trainer(folder, model_name, stem, batch_size, epochs, run_root, amp)
    return [trainer.train_one_epoch()["images_per_s"] for _ in range(epochs)]


def run_modes_bench(args: TrainBench, device: torch.device) -> dict:
    """Training steps in each mode on a GPU-resident batch of real images: the model's speed with
    the data path taken out (reslab keeps small datasets on the GPU, so it costs almost nothing)."""
    modes = args.modes.split(",") if args.modes else list(MODES)
    batch_32, batch_224 = (int(b) for b in args.mode_batch_sizes.split(","))
    tables = []
    for size, stem, batch in ((32, "cifar", batch_32), (224, "imagenet", batch_224)):
        x, y = sample_batch(batch, size, device)
        rows = compare_modes(lambda stem=stem: create_model(args.model, num_classes=10, stem=stem), x, y, modes,
                             rounds=args.rounds, steps_per_round=args.steps)
        tables.append({"image_size": size, "stem": stem, "batch": batch, "rows": rows})
    result = {"model": args.model, "device": hardware_line(device), "torch": torch.__version__, "tables": tables}
    if printed_as_json(result, args.json):
        return result
    print(f"\ntraining steps (forward, backward, SGD) of {args.model}, {result['device']}, torch {result['torch']}")
    for t in tables:
        print_modes_table(f"{t['image_size']}x{t['image_size']}, {t['stem']} stem, batch {t['batch']}:", t["rows"])
    return result


def run_data_ratio_bench(args: TrainBench, device: torch.device) -> dict:
    """``reslab train`` on the images of ``--data`` (a folder or a pack) against raw training steps on a
    batch already on the device, in the same mode (channels_last, the device's mixed precision)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(data=args.data, model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                          epochs=args.epochs, lr=0.1, out_dir=tmp, name="bench-data", device=str(device),
                          in_memory=False, preset="imagenet", workers=args.workers, decode=args.decode)
        trainer = Trainer(cfg)
        start = time.perf_counter()
        epochs = [trainer.train_one_epoch()]
        first_epoch_s = time.perf_counter() - start
        epochs += [trainer.train_one_epoch() for _ in range(args.epochs - 1)]
        path, classes, amp = trainer.data.path, len(trainer.classes), trainer.amp
        del trainer
    steady = statistics.median(e["images_per_s"] for e in epochs[1:]) if len(epochs) > 1 else epochs[0]["images_per_s"]
    x, y = sample_batch(args.batch_size, args.image_size, device)
    mode = "channels_last+amp" if amp else "eager"  # the trainer's own mode (fp32: its steps against plain ones)
    raw = compare_modes(lambda: create_model(args.model, num_classes=classes, stem="imagenet"), x, y % classes,
                        [mode], rounds=args.rounds, steps_per_round=args.steps)[0]
    result = {"hardware": hardware_line(device), "model": args.model, "data": args.data, "path": path,
              "image_size": args.image_size, "batch_size": args.batch_size, "amp": amp,
              "trainer_images_per_s": steady, "raw_steps_images_per_s": raw["images_per_s"], "raw_mode": mode,
              "ratio": steady / raw["images_per_s"], "first_epoch_s": first_epoch_s,
              "epochs": [e["images_per_s"] for e in epochs]}
    if printed_as_json(result, args.json):
        return result
    print(f"\n{result['hardware']}")
    print(f"{args.model}, {args.image_size} px, batch {args.batch_size}, {'mixed precision' if amp else 'fp32'}, "
          f"channels_last; data {args.data} through the {path} path")
    print(f"reslab train on the data: {steady:,.0f} images/s (median of epochs 2..{args.epochs}; first epoch "
          f"{first_epoch_s:.1f} s)")
    print(f"raw training steps ({mode}), data on the device: {raw['images_per_s']:,.0f} images/s")
    print(f"ratio: {result['ratio']:.2f}")
    return result


def run_train_bench(args: TrainBench) -> dict:
    device = resolve_device(args.device)
    if args.data and (args.vs_steps if args.vs_steps is not None else device.type == "cuda"):
        return run_data_ratio_bench(args, device)
    if device.type == "cuda" or args.modes:
        return run_modes_bench(args, device)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = Path(args.data) if args.data else materialize(SAMPLE_PACK, tmp_path / "sample")
        folder = _subset_folder(source, args.images, tmp_path / "subset")
        peak_before = measure_gemm_peak()
        macs = count_macs(create_model(args.model, num_classes=10, stem=args.stem), 32)
        base = baseline_epochs(folder, args.model, args.stem, args.batch_size, args.epochs, args.workers or 2)
        ours = reslab_epochs(folder, args.model, args.stem, args.batch_size, args.epochs, tmp_path / "runs")
        bf16_refused = bf16_refusal(torch.device("cpu"))
        ours_bf16 = None if bf16_refused else reslab_epochs(folder, args.model, args.stem, args.batch_size,
                                                            args.epochs, tmp_path / "runs", amp=True)
        # what `reslab train` itself picks for this network and batch (--amp auto: measured where bf16 is native)
        auto = bench_trainer(folder, args.model, args.stem, args.batch_size, args.epochs, tmp_path / "runs",
                             "auto").precision
        measured = best_peak(peak_before, measure_gemm_peak())
        peak = measured.gflops
    gflop_per_image = 3 * 2 * macs / 1e9  # forward + backward (about twice the forward)
    rows = []
    sides = [("baseline (DataLoader, per-image transforms, NCHW)", base),
             ("reslab fp32 (in-memory batch augmentation, channels_last)", ours)]
    if ours_bf16 is not None:
        sides.append(("reslab bf16 autocast (the same)", ours_bf16))
    for name, rates in sides:
        ips = statistics.median(rates[1:] if len(rates) > 1 else rates)
        rows.append({"path": name, "images_per_s": ips, "gflops": ips * gflop_per_image,
                     "fraction_of_peak": ips * gflop_per_image / peak, "epochs": rates})
    result = {
        "model": f"{args.model} ({args.stem} stem), 32x32, batch {args.batch_size}, {args.images} images/epoch",
        "threads": threads, "gemm_peak_gflops": peak, "gemm_peak_kernel": measured.kernel,
        "train_gflop_per_image": gflop_per_image,
        "rows": rows, "speedup": rows[1]["images_per_s"] / rows[0]["images_per_s"], "hardware": hardware_line(),
        "bf16_vs_fp32": rows[2]["images_per_s"] / rows[1]["images_per_s"] if ours_bf16 is not None else None,
        "bf16_left_out": bf16_refused, "auto_choice": auto.record(),
    }
    if printed_as_json(result, args.json):
        return result
    print(f"\n{result['hardware']}")
    print(f"{result['model']}; {threads} threads; fp32 peak {measured.describe()}; "
          f"{gflop_per_image:.2f} GFLOP per training image")
    print(f"{'path':<56}{'images/s':>10}{'GFLOP/s':>10}{'of peak':>9}")
    for r in rows:
        print(f"{r['path']:<56}{r['images_per_s']:>10.1f}{r['gflops']:>10.1f}{r['fraction_of_peak']:>9.2f}")
    print(f"speed-up of reslab over the baseline: {result['speedup']:.2f}x "
          f"(median of epochs 2..{args.epochs}, first epoch discarded)")
    if result["bf16_vs_fp32"] is not None:
        print(f"bf16 autocast vs fp32: {result['bf16_vs_fp32']:.2f}x")
    else:
        print(f"bf16 left out: {bf16_refused}")
    print(f"`reslab train` (--amp auto) trains this in {auto.label} here ({auto.how}: {auto.reason})")
    return result
