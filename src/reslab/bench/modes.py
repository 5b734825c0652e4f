"""The execution modes the GPU benchmarks set side by side, and their device-synchronised timing.

- ``eager``: fp32, NCHW, no compilation: what a plain PyTorch loop runs.
- ``channels_last+amp``: NHWC memory format and autocast (bf16 where the GPU has it, else fp16).
- ``compiled``: the same, with ``torch.compile`` (compilation time reported apart, not timed).
Modes are measured in alternating rounds, and the median step time of each is reported.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.arrays import load_arrays
from ..data.preprocess import DATASET_STATS, Preprocess
from ..data.sample import SAMPLE_PACK
from ..hardware import autocast_dtype

MODES = ("eager", "channels_last+amp", "compiled")


@dataclass
class Mode:
    name: str
    channels_last: bool
    amp: bool
    compile: bool

    @classmethod
    def named(cls, name: str) -> Mode:
        if name not in MODES:
            raise ValueError(f"unknown mode {name!r}; modes: {', '.join(MODES)}")
        return cls(name, channels_last=name != "eager", amp=name != "eager", compile=name == "compiled")

    def prepare(self, model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        return (torch.compile(model) if self.compile else model), x.contiguous(memory_format=fmt)

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=autocast_dtype(device)) if self.amp else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: Mode,
               optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    device = x.device
    scaler = torch.amp.GradScaler(device.type, enabled=mode.amp and autocast_dtype(device) == torch.float16)

    def step() -> None:
        with mode.autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def inference_step(model: nn.Module, x: torch.Tensor, mode: Mode) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), mode.autocast(x.device):
            model(x)

    return step


@dataclass
class Timed:
    mode: str
    warmup_s: float  # the first calls: compilation, cuDNN's algorithm search
    step_times: list[float]  # seconds per step, one figure per round

    def images_per_s(self, batch: int) -> float:
        return batch / statistics.median(self.step_times)


def time_modes(steps: dict[str, Callable[[], None]], device: torch.device, warmup_steps: int = 3,
               steps_per_round: int = 10, rounds: int = 5) -> dict[str, Timed]:
    """Seconds per step of each mode: rounds of back-to-back steps (the device stays busy, as in
    training), synchronised at each round's ends, the modes alternating from round to round."""
    timed: dict[str, Timed] = {}
    for name, step in steps.items():
        start = time.perf_counter()
        for _ in range(warmup_steps):
            step()
        synchronize(device)
        timed[name] = Timed(name, time.perf_counter() - start, [])
    for _ in range(rounds):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            synchronize(device)
            timed[name].step_times.append((time.perf_counter() - start) / steps_per_round)
    return timed


def sample_batch(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Real images for timing: the shipped CIFAR-10 sample, normalised, resized to ``size`` and
    repeated up to ``batch`` images, already on ``device``."""

    train = load_arrays(SAMPLE_PACK, hold_out=False).train
    index = torch.arange(batch) % len(train)
    mean, std = DATASET_STATS["cifar10"]
    x = Preprocess(32, 32, mean, std).normalize(torch.from_numpy(train.images)[index])
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.to(device), torch.from_numpy(train.labels)[index].to(device)


def compare_modes(build: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor | None, modes: list[str],
                  extra: dict[str, Callable[[], None]] | None = None, rounds: int = 5,
                  steps_per_round: int = 10) -> list[dict]:
    """Images/s of a training step (``y`` given) or an inference call in each mode, side by side."""
    steps: dict[str, Callable[[], None]] = {}
    for name in modes:
        mode = Mode.named(name)
        torch.manual_seed(0)
        model, xm = mode.prepare(build().to(x.device).train(y is not None), x)
        if y is not None:
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            steps[name] = train_step(model, xm, y, mode, optimizer)
        else:
            steps[name] = inference_step(model, xm, mode)
    steps.update(extra or {})
    timed = time_modes(steps, x.device, steps_per_round=steps_per_round, rounds=rounds)
    first = next(iter(timed.values())).images_per_s(len(x))
    return [{"mode": name, "images_per_s": t.images_per_s(len(x)), "vs_first": t.images_per_s(len(x)) / first,
             "warmup_s": t.warmup_s} for name, t in timed.items()]


def print_modes_table(title: str, rows: list[dict]) -> None:
    print(title)
    print(f"{'mode':<28}{'images/s':>11}{'vs ' + rows[0]['mode']:>14}{'warm-up s':>11}")
    for r in rows:
        print(f"{r['mode']:<28}{r['images_per_s']:>11.0f}{r['vs_first']:>13.2f}x{r['warmup_s']:>11.1f}")
