"""``make demo``: train, evaluate, predict, export and quantise on the CIFAR-10 sample in ``samples/``,
offline, then serve the model's web page (``--no-serve`` stops before that).

Each step is a ``reslab`` command, printed before it runs, so it can be typed again by hand.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path

from .cli import main as reslab
from .data.sample import materialize

DATA = Path(".demo/cifar10-sample")
RUN = Path(".demo/runs/demo")
CONFIG = Path("configs/demo-cifar10-sample-resnet20.yaml")


def step(args: list[str]) -> None:
    print(f"\n$ reslab {shlex.join(args)}", flush=True)
    reslab(args)


def main() -> None:
    start = time.perf_counter()
    materialize(Path("samples/cifar10-sample.npz"), DATA)
    print(f"data: {DATA} (CIFAR-10 JPEG copy: 3,000 train, 600 val, 400 test images, 10 classes)")
    shutil.rmtree(RUN, ignore_errors=True)  # the demo's own run folder, rebuilt each time
    step(["train", "--config", str(CONFIG)])
    model = RUN / "best.safetensors"
    step(["eval", str(model), "--data", str(DATA), "--split", "test", "--feature-maps", "samples/chelsea.png"])
    photos = sorted(str(p) for p in (DATA / "test" / "cat").iterdir())[:2]
    photos += sorted(str(p) for p in (DATA / "test" / "ship").iterdir())[:1]
    step(["predict", str(model), *photos, "--topk", "3"])
    step(["export", str(model), "--format", "onnx"])
    step(["quantize", str(model), "--calib-data", str(DATA)])
    int8 = RUN / "best-int8.onnx"
    step(["predict", str(int8), *photos, "--topk", "3"])

    metrics = json.loads((RUN / "eval-test" / "report.json").read_text())["metrics"]
    print(f"\nDemo done in {(time.perf_counter() - start) / 60:.1f} min.")
    print(f"Test top-1 {metrics['top1']:.1%} on {metrics['count']} held-out images (chance: 10%).")
    print(f"Run folder:      {RUN}/ (config.yaml, metrics.csv, curves.png, tensorboard/, last.pt)")
    print(f"Model file:      {model}")
    print(f"Exports:         {RUN / 'best.onnx'} (fp32), {int8} (INT8)")
    print(f"Pictures:        {RUN / 'curves.png'}, {RUN / 'eval-test' / 'confusion.png'}, "
          f"{RUN / 'eval-test' / 'worst.png'}, {RUN / 'eval-test' / 'feature_maps.png'}")
    print(f"Predict:         reslab predict {model} IMAGE_OR_FOLDER --topk 3")
    print(f"TensorBoard:     tensorboard --logdir {RUN / 'tensorboard'}")
    if "--no-serve" in sys.argv:
        return
    port = free_port(8000)
    print(f"\nWeb page:        http://127.0.0.1:{port}/  (drop photos on it; API docs at /docs; Ctrl+C stops it)",
          flush=True)
    step(["serve", str(model), "--port", str(port)])


def free_port(preferred: int) -> int:
    """``preferred`` when it is free, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


if __name__ == "__main__":
    main()
