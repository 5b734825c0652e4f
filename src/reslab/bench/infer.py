"""``reslab bench infer``: CPU inference of real images, the tutorial baseline against each reslab backend.

Every row classifies the same JPEG/PNG bytes (decode, resize, crop, normalise, forward, softmax,
top-5) at each batch size, one after the other in one run:
- baseline: torchvision's ``resnet18``, eager NCHW fp32, per-image PIL decoding and
  ``transforms.Compose`` preprocessing, as the tutorials write it;
- reslab: ``Predictor`` with the torch backend (channels_last, inference mode), ONNX Runtime and
  OpenVINO on the fp32 export, torch and OpenVINO in bf16 where it is native, and ONNX Runtime and
  OpenVINO on the static INT8 export (calibrated on the same real images).
The photos are also re-encoded as 12-megapixel phone-camera JPEGs and timed at the largest batch. A
second table times the networks alone on an already-preprocessed batch and sets their GFLOP/s against
the machine's measured fp32 GEMM peak; a third splits the fastest path's time into its stages.
"""

from __future__ import annotations

import io
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.images import is_image_file
from ..data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, eval_resize_size
from ..hardware import hardware_line, int8_saturates, resolve_device
from ..infer.backends import OnnxRuntimeBackend, available_backends, open_backends, precision_refusal
from ..infer.predictor import Predictor
from ..infer.reference import default_images
from ..infer.selection import load_backend
from ..modelfile import ModelInfo, ModelSpec, save_model_file
from ..models import count_macs, create_model
from ..timing import timed_calls
from .modes import MODES, compare_modes, print_modes_table, sample_batch
from .options import InferBench
from .output import printed_as_json
from .peak import best_peak, measure_gemm_peak
from .stages import phone_camera_jpegs, print_stage_table, stage_times


def load_images(inputs: list[str] | None, limit: int = 64) -> list[bytes]:
    paths = [Path(p) for p in inputs] if inputs else default_images()
    files: list[Path] = []
    for p in paths:
        files += sorted(f for f in p.rglob("*") if is_image_file(f)) if p.is_dir() else [p]
    if not files:
        raise ValueError("no images to benchmark with")
    return [f.read_bytes() for f in files[:limit]]


def _batch(images: list[bytes], size: int) -> list[bytes]:
    return [images[i % len(images)] for i in range(size)]


def baseline_classifier(arch: str, image_size: int) -> tuple[Callable[[list[bytes]], Any], Callable]:
    """What the tutorials write: torchvision model, NCHW, PIL + transforms.Compose per image."""
    import torchvision
    from torchvision import transforms

    model = getattr(torchvision.models, arch)(weights=None).eval()
    transform = transforms.Compose([
        transforms.Resize(eval_resize_size(image_size)), transforms.CenterCrop(image_size), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    def classify(batch: list[bytes]):
        x = torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in batch])
        return forward(x).softmax(1).topk(5)

    return classify, forward


def _interleaved(runs: dict[str, Callable[[], Any]], seconds: float, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each run, measured in ``rounds`` alternating rounds so that the drift of a
    shared machine (clock, other load) falls on every row alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name] += timed_calls(run, seconds / rounds, min_calls=3)
    return times


def _row(name: str, batch: int, times: list[float]) -> dict[str, Any]:
    p50 = statistics.median(times)
    return {"path": name, "batch": batch, "images_per_s": batch / p50, "p50_ms": 1000 * p50,
            "p99_ms": 1000 * float(np.percentile(times, 99)), "calls": len(times)}


