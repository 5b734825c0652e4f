"""The training loop. The trainer owns the device, the model wrapper and the data sharding
(``Runtime``), so multi-process training changes only that one place."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..atomic import write_text_atomic
from ..collectives import average_batchnorm_statistics, sum_across_ranks
from ..config import TrainConfig
from ..data.datasets import load_dataset
from ..data.pipeline import SMALL_IMAGE, DataBundle, DataOptions, build_data, describe
from ..data.splits import Dataset, write_split
from ..evaluate.metrics import EvalResult, autocast_context, evaluate
from ..evaluate.multilabel import MultilabelResult, evaluate_multilabel, tune_thresholds
from ..hardware import hardware_line, hardware_report, memory_format, resolve_device
from ..modelfile import ModelInfo, ModelSpec, read_model_info, save_model_file
from ..models import architecture, create_model, is_video, set_train_mode, weight_rank
from ..models.weights import weights_preprocess
from ..version import __version__
from .checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from .class_weights import class_weights
from .defaults import RunShape, resolve_defaults
from .distill import Teacher, distillation_loss, sigmoid_distillation_loss
from .distributed import Runtime
from .health import TrainingDiverged, above_uniform_warning, diverged_message, learned_nothing, uniform_guess_loss
from .lr_find import STEPS, RangeTest, range_test
from .multilabel_loss import multilabel_loss, pos_weights, training_hits
from .optim import build_optimizer, build_scheduler
from .precision_choice import PrecisionChoice, measure_across_ranks, resolve_precision

METRIC_FIELDS = {
    "multiclass": ["epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "val_balanced_accuracy",
                   "val_macro_f1", "lr", "seconds", "images_per_s", "image_size", "elapsed_s"],
    "multilabel": ["epoch", "train_loss", "train_exact_match", "val_loss", "val_map", "val_map_micro",
                   "val_f1_samples", "val_exact_match", "lr", "seconds", "images_per_s", "image_size", "elapsed_s"],
}
METRIC_FIELDS["video"] = METRIC_FIELDS["multiclass"]  # one class per clip (val: one clip from each video's middle)
# self-supervised pretraining: how often an image's own second view is the nearest of the batch's; the kNN monitor
METRIC_FIELDS["features"] = ["epoch", "train_loss", "train_view_top1", "val_knn_top1", "lr", "seconds",
                             "images_per_s", "image_size", "elapsed_s"]
SCORE_FIELD = {"multiclass": "val_top1", "multilabel": "val_map", "video": "val_top1",  # what picks the best epoch
               "features": "val_knn_top1"}
TRAIN_HITS = {"multiclass": "train_top1", "multilabel": "train_exact_match", "video": "train_top1",
              "features": "train_view_top1"}
GPU_HEALTH_EVERY = 10  # steps between checks of the loss on a GPU, where reading it waits for the device


def epoch_figures(row: dict[str, float]) -> str:
    """An epoch's line: training loss and accuracy, then the validation figures if it was evaluated."""
    multilabel = "train_exact_match" in row
    if "train_view_top1" in row:
        train = f"train loss {row['train_loss']:.4f} view top-1 {row['train_view_top1']:.4f}"
        return f"{train}  kNN top-1 {row['val_knn_top1']:.4f}" if "val_knn_top1" in row else f"{train}  not evaluated"
    train = (f"train loss {row['train_loss']:.4f} exact {row['train_exact_match']:.4f}" if multilabel
             else f"train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.4f}")
    if "val_loss" not in row:
        return f"{train}  not evaluated"
    if multilabel:
        val = (f"val loss {row['val_loss']:.4f} mAP {row['val_map']:.4f} (micro {row['val_map_micro']:.4f}) "
               f"sample-F1@0.5 {row['val_f1_samples']:.4f} exact {row['val_exact_match']:.4f}")
    else:
        val = (f"val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f} top-5 {row['val_top5']:.4f} "
               f"balanced {row['val_balanced_accuracy']:.4f} macro-F1 {row['val_macro_f1']:.4f}")
    return f"{train}  {val}"


def best_figures(best: dict[str, float], task: str) -> str:
    if task == "features":
        return f"val kNN top-1 {best['val_knn_top1']:.4f}" if "val_knn_top1" in best else "val: no labels to score"
    if "val_loss" not in best:
        return "val: not evaluated"
    if task == "multilabel":
        return f"val mAP {best['val_map']:.4f} (micro {best['val_map_micro']:.4f})"
    return (f"val top-1 {best['val_top1']:.4f} (balanced accuracy {best['val_balanced_accuracy']:.4f}, "
            f"macro-F1 {best['val_macro_f1']:.4f})")


