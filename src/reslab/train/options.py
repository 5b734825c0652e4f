"""What ``reslab lr-find`` takes beside the training config."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


@dataclass(kw_only=True)
class LrFindOptions:
    steps: int = option(100, help="training steps of the test (over several epochs if the data is small)")
    start_lr: float = option(1e-7, help="the learning rate of the first step")
    end_lr: float = option(10.0, help="the learning rate of the last step")
    out: str = option("lr_find.png", help="the picture of loss against learning rate")
