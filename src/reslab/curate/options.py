"""What ``reslab find-label-issues`` takes beside the training config of its folds."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import check_choices, option


@dataclass(kw_only=True)
class LabelIssuesOptions:
    folds: int | None = option(None, help="cross-training folds, each training --epochs on the others (default 5); "
                               "with --features, folds of the linear probe (default 10)")
    features: str | None = option(None, metavar="MODEL", help="out-of-sample probabilities from a linear probe "
                                  "cross-validated on this model's frozen features, instead of cross-training: a "
                                  "backbone pretrained on other images (reslab pretrain), torchvision's ImageNet "
                                  "weights by name, or any reslab model file")
    from_model: str | None = option(None, metavar="MODEL", help="use this model file's predictions on --split "
                                    "instead of cross-training (a split it did not train on)")
    split: str = option("val", choices=("val", "test", "train"), help="--from-model: the split")
    top: int = option(32, help="suspects shown in the grid picture and printed")
    write_relabel_csv: bool = option(False, help="also write relabel.csv: the suspects with an action column "
                                     "(review -> keep, relabel or remove) for you to fill in")

    def __post_init__(self) -> None:
        check_choices(self, "find-label-issues option")
