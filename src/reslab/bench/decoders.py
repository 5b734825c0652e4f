"""JPEG decoding alone on the CPU, each library side by side on the same files: what ``data.decode``
chooses between (TorchCodec, torchvision.io) and Pillow, one thread each, full size."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..data.decode import LIBRARIES, as_bytes_tensor, jpeg_library
from ..data.images import open_image


def _rate(decode, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def decoder_rates(files: list[Path], repeats: int = 5) -> dict:
    """Images/s of each installed decoder on ``files`` (JPEGs), median of ``repeats`` passes, one thread."""
    datas = [f.read_bytes() for f in files]
    tensors = [as_bytes_tensor(d) for d in datas]
    cpu = torch.device("cpu")
    runs = {"pillow": lambda: [open_image(d) for d in datas]}
    for name, decode in LIBRARIES.items():
        if name == "torchvision" or jpeg_library() == name:
            runs[name] = lambda decode=decode: [decode([t], "RGB", cpu) for t in tensors]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = {name: _rate(run, len(files), repeats) for name, run in runs.items()}
    finally:
        torch.set_num_threads(threads)
    return {"images": len(files), "chosen": jpeg_library(), "images_per_s": rates}


def format_decoder_rates(report: dict) -> str:
    rates = report["images_per_s"]
    pillow = rates["pillow"]
    lines = [f"JPEG decoding alone, full size, 1 thread, {report['images']} files (median of passes):",
             f"{'decoder':<14}{'images/s':>10}{'vs pillow':>11}"]
    for name, rate in rates.items():
        chosen = "  <- chosen" if name == report["chosen"] else ""
        lines.append(f"{name:<14}{rate:>10.0f}{rate / pillow:>10.2f}x{chosen}")
    return "\n".join(lines)