class RunFolderError(ValueError):
    pass


class Trainer:
    MODEL_FILE = "best.safetensors"  # the model of the best epoch, in the run folder

    def __init__(self, cfg: TrainConfig, runtime: Runtime | None = None,
                 start: tuple[ModelSpec, nn.Module] | None = None, dataset: Dataset | None = None) -> None:
        """``start``: a network to go on training instead of the one ``cfg`` names (e.g. a pruned one);
        ``dataset``: splits to train on instead of those ``cfg.data`` gives (e.g. one fold of a
        cross-validation)."""
        self.cfg = cfg
        self.rt = runtime or Runtime(resolve_device(cfg.device))
        self.run_dir = cfg.run_dir
        self._check_run_folder()
        torch.manual_seed(cfg.seed)
        device = self.rt.device

        if dataset is None:
            dataset = load_dataset(cfg.data, cfg.cache_dir, cfg.seed, self.run_dir / "split.json",
                                   cfg.eval_split, columns=(cfg.image_column, cfg.label_column), task=cfg.task)
        if dataset.task != cfg.task:  # splits given by the caller
            raise ValueError(f"{dataset.name}: {dataset.task} data, but the run's task is {cfg.task}")
        self.task = cfg.task
        self.classes = dataset.classes
        self.data = self._build_data(dataset)
        self.spec, self.model = start or self._build_model()
        self.video = cfg.task == "video"
        if self.video != is_video(self.spec.arch):
            raise ValueError(f"--model {self.spec.arch} is {'a video' if not self.video else 'an image'} network and "
                             f"the task is {cfg.task}: use --task video with a video network (r3d_18, mc3_18, "
                             f"r2plus1d_18, resnet18-3d ...), and an image network otherwise")
        if self.video and (cfg.progressive_sizes or cfg.teacher):
            raise ValueError("--task video trains at one frame size without a teacher: leave out --progressive-sizes "
                             "and --teacher")
        self.model.to(device, memory_format=memory_format(cfg.channels_last, weight_rank(self.model)))
        if cfg.sync_bn and self.rt.world_size > 1:
            if device.type != "cuda":
                raise ValueError("sync_bn needs GPUs (NCCL): on CPUs each process normalises over its own "
                                 "batch; leave --sync-bn off")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.train_model = self._wrap(self.model)

        for size in cfg.progressive_sizes:
            if not 8 <= size <= self.data.preprocess.image_size:
                raise ValueError(f"config field 'progressive_sizes': {size} is not between 8 and the image size "
                                 f"{self.data.preprocess.image_size}")
        self.teacher = (Teacher(cfg.teacher, self.classes, self.data.preprocess, device, cfg.channels_last, cfg.task)
                        if cfg.teacher else None)
        weights = class_weights(self.data.class_counts, cfg.class_weights, cfg.effective_beta)
        self.class_weights = weights.to(device) if weights is not None else None
        positive = pos_weights(self.data.class_counts, len(self.data.dataset.train), cfg.pos_weight)
        self.pos_weight = positive.to(device) if positive is not None else None
        self.thresholds: list[float] | None = None  # multilabel: tuned on val for each model kept
        self.uniform_loss = uniform_guess_loss(cfg.task, len(self.classes), self.teacher is not None,
                                               self.pos_weight is not None)
        self.val_confusion: torch.Tensor | None = None  # multiclass: of the latest evaluation, to tell chance
        self.steps_per_epoch = -(-len(self.data.train) // cfg.accumulate)
        resumed = load_checkpoint(self.run_dir / "last.pt") if cfg.resume else None
        self.precision = self._choose_precision(resumed)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
        fp16 = self.amp and self.amp_dtype == "float16" and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.lr_search: RangeTest | None = None
        self._resolve_defaults(resumed)
        cfg = self.cfg
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema else None)

        self.epoch = 0  # epochs completed
        self.best_score = -1.0  # the best val top-1 (multiclass) or mAP (multilabel)
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, float]] = []
        if resumed is not None:
            self._restore(resumed)
        self.writer = None  # the run folder is written when training starts (``fit``), not before

    def _resolve_defaults(self, resumed: dict[str, Any] | None) -> None:
        """Every default that follows the run, resolved into ``self.cfg`` (config.yaml then reproduces the
        run from its folder alone). ``--lr auto`` runs the range test here, or, on a resumed run, keeps the
        rate the run began with."""
        cfg = self.cfg
        shape = RunShape(cfg.batch_size, self.rt.world_size, cfg.accumulate, self.steps_per_epoch,
                         transfer=cfg.transfer)
        auto = cfg.lr == "auto"
        self.cfg, self.default_lines = resolve_defaults(replace(cfg, lr=None) if auto else cfg, shape)
        if not auto:
            return
        if resumed is not None:
            lr = max(resumed["scheduler"]["base_lrs"])  # the head's: the backbone's is a fraction of it
            self.default_lines[0] = f"lr {lr:.4g} (found by the range test when the run began)"
        else:
            if self.rt.is_main:
                print(f"--lr auto: a learning-rate range test of {STEPS} steps", flush=True)
            self.lr_search = range_test(self)
            lr = self.lr_search.suggestion
            self.default_lines[0] = self.lr_search.line()
        self.cfg = replace(self.cfg, lr=lr)

    def _open_run_folder(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stray in self.run_dir.glob(".*.tmp-*"):  # a write cut short by kill -9
            stray.unlink()
        self.cfg.save(self.run_dir / "config.yaml")
        if self.lr_search is not None:
            from ..evaluate.plots import plot_lr_find  # matplotlib: loaded when a plot is drawn

            plot_lr_find(self.lr_search, self.run_dir / "lr_find.png")
        if self.data.dataset.split_file is not None:
            write_split(self.data.dataset.split_file, self.run_dir / "split.json")
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.epoch + 1)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The module the training steps call: DDP over several processes, compiled on request.
        ``self.model`` stays the bare network that is evaluated and saved."""
        cfg, rt = self.cfg, self.rt
        if rt.world_size > 1:
            model = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
        return torch.compile(model) if cfg.compile else model

    def _build_data(self, dataset: Dataset) -> DataBundle:
        cfg = self.cfg
        augment = cfg.augment_options()
        return build_data(dataset, DataOptions(
            image_size=cfg.image_size, default_image_size=architecture(cfg.model).default_image_size,
            in_chans=cfg.in_chans, batch_size=cfg.batch_size, workers=cfg.workers, seed=cfg.seed, augment=augment,
            mean=tuple(cfg.mean) if cfg.mean else None, std=tuple(cfg.std) if cfg.std else None,
            in_memory=cfg.in_memory, reference=weights_preprocess(cfg.model, cfg.pretrained, cfg.starting_file),
            decode=cfg.decode, sampler=cfg.sampler, clip=cfg.clip_options() if cfg.task == "video" else None,
        ), self.rt.device, self.rt.rank, self.rt.world_size)

    def _build_model(self) -> tuple[ModelSpec, nn.Module]:
        """The network, with its stem chosen for the image size: CIFAR's 3x3 stem for small images,
        unless the starting weights have the ImageNet one (a backbone given by ``--init`` brings its own)."""
        cfg = self.cfg
        spec = ModelSpec(cfg.model, len(self.classes), cfg.in_chans, self._stem(), cfg.dropout, cfg.zero_init_residual,
                         cfg.se)
        model = create_model(
            cfg.model, len(self.classes), pretrained=cfg.pretrained, weights=cfg.weights, backbone=cfg.init,
            freeze_parts=cfg.freeze, in_chans=cfg.in_chans, stem=spec.stem, dropout=cfg.dropout,
            zero_init_residual=cfg.zero_init_residual, se=cfg.se,
        )
        return spec, model

    def _stem(self) -> str | None:
        cfg = self.cfg
        if cfg.init is not None:
            start = read_model_info(cfg.init).spec
            if start.arch != cfg.model:
                raise ValueError(f"--init {cfg.init} holds a {start.arch} backbone: pass --model {start.arch}")
            return cfg.stem or start.stem
        small = self.data.preprocess.image_size <= SMALL_IMAGE
        family_stem = architecture(cfg.model).family == "cifar" or architecture(cfg.model).video == "torchvision"
        return cfg.stem or (None if family_stem else ("cifar" if small and not cfg.transfer else "imagenet"))

    # ---- run folder -------------------------------------------------------------------------
    def _check_run_folder(self) -> None:
        last = self.run_dir / "last.pt"
        if last.exists() and not self.cfg.resume:
            raise RunFolderError(f"{self.run_dir} already holds a run: pass --resume to continue it, "
                                 f"or --name for a new run (nothing was changed)")

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "epoch": self.epoch,
            "best_score": self.best_score,
            "thresholds": self.thresholds,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": rng_state(),
            "precision": self.precision.record(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.best_score = state["epoch"], state.get("best_score", state.get("best_top1"))
        self.thresholds = state.get("thresholds")
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
        self.history = state["history"]
        restore_rng_state(state["rng"])

    def model_info(self) -> ModelInfo:
        return ModelInfo(self.spec, self.classes, self.data.preprocess, task=self.task, thresholds=self.thresholds,
                         clip=self.cfg.clip() if self.video else None,
                         training={
            "dataset": self.data.dataset.name, "data": self.data_location(), "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            SCORE_FIELD[self.task]: self.best_score, "seed": self.cfg.seed,
            **self.imbalance_record(), "skipped_images": len(self.data.skipped),
            "reslab": __version__,
            **({"packed_from": self.data.dataset.packed_from} if self.data.dataset.packed_from else {}),
            **({"distilled_from": {"teacher": str(Path(self.cfg.teacher).resolve()), "alpha": self.cfg.kd_alpha,
                                   "temperature": self.cfg.kd_temperature}} if self.cfg.teacher else {}),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": str(self.rt.device), "precision": self.precision_label,
            "precision_choice": self.precision.record(), "hardware": hardware_report(),
        })

    def imbalance_record(self) -> dict[str, Any]:
        """How training made up for unequal classes, for the model file and the summary."""
        cfg = self.cfg
        record: dict[str, Any] = {"class_counts": self.data.class_counts, "sampler": cfg.sampler,
                                  "class_weights": cfg.class_weights}
        if self.pos_weight is not None:
            record["pos_weight_values"] = [round(w, 6) for w in self.pos_weight.tolist()]
        if self.class_weights is not None:
            record["class_weight_values"] = [round(w, 6) for w in self.class_weights.tolist()]
            if cfg.class_weights == "effective":
                record["effective_beta"] = cfg.effective_beta
        return record

    def data_location(self) -> str:
        """The dataset as ``reslab eval`` can find it again: a name, or an absolute folder path."""
        path = Path(self.cfg.data)
        return str(path.resolve()) if path.exists() else self.cfg.data

    def _choose_precision(self, resumed: dict[str, Any] | None) -> PrecisionChoice:
        """``--amp auto`` on a resumed run keeps the choice its checkpoint records, so that it goes on
        exactly as it began; otherwise ``precision_choice.resolve_precision`` decides, timing this run's
        own network, image size and batch where that is what decides."""
        cfg = self.cfg
        if cfg.amp == "auto" and resumed is not None and resumed.get("precision"):
            return PrecisionChoice.from_record(resumed["precision"])
        size = self.data.preprocess.image_size
        identity = [asdict(self.spec), size, cfg.batch_size, cfg.channels_last, torch.get_num_threads(),
                    self.rt.world_size]

        def measure() -> tuple[float, float]:
            if self.rt.is_main:
                print(f"--amp auto: timing fp32 and bf16 training steps of {cfg.model} at {size} px, batch "
                      f"{cfg.batch_size} (once for this machine, model and batch)", flush=True)
            return measure_across_ranks(self.model, cfg.batch_size, size, cfg.in_chans, cfg.channels_last,
                                        cfg.clip_frames if self.video else None)

        return resolve_precision(cfg.amp, cfg.amp_dtype, self.rt.device, identity, measure)

    @property
    def amp(self) -> bool:
        return self.precision.amp

    @property
    def amp_dtype(self) -> str:
        return self.precision.dtype

    @property
    def precision_label(self) -> str:
        """What training computes in: fp32, or mixed precision with bf16/fp16 autocast."""
        return self.precision.label

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema else self.model

    # ---- loop -------------------------------------------------------------------------------
    def train_image_size(self) -> int:
        """Progressive resizing: the first epochs may train on smaller images (cheaper per image)."""
        sizes = self.cfg.progressive_sizes
        return sizes[self.epoch] if self.epoch < len(sizes) else self.data.preprocess.image_size

    def train_one_epoch(self) -> dict[str, float]:
        cfg, device = self.cfg, self.rt.device
        size = self.train_image_size()
        loader = self.data.train
        loader.set_epoch(self.epoch)
        set_train_mode(self.model, True)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        start = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False,
                   disable=None if self.rt.is_main else True, dynamic_ncols=True, file=sys.stderr)
        self.optimizer.zero_grad(set_to_none=True)
        batches = len(loader)
        for i, (x, y) in enumerate(bar):
            stepping = (i + 1) % cfg.accumulate == 0 or i + 1 == batches
            # gradients are all-reduced once per optimizer step, not once per micro-batch
            sync = contextlib.nullcontext() if stepping or self.rt.world_size == 1 else self.train_model.no_sync()
            with sync:
                logits, loss = self.forward_loss(x, y, size)
                self.scaler.scale(loss / cfg.accumulate).backward()
            if stepping:
                self._optimizer_step()
            loss_sum += loss.detach() * len(y)
            correct += self.batch_hits(logits.detach(), y)
            seen += len(y)
            if (device.type != "cuda" or i % GPU_HEALTH_EVERY == 0 or i + 1 == batches) \
                    and not torch.isfinite(loss_sum):
                raise TrainingDiverged(diverged_message(
                    float(loss_sum), self.epoch + 1, i + 1, self.optimizer.param_groups[0]["lr"], self.epoch,
                    cfg.data, cfg.model))
            if i % 10 == 0 and not bar.disable:  # reading the totals waits for the device: not every step
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{int(correct) / seen:.3f}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}", refresh=False)
        totals = sum_across_ranks(torch.stack([loss_sum.double(), correct.double(),
                                               torch.tensor(float(seen), dtype=torch.float64, device=device)]))
        loss_total, correct_total, seen_total = totals.tolist()
        elapsed = time.perf_counter() - start
        return {"train_loss": loss_total / seen_total, TRAIN_HITS[self.task]: correct_total / seen_total,
                "seconds": elapsed,
                "images_per_s": seen_total / elapsed, "image_size": size}

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A loaded batch on the device at ``size`` px, through the training network: (logits, loss)."""
        device = self.rt.device
        x = x.to(device, non_blocking=True)
        x = x.contiguous(memory_format=memory_format(self.cfg.channels_last, x.dim()))  # images or clips
        y = y.to(device, non_blocking=True)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        with autocast_context(device, self.amp, self.amp_dtype):
            logits = self.train_model(x)
            return logits, self._loss(logits.float(), x, y)

    def batch_hits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A training batch's correct answers, counted on the device."""
        return training_hits(logits, y)

    def _loss(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if self.task == "multilabel":
            if self.teacher is None:
                return multilabel_loss(logits, y, cfg.label_smoothing, self.pos_weight)
            return sigmoid_distillation_loss(logits, self.teacher(x).float(), y, cfg.kd_alpha, cfg.kd_temperature,
                                             cfg.label_smoothing, self.pos_weight)
        if self.teacher is None:
            return F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=cfg.label_smoothing)
        return distillation_loss(logits, self.teacher(x).float(), y, cfg.kd_alpha, cfg.kd_temperature,
                                 cfg.label_smoothing, self.class_weights)

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema:
            self.ema.update_parameters(self.model)

    def validate(self) -> EvalResult | MultilabelResult:
        """Every val image once, spread over the ranks; the figures are those of the whole split."""
        average_batchnorm_statistics(self.model)
        if self.ema:
            average_batchnorm_statistics(self.ema.module)
        if self.task == "multilabel":
            return evaluate_multilabel(self.eval_model(), self.data.val, self.rt.device, tta=self.cfg.tta,
                                       channels_last=self.cfg.channels_last, amp=self.amp, amp_dtype=self.amp_dtype,
                                       across_ranks=self.rt.world_size > 1)
        return evaluate(self.eval_model(), self.data.val, len(self.classes), self.rt.device, tta=self.cfg.tta,
                        channels_last=self.cfg.channels_last, amp=self.amp, amp_dtype=self.amp_dtype,
                        across_ranks=self.rt.world_size > 1)

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.rt.is_main:
            self._open_run_folder()
            print(describe(self.data))
            print(f"model {cfg.model} ({self.spec.stem or 'cifar'} stem), {len(self.classes)} classes, "
                  f"device {self.rt.device}, {self.precision_label}, run folder {self.run_dir}")
            print(f"precision: {self.precision_label} ({self.precision.how}: {self.precision.reason})")
            print(hardware_line(self.rt.device))
            for line in self.default_lines:
                print(line)
        # wall time of training and evaluation, carried over a resume: the time-to-accuracy clock
        clock = time.perf_counter() - (self.history[-1].get("elapsed_s", 0.0) if self.history else 0.0)
        while self.epoch < cfg.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            row: dict[str, float] = {"epoch": self.epoch + 1, **self.train_one_epoch(), "lr": lr}
            self.epoch += 1
            improved = False
            if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
                result = self.validate()
                row.update(result.row())
                if isinstance(result, EvalResult):
                    self.val_confusion = result.confusion
                improved = result.score > self.best_score
                if improved:
                    self.best_score, self.best_epoch, self.bad_epochs = result.score, self.epoch, 0
                    if isinstance(result, MultilabelResult):
                        self.thresholds = tune_thresholds(result.targets, result.probabilities)
                else:
                    self.bad_epochs += 1
            row["elapsed_s"] = time.perf_counter() - clock
            self.history.append(row)
            if self.rt.is_main:
                self._write_epoch(row, improved)
            if cfg.patience and self.bad_epochs >= cfg.patience:
                if self.rt.is_main:
                    score = "mAP" if self.task == "multilabel" else "top-1"
                    print(f"early stop: no better val {score} for {cfg.patience} epochs "
                          f"(best {self.best_score:.4f} "
                          f"at epoch {self.best_epoch})")
                break
        return self._finish()

    def _write_epoch(self, row: dict[str, float], improved: bool) -> None:
        if improved:
            save_model_file(self.run_dir / self.MODEL_FILE, self.eval_model(), self.model_info())
        save_checkpoint(self.run_dir / "last.pt", self._checkpoint_state())
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, METRIC_FIELDS[self.task])
        writer.writeheader()
        writer.writerows(self.history)
        write_text_atomic(self.run_dir / "metrics.csv", buffer.getvalue())
        assert self.writer is not None
        for key in METRIC_FIELDS[self.task][1:]:
            if key in row:
                self.writer.add_scalar(key, row[key], int(row["epoch"]))
        self.writer.flush()
        warning = above_uniform_warning(row["train_loss"], self.uniform_loss) if row["epoch"] == 1 else ""
        print(f"epoch {int(row['epoch'])}/{self.cfg.epochs}  {epoch_figures(row)}  lr {row['lr']:.4g}  "
              f"{row['images_per_s']:.0f} img/s  {row['seconds']:.1f}s{'  *best' if improved else ''}{warning}",
              flush=True)

    def _finish(self) -> dict[str, Any]:
        best = next((row for row in self.history if row["epoch"] == self.best_epoch), {})
        score_field = SCORE_FIELD[self.task]
        figures = [f for f in METRIC_FIELDS[self.task] if f.startswith("val_") and f not in ("val_loss", score_field)]
        summary = {"run_dir": str(self.run_dir), "task": self.task, "epochs": self.epoch,
                   "best_epoch": self.best_epoch, f"best_{score_field}": self.best_score,
                   **{f"best_{f}": best.get(f) for f in figures}, **self.imbalance_record(),
                   "skipped_images": len(self.data.skipped),
                   "skipped_files": sorted(self.data.skipped.files), "device": str(self.rt.device),
                   "precision": self.precision_label, "amp": self.amp, "precision_choice": self.precision.record(),
                   "hardware": hardware_report()}
        if self.thresholds is not None:
            summary["thresholds"] = dict(zip(self.classes, self.thresholds))
        verdict = learned_nothing(self.best_score, self.val_confusion) if self.val_confusion is not None else ""
        summary["learned_nothing"] = verdict or None
        if self.rt.is_main:
            from ..evaluate.plots import plot_history  # matplotlib: loaded when a plot is drawn

            plot_history(self.history, self.run_dir / "curves.png")
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=1))
            if self.writer:
                self.writer.close()
            print(f"done: best {best_figures(best, self.task)} at epoch {self.best_epoch}; "
                  f"model {self.run_dir / self.MODEL_FILE}; skipped {len(self.data.skipped)} unreadable images")
            if verdict:
                print(f"warning: {verdict}")
        return summary
