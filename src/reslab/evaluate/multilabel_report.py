"""``reslab eval`` of a multi-label model: mAP, per-label AP and decisions at the model's thresholds,
precision-recall curves and the highest-loss images."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..modelfile import ModelInfo
from .explain import Explainer, worst_overlays
from .metrics import Figures
from .multilabel import decisions, evaluate_multilabel, per_label_report
from .plots import plot_pr_curves, plot_worst_multilabel


def multilabel_report(model: nn.Module, info: ModelInfo, loader: Iterable[tuple[Tensor, Tensor]],
                      device: torch.device, out_dir: Path, tta: bool, worst: int, bf16: bool,
                      explain: str | None) -> tuple[Figures, dict[str, Path]]:
    """The report's figures and the pictures written to ``out_dir``."""
    thresholds = info.decision_thresholds
    result = evaluate_multilabel(model, loader, device, tta=tta, keep_worst=worst, channels_last=True, amp=bf16,
                                 thresholds=thresholds)
    fp32_figures = None
    if bf16:  # the same split in fp32: what the lower precision changes
        fp32 = evaluate_multilabel(model, loader, device, tta=tta, channels_last=True, thresholds=thresholds)
        same = decisions(fp32.probabilities, thresholds) == decisions(result.probabilities, thresholds)
        fp32_figures = {"map": fp32.score, "loss": fp32.loss, "agreement": float(same.mean())}
    figures = Figures(result.summary(), per_label_report(result.targets, result.probabilities, thresholds,
                                                         info.classes),
                      fp32_figures, "tuned on val" if info.thresholds else "0.5")
    shown = [(loss, true, decisions(p[None], thresholds)[0], image) for loss, true, p, image in result.worst]
    pre = info.preprocess
    files = {"pr_curves_png": plot_pr_curves(result.targets, result.probabilities, info.classes, thresholds,
                                             out_dir / "pr_curves.png"),
             "worst_png": plot_worst_multilabel(shown, info.classes, pre.mean, pre.std, out_dir / "worst.png")}
    if explain is not None:
        most_probable = [(loss, 0, int(np.argmax(p)), image) for loss, _, p, image in result.worst]
        overlays = worst_overlays(Explainer(model, info, explain), most_probable)
        files["worst_explained_png"] = plot_worst_multilabel(shown, info.classes, pre.mean, pre.std,
                                                             out_dir / "worst_explained.png", overlays)
    return figures, files
