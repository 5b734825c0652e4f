"""SimCLR, MoCo v2 and BYOL around a reslab backbone, from lightly's heads, losses and momentum utilities.

One module holds everything a method trains and keeps (backbone, heads, momentum copies, MoCo's memory bank), so
that the trainer's optimizer, DDP wrapper, checkpoint and exact resume cover it as they cover a classifier.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..features.extract import pooled
from .config import PretrainConfig


class SelfSupervised(nn.Module):
    """``forward(first, second)``: the method's loss of two views of the same images, and the (N, N) similarities
    of the first view's outputs to the second's (an image's own pair is its row's diagonal). ``forward(images)``:
    the projections of one batch (what the precision choice times)."""

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig, distributed: bool) -> None:
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss  # lightly: the ssl extra
        from lightly.models.modules import (
            BYOLPredictionHead,
            BYOLProjectionHead,
            MoCoProjectionHead,
            SimCLRProjectionHead,
        )
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.method = cfg.method
        self.backbone = backbone
        width, out = backbone.num_features, cfg.projection_size
        self.distributed = distributed
        if cfg.method == "simclr":
            self.projection = SimCLRProjectionHead(width, cfg.hidden_dim or width, out)
            self.loss = NTXentLoss(cfg.nt_xent_temperature, gather_distributed=distributed)
        elif cfg.method == "moco":
            self.projection = MoCoProjectionHead(width, cfg.hidden_dim or width, out)
            self.loss = NTXentLoss(cfg.nt_xent_temperature, memory_bank_size=(cfg.memory_bank, out),
                                   gather_distributed=distributed)
        else:
            self.projection = BYOLProjectionHead(width, cfg.hidden_dim or 2 * width, out)
            self.prediction = BYOLPredictionHead(out, cfg.hidden_dim or 2 * width, out)
            self.loss = NegativeCosineSimilarity()
        if cfg.method != "simclr":
            self.momentum_backbone = copy.deepcopy(backbone)
            self.momentum_projection = copy.deepcopy(self.projection)
            deactivate_requires_grad(self.momentum_backbone)
            deactivate_requires_grad(self.momentum_projection)

    def get_extra_state(self) -> dict[str, Tensor]:
        """MoCo's memory bank: lightly keeps it out of the state dict, and a resumed run needs it."""
        if self.method != "moco":
            return {}
        bank = self.loss.memory_bank
        return {"bank": bank.bank.clone(), "bank_ptr": bank.bank_ptr.clone()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        if state:
            self.loss.memory_bank.bank.copy_(state["bank"])
            self.loss.memory_bank.bank_ptr.copy_(state["bank_ptr"])

    @property
    def has_momentum(self) -> bool:
        return self.method != "simclr"

    def update_momentum(self, momentum: float) -> None:
        """The momentum copies one step closer to the online networks: ``m * copy + (1 - m) * online``."""
        from lightly.models.utils import update_momentum

        update_momentum(self.backbone, self.momentum_backbone, momentum)
        update_momentum(self.projection, self.momentum_projection, momentum)

    def _online(self, x: Tensor) -> Tensor:
        z = self.projection(pooled(self.backbone, x))
        return self.prediction(z) if self.method == "byol" else z

    @torch.no_grad()
    def _target(self, x: Tensor) -> Tensor:
        """The momentum encoder's outputs. MoCo shuffles the batch first so that BatchNorm cannot tell an image's
        pair by the batch's statistics (lightly's ``batch_shuffle``, across ranks under DDP)."""
        from lightly.models.utils import (
            batch_shuffle,
            batch_shuffle_distributed,
            batch_unshuffle,
            batch_unshuffle_distributed,
        )

        if self.method != "moco":
            return self.momentum_projection(pooled(self.momentum_backbone, x))
        if self.distributed:
            x, shuffle = batch_shuffle_distributed(x)
            return batch_unshuffle_distributed(self.momentum_projection(pooled(self.momentum_backbone, x)), shuffle)
        x, shuffle = batch_shuffle(x)
        return batch_unshuffle(self.momentum_projection(pooled(self.momentum_backbone, x)), shuffle)

    def forward(self, first: Tensor, second: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if second is None:
            return self._online(first)
        p1, p2 = self._online(first), self._online(second)
        if self.method == "simclr":
            return self.loss(p1, p2), _similarities(p1, p2)
        t1, t2 = self._target(first), self._target(second)
        # symmetric: each view predicts the other's target, as in lightly's benchmarks
        loss = 0.5 * (self.loss(p1, t2.float()) + self.loss(p2, t1.float()))
        return loss, _similarities(p1, t2)


def _similarities(a: Tensor, b: Tensor) -> Tensor:
    a, b = nn.functional.normalize(a.detach().float(), dim=1), nn.functional.normalize(b.detach().float(), dim=1)
    return a @ b.T
