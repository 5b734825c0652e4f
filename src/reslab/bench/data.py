"""``reslab bench data``: the training data loader alone, each decoding path side by side in one run.

Rows (each the loader ``reslab train`` builds for that path, at ``--image-size`` with RandomResizedCrop
and flip, iterated ``--epochs`` times; the first epoch is start-up and reported apart):
- ``torchvision``: the loop most tutorials write, the baseline: a ``DataLoader`` over the files with
  torchvision's per-image transforms after a full-size Pillow decode (``RandomResizedCrop``, flip,
  ``ToDtype``, ``Normalize``), workers restarted every epoch;
- ``cpu``: persistent workers decoding each JPEG at the smallest scale its crop allows, Pillow crops;
- ``gpu``: workers read bytes, nvJPEG decodes the batch, crops and flips are batch operations (GPU only);
- ``pack-cpu`` / ``pack-gpu``: the same two from a pack of the images made by ``reslab pack``.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

from ..data.arrays import load_arrays
from ..data.decode import gpu_decode_refusal
from ..data.folders import load_folder
from ..data.images import is_image_file, open_image
from ..data.loaders import SkipLog
from ..data.options import AugmentOptions
from ..data.pack import pack_folder
from ..data.pipeline import DataOptions, training_loader
from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, eval_resize_size
from ..data.splits import FileSplit, PackSplit
from ..hardware import cpu_info, default_workers, hardware_line, resolve_device
from .decoders import decoder_rates, format_decoder_rates
from .options import DataBench
from .output import printed_as_json

TWELVE_MP = 12_000_000
PATHS = ("torchvision", "cpu", "gpu", "pack-cpu", "pack-gpu")
LOADER_PATH = {"cpu": "cpu", "gpu": "gpu", "pack-cpu": "cpu", "pack-gpu": "gpu"}


class _TutorialImages(torch.utils.data.Dataset):
    def __init__(self, split: FileSplit, transform: v2.Compose) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.split.paths[index]) as img:
            return self.transform(img.convert("RGB")), self.split.labels[index]


class TutorialLoader:
    """The baseline row: torchvision's per-image transforms in a plain ``DataLoader``."""

    def __init__(self, split: FileSplit, pre: Preprocess, batch_size: int, workers: int) -> None:
        transform = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(pre.image_size, antialias=True),
                                v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                                v2.Normalize(list(pre.mean), list(pre.std))])
        self.loader = torch.utils.data.DataLoader(_TutorialImages(split, transform), batch_size=batch_size,
                                                  shuffle=True, num_workers=workers)

    def set_epoch(self, epoch: int) -> None:
        torch.manual_seed(epoch)

    def __iter__(self):
        return iter(self.loader)


def twelve_megapixel_copies(folder: Path, photos: list[Path], count: int, out: Path) -> Path:
    """``count`` images of ``folder``'s training classes (and ``photos``, as a class of their own), each
    upscaled to 12 megapixels at its own aspect ratio and saved as a camera-quality JPEG."""
    train = folder / "train" if (folder / "train").is_dir() else folder
    sources = [(p, p.parent.name) for d in sorted(train.iterdir()) if d.is_dir()
               for p in sorted(d.iterdir()) if is_image_file(p)]
    sources += [(p, "photos") for p in photos]
    picked = [sources[round(i * len(sources) / count)] for i in range(count)] if len(sources) > count else sources
    for k, (path, label) in enumerate(picked):
        img = open_image(path)
        scale = (TWELVE_MP / (img.width * img.height)) ** 0.5
        big = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        (out / "train" / label).mkdir(parents=True, exist_ok=True)
        big.save(out / "train" / label / f"{k:04d}.jpg", quality=90)
    return out


def repeated(split: FileSplit | PackSplit, times: int) -> FileSplit | PackSplit:
    if times <= 1:
        return split
    if isinstance(split, PackSplit):
        return split.take(list(range(len(split))) * times)
    return FileSplit(split.paths * times, split.labels * times)


def time_loader(loader, epochs: int, device: torch.device) -> dict:
    """Images/s of each epoch, and the first epoch's seconds (worker start-up included)."""
    rates, first = [], 0.0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        seen, start = 0, time.perf_counter()
        for _, y in loader:
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        first = first or elapsed
        rates.append(seen / elapsed)
    steady = statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
    return {"images_per_s": steady, "first_epoch_s": first, "epochs": rates,
            "startup_s": first - seen / steady if len(rates) > 1 else 0.0}


