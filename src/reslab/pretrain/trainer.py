"""Self-supervised pretraining on reslab's trainer: the same loop, optimizers, schedules, AMP, EMA, checkpoints,
exact resume and DDP, with two views per image in place of a label and a kNN monitor in place of evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..collectives import average_batchnorm_statistics
from ..data.decoding import to_device
from ..data.loaders import SkipLog, TensorLoader
from ..data.pipeline import DataBundle, Loader, make_loader
from ..data.splits import Dataset, FileSplit, PackSplit
from ..data.streams import StreamLoader
from ..evaluate.metrics import autocast_context
from ..features.extract import batch_features
from ..features.knn import knn_top1
from ..hardware import default_workers, memory_format
from ..modelfile import ModelInfo, ModelSpec
from ..models import create_model
from ..train.distributed import Runtime
from ..train.trainer import SCORE_FIELD, Trainer
from .config import PretrainConfig
from .data import is_labelled, pretrain_dataset
from .methods import SelfSupervised
from .views import BatchViews, ImageViews, method_recipes


@dataclass
class KnnResult:
    """One kNN monitor: ``score`` picks the best epoch. Without labels there is nothing to score, and the latest
    epoch counts as the best (``score`` is the epoch)."""

    score: float
    figures: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, float]:
        return self.figures


class Pretrainer(Trainer):
    MODEL_FILE = "backbone.safetensors"

    def __init__(self, cfg: PretrainConfig, runtime: Runtime | None = None) -> None:
        self.pretrain = cfg
        dataset = pretrain_dataset(cfg, cfg.run_dir / "split.json")
        super().__init__(cfg, runtime, dataset=dataset)
        self.task = "features"
        self.labelled = is_labelled(dataset)
        self.uniform_loss = None  # a contrastive loss has no uniform guess to stay below
        self.knn_bank, self.knn_val = self._knn_loaders()
        if not self.labelled and self.rt.is_main:
            print(f"{cfg.data}: no class folders: {len(dataset.train)} images without labels, so no kNN monitor "
                  f"(the last epoch's backbone is kept)")

    # ---- data and model ---------------------------------------------------------------------
    def _build_data(self, dataset: Dataset) -> DataBundle:
        """The trainer's data, with its training loader giving two views of each image instead of one."""
        bundle = super()._build_data(dataset)
        recipes = method_recipes(self.pretrain.method)
        if isinstance(bundle.train, TensorLoader):
            bundle.train.augment = BatchViews(recipes, bundle.preprocess)
            return bundle
        cfg, rt = self.cfg, self.rt
        assert isinstance(dataset.train, FileSplit | PackSplit)
        workers = default_workers(rt.device, rt.world_size) if cfg.workers is None else cfg.workers
        global_batch = cfg.batch_size * rt.world_size
        bundle.train = StreamLoader(dataset.train, ImageViews(self.pretrain.method, bundle.preprocess, cfg.seed),
                                    to_device(rt.device), cfg.batch_size, bundle.skipped, rt.device, workers,
                                    shuffle=True, drop_last=len(dataset.train) > global_batch or rt.world_size > 1,
                                    seed=cfg.seed, rank=rt.rank, world_size=rt.world_size)
        bundle.path = "per-image"
        return bundle

    def _build_model(self) -> tuple[ModelSpec, nn.Module]:
        """The backbone (a ResNet without its head) inside the method's module."""
        cfg = self.cfg
        spec = ModelSpec(cfg.model, 0, cfg.in_chans, self._stem(), zero_init_residual=cfg.zero_init_residual,
                         se=cfg.se, features_only=True)
        backbone = create_model(cfg.model, 0, pretrained=cfg.pretrained, weights=cfg.weights, backbone=cfg.init,
                                freeze_parts=cfg.freeze, in_chans=cfg.in_chans, stem=spec.stem,
                                zero_init_residual=cfg.zero_init_residual, se=cfg.se, features_only=True)
        return spec, SelfSupervised(backbone, self.pretrain, distributed=self.rt.world_size > 1)

    def _knn_loaders(self) -> tuple[Loader, Loader] | tuple[None, None]:
        """Every training image (the bank) and every val image, each once, unaugmented, in every process: each
        process scores the whole split itself, so the monitor needs no gathering."""
        if not self.labelled:
            return None, None
        data, cfg = self.data, self.cfg
        if isinstance(data.val, TensorLoader):
            assert isinstance(data.train, TensorLoader)
            return data.train.in_order(), data.val.in_order()
        pre, device = data.preprocess, self.rt.device
        return tuple(make_loader(split, pre, cfg.batch_size, device, SkipLog(), cfg.workers)  # type: ignore[return-value]
                     for split in (data.dataset.train, data.dataset.val))

    @property
    def method(self) -> SelfSupervised:
        assert isinstance(self.model, SelfSupervised)
        return self.model

    def eval_model(self) -> nn.Module:
        """The backbone that is monitored and saved: the online one (of the EMA, with ``--ema``)."""
        module = self.ema.module if self.ema else self.model
        return module.backbone

    # ---- steps ------------------------------------------------------------------------------
    def forward_loss(self, x: torch.Tensor, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views (N, 2, C, H, W) through the method: (the views' similarities, the loss)."""

        device = self.rt.device
        first, second = (v.to(device, non_blocking=True).contiguous(memory_format=memory_format(
            self.cfg.channels_last, 4)) for v in x.unbind(1))
        with autocast_context(device, self.amp, self.amp_dtype):
            loss, similarities = self.train_model(first, second)
        return similarities, loss.float()

    def batch_hits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How many images' own second view is the nearest of the batch's second views to their first."""
        return (logits.argmax(dim=1) == torch.arange(len(logits), device=logits.device)).sum()

    def _optimizer_step(self) -> None:
        super()._optimizer_step()
        if self.method.has_momentum:
            from lightly.utils.scheduler import cosine_schedule  # lightly: the ssl extra

            total = self.cfg.epochs * self.steps_per_epoch
            step = self.scheduler.last_epoch  # optimizer steps taken, restored on resume
            self.method.update_momentum(cosine_schedule(min(step, total), total, self.pretrain.momentum_base, 1.0))

    def validate(self) -> KnnResult:  # type: ignore[override]
        """lightly's kNN classifier (k=200, cosine, temperature-weighted) on the backbone's features: the training
        images are its bank, the val images are scored."""
        average_batchnorm_statistics(self.model)
        if self.ema:
            average_batchnorm_statistics(self.ema.module)
        if self.knn_bank is None or self.knn_val is None:
            return KnnResult(float(self.epoch))
        backbone, device = self.eval_model(), self.rt.device
        bank, bank_labels = batch_features(backbone, self.knn_bank, device)
        features, labels = batch_features(backbone, self.knn_val, device)
        top1 = knn_top1(bank, bank_labels, features, labels, len(self.classes), self.pretrain.knn_k,
                        self.pretrain.knn_temperature)
        return KnnResult(top1, {"val_knn_top1": top1})

    # ---- outputs ----------------------------------------------------------------------------
    def model_info(self) -> ModelInfo:
        info = super().model_info()
        training: dict[str, Any] = {**info.training, "method": self.pretrain.method,
                                    "views": "lightly's transforms of the method"}
        if not self.labelled:
            training.pop(SCORE_FIELD["features"], None)
        return replace(info, classes=self.classes if self.labelled else [], task="features", training=training)


def pretrain(cfg: PretrainConfig, runtime: Runtime | None = None) -> dict[str, Any]:
    return Pretrainer(cfg, runtime).fit()

