"""What this machine computes with, asked in one place: devices, instruction sets, native precisions.

Every layer asks here instead of testing ``device.type`` or CPU flags itself: which device ``auto``
means, whether bf16 is native (AMX or AVX512-BF16 on CPUs, compute capability 8+ on GPUs), whether
int8 products are exact (VNNI), which autocast dtype a device gets, whether training defaults to
mixed precision, and what OpenVINO is told. Benchmarks print ``hardware_line()``; run folders and
model files record ``hardware_report()``. The answers come from torch (and the OS or OpenVINO for the
CPU's name), never from parsing CPU flags by hand. torch is imported only by the questions that need it:
ONNX Runtime and OpenVINO deployments run without it (``runtime_device``, ``machine_identity``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openvino
    import torch


class DeviceError(ValueError):
    """A device that this machine does not have; the message says which ones it has."""


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int  # cores this process may run on
    isa: str  # the widest vector level torch's kernels use here: DEFAULT, AVX2, AVX512, ...
    amx: bool  # AMX tiles: bf16 and int8 matrix units
    avx512_bf16: bool  # bf16 dot products in AVX-512 registers
    vnni: bool  # int8 dot products without 16-bit saturation
    onednn_isa_cap: str | None  # ONEDNN_MAX_CPU_ISA, when set: oneDNN computes as on this lower level

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware, as oneDNN is allowed to use it."""
        return (self.amx or self.avx512_bf16) and _onednn_allows(self.onednn_isa_cap, "BF16")

    @property
    def native_int8(self) -> bool:
        return self.vnni or self.amx

    @property
    def level(self) -> str:
        """AMX, AVX512-BF16, AVX512, AVX2 ...: the best matrix path oneDNN may take here."""
        if self.amx and _onednn_allows(self.onednn_isa_cap, "AMX"):
            return "AMX"
        if self.avx512_bf16 and _onednn_allows(self.onednn_isa_cap, "BF16"):
            return "AVX512-BF16"
        return self.isa


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    capability: str
    memory_gib: float
    native_bf16: bool


def _onednn_allows(cap: str | None, feature: str) -> bool:
    """Whether oneDNN, capped by ``ONEDNN_MAX_CPU_ISA``, may use ``feature`` (BF16 or AMX)."""
    if not cap or cap.upper() == "ALL":
        return True
    cap = cap.upper()
    if feature == "AMX":
        return "AMX" in cap
    return any(k in cap for k in ("BF16", "AMX", "AVX10", "FP16"))


