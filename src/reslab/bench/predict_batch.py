"""``reslab bench predict-batch``: Ray's overhead. One ``reslab predict`` process (``Predictor.predict_files``)
and ``predict-batch`` on Ray classify the same images with the same model and runtime, in alternating rounds;
the medians of images/s and their ratio. Ray's side counts from the first read to the last part written (its
workers' start and model loading included); ``ray.init`` is left out, as a cluster is already running."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from ..data.preprocess import Preprocess
from ..hardware import hardware_line
from ..infer.predictor import Predictor
from ..modelfile import ModelInfo, ModelSpec, save_model_file
from ..models import build_model
from ..scale.inputs import list_inputs
from ..scale.job import predict_batch
from ..scale.options import PredictBatchCommand
from .options import PredictBatchBench
from .output import printed_as_json


def default_model(folder: Path) -> Path:
    """ResNet-18, ImageNet stem, 10 classes, 160 px: a real network's cost with random weights."""
    torch.manual_seed(0)
    spec = ModelSpec("resnet18", 10)
    pre = Preprocess(160, 182, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3)
    info = ModelInfo(spec, [f"class{i}" for i in range(10)], pre, training={"note": "random weights (bench)"})
    return save_model_file(folder / "resnet18-160.safetensors", build_model(spec).eval(), info)


def run_predict_batch_bench(args: PredictBatchBench) -> dict:
    import ray  # the ray extra

    paths = list_inputs(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp))
        predictor = Predictor.from_file(model, backend=args.backend)
        ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
        rates: dict[str, list[float]] = {"reslab predict": [], "predict-batch": []}
        for round_ in range(args.rounds):
            start = time.perf_counter()
            answers = predictor.predict_files(paths, batch_size=args.batch_size)
            rates["reslab predict"].append(len(answers) / (time.perf_counter() - start))
            out = Path(tmp) / f"out-{round_}"
            report = predict_batch(PredictBatchCommand(model=str(model), input=args.images, out=str(out),
                                                       workers=args.workers, batch_size=args.batch_size,
                                                       backend=args.backend, ray_address=args.ray_address))
            rows = pq.read_table(out).num_rows
            if rows != len(paths):
                raise RuntimeError(f"predict-batch wrote {rows} rows for {len(paths)} images")
            rates["predict-batch"].append(report.images / report.seconds)
        ray.shutdown()
    medians = {side: statistics.median(r) for side, r in rates.items()}
    result = {"hardware": hardware_line(torch.device("cpu")), "images": len(paths), "model": str(args.model or
              "resnet18 at 160 px (random weights)"), "backend": args.backend, "workers": args.workers,
              "images_per_s": rates, "median_images_per_s": medians,
              "ratio": medians["predict-batch"] / medians["reslab predict"]}
    if printed_as_json(result, args.json):
        return result
    print(result["hardware"])
    print(f"{len(paths)} images of {args.images}; {result['model']} on {args.backend}, batch {args.batch_size}; "
          f"predict-batch: {args.workers} worker(s) on a {'cluster' if args.ray_address else 'local'} Ray")
    for side, values in rates.items():
        print(f"{side:<16}" + "".join(f"{v:>9.1f}" for v in values) + f"   median {medians[side]:.1f} images/s")
    print(f"predict-batch / reslab predict: {result['ratio']:.2f}x")
    return result
