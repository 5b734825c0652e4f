"""Opening a model for inference: which runtime and which precision, chosen on purpose and said.

Both are asked for or left to ``auto``. ``auto`` opens every installed runtime that can read the
file (torch alone on a GPU), in every precision this machine runs natively, times each on a small
batch, and keeps the fastest whose outputs pass the check against fp32 on real images (tolerances in
``reslab.precision``). A lower precision is never used unchecked: an explicit ``bf16`` that fails the
check is refused. The choice and its reasons are kept in ``Selection``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..formats import model_format, read_info
from ..hardware import cuda_possible, resolve_device, runtime_device
from ..modelfile import ModelFileError, ModelInfo
from ..precision import Agreement, VerificationError, bf16_rtol, check, check_choice, compare
from ..timing import timed_calls
from .backends import Backend, Key, cached_onnx, choose_backend, open_backends, precision_refusal
from .background import ChoiceRequest, choose_in_background
from .memory import choice_key, recall, remember
from .reference import default_images, reference_batch


@dataclass
class Selection:
    backend: Backend
    info: ModelInfo
    reason: str  # why this runtime and precision
    verification: Agreement | None = None  # bf16 against fp32 on real images
    timings_ms: dict[str, float] = field(default_factory=dict)  # "runtime precision" -> ms per batch of 8
    pending: ChoiceRequest | None = None  # a first run's: the timing still to be done, after the answer

    @property
    def label(self) -> str:
        return f"{self.backend.name} {self.backend.precision}"

    def choose_in_background(self) -> bool:
        """Start the timing a first run left for later; False if there is none to start (or one runs)."""
        return self.pending is not None and choose_in_background(self.pending)


def _precisions(path: Path, info: ModelInfo, requested: str) -> list[str]:
    if info.precision == "int8":
        if requested in ("fp32", "bf16"):
            raise ValueError(f"{path} is quantised to INT8 and runs in int8 (--precision int8 or auto); pass the "
                             f"fp32 model for --precision {requested}")
        return ["int8"]
    if requested == "int8":
        raise ValueError(f"--precision int8 needs an INT8-quantised model: `reslab quantize {path} --calib-data DATA` "
                         f"writes one")
    return ["fp32", "bf16"] if requested == "auto" else [requested]


def inference_device(path: Path, backend: str, device: object) -> str:
    """The device as a string. ONNX and OpenVINO files, and a model file run by another runtime than
    torch on a machine without a GPU, get theirs without importing torch."""
    fmt = model_format(path)
    if fmt in ("onnx", "openvino"):
        return runtime_device(device)
    if str(device) == "cpu" or (str(device) == "auto" and fmt == "reslab" and backend != "torch"
                                and not cuda_possible()):
        return "cpu"
    return str(resolve_device(device))


def candidates(path: Path, info: ModelInfo, backend: str, precision: str, device: str) -> list[Key]:
    """The (runtime, precision) pairs to consider; an explicit precision that none can run is refused."""
    names = choose_backend(path, backend, device)
    keys, refused = [], []
    for p in _precisions(path, info, precision):
        for b in names:
            reason = precision_refusal(b, p, device)
            if reason is None:
                keys.append((b, p))
            else:
                refused.append(f"{b}: {reason}")
    if not keys:
        raise ValueError(f"--precision {precision} cannot run here: " + "; ".join(refused))
    return keys


def verify(candidate: Backend, fp32: Backend, batch: np.ndarray, info: ModelInfo) -> Agreement:
    """A bf16 runtime against the same runtime in fp32, on real images."""
    from ..models import weighted_layers  # torch: ONNX and OpenVINO serve without it

    return compare(fp32.run(batch), candidate.run(batch), bf16_rtol(weighted_layers(info.spec)), candidate.precision)


def _median_ms(backend: Backend, info: ModelInfo, batch: int = 8) -> float:
    pre = info.preprocess
    x = np.random.default_rng(0).standard_normal((batch, pre.in_chans, pre.image_size, pre.image_size),
                                                 dtype=np.float32)
    return 1000 * statistics.median(timed_calls(lambda: backend.run(x), seconds=0.3, warmup=0.1))


def _torch_threads(keys: list[Key], threads: int | None) -> None:
    if threads and any(b == "torch" for b, _ in keys):
        import torch

        torch.set_num_threads(threads)


def first_run_key(path: Path, keys: list[Key]) -> Key:
    """What a first run answers with while the timing waits: fp32 (the file's own int8 for a quantised one) on
    the runtime that opens fastest. A model file opens fastest in torch, unless its ONNX graph is cached
    (ONNX Runtime then needs no torch at all)."""
    graph_cached = model_format(path) == "reslab" and cached_onnx(path).is_file()
    order = ["onnxruntime", "torch", "openvino"] if graph_cached else ["torch", "onnxruntime", "openvino"]
    return min(keys, key=lambda k: (k[1] == "bf16", order.index(k[0])))


def load_backend(
    path: str | Path, backend: str = "auto", device: object = "cpu", threads: int | None = None,
    channels_last: bool = True, precision: str = "auto", verify_images: list[Path] | None = None,
    timing: Literal["now", "later"] = "now",
) -> Selection:
    """Open ``path`` with ``backend`` in ``precision`` (each may be ``auto``); ``device``: a name or torch device.
    ``timing``: whether an ``auto`` choice not remembered yet is timed before answering, or later (see the
    module's docstring; ``Selection.choose_in_background`` starts it)."""
    path = Path(path)
    check_choice(precision)
    model_format(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    device = inference_device(path, backend, device)
    images = verify_images if verify_images is not None else default_images()
    # a choice made here before (same file, machine, runtimes, request) is reopened without timing or torch
    memory = choice_key(path, backend, precision, device, threads, images) if "auto" in (backend, precision) else None
    remembered = recall(memory) if memory else None
    if remembered:
        key = tuple(remembered["key"])
        _torch_threads([key], threads)
        opened, info = open_backends(path, [key], device, threads, channels_last)
        return Selection(opened[key], info, f"{remembered['reason']} (remembered for this file and machine)", None,
                         remembered["timings_ms"])
    info = read_info(path)
    if info.task == "features":
        raise ModelFileError(f"{path} is a backbone without a classifier (from reslab pretrain): fine-tune it with "
                             f"`reslab train --init {path}`, or take its features with `reslab embed` or "
                             f"`reslab probe`")
    keys = candidates(path, info, backend, precision, device)
    if precision == "auto" and not images:  # nothing to check bf16 on: it is not considered
        keys = [k for k in keys if k[1] != "bf16"]
    _torch_threads(keys, threads)
    if timing == "later" and memory and len(keys) > 1 and (quick := first_run_key(path, keys))[1] != "bf16":
        opened, info = open_backends(path, [quick], device, threads, channels_last, info)
        pending = ChoiceRequest(str(path), backend, precision, device, threads, channels_last,
                                [str(p) for p in verify_images] if verify_images is not None else None, memory)
        reason = (f"auto, first run: {quick[0]} {quick[1]}, a safe default, while {len(keys)} runtime and precision "
                  f"pairs are timed in the background; the next run uses the fastest that passes the check")
        return Selection(opened[quick], info, reason, pending=pending)
    references = [(b, "fp32") for b, p in keys if p == "bf16" and (b, "fp32") not in keys]
    opened, info = open_backends(path, keys + references, device, threads, channels_last, info)
    timings = {f"{b} {p}": _median_ms(opened[(b, p)], info) for b, p in keys} if len(keys) > 1 else {}
    order = sorted(keys, key=lambda k: timings.get(f"{k[0]} {k[1]}", 0.0))
    rejected = []
    batch: np.ndarray | None = None  # decoded once, and only when a bf16 candidate is checked
    for key in order:
        agreement = None
        if key[1] == "bf16":
            batch = reference_batch(info.preprocess, images, info.frames) if batch is None else batch
            agreement = verify(opened[key], opened[(key[0], "fp32")], batch, info)
            if precision == "bf16":
                check(agreement, f"{key[0]} in bf16")
            if not agreement.passed:
                rejected.append(f"{key[0]} bf16 failed the check ({agreement.line()})")
                continue
        reason = _reason(key, precision, backend, timings, rejected, agreement)
        if memory and len(keys) > 1:
            remember(memory, {"key": list(key), "reason": reason, "timings_ms": timings})
        return Selection(opened[key], info, reason, agreement, timings)
    raise VerificationError("no runtime passed the check against fp32: " + "; ".join(rejected))


def _reason(key: Key, precision: str, backend: str, timings: dict[str, float], rejected: list[str],
            agreement: Agreement | None) -> str:
    parts = [("asked for" if precision != "auto" and backend != "auto" else "auto") + f": {key[0]} {key[1]}"]
    if timings:
        fp32 = [t for k, t in timings.items() if k.endswith("fp32")]
        best = timings[f"{key[0]} {key[1]}"]
        speed = f", {min(fp32) / best:.2f}x the fastest fp32" if fp32 and key[1] != "fp32" else ""
        parts.append(f"fastest of {len(timings)} timed here ({best:.1f} ms per 8 images{speed})")
    if agreement is not None:
        parts.append(f"bf16 checked against fp32 on {agreement.line()}")
    parts += rejected
    return "; ".join(parts)
