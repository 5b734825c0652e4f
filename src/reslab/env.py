"""``reslab env``: this machine as reslab sees it, with the versions and what runs here.

In the spirit of ``torch.utils.collect_env`` and ``yolo checks``: the hardware report (``hardware``),
the versions of torch and every optional dependency, and which runtimes and precisions are usable.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import sys
from typing import Any

import torch

from .hardware import cpu_info, gpu_info, hardware_line, hardware_report, int8_saturates
from .infer.backends import BACKENDS, available_backends, precision_refusal
from .models import create_model
from .train.precision_choice import PrecisionChoice, measure_step_rates, resolve_precision
from .version import __version__

TOOLING_EXTRAS = {"all", "dev"}  # "all" repeats the others; "dev" is the test tools


def declared_packages() -> dict[str, str]:
    """Every package reslab's own metadata declares, core and optional, as name -> where it comes from
    ("core" or the extras that bring it): the list cannot drift from pyproject.toml."""
    try:
        requirements = importlib.metadata.requires("reslab") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        requirements = []
    where: dict[str, list[str]] = {}
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        origin = extra.group(1) if extra else "core"
        if name != "reslab" and origin not in TOOLING_EXTRAS:
            where.setdefault(name, []).append(origin)
    return {name: ",".join(origins) for name, origins in where.items()}


def package_versions() -> dict[str, dict[str, str | None]]:
    """Each declared package's installed version (None: not installed) and the extra that brings it."""
    versions = {}
    for name, origin in declared_packages().items():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        versions[name] = {"version": version, "from": origin}
    return versions


ENV_PROBE = ("resnet18", "cifar", 32, 32)  # the ResNet-18 training step `reslab env` times: stem, size, batch


def training_precision() -> PrecisionChoice:
    """What ``--amp auto`` picks for a ResNet-18 (CIFAR stem, 32 px, batch 32) training step on this CPU,
    timed once and remembered like a run's own."""
    arch, stem, size, batch = ENV_PROBE
    model = create_model(arch, num_classes=10, stem=stem).to(memory_format=torch.channels_last)
    return resolve_precision("auto", "bfloat16", torch.device("cpu"),
                             ["reslab env", *ENV_PROBE, torch.get_num_threads()],
                             lambda: measure_step_rates(model, batch, size, seconds=2.0))


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
            "precisions": usable_precisions(), "training_precision": training_precision().record()}


def format_report(report: dict[str, Any]) -> str:
    c = cpu_info()
    lines = [f"reslab {report['reslab']}, Python {report['python']}, {report['platform']}", "",
             f"CPU           {c.model}", f"cores         {c.cores} (torch uses {torch.get_num_threads()} threads)",
             f"kernels       {c.isa} (torch's dispatch level); best matrix path: {c.level}",
             f"bf16          {'native' if c.native_bf16 else 'not native'} (AMX {c.amx}, AVX512-BF16 {c.avx512_bf16})",
             f"int8          VNNI {c.vnni}{', INT8 weights quantised to 7 bits' if int8_saturates() else ''}"]
    if c.onednn_isa_cap:
        lines.append(f"oneDNN        capped by ONEDNN_MAX_CPU_ISA={c.onednn_isa_cap}")
    train = PrecisionChoice.from_record(report["training_precision"])
    arch, stem, size, batch = ENV_PROBE
    lines.append(f"training      --amp auto trains in {train.label} on this CPU ({train.how}: {train.reason}; "
                 f"a {arch} step, {stem} stem, {size} px, batch {batch})")
    for g in report["hardware"]["gpus"]:
        lines.append(f"GPU {g['index']}         {g['name']}, sm {g['capability']}, {g['memory_gib']:.0f} GiB, "
                     f"bf16 {'native' if g['native_bf16'] else 'no'}")
    if not report["hardware"]["gpus"]:
        lines.append(f"GPU           none ({'CPU-only torch' if torch.version.cuda is None else 'no CUDA device'})")
    lines += ["", "packages (- : not installed; pip install 'reslab[EXTRA]'):"]
    lines += [f"  {name:<18}{p['version'] or '-':<14}{p['from']}" for name, p in report["packages"].items()]
    lines += ["", "runtimes and precisions usable here:"]
    for runtime, row in report["precisions"].items():
        lines.append(f"  {runtime:<22}" + "; ".join(f"{p}: {v}" for p, v in row.items()))
    return "\n".join(lines)