def run_data_bench(args: DataBench) -> dict:
    device = resolve_device(args.device)
    wanted = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(wanted) - set(PATHS))
    if unknown:
        raise ValueError(f"--paths: unknown {unknown}; paths: {', '.join(PATHS)}")
    # the loader alone: every core can decode (training would keep some for the model)
    workers = args.workers or (default_workers(device) if device.type == "cuda" else cpu_info().cores)
    refusal = gpu_decode_refusal(device)
    left_out = {p: refusal for p in wanted if p.endswith("gpu") and refusal}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data)
        if args.twelve_mp:
            data = twelve_megapixel_copies(data, [Path(p) for p in args.photos], args.twelve_mp, Path(tmp) / "12mp")
        pre = Preprocess(args.image_size, eval_resize_size(args.image_size), IMAGENET_MEAN, IMAGENET_STD)
        opts = DataOptions(image_size=args.image_size, default_image_size=args.image_size, in_chans=3,
                           batch_size=args.batch_size, workers=workers, seed=0,
                           augment=AugmentOptions(preset="imagenet"), mean=None, std=None, in_memory=False)
        splits: dict[str, FileSplit | PackSplit] = {}
        pack_info = None
        if data.suffix == ".npz":
            splits["pack"] = load_arrays(data, hold_out=False).train
        else:
            splits["folder"] = load_folder(data, hold_out=False).train
            if any(p.startswith("pack") and p not in left_out for p in wanted):
                start = time.perf_counter()
                report = pack_folder(data, Path(tmp) / "pack.npz", short_side=args.short_side or pre.resize_size)
                pack_info = {**report.as_dict(), "seconds": time.perf_counter() - start}
                splits["pack"] = load_arrays(report.out, hold_out=False).train
        for name in wanted:
            source = "pack" if name.startswith("pack") else "folder"
            if name in left_out or source not in splits:
                continue
            split = repeated(splits[source], args.repeat)
            loader = TutorialLoader(split, pre, args.batch_size, workers) if name == "torchvision" else \
                training_loader(split, LOADER_PATH[name], pre, opts.augment, opts, device, SkipLog(),
                                drop_last=False, rank=0, world_size=1)
            rows.append({"path": name, "images": len(split), **time_loader(loader, args.epochs, device)})
            del loader  # its workers stop here, not during the next row
            gc.collect()
        folder = splits["folder"].paths if "folder" in splits else []
        jpegs = [f for f in folder if f.suffix.lower() in (".jpg", ".jpeg")]
        decoders = decoder_rates(jpegs[:: max(1, len(jpegs) // args.decoders)][: args.decoders]) \
            if args.decoders and jpegs else None
    base = next((r["images_per_s"] for r in rows if r["path"] == "torchvision"), None)
    for r in rows:
        r["vs_torchvision"] = r["images_per_s"] / base if base else None
    result = {"hardware": hardware_line(device), "data": args.data, "twelve_mp": args.twelve_mp,
              "image_size": args.image_size, "batch_size": args.batch_size,
              "workers": workers, "rows": rows, "left_out": left_out,
              "pack": pack_info, "decoders": decoders}
    if printed_as_json(result, args.json):
        return result
    print(f"\n{result['hardware']}")
    what = f"{args.twelve_mp} images re-encoded as 12 MP JPEGs" if args.twelve_mp else args.data
    print(f"loader alone: {what}; {args.image_size} px RandomResizedCrop + flip, batch {args.batch_size}, "
          f"{result['workers']} workers; median of epochs 2..{args.epochs}")
    if pack_info:
        print(f"pack: {pack_info['bytes_before'] / 1e6:.1f} MB -> {pack_info['bytes_after'] / 1e6:.1f} MB in "
              f"{pack_info['seconds']:.1f} s")
    print(f"{'path':<12}{'images':>8}{'images/s':>11}{'first epoch s':>15}{'vs torchvision':>15}")
    for r in rows:
        ratio = f"{r['vs_torchvision']:.2f}x" if r["vs_torchvision"] else "-"
        print(f"{r['path']:<12}{r['images']:>8}{r['images_per_s']:>11.1f}{r['first_epoch_s']:>15.2f}{ratio:>15}")
    for name, why in left_out.items():
        print(f"{name}: left out ({why})")
    if decoders:
        print(format_decoder_rates(decoders))
    return result
