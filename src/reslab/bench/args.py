"""The ``reslab bench ...`` flags, apart from the benchmarks themselves so that building the command line
imports none of them (nor torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..precision import CHOICES

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_RECIPE = ROOT / "configs" / "cifar10-resnet18-fast.yaml"
JPEG_COPY = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.npz"


def add_bench_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a CIFAR-style image folder (train/<class>/...) for the CPU comparison; "
                        "default: the shipped sample. With --vs-steps (the default on a GPU): a folder or pack "
                        "of photos to train from, measured against raw steps")
    parser.add_argument("--vs-steps", action=argparse.BooleanOptionalAction, default=None,
                        help="reslab train on --data against raw training steps on data already on the device")
    parser.add_argument("--image-size", type=int, default=224, help="--vs-steps: the training size")
    parser.add_argument("--decode", default="auto", choices=["auto", "gpu", "cpu"], help="--vs-steps: the data path")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--stem", default="cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=1280, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per side; the first is warm-up")
    parser.add_argument("--workers", type=int, help="data-loading workers (the CPU comparison's baseline: 2; "
                        "--vs-steps: reslab's default)")
    parser.add_argument("--device", default="auto", help="cpu: reslab's loop against the tutorial loop; "
                        "cuda: training steps of --model at 32 px (CIFAR stem) and 224 px in each of --modes")
    parser.add_argument("--modes", help="eager,channels_last+amp,compiled (the default on a GPU): time these "
                        "modes side by side instead of the CPU comparison")
    parser.add_argument("--mode-batch-sizes", default="512,256", help="batch sizes of the 32 px and 224 px rows")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per mode (the median is kept)")
    parser.add_argument("--steps", type=int, default=10, help="steps per round of the mode timing")
    parser.add_argument("--json", action="store_true")


def add_bench_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="an image folder, or a pack (.npz from reslab pack)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda: the GPU path's rows need a GPU")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, help="worker processes of every path (default: on a GPU reslab's "
                        "default, on a CPU one per core)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per path; the first is start-up, not counted")
    parser.add_argument("--repeat", type=int, default=1, help="the training images repeated this many times per "
                                                               "epoch (a longer steady state)")
    parser.add_argument("--twelve-mp", type=int, metavar="N", help="measure N of the images re-encoded as "
                        "12-megapixel camera JPEGs (written to a temporary folder)")
    parser.add_argument("--photos", nargs="*", default=[], help="more photos to re-encode with --twelve-mp")
    parser.add_argument("--short-side", type=int, help="the pack's short side (default: the evaluation resize of "
                                                         "--image-size, 256 for 224)")
    parser.add_argument("--paths", default="fileloader,cpu,gpu,pack-cpu,pack-gpu",
                        help="the rows to run (GPU rows only on a GPU)")
    parser.add_argument("--decoders", type=int, default=400, metavar="N", help="also time each JPEG decoder alone on "
                        "N of a folder's JPEGs, one thread (0: not)")
    parser.add_argument("--json", action="store_true")


def add_bench_infer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", nargs="+", help="image files or folders (default: the shipped photos)")
    parser.add_argument("--model", default="resnet18", help="an ImageNet-family architecture")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per row and batch size")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds the timing is spread over")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out (e.g. openvino-int8)")
    parser.add_argument("--phone", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the photos re-encoded as 12-megapixel phone-camera JPEGs")
    parser.add_argument("--stages", help="the path whose time is split by stage (default: the fastest network)")
    parser.add_argument("--precision", default="auto", choices=CHOICES,
                        help="rows of this precision only (and the baseline); auto: every precision this CPU runs")
    parser.add_argument("--device", default="auto", help="cpu: the table above; cuda: networks alone at "
                        "--gpu-batch in each of --modes, and ONNX Runtime's CUDA provider where installed")
    parser.add_argument("--modes", help="eager,channels_last+amp,compiled (the default on a GPU): time these modes "
                        "of --gpu-models side by side instead of the CPU comparison")
    parser.add_argument("--gpu-models", default="resnet18,resnet50")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="calls per round of the mode timing")
    parser.add_argument("--json", action="store_true")


def add_time_to_accuracy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_RECIPE), help="the recipe (a training YAML)")
    parser.add_argument("--data", help="CIFAR-10: an .npz (JPEG pack or uint8 arrays), a folder with train/ and "
                                       "test/, or cifar10 (the original, downloaded); default: the JPEG copy in "
                                       f"{JPEG_COPY.parent} when present, else cifar10")
    parser.add_argument("--targets", default="94,95", help="test accuracies to time, in percent")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction,
                        help="override the recipe's mixed precision (default: the device's, see `reslab env`)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", help="keep the run folder here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")


def add_bench_serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-file", help="a model file to serve (default: ResNet-18 224, random weights, "
                                             "static INT8 ONNX)")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "openvino"],
                        help="reslab's backend; the baseline server always runs ONNX Runtime")
    parser.add_argument("--images", nargs="+", help="photos to post, as JPEG (default: the shipped photos)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=240, help="requests per concurrency level")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per concurrency level at most")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--serve-flags", default="", help="more `reslab serve` flags, e.g. \"--decode-threads 1\"")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", action="store_true")


def add_seeded_recipe_args(parser: argparse.ArgumentParser, seeds: int) -> None:
    """The short training runs that the training-effect benchmarks repeat over seeds."""
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")


def add_bench_imbalance_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a JPEG pack with train/val splits (default: the shipped CIFAR-10 sample)")
    parser.add_argument("--ratio", type=int, default=10, help="keep 1 in RATIO training images of the second half "
                        "of the classes")
    parser.add_argument("--recipes", default="none,class-weights balanced,class-weights effective,sampler balanced",
                        help="comma-separated: none, class-weights balanced, class-weights effective, sampler balanced")
    add_seeded_recipe_args(parser, seeds=3)


def add_bench_label_issues_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a JPEG pack (default: the shipped CIFAR-10 sample)")
    parser.add_argument("--images", type=int, help="use only the first N training images")
    parser.add_argument("--flip", type=float, default=0.05, help="fraction of training labels flipped")
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo-cifar10-sample-resnet20.yaml"),
                        help="the recipe each fold trains with (default: the make demo recipe)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")


def add_bench_multilabel_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a JPEG pack with train/val/test splits (default: the shipped CIFAR-10 sample)")
    parser.add_argument("--train", type=int, default=3000, help="training pictures")
    parser.add_argument("--val", type=int, default=600, help="validation pictures (the thresholds are tuned on them)")
    parser.add_argument("--test", type=int, default=600, help="test pictures")
    add_seeded_recipe_args(parser, seeds=2)


def add_bench_vs_timm_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="a folder with train/ and val/, one sub-folder per class")
    parser.add_argument("--timm-train", help="timm's train.py, from a clone of github.com/huggingface/"
                        "pytorch-image-models (timm's pip package leaves it out; default: $TIMM_TRAIN)")
    parser.add_argument("--model", default="resnet18", help="a name both trainers know")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2, choices=range(1, 11), metavar="N", help="runs per trainer")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="both trainers' precision; auto: the one reslab's --amp auto picks")
    parser.add_argument("--device", default="auto", help="reslab's device; timm runs on the one it resolved")
    parser.add_argument("--out-dir", help="keep both trainers' run folders and logs here (default: a temporary "
                                          "folder)")
    parser.add_argument("--json", action="store_true")
