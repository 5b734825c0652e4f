"""What each ``reslab bench ...`` takes, declared apart from the benchmarks so that building the command
line imports none of them (nor torch). Each benchmark reads its options object by these field names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..options import Printed, check_choices, device_option, option
from ..precision import CHOICES

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_RECIPE = ROOT / "configs" / "cifar10-resnet18-fast.yaml"
JPEG_COPY = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.npz"
CHECKED = "bench option"


@dataclass(kw_only=True)
class TrainBench(Printed):
    data: str | None = option(None, help="a CIFAR-style image folder (train/<class>/...) for the CPU comparison; "
                              "default: the shipped sample. With --vs-steps (the default on a GPU): a folder or "
                              "pack of photos to train from, measured against raw steps")
    vs_steps: bool | None = option(None, help="reslab train on --data against raw training steps on data already "
                                   "on the device")
    image_size: int = option(224, help="--vs-steps: the training size")
    decode: str = option("auto", choices=("auto", "gpu", "cpu"), help="--vs-steps: the data path")
    model: str = option("resnet18", help="the architecture timed")
    stem: str = option("cifar", help="its stem (cifar: 3x3/1, imagenet: 7x7/2 + max-pool)")
    batch_size: int = option(128, help="images per step")
    images: int = option(1280, help="images per epoch")
    epochs: int = option(3, help="epochs per side; the first is warm-up")
    workers: int | None = option(None, help="data-loading workers (the CPU comparison's baseline: 2; --vs-steps: "
                                 "reslab's default)")
    device: str = device_option(help="cpu: reslab's loop against the tutorial loop; cuda: training steps of --model "
                                "at 32 px (CIFAR stem) and 224 px in each of --modes")
    modes: str | None = option(None, help="eager,channels_last+amp,compiled (the default on a GPU): time these "
                               "modes side by side instead of the CPU comparison")
    mode_batch_sizes: str = option("512,256", help="batch sizes of the 32 px and 224 px rows")
    rounds: int = option(5, help="alternating rounds per mode (the median is kept)")
    steps: int = option(10, help="steps per round of the mode timing")

    def __post_init__(self) -> None:
        check_choices(self, CHECKED)


@dataclass(kw_only=True)
class DataBench(Printed):
    data: str = option(required=True, help="an image folder, or a pack (.npz from reslab pack)")
    device: str = device_option(help="auto | cpu | cuda: the GPU path's rows need a GPU")
    image_size: int = option(224, help="the training crop's size")
    batch_size: int = option(256, help="images per batch")
    workers: int | None = option(None, help="worker processes of every path (default: on a GPU reslab's default, on "
                                 "a CPU one per core)")
    epochs: int = option(3, help="epochs per path; the first is start-up, not counted")
    repeat: int = option(1, help="the training images repeated this many times per epoch (a longer steady state)")
    twelve_mp: int | None = option(None, metavar="N", help="measure N of the images re-encoded as 12-megapixel "
                                   "camera JPEGs (written to a temporary folder)")
    photos: list[str] = option(factory=list, nargs="*", help="more photos to re-encode with --twelve-mp")
    short_side: int | None = option(None, help="the pack's short side (default: the evaluation resize of "
                                    "--image-size, 256 for 224)")
    paths: str = option("torchvision,cpu,gpu,pack-cpu,pack-gpu", help="the rows to run (GPU rows only on a GPU)")
    decoders: int = option(400, metavar="N", help="also time each JPEG decoder alone on N of a folder's JPEGs, one "
                           "thread (0: not)")


@dataclass(kw_only=True)
class InferBench(Printed):
    images: list[str] | None = option(None, nargs="+", help="image files or folders (default: the shipped photos)")
    model: str = option("resnet18", help="an ImageNet-family architecture")
    image_size: int = option(224, help="the network's input size")
    batch_sizes: str = option("1,8,32", help="batch sizes timed")
    seconds: float = option(3.0, help="timing per row and batch size")
    rounds: int = option(3, help="alternating rounds the timing is spread over")
    skip: list[str] = option(factory=list, nargs="*", help="rows to leave out (e.g. openvino-int8)")
    phone: bool = option(True, help="also time the photos re-encoded as 12-megapixel phone-camera JPEGs")
    stages: str | None = option(None, help="the path whose time is split by stage (default: the fastest network)")
    precision: str = option("auto", choices=CHOICES, help="rows of this precision only (and the baseline); auto: "
                            "every precision this CPU runs")
    device: str = device_option(help="cpu: the table above; cuda: networks alone at --gpu-batch in each of --modes, "
                                "and ONNX Runtime's CUDA provider where installed")
    modes: str | None = option(None, help="eager,channels_last+amp,compiled (the default on a GPU): time these "
                               "modes of --gpu-models side by side instead of the CPU comparison")
    gpu_models: str = option("resnet18,resnet50", help="the networks of the GPU rows")
    gpu_batch: int = option(256, help="the GPU rows' batch size")
    steps: int = option(10, help="calls per round of the mode timing")

    def __post_init__(self) -> None:
        check_choices(self, CHECKED)


@dataclass(kw_only=True)
class TimeToAccuracyBench(Printed):
    config: str = option(str(DEFAULT_RECIPE), help="the recipe (a training YAML)")
    data: str | None = option(None, help="CIFAR-10: an .npz (JPEG pack or uint8 arrays), a folder with train/ and "
                              "test/, or cifar10 (the original, downloaded); default: the JPEG copy in "
                              f"{JPEG_COPY.parent} when present, else cifar10")
    targets: str = option("94,95", help="test accuracies to time, in percent")
    device: str = device_option()
    epochs: int | None = option(None, help="override the recipe's epochs")
    amp: bool | None = option(None, help="override the recipe's mixed precision (default: the device's, see "
                              "`reslab env`)")
    seed: int = option(0, help="the run's seed")
    out_dir: str | None = option(None, help="keep the run folder here (default: a temporary folder)")


@dataclass(kw_only=True)
class ServeBench(Printed):
    model_file: str | None = option(None, help="a model file to serve (default: ResNet-18 224, random weights, "
                                    "static INT8 ONNX)")
    backend: str = option("onnxruntime", choices=("onnxruntime", "openvino"), help="reslab's backend; the baseline "
                          "server always runs ONNX Runtime")
    images: list[str] | None = option(None, nargs="+", help="photos to post, as JPEG (default: the shipped photos)")
    concurrency: str = option("1,8,32", help="concurrent clients, one level per row")
    requests: int = option(240, help="requests per concurrency level")
    time_limit: float = option(60.0, help="seconds per concurrency level at most")
    port: int = option(8790, help="the port of reslab serve (the baseline's is the next)")
    serve_flags: str = option("", help="more `reslab serve` flags, e.g. \"--decode-threads 1\"")
    skip_baseline: bool = option(False, help="leave out the plain server")

    def __post_init__(self) -> None:
        check_choices(self, CHECKED)


@dataclass(kw_only=True)
class SeededRecipe(Printed):
    """The short training runs that the training-effect benchmarks repeat over seeds."""

    model: str = option("resnet20", help="the architecture trained")
    epochs: int = option(15, help="training epochs per run")
    batch_size: int = option(64, help="images per step")
    lr: float = option(0.05, help="peak learning rate")
    seeds: int = option(3, help="runs per recipe")
    device: str = device_option()


@dataclass(kw_only=True)
class ImbalanceBench(SeededRecipe):
    data: str | None = option(None, help="a JPEG pack with train/val splits (default: the shipped CIFAR-10 sample)")
    ratio: int = option(10, help="keep 1 in RATIO training images of the second half of the classes")
    recipes: str = option("none,class-weights balanced,class-weights effective,sampler balanced",
                          help="comma-separated: none, class-weights balanced, class-weights effective, sampler "
                          "balanced")


@dataclass(kw_only=True)
class MultilabelBench(SeededRecipe):
    data: str | None = option(None, help="a JPEG pack with train/val/test splits (default: the shipped CIFAR-10 "
                              "sample)")
    train: int = option(3000, help="training pictures")
    val: int = option(600, help="validation pictures (the thresholds are tuned on them)")
    test: int = option(600, help="test pictures")
    seeds: int = option(2, help="runs per recipe")


@dataclass(kw_only=True)
class LabelIssuesBench(Printed):
    data: str | None = option(None, help="a JPEG pack (default: the shipped CIFAR-10 sample)")
    images: int | None = option(None, help="use only the first N training images")
    flip: float = option(0.05, help="fraction of training labels flipped")
    config: str = option(str(ROOT / "configs" / "demo-cifar10-sample-resnet20.yaml"), help="the recipe each fold "
                         "trains with (default: the make demo recipe)")
    epochs: int | None = option(None, help="override the recipe's epochs")
    folds: int | None = option(None, help="cross-training folds (default 5), or the probe's with --features "
                               "(default 10)")
    features: str | None = option(None, metavar="MODEL", help="find-label-issues --features MODEL: a linear probe "
                                  "on this model's frozen features instead of cross-training (a backbone that never "
                                  "saw these images)")
    seed: int = option(0, help="seed of the flips and the folds")
    device: str = device_option()


@dataclass(kw_only=True)
class VsTimmBench(Printed):
    data: str = option(required=True, help="a folder with train/ and val/, one sub-folder per class")
    timm_train: str | None = option(None, help="timm's train.py, from a clone of github.com/huggingface/"
                                    "pytorch-image-models (timm's pip package leaves it out; default: $TIMM_TRAIN)")
    model: str = option("resnet18", help="a name both trainers know")
    image_size: int = option(160, help="the training size")
    batch_size: int = option(32, help="images per step")
    epochs: int = option(3, help="epochs per run")
    workers: int = option(2, help="data-loading workers of both trainers")
    seeds: int = option(2, choices=tuple(range(1, 11)), metavar="N", help="runs per trainer (1 to 10)")
    precision: str = option("auto", choices=("auto", "fp32", "bf16"), help="both trainers' precision; auto: the one "
                            "reslab's --amp auto picks")
    device: str = device_option(help="reslab's device; timm runs on the one it resolved")
    out_dir: str | None = option(None, help="keep both trainers' run folders and logs here (default: a temporary "
                                 "folder)")

    def __post_init__(self) -> None:
        check_choices(self, CHECKED)


# name -> (help, options, the benchmark's module and function): the module is imported when the bench runs
@dataclass(kw_only=True)
class VideoBench(Printed):
    data: str = option(positional=True, help="a folder of photos in class folders (train/ [+ val/]), e.g. Imagenette: "
                       "clips are made from them with a moving camera")
    photos: int = option(30, help="photos per class for training clips; as many again from val/ for testing")
    classes: int = option(10, help="classes of the appearance task (the motion task uses the same photos)")
    model: str = option("resnet20", help="the 2D network whose -3d and -frames video twins are compared (an "
                        "ImageNet-layout one, resnet18..., keeps its 7x7 stem from 64 px frames, the 3x3 one below)")
    tasks: list[str] = option(["motion", "appearance"], nargs="+", choices=("motion", "appearance"),
                              help="the tasks run")
    init_photos: int = option(300, help="photos per class the 2D network is trained on before it is inflated "
                              "(the clips' training photos among them; never a test photo)")
    init_epochs: int = option(15, help="training epochs of that 2D network")
    finetune: str | None = option(None, choices=(None, "r3d_18", "mc3_18", "r2plus1d_18"),
                                  help="one more appearance arm: this torchvision video network fine-tuned from its "
                                  "Kinetics-400 weights (downloaded)")
    frames: int = option(8, help="frames per clip")
    size: int = option(32, help="frame size")
    epochs: int = option(8, help="training epochs of each network")
    batch_size: int = option(16, help="clips per step")
    seeds: int = option(2, help="runs of each network")
    device: str = device_option()

    def __post_init__(self) -> None:
        check_choices(self, CHECKED)


@dataclass(kw_only=True)
class SslBench(Printed):
    data: str = option(str(JPEG_COPY), help="a pack or folder with train/ and test/ splits (default: the CIFAR-10 "
                       "JPEG copy): pretraining takes every training image without its label")
    method: str = option("simclr", choices=("simclr", "moco", "byol"), help="the self-supervised method")
    model: str = option("resnet20", help="the backbone")
    pretrain_epochs: int = option(12, help="pretraining epochs")
    pretrain_batch_size: int = option(512, help="pretraining images per step (two views each)")
    fractions: list[float] = option([0.01, 0.1], help="shares of the training labels fine-tuned with (as many of "
                                    "each class), e.g. 0.01,0.1")
    finetune_steps: int = option(500, help="optimizer steps of every fine-tuning run, whatever its labels (epochs "
                                 "follow: 1%% of CIFAR-10 at batch 128 takes 4 steps an epoch)")
    finetune_batch_size: int = option(128, help="fine-tuning images per step")
    backbone_lr_scale: float = option(1.0, help="the backbone's learning rate as a share of the head's, in every "
                                      "arm (1: the whole network learns at one rate)")
    imagenet: bool = option(False, help="one more arm: torchvision's ImageNet weights of --model, fine-tuned the same "
                            "way (downloaded; resnet18..152)")
    seeds: int = option(2, help="label draws and fine-tuning seeds per arm")
    device: str = device_option()

    def __post_init__(self) -> None:
        check_choices(self, CHECKED)
        if not all(0 < f <= 1 for f in self.fractions):
            raise ValueError(f"{CHECKED} 'fractions': shares between 0 and 1, got {self.fractions}")


@dataclass(kw_only=True)
class PredictBatchBench(Printed):
    images: str = option(str(ROOT.parent / "shared" / "data" / "imagenette2-160" / "val"), help="a folder of images "
                         "(default: Imagenette's val, 3,925 JPEGs)")
    model: str | None = option(None, help="a model file (default: ResNet-18 at 160 px with 10 classes, random weights: "
                               "the speed of a real network, answers aside)")
    backend: str = option("onnxruntime", help="the runtime of both sides")
    workers: int = option(1, help="predict-batch's actors")
    batch_size: int = option(64, help="images per call on both sides")
    rounds: int = option(2, help="alternating rounds of each side (the median is kept)")
    ray_address: str | None = option(None, help="a running Ray cluster (default: a local instance)")


BENCHES = {
    "train": ("training images/s: reslab's path against a plain baseline", TrainBench, "train:run_train_bench"),
    "data": ("the data loader alone: images/s of each decoding path side by side, and each JPEG decoder",
             DataBench, "data:run_data_bench"),
    "infer": ("CPU inference of real images: the tutorial baseline against each backend", InferBench,
              "infer:run_infer_bench"),
    "time-to-accuracy": ("train a recipe on CIFAR-10: wall time to each test accuracy", TimeToAccuracyBench,
                         "time_to_accuracy:run_time_to_accuracy"),
    "imbalance": ("class weights and the balanced sampler on a 10:1 imbalanced set: balanced accuracy against none",
                  ImbalanceBench, "imbalance:run_imbalance_bench"),
    "multilabel": ("--task multilabel on pictures of two CIFAR-10 images: test mAP against the label-frequency "
                   "baseline", MultilabelBench, "multilabel:run_multilabel_bench"),
    "label-issues": ("find-label-issues on a copy with 5%% of labels flipped: precision and recall of what it flags",
                     LabelIssuesBench, "label_issues:run_label_issues_bench"),
    "serve": ("reslab serve under load against offline throughput and a plain server", ServeBench,
              "serve:run_serve_bench"),
    "video": ("video networks on clips made from photos: an appearance task and a motion task that only the time "
              "axis can solve, 3D networks against the per-frame 2D average; clip decoding speed", VideoBench,
              "video:run_video_bench"),
    "ssl": ("self-supervised pretraining on every training image without labels, then fine-tuning with 1%% and 10%% "
            "of the labels, against the same recipe from random weights; kNN of the backbone against a random one",
            SslBench, "ssl:run_ssl_bench"),
    "predict-batch": ("predict-batch on Ray against one reslab predict process, side by side on the same images",
                      PredictBatchBench, "predict_batch:run_predict_batch_bench"),
    "vs-timm": ("reslab's defaults beside timm's train.py on one folder: val top-1 and wall time per epoch, median "
                "over seeds", VsTimmBench, "vs_timm:run_vs_timm_bench"),
}
