"""Training precision chosen by measurement (``--amp auto``, the default).

On a GPU mixed precision is on (bf16, or fp16 with a grad scaler). On a CPU with native bf16, no flag
predicts whether bf16 autocast trains faster than fp32 (measured: 1.7-2.9x on AMD Zen 5 and AMX Xeons,
0.7x on an AVX512-BF16 Xeon without AMX), so a few training steps of the run's own network, image size
and batch are timed in each precision when the run starts, and bf16 is kept only where it is at least
``hardware.BF16_TRAINING_MIN_SPEEDUP`` times faster. The answer is remembered per machine, torch version,
threads, network, image size and batch (``infer.memory``), so the next such run starts at once.
``--amp``/``--no-amp`` force it; a resumed run keeps the choice its checkpoint records.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..collectives import sum_across_ranks
from ..evaluate.metrics import autocast_context
from ..hardware import (
    BF16_TRAINING_MIN_SPEEDUP,
    autocast_dtype,
    bf16_refusal,
    machine_identity,
    memory_format,
    training_amp_default,
)
from ..infer.memory import identity_key, recall, remember

MEASURE_SECONDS = 4.0  # timed rounds stop after about this long (at least two rounds each)


@dataclass(frozen=True)
class PrecisionChoice:
    amp: bool
    dtype: str  # float32 | bfloat16 | float16
    how: str  # asked | measured | remembered | gpu | not native
    reason: str
    fp32_images_per_s: float | None = None
    bf16_images_per_s: float | None = None

    @property
    def bf16_vs_fp32(self) -> float | None:
        if self.fp32_images_per_s and self.bf16_images_per_s:
            return self.bf16_images_per_s / self.fp32_images_per_s
        return None

    @property
    def label(self) -> str:
        """What training computes in: fp32, or mixed precision with bf16/fp16 autocast."""
        return f"mixed {self.dtype}" if self.amp else "fp32"

    def record(self) -> dict[str, Any]:
        """For the checkpoint, the run's summary and the model file."""
        return {**asdict(self), "bf16_vs_fp32": self.bf16_vs_fp32}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PrecisionChoice:
        return cls(**{k: v for k, v in record.items() if k in cls.__dataclass_fields__})


def measure_step_rates(model: nn.Module, batch: int, image_size: int, in_chans: int = 3,
                       channels_last: bool = True, seconds: float = MEASURE_SECONDS,
                       frames: int | None = None) -> tuple[float, float]:
    """Images/s of fp32 and of bf16-autocast training steps (forward, backward, SGD) of a copy of
    ``model`` on its own device, in alternating rounds after a warm-up of each; the median of each.
    ``model``, its BatchNorm statistics and the global random state are left as they were."""
    device = next(model.parameters()).device
    clip_axis = (frames,) if frames is not None else ()  # a video network's clips: (N, C, T, H, W)
    layout = memory_format(channels_last, 4 + len(clip_axis))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        probe = copy.deepcopy(model).train()
        x = torch.randn(batch, in_chans, *clip_axis, image_size, image_size, device=device).contiguous(
            memory_format=layout)
        y = torch.zeros(batch, dtype=torch.long, device=device)
        optimizer = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

        def step(amp: bool) -> float:
            start = time.perf_counter()
            with autocast_context(device, amp, "bfloat16"):
                loss = F.cross_entropy(probe(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return time.perf_counter() - start

        warm = {amp: [step(amp) for _ in range(2)][-1] for amp in (False, True)}
        rounds = max(2, min(5, int(seconds / sum(warm.values()))))
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for amp in (False, True):
                times[amp].append(step(amp))
    return batch / statistics.median(times[False]), batch / statistics.median(times[True])


def resolve_precision(requested: bool | str, amp_dtype: str, device: torch.device,
                      identity: list[Any] | None = None,
                      measure: Callable[[], tuple[float, float]] | None = None) -> PrecisionChoice:
    """``requested``: True, False or "auto". ``measure()`` returns (fp32, bf16) images/s of the run's
    steps; ``identity`` names what was measured, for remembering it (None: not remembered)."""
    if device.type == "cpu" and requested is not False and amp_dtype == "float16":
        raise ValueError("config field 'amp_dtype': float16 is for GPUs; on CPUs mixed precision is bf16")
    dtype = str(autocast_dtype(device, amp_dtype)).removeprefix("torch.")
    if requested is False:
        return PrecisionChoice(False, "float32", "asked", "--no-amp")
    if requested is True:
        refusal = bf16_refusal(device) if device.type == "cpu" else None
        if refusal:
            warnings.warn(f"--amp asks for bf16, but {refusal}: slower than fp32 here", stacklevel=3)
        return PrecisionChoice(True, dtype, "asked", "--amp")
    rule = training_amp_default(device)
    if rule == "on":
        return PrecisionChoice(True, dtype, "gpu", "mixed precision on GPUs")
    if rule == "off":
        return PrecisionChoice(False, "float32", "not native", bf16_refusal(device) or "bf16 not native here")
    key = identity_key(["training precision", machine_identity(), torch.__version__, *identity]) if identity else None
    known = recall(key) if key else None
    if known:
        fp32, bf16, how = known["fp32_images_per_s"], known["bf16_images_per_s"], "remembered"
    else:
        assert measure is not None, "bf16 is native here: the run's steps must be timed"
        fp32, bf16 = measure()
        how = "measured"
    ratio = bf16 / fp32
    use_bf16 = ratio >= BF16_TRAINING_MIN_SPEEDUP
    reason = (f"bf16 autocast steps ran {ratio:.2f}x as fast as fp32, {bf16:.0f} against {fp32:.0f} images/s; "
              f"bf16 is kept from {BF16_TRAINING_MIN_SPEEDUP}x")
    choice = PrecisionChoice(use_bf16, "bfloat16" if use_bf16 else "float32", how, reason, fp32, bf16)
    if key and how == "measured":
        remember(key, {"fp32_images_per_s": fp32, "bf16_images_per_s": bf16})
    return choice


def measure_across_ranks(model: nn.Module, batch: int, image_size: int, in_chans: int,
                         channels_last: bool, frames: int | None = None) -> tuple[float, float]:
    """Each process times its own steps (under the machine's real load); all agree on the mean."""
    fp32, bf16 = measure_step_rates(model, batch, image_size, in_chans, channels_last, frames=frames)
    device = next(model.parameters()).device
    rates = sum_across_ranks(torch.tensor([fp32, bf16, 1.0], dtype=torch.float64, device=device))
    return float(rates[0] / rates[2]), float(rates[1] / rates[2])