def _with_speedup(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = {(r.get("photos"), r["batch"]): r["images_per_s"] for r in rows if r["path"] == "baseline"}
    return [{**r, "speedup": r["images_per_s"] / base[r.get("photos"), r["batch"]]} for r in rows]


def prepare_models(tmp: Path, arch: str, image_size: int, images: list[bytes], skip: list[str]) -> dict[str, Path]:
    """A random-weights model file, its fp32 ONNX and OpenVINO exports, and the INT8 ONNX."""
    from ..formats.onnx import to_onnx_proto  # the deploy extra
    from ..optimize.quantize import quantize_onnx

    pre = Preprocess(image_size, eval_resize_size(image_size), IMAGENET_MEAN, IMAGENET_STD)
    classes = [f"class{i}" for i in range(1000)]
    model = create_model(arch, 1000).eval()
    info = ModelInfo(ModelSpec(arch, 1000), classes, pre)
    files = {"model": save_model_file(tmp / "model.safetensors", model, info)}
    files["onnx"] = tmp / "model.onnx"
    files["onnx"].write_bytes(to_onnx_proto(model, info).SerializeToString())
    if not {"onnxruntime-int8", "openvino-int8"} <= set(skip):
        predictor = Predictor.from_file(files["model"], backend="torch")
        calibration = predictor.preprocess(_batch(images, 40))
        files["int8"] = tmp / "model-int8.onnx"
        quantize_onnx(files["onnx"], files["int8"], calibration, reduce_range=int8_saturates())
    return files


def onnxruntime_cuda_step(arch: str, x: torch.Tensor) -> Callable[[], None] | None:
    """ONNX Runtime's CUDA provider on the model's ONNX graph, or None where it is not installed.
    The batch goes in from host memory, as a server would hand it over."""
    import onnxruntime as ort

    from ..formats.onnx import to_onnx_proto  # onnx: the deploy extra

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    info = ModelInfo(ModelSpec(arch, 1000), [str(i) for i in range(1000)],
                     Preprocess(x.shape[-1], x.shape[-1], IMAGENET_MEAN, IMAGENET_STD))
    graph = to_onnx_proto(create_model(arch, 1000).eval(), info).SerializeToString()
    backend = OnnxRuntimeBackend(graph, device=str(x.device))
    batch = x.cpu().numpy()
    return lambda: backend.run(batch)


def run_gpu_infer_bench(args: InferBench, device: torch.device) -> dict[str, Any]:
    modes = args.modes.split(",") if args.modes else list(MODES)
    tables = []
    for arch in args.gpu_models.split(","):
        x, _ = sample_batch(args.gpu_batch, args.image_size, device)
        extra = {}
        if device.type == "cuda":
            step = onnxruntime_cuda_step(arch, x)
            if step is not None:
                extra["onnxruntime-cuda (fp32)"] = step
        rows = compare_modes(lambda arch=arch: create_model(arch, 1000), x, None, modes, extra,
                             rounds=args.rounds, steps_per_round=args.steps)
        tables.append({"model": arch, "batch": args.gpu_batch, "rows": rows})
    result = {"device": hardware_line(device), "torch": torch.__version__, "image_size": args.image_size,
              "tables": tables}
    if printed_as_json(result, args.json):
        return result
    print(f"\ninference, networks alone on a batch of real images in device memory, {args.image_size}x"
          f"{args.image_size}, {result['device']}, torch {result['torch']}")
    for t in tables:
        print_modes_table(f"{t['model']}, batch {t['batch']}:", t["rows"])
    return result


ROWS = (  # name, file, runtime, precision
    ("torch", "model", "torch", "fp32"), ("torch-bf16", "model", "torch", "bf16"),
    ("onnxruntime", "onnx", "onnxruntime", "fp32"), ("openvino", "onnx", "openvino", "fp32"),
    ("openvino-bf16", "onnx", "openvino", "bf16"), ("onnxruntime-int8", "int8", "onnxruntime", "int8"),
    ("openvino-int8", "int8", "openvino", "int8"),
)


def open_rows(files: dict[str, Path], skip: list[str], only: str = "auto") -> tuple[dict[str, Predictor],
                                                                                    dict[str, str]]:
    """A predictor per row this machine runs; the others with the reason they are left out. Rows open their
    runtime and precision as given, without the bf16 check against fp32: the bench's network has random
    weights, whose near-tied top classes say nothing about a precision (its speed is what is measured)."""
    installed = available_backends()
    opened, left_out = {}, {}
    for name, file, runtime, precision in ROWS:
        refusal = precision_refusal(runtime, precision, "cpu")
        if name in skip or only not in ("auto", precision):
            continue
        elif runtime not in installed or file not in files:
            left_out[name] = "not installed" if runtime not in installed else "skipped"
        elif refusal:
            left_out[name] = refusal
        else:
            key = (runtime, precision)
            backends, info = open_backends(files[file], [key], "cpu", None, channels_last=True)
            opened[name] = Predictor(backends[key], info)
    return opened, left_out


def run_infer_bench(args: InferBench) -> dict[str, Any]:
    device = resolve_device(args.device)
    if device.type == "cuda" or args.modes:
        return run_gpu_infer_bench(args, device)
    batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    images = load_images(args.images)
    photo_sets = {"photos": images, "phone 12 MP": phone_camera_jpegs(images)} if args.phone else {"photos": images}
    peak_before = measure_gemm_peak()
    gflop_per_image = 2 * count_macs(create_model(args.model, 1000), args.image_size) / 1e9
    largest = max(batch_sizes)
    with tempfile.TemporaryDirectory() as tmp:
        files = prepare_models(Path(tmp), args.model, args.image_size, images, args.skip)
        paths, left_out = open_rows(files, args.skip, args.precision)
        baseline, baseline_model = baseline_classifier(args.model, args.image_size)
        rows, network_rows = [], []
        for set_name, blobs in photo_sets.items():
            for batch in batch_sizes if set_name == "photos" else [largest]:
                chosen = _batch(blobs, batch)
                runs = {"baseline": lambda c=chosen: baseline(c),
                        **{name: lambda c=chosen, p=p: p.predict(c) for name, p in paths.items()}}
                rows += [{**_row(name, batch, t), "photos": set_name}
                         for name, t in _interleaved(runs, args.seconds, args.rounds).items()]
        peak_middle = measure_gemm_peak()
        for batch in sorted({min(batch_sizes), largest}):
            tensor = next(iter(paths.values())).preprocess(_batch(images, batch))
            runs = {"baseline": lambda t=tensor: baseline_model(torch.from_numpy(t)),
                    **{name: lambda t=tensor, p=p: p.backend.run(t) for name, p in paths.items()}}
            network_rows += [_row(name, batch, t) for name, t in _interleaved(runs, args.seconds, args.rounds).items()]
        stage_path = args.stages if args.stages in paths else max(
            paths, key=lambda n: next(r["images_per_s"] for r in network_rows if r["path"] == n and r["batch"] ==
                                      largest))
        stages = {set_name: stage_times(paths[stage_path], _batch(blobs, largest))
                  for set_name, blobs in photo_sets.items()}
        auto = {"model file": load_backend(files["model"], "auto").reason,
                "INT8 ONNX": load_backend(files["int8"], "auto").reason if "int8" in files else None}
    measured = best_peak(peak_before, peak_middle, measure_gemm_peak())
    peak = measured.gflops
    network_rows = [{**r, "gflops": r["images_per_s"] * gflop_per_image,
                     "fraction_of_peak": r["images_per_s"] * gflop_per_image / peak}
                    for r in _with_speedup(network_rows)]
    result = {
        "hardware": hardware_line(),
        "model": f"{args.model}, {args.image_size}x{args.image_size}, random weights, {len(images)} real images",
        "threads": torch.get_num_threads(), "gemm_peak_gflops": peak, "gemm_peak_kernel": measured.kernel,
        "gemm_kernels_gflops": measured.kernels, "gflop_per_image": gflop_per_image,
        "peak_images_per_s": peak / gflop_per_image, "rows": _with_speedup(rows), "network_rows": network_rows,
        "precisions": {name: p.precision for name, p in paths.items()}, "left_out": left_out,
        "stage_path": stage_path, "stage_batch": largest, "stages_ms_per_image": stages, "auto_choice": auto,
    }
    if not printed_as_json(result, args.json):
        print_infer_table(result)
    return result


def print_infer_table(result: dict[str, Any]) -> None:
    print(f"\n{result['hardware']}")
    print(f"{result['model']}; {result['threads']} threads; fp32 peak {result['gemm_peak_gflops']:.1f} GFLOP/s "
          f"({result['gemm_peak_kernel']}, the fastest of {len(result['gemm_kernels_gflops'])} fp32 products) = "
          f"{result['peak_images_per_s']:.1f} images/s at {result['gflop_per_image']:.2f} GFLOP/image")
    precisions = {"baseline": "fp32", **result["precisions"]}
    header = f"{'path':<18}{'precision':>10}{'batch':>6}{'images/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs baseline':>13}"
    print("end to end (image bytes -> top-5: decode, resize, crop, normalise, forward, softmax):")
    print(f"{'photos':<13}" + header)
    for r in result["rows"]:
        print(f"{r['photos']:<13}{r['path']:<18}{precisions[r['path']]:>10}{r['batch']:>6}{r['images_per_s']:>10.1f}"
              f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['speedup']:>12.2f}x")
    print("network alone (an already preprocessed batch):")
    print(header + f"{'GFLOP/s':>9}{'of fp32 peak':>13}")
    for r in result["network_rows"]:
        print(f"{r['path']:<18}{precisions[r['path']]:>10}{r['batch']:>6}{r['images_per_s']:>10.1f}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['speedup']:>12.2f}x{r['gflops']:>9.1f}{r['fraction_of_peak']:>13.2f}")
    for name, reason in result["left_out"].items():
        print(f"left out: {name}: {reason}")
    batch, path = result["stage_batch"], result["stage_path"]
    network = next(r for r in result["network_rows"] if r["path"] == path and r["batch"] == batch)
    for photos, stages in result["stages_ms_per_image"].items():
        e2e = next(r for r in result["rows"] if r["path"] == path and r["batch"] == batch and r["photos"] == photos)
        print_stage_table(f"where the time goes: {path}, batch {batch}, {photos}:", stages,
                          1000 / e2e["images_per_s"], 1000 / network["images_per_s"])
    for what, reason in result["auto_choice"].items():
        print(f"--backend auto --precision auto on the {what}: {reason}")