@functools.cache
def _cpu_model() -> str:
    try:  # Linux names the CPU in /proc/cpuinfo, at no cost
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    try:  # OpenVINO names it on every OS
        return str(openvino_core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # not installed, or no CPU plugin: fall back to the platform's answer
        return platform.processor() or platform.machine()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_identity() -> str:
    """The CPU as runtimes see it, without importing torch: remembered runtime choices are keyed by it."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"{_cpu_model()}, {_cores()} cores, {platform.machine()}" + (f", ONEDNN_MAX_CPU_ISA={cap}" if cap else "")


@functools.cache
def cpu_info() -> CpuInfo:
    import torch

    cpu = torch.cpu
    return CpuInfo(
        model=_cpu_model(),
        cores=_cores(),
        isa=torch.backends.cpu.get_cpu_capability(),
        amx=bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()),
        avx512_bf16=bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()),
        vnni=bool(getattr(cpu, "_is_vnni_supported", lambda: False)()),
        onednn_isa_cap=os.environ.get("ONEDNN_MAX_CPU_ISA"),
    )


def gpu_info() -> list[GpuInfo]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append(GpuInfo(i, props.name, f"{props.major}.{props.minor}", props.total_memory / 2**30,
                            props.major >= 8))
    return gpus


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: the first GPU where there is one, else the CPU. A device this machine does not
    have raises ``DeviceError`` with a one-line reason."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch" if torch.version.cuda is None else f"torch with CUDA {torch.version.cuda}"
            raise DeviceError(f"--device {name!r}: this machine has no usable CUDA GPU ({build}); use --device "
                              f"cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name!r}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name!r}: reslab runs on cpu or cuda")
    return device


def default_workers(device: torch.device, world_size: int = 1) -> int:
    """Data-loading processes per training process: on a GPU every core but the one that feeds it
    (shared among the processes of this machine); on a CPU half the cores, the rest compute."""
    cores = max(1, _cores() // max(1, world_size))
    return max(1, cores - 1) if device.type == "cuda" else max(1, cores // 2)


def cuda_possible() -> bool:
    """Whether this machine may have an NVIDIA GPU, asked without importing torch (no device nodes on
    Linux, or a Mac: certainly not; elsewhere torch must be asked)."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))
    return True


def runtime_device(name: str | torch.device = "auto") -> str:
    """The device for ONNX Runtime or OpenVINO, without importing torch: ``auto`` is a GPU only where
    ONNX Runtime has its CUDA provider; OpenVINO runs on the CPU."""
    name = str(name)
    if name == "auto":
        return "cuda" if "CUDAExecutionProvider" in onnxruntime_providers() else "cpu"
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise DeviceError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N")


@functools.cache
def onnxruntime_providers() -> tuple[str, ...]:
    if importlib.util.find_spec("onnxruntime") is None:
        return ()
    import onnxruntime

    return tuple(onnxruntime.get_available_providers())


def onednn_bf16_refusal() -> str | None:
    """Why oneDNN (in torch and OpenVINO) is kept off bf16 instructions by ``ONEDNN_MAX_CPU_ISA``, or None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if cap and not _onednn_allows(cap, "BF16"):
        return f"ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN off this CPU's bf16 instructions"
    return None


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    return cpu_info().native_bf16


def bf16_refusal(device: torch.device) -> str | None:
    """Why bf16 is not offered on ``device`` (emulated bf16 is slower than fp32), or None."""
    if native_bf16(device):
        return None
    if device.type == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(device)} has no native bf16 (compute capability 8.0 or newer)"
    info = cpu_info()
    capped = onednn_bf16_refusal()
    if (info.amx or info.avx512_bf16) and capped:
        return capped
    return f"this CPU ({info.model}, {info.isa}) has no native bf16 (AMX or AVX512-BF16); it would be emulated"


def autocast_dtype(device: torch.device, requested: str = "bfloat16") -> torch.dtype:
    """The mixed-precision dtype: bf16, or fp16 on GPUs without bf16."""
    import torch

    if requested == "bfloat16" and device.type == "cuda" and not native_bf16(device):
        return torch.float16
    return getattr(torch, requested)


def memory_format(channels_last: bool, dims: int = 4) -> torch.memory_format:
    """The layout of activations and convolution weights: channels last for images (NHWC) and clips (NDHWC),
    where asked for, which oneDNN and cuDNN run fastest; contiguous otherwise."""
    import torch

    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last_3d if dims == 5 else torch.channels_last


def use_exact_fp32(device: torch.device) -> None:
    """fp32 means fp32 on GPUs too: cuDNN would otherwise run fp32 convolutions in TF32 (10-bit mantissa)."""
    if device.type == "cuda":
        import torch

        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def int8_saturates() -> bool:
    """x86 CPUs without VNNI (or AMX) multiply u8 x s8 with 16-bit saturation: INT8 weights then need 7 bits."""
    c = cpu_info()
    return platform.machine().lower() in ("x86_64", "amd64") and not c.native_int8


# bf16 autocast trains in bf16 on a CPU only where it measured at least this much faster than fp32
BF16_TRAINING_MIN_SPEEDUP = 1.2


def training_amp_default(device: torch.device) -> str:
    """What ``--amp auto`` does here: "on" on GPUs (bf16, or fp16 where bf16 is not native); "measure"
    on CPUs with native bf16, where no flag predicts the speed (bf16 steps measured 1.7-2.9x fp32 on
    AMD Zen 5 and AMX Xeons, 0.7x on an AVX512-BF16 Xeon without AMX); "off" on other CPUs (emulated)."""
    if device.type == "cuda":
        return "on"
    return "measure" if cpu_info().native_bf16 else "off"


def openvino_config(precision: str) -> dict[str, str]:
    """What OpenVINO's CPU plugin is told: it runs fp32 models in bf16 by default where bf16 is
    native, so fp32 is asked for explicitly. An INT8 model keeps its other layers in fp32."""
    return {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}


@functools.cache
def openvino_core() -> openvino.Core:
    """The process's one OpenVINO ``Core``, kept until it exits: every OpenVINO call goes through it.

    Each ``Core`` that starts OpenVINO's CPU plugin gives the calling thread a signal stack of its own
    (``sigaltstack``, room for AMX state) and, when that ``Core`` goes, puts back the stack it found and
    unmaps its own. Two ``Core`` objects whose lives overlap and end first-in-first-out leave the thread
    on the first one's unmapped stack: the next signal with a Python handler (SIGCHLD once a
    ``DataLoader`` has had workers, SIGINT) cannot be delivered, and the kernel kills the process with
    SIGSEGV. One ``Core`` swaps the stack once and never back."""
    import openvino as ov

    return ov.Core()


@functools.cache
def openvino_capabilities() -> tuple[str, ...]:
    """OpenVINO's CPU plugin's own list (FP32, BF16, INT8, ...); empty where OpenVINO is not installed."""
    try:
        return tuple(openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # not installed, or no CPU plugin
        return ()


def hardware_line(device: torch.device | None = None) -> str:
    """One line for the head of every benchmark."""
    import torch

    c = cpu_info()
    features = [f for f, on in (("AMX", c.amx), ("AVX512-BF16", c.avx512_bf16), ("VNNI", c.vnni)) if on]
    cap = f", ONEDNN_MAX_CPU_ISA={c.onednn_isa_cap}" if c.onednn_isa_cap else ""
    line = (f"CPU {c.model}, {c.cores} cores, {c.isa} kernels ({', '.join(features) or 'no bf16/int8 units'}{cap}; "
            f"bf16 {'native' if c.native_bf16 else 'not native'}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
    if device is not None and device.type == "cuda":
        gpu = gpu_info()[device.index or 0]
        line += f"; GPU {gpu.name} (sm {gpu.capability}, {gpu.memory_gib:.0f} GiB), CUDA {torch.version.cuda}"
    return line


def hardware_report() -> dict:
    """The machine, as run folders and model files record it."""
    import torch

    c = cpu_info()
    return {"cpu": {**asdict(c), "level": c.level, "native_bf16": c.native_bf16, "native_int8": c.native_int8},
            "gpus": [asdict(g) for g in gpu_info()], "torch": torch.__version__, "python": platform.python_version()}
