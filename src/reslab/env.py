"""``reslab env``: this machine as reslab sees it, with the versions and what runs here.

In the spirit of ``torch.utils.collect_env`` and ``yolo checks``: the hardware report (``hardware``),
the versions of torch and every optional dependency, and which runtimes and precisions are usable.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

import torch

from .hardware import cpu_info, gpu_info, hardware_line, hardware_report, int8_saturates
from .infer.backends import BACKENDS, available_backends, precision_refusal
from .version import __version__

PACKAGES = ("torch", "torchvision", "numpy", "Pillow", "safetensors", "onnx", "onnxscript", "onnxruntime", "openvino",
            "torch-pruning", "tritonclient", "transformers", "fastapi", "uvicorn", "prometheus-client")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def usable_precisions() -> dict[str, dict[str, str]]:
    """Per runtime and device: each precision, "yes" or the reason it is not offered."""
    installed = available_backends()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if gpu_info() else [])
    table: dict[str, dict[str, str]] = {}
    for backend in BACKENDS:
        for device in devices:
            if device.type == "cuda" and backend != "torch":
                continue
            key = f"{backend} ({device.type})"
            if backend not in installed:
                table[key] = {"fp32": "not installed (pip install 'reslab[deploy]')"}
                continue
            row = {"fp32": "yes"}
            refusal = precision_refusal(backend, "bf16", device)
            row["bf16"] = "yes" if refusal is None else f"no: {refusal}"
            if backend != "torch":
                row["int8"] = "yes (7-bit weights: no VNNI)" if int8_saturates() else "yes"
            table[key] = row
    return table


def environment_report() -> dict[str, Any]:
    return {"reslab": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "hardware": hardware_report(), "summary": hardware_line(), "packages": package_versions(),
            "precisions": usable_precisions()}


def format_report(report: dict[str, Any]) -> str:
    c = cpu_info()
    lines = [f"reslab {report['reslab']}, Python {report['python']}, {report['platform']}", "",
             f"CPU           {c.model}", f"cores         {c.cores} (torch uses {torch.get_num_threads()} threads)",
             f"kernels       {c.isa} (torch's dispatch level); best matrix path: {c.level}",
             f"bf16          {'native' if c.native_bf16 else 'not native'} (AMX {c.amx}, AVX512-BF16 {c.avx512_bf16})",
             f"int8          VNNI {c.vnni}{', INT8 weights quantised to 7 bits' if int8_saturates() else ''}"]
    if c.onednn_isa_cap:
        lines.append(f"oneDNN        capped by ONEDNN_MAX_CPU_ISA={c.onednn_isa_cap}")
    for g in report["hardware"]["gpus"]:
        lines.append(f"GPU {g['index']}         {g['name']}, sm {g['capability']}, {g['memory_gib']:.0f} GiB, "
                     f"bf16 {'native' if g['native_bf16'] else 'no'}")
    if not report["hardware"]["gpus"]:
        lines.append(f"GPU           none ({'CPU-only torch' if torch.version.cuda is None else 'no CUDA device'})")
    lines += ["", "packages:"]
    lines += [f"  {name:<18}{version or '-'}" for name, version in report["packages"].items()]
    lines += ["", "runtimes and precisions usable here:"]
    for runtime, row in report["precisions"].items():
        lines.append(f"  {runtime:<22}" + "; ".join(f"{p}: {v}" for p, v in row.items()))
    return "\n".join(lines)
