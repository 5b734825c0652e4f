"""``reslab bench serve``: requests/s and latency of ``reslab serve`` under load, side by side with
(a) the same model's offline batch throughput (same backend, decoding included) and
(b) the plain server the tutorials show (one request, one inference; ``baseline_server``).

Real photos are posted as JPEG uploads (multipart) by a bounded load generator on 127.0.0.1 at
each concurrency; the answers cache is off, so every request runs the model.
"""

from __future__ import annotations

import asyncio
import io
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

from ..hardware import hardware_line
from ..infer.predictor import Predictor
from ..models import load_model_file
from ..timing import images_per_second
from .infer import load_images, prepare_models
from .loadgen import multipart_request, run_load
from .options import ServeBench
from .output import printed_as_json

HOST = "127.0.0.1"


def as_jpeg(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        return data
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def _wait_ready(port: int, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the server on port {port} was not ready after {timeout} s")


def _load_levels(command: list[str], port: int, requests: list[bytes], levels: list[int], total: int,
                 time_limit: float, log: Path) -> list[dict[str, Any]]:
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, process, log)
        asyncio.run(run_load(HOST, port, requests, 4, 16, 30))  # warm-up, not counted
        return [asyncio.run(run_load(HOST, port, requests, c, total, time_limit)).summary() for c in levels]
    finally:
        process.terminate()
        process.wait(timeout=60)


def as_onnx(model: Path, folder: Path) -> Path:
    """``model`` itself when it is ONNX, else its ONNX export (metadata included) in ``folder``."""
    if model.suffix == ".onnx":
        return model
    from ..formats.onnx import to_onnx_proto  # onnx: the deploy extra

    network, info = load_model_file(model)
    out = folder / f"{model.stem}.onnx"
    out.write_bytes(to_onnx_proto(network, info).SerializeToString())
    return out


def offline_throughput(model: Path, backend: str, photos: list[bytes]) -> tuple[float, str]:
    """images/s of ``Predictor.predict`` on batches of 32 of the same JPEG bytes (decoding included), and the
    precision ``auto`` chose (the server chooses the same way)."""
    predictor = Predictor.from_file(model, backend=backend)
    batch = [photos[i % len(photos)] for i in range(32)]
    return images_per_second(predictor.predict, batch, seconds=5.0), predictor.precision  # type: ignore[arg-type]


def run_serve_bench(args: ServeBench) -> dict[str, Any]:
    levels = [int(c) for c in str(args.concurrency).split(",")]
    photos = [as_jpeg(b) for b in load_images(args.images)]
    requests = [multipart_request("/predict", f"{HOST}:{args.port}", b, f"photo{i}.jpg") for i, b in enumerate(photos)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_file:
            model = as_onnx(Path(args.model_file), Path(tmp))  # both servers run the same ONNX graph
        else:
            model = prepare_models(Path(tmp), "resnet18", 224, photos, skip=[])["int8"]
        offline, precision = offline_throughput(model, args.backend, photos)
        serve_cmd = [sys.executable, "-m", "reslab", "serve", str(model), "--backend", args.backend, "--port",
                     str(args.port), "--cache-size", "0", "--max-queue", "4096", *shlex.split(args.serve_flags)]
        ours = _load_levels(serve_cmd, args.port, requests, levels, args.requests, args.time_limit,
                            Path(tmp) / "reslab.log")
        base = [] if args.skip_baseline else _load_levels(
            [sys.executable, "-m", "reslab.bench.baseline_server", str(model), "--port", str(args.port)],
            args.port, requests, levels, args.requests, args.time_limit, Path(tmp) / "baseline.log")
    top = next(r for r in ours if r["concurrency"] == max(levels))
    mid = next((r for r in ours if r["concurrency"] == 8), None)
    result = {
        "model": str(args.model_file or "resnet18 224x224, random weights, static INT8 ONNX"),
        "hardware": hardware_line(), "backend": args.backend, "precision": precision, "photos": len(photos),
        "offline_images_per_s": offline,
        "reslab": ours, "baseline": base,
        "fraction_of_offline_at_max_concurrency": top["requests_per_s"] / offline,
        "p99_over_p50_at_8": (mid["p99_ms"] / mid["p50_ms"]) if mid and mid["p50_ms"] else None,
        "errors": sum(r["errors"] for r in ours),
    }
    if not printed_as_json(result, args.json):
        print_serve_table(result)
    return result


def print_serve_table(result: dict[str, Any]) -> None:
    print(f"\n{result['hardware']}")
    print(f"{result['model']}, {result['backend']} backend, {result['precision']}, {result['photos']} real photos "
          f"posted as JPEG")
    print(f"offline batch of 32 with the same backend, decoding included: {result['offline_images_per_s']:.1f} "
          "images/s")
    print(f"{'server':<10}{'conc.':>6}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name in ("reslab", "baseline"):
        for r in result[name]:
            print(f"{name:<10}{r['concurrency']:>6}{r['requests']:>9}{r['requests_per_s']:>8.1f}"
                  f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}")
    print(f"reslab at the highest concurrency: {result['fraction_of_offline_at_max_concurrency']:.2f} of offline; "
          f"p99/p50 at concurrency 8: {result['p99_over_p50_at_8'] or float('nan'):.2f}; "
          f"error responses: {result['errors']}")
